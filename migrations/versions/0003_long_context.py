"""Long-context usage: the model's threshold, and a flag on ledger rows and aggregates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "models",
        sa.Column(
            "long_context_above",
            sa.BigInteger,
            comment="requests with more input tokens than this are long-context (priced apart)",
        ),
    )
    op.add_column(
        "usage_ledger",
        sa.Column("long_context", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "usage_hourly",
        sa.Column("long_context", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.drop_constraint("usage_hourly_pkey", "usage_hourly")
    op.create_primary_key(
        "usage_hourly_pkey",
        "usage_hourly",
        ["tenant_id", "model", "service_tier", "long_context", "hour"],
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE TEMP TABLE merged ON COMMIT DROP AS
        SELECT tenant_id, model, service_tier, hour, sum(events) AS events,
               sum(input_tokens) AS input_tokens, sum(cached_input_tokens) AS cached_input_tokens,
               sum(cache_write_tokens) AS cache_write_tokens, sum(output_tokens) AS output_tokens,
               sum(reasoning_tokens) AS reasoning_tokens, max(updated_at) AS updated_at
          FROM usage_hourly GROUP BY 1, 2, 3, 4;
        DELETE FROM usage_hourly;
        """
    )
    op.drop_constraint("usage_hourly_pkey", "usage_hourly")
    op.drop_column("usage_hourly", "long_context")
    op.execute(
        "INSERT INTO usage_hourly (tenant_id, model, service_tier, hour, events, input_tokens,"
        " cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, updated_at)"
        " SELECT * FROM merged"
    )
    op.create_primary_key(
        "usage_hourly_pkey", "usage_hourly", ["tenant_id", "model", "service_tier", "hour"]
    )
    op.drop_column("usage_ledger", "long_context")
    op.drop_column("models", "long_context_above")
