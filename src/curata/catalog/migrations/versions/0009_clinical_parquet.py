"""clinical tables as Parquet in the store, indexed per patient in the catalog

Revision ID: 0009_clinical_parquet
Revises: 0008_clinical

New inputs keep their OMOP rows and variants as one Parquet file per (input, table) in the store
(``clinical_table``) and, per patient, input and table, the distinct values cohort queries test
(``clinical_index``); row ids come from ``clinical_id_counter``. The rows an older catalog holds in the
SQL tables stay there (releases read both) and are indexed here, so cohort queries see them unchanged.
Downgrading drops the new tables: inputs filed after the upgrade then live in the store only (their
Parquet files), and the SQL tables hold what they held before it.
"""

from alembic import op
import sqlalchemy as sa

from curata.collect.clinical import backfill_index

revision = "0009_clinical_parquet"
down_revision = "0008_clinical"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "clinical_table",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
        sa.Column("source_digest", sa.String(64), nullable=False),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("blob_digest", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("site_id", "source_digest", "table_name", name="uq_clinical_table_source"),
    )
    op.create_table(
        "clinical_index",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("person_id", _BIGINT, sa.ForeignKey("person.person_id"), nullable=False, index=True),
        sa.Column("source_digest", sa.String(64), nullable=False),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "clinical_id_counter",
        sa.Column("table_name", sa.String(32), primary_key=True),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
    )
    backfill_index(op.get_bind())


def downgrade() -> None:
    op.drop_table("clinical_id_counter")
    op.drop_table("clinical_index")
    op.drop_table("clinical_table")
