"""whole-slide images: the slide table

Revision ID: 0007_wsi
Revises: 0001_initial
"""

from alembic import op
import sqlalchemy as sa


revision = "0007_wsi"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slide",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("slide_id", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("levels", sa.Integer(), nullable=False),
        sa.Column("mpp", sa.Float(), nullable=True),
        sa.Column("magnification", sa.Float(), nullable=True),
        sa.Column("scanner", sa.String(length=128), nullable=True),
        sa.Column("stain", sa.String(length=64), nullable=True),
        sa.Column("organ", sa.String(length=64), nullable=True),
        sa.Column("tile_size", sa.Integer(), nullable=True),
        sa.Column("compression", sa.String(length=32), nullable=True),
        sa.Column("removed_images", sa.JSON(), nullable=False),
        sa.Column("vendor_blob_digest", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("series_id"),
    )
    with op.batch_alter_table("slide", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slide_slide_id"), ["slide_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slide", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slide_slide_id"))
    op.drop_table("slide")
