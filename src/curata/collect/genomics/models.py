"""Genomic tables: each de-identified VCF kept whole in the store, its variants indexed for cohorts."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from curata.catalog.models import Base
from curata.collect.clinical.models import person  # noqa: F401  (person must exist for the foreign key)

genomic_file = sa.Table(
    "genomic_file",
    Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
    sa.Column("input_digest", sa.String(64), nullable=False),
    sa.Column("blob_digest", sa.String(64), nullable=False),  # the de-identified VCF (bgzip), whole
    sa.Column("format", sa.String(8), nullable=False),  # vcf, bcf (input)
    sa.Column("samples", sa.JSON(), nullable=False),  # pseudonyms, in column order
    sa.Column("variant_count", sa.Integer(), nullable=False, default=0),
    sa.Column("dropped_header_lines", sa.Integer(), nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), default=lambda: datetime.now(UTC)),
    sa.UniqueConstraint("site_id", "input_digest", name="uq_genomic_file_input"),
)

genomic_variant = sa.Table(
    "genomic_variant",
    Base.metadata,
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
    sa.Column("zygosity", sa.String(16), nullable=True),  # heterozygous, homozygous, hemizygous
    sa.Column("allele_frequency", sa.Float(), nullable=True),  # in this sample (AF / VAF)
    sa.Column("population_af", sa.Float(), nullable=True),  # gnomAD-style AF when annotated
    sa.Column("filter", sa.String(64), nullable=True),
)

__all__ = ["genomic_file", "genomic_variant"]
