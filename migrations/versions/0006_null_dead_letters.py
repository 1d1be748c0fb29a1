"""Dead letters of records without a value (Kafka tombstones): ``rejections.raw`` may be null.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("rejections", "raw", nullable=True)


def downgrade() -> None:
    op.execute("UPDATE rejections SET raw = '' WHERE raw IS NULL")
    op.alter_column("rejections", "raw", nullable=False)
