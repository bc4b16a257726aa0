"""gateway state: received source keys and push log

Revision ID: 0003_gateway
Revises: 0001_initial
"""

from alembic import op
import sqlalchemy as sa


revision = "0003_gateway"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_received",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("peer", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_key"),
    )
    with op.batch_alter_table("gateway_received", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gateway_received_sop_instance_uid"), ["sop_instance_uid"], unique=False
        )
    op.create_table(
        "gateway_push",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("blob_digest", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("target", "blob_digest"),
    )
    with op.batch_alter_table("gateway_push", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_push_target"), ["target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gateway_push", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_push_target"))
    op.drop_table("gateway_push")
    with op.batch_alter_table("gateway_received", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_received_sop_instance_uid"))
    op.drop_table("gateway_received")
