"""licence grants expire and are revoked

Revision ID: 0010_licence_expiry
Revises: 0005_server

A grant of a release version to a licensee gets an optional expiry (``expires_at``) and the moment it was
revoked (``revoked_at``); a grant with either in the past serves nothing. Grants made before stay open
(both empty). Downgrading drops both columns: every grant, revoked or expired, serves again.
"""

from alembic import op
import sqlalchemy as sa

revision = "0010_licence_expiry"
down_revision = "0005_server"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("licence_grant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("licence_grant", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("expires_at")
