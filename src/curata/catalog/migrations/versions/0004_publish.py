"""publish: releases, versions, members, exports, consent withdrawals

Revision ID: 0004_publish
Revises: 0001_initial
"""

from alembic import op
import sqlalchemy as sa


revision = "0004_publish"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "release_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_key", sa.String(length=64), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ledger_index", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["release.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("release_id", "version"),
    )
    with op.batch_alter_table("release_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_version_content_key"), ["content_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_version_release_id"), ["release_id"], unique=False)
    op.create_table(
        "release_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"]),
        sa.ForeignKeyConstraint(["version_id"], ["release_version.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "series_id"),
    )
    with op.batch_alter_table("release_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_member_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_member_series_id"), ["series_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_member_version_id"), ["version_id"], unique=False)
    op.create_table(
        "release_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("licensee", sa.String(length=128), nullable=False),
        sa.Column("mark", sa.String(length=64), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("ledger_index", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["release_version.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mark"),
    )
    with op.batch_alter_table("release_export", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_export_licensee"), ["licensee"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_export_version_id"), ["version_id"], unique=False)
    op.create_table(
        "consent_withdrawal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id"),
    )


def downgrade() -> None:
    op.drop_table("consent_withdrawal")
    with op.batch_alter_table("release_export", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_export_version_id"))
        batch_op.drop_index(batch_op.f("ix_release_export_licensee"))
    op.drop_table("release_export")
    with op.batch_alter_table("release_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_member_version_id"))
        batch_op.drop_index(batch_op.f("ix_release_member_series_id"))
        batch_op.drop_index(batch_op.f("ix_release_member_patient_id"))
    op.drop_table("release_member")
    with op.batch_alter_table("release_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_version_release_id"))
        batch_op.drop_index(batch_op.f("ix_release_version_content_key"))
    op.drop_table("release_version")
    op.drop_table("release")
