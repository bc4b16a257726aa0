"""clinical and genomic data: OMOP CDM v5.4 tables (from OHDSI's field list), VCF files and variants

Revision ID: 0008_clinical
Revises: 0001_initial

The OMOP columns come from the field list shipped in ``curata/collect/clinical/_standard`` (the CDM
v5.4 standard, frozen), so this revision and the models cannot drift apart.
"""

from alembic import op
import sqlalchemy as sa

from curata.collect.clinical import OMOP_TABLES as TABLES
from curata.collect.clinical import curata_columns, omop_columns

revision = "0008_clinical"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in TABLES:
        extra = []
        if name == "person":
            extra.append(sa.UniqueConstraint("site_id", "pseudonym", name="uq_person_site_pseudonym"))
        op.create_table(name, *omop_columns(name), *curata_columns(name), *extra)
    op.create_table(
        "clinical_source",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
        sa.Column("input_digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("output_digest", sa.String(64), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("site_id", "input_digest", name="uq_clinical_source_input"),
    )
    op.create_table(
        "genomic_file",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
        sa.Column("input_digest", sa.String(64), nullable=False),
        sa.Column("blob_digest", sa.String(64), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("variant_count", sa.Integer(), nullable=False),
        sa.Column("dropped_header_lines", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("site_id", "input_digest", name="uq_genomic_file_input"),
    )
    op.create_table(
        "genomic_variant",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_id", sa.Integer(), sa.ForeignKey("genomic_file.id"), nullable=False, index=True),
        sa.Column(
            "person_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("person.person_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("chrom", sa.String(32), nullable=False),
        sa.Column("pos", sa.BigInteger(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("alt", sa.Text(), nullable=False),
        sa.Column("gene", sa.String(64), nullable=True, index=True),
        sa.Column("consequence", sa.String(128), nullable=True, index=True),
        sa.Column("hgvs_c", sa.Text(), nullable=True),
        sa.Column("hgvs_p", sa.Text(), nullable=True),
        sa.Column("zygosity", sa.String(16), nullable=True),
        sa.Column("allele_frequency", sa.Float(), nullable=True),
        sa.Column("population_af", sa.Float(), nullable=True),
        sa.Column("filter", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("genomic_variant")
    op.drop_table("genomic_file")
    op.drop_table("clinical_source")
    for name in reversed(TABLES):
        op.drop_table(name)
