"""selection: QC measurements, verdicts, rule sets, cohorts

Revision ID: 0002_select
Revises: 0001_initial
"""

from alembic import op
import sqlalchemy as sa


revision = "0002_select"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qc_measurement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("qc_key", sa.String(length=64), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("thumbnail_digest", sa.String(length=64), nullable=True),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("qc_key"),
    )
    with op.batch_alter_table("qc_measurement", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qc_measurement_series_id"), ["series_id"], unique=False)

    op.create_table(
        "qc_verdict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("qc_key", sa.String(length=64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("warned", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("ruleset_digest", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("series_id"),
    )
    with op.batch_alter_table("qc_verdict", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qc_verdict_qc_key"), ["qc_key"], unique=False)

    op.create_table(
        "qc_ruleset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_table(
        "cohort",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("series_count", sa.Integer(), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "cohort_series",
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohort.id"]),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"]),
        sa.PrimaryKeyConstraint("cohort_id", "series_id"),
    )
    with op.batch_alter_table("cohort_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cohort_series_series_id"), ["series_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cohort_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cohort_series_series_id"))
    op.drop_table("cohort_series")
    op.drop_table("cohort")
    op.drop_table("qc_ruleset")
    with op.batch_alter_table("qc_verdict", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qc_verdict_qc_key"))
    op.drop_table("qc_verdict")
    with op.batch_alter_table("qc_measurement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qc_measurement_series_id"))
    op.drop_table("qc_measurement")
