"""Quotas: limits, per-tenant quota state (written with the ledger), alert outbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_now = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "quota_limits",
        sa.Column("limit_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False, index=True),
        sa.Column("model", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric, nullable=False),
        sa.Column("hard", sa.Boolean, nullable=False),
        sa.Column("thresholds", ARRAY(sa.Integer), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.CheckConstraint(
            "kind IN ('tokens_per_period', 'spend_per_period', 'tokens_per_minute')",
            name="quota_limits_kind",
        ),
        sa.CheckConstraint("amount > 0", name="quota_limits_amount_positive"),
    )
    op.create_table(
        "quota_state",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("signal", JSONB, comment="last value for topic quota.state"),
        sa.Column("signal_published", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column(
            "reevaluate_at",
            sa.DateTime(timezone=True),
            comment="when a window ends or limits changed: evaluate again without new usage",
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )
    op.create_index("quota_state_updated", "quota_state", ["updated_at"])
    op.create_index("quota_state_reevaluate", "quota_state", ["reevaluate_at"])
    op.create_table(
        "quota_alerts",
        sa.Column("alert_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("limit_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("model", sa.Text),
        sa.Column("hard", sa.Boolean, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("limit_amount", sa.Numeric, nullable=False),
        sa.Column("used", sa.Numeric, nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True)),
        sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "quota_alerts_unpublished",
        "quota_alerts",
        ["emitted_at"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.execute(
        """
        CREATE VIEW reporting.quota_alerts AS
        SELECT alert_id, tenant_id, limit_id, kind, model, hard, threshold,
               limit_amount AS "limit", used, period_start, period_end, event_id,
               emitted_at, published_at
          FROM public.quota_alerts
        """
    )
    op.execute(
        "COMMENT ON VIEW reporting.quota_alerts IS "
        "'Quota threshold alerts, one per threshold per limit per period; docs/quotas.md'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW reporting.quota_alerts")
    op.drop_table("quota_alerts")
    op.drop_table("quota_state")
    op.drop_table("quota_limits")
