"""Usage ledger, hourly aggregates, ingest progress, rejections, conflicts; reporting.usage_hourly.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA, JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOKEN_CLASSES = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "usage_ledger",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("service_tier", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in TOKEN_CLASSES),
        sa.Column("request_id", sa.Text),
        sa.Column("deployment", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("attributes", JSONB),
        sa.Column("fingerprint", BYTEA, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_index("usage_ledger_tenant_time", "usage_ledger", ["tenant_id", "occurred_at"])

    op.create_table(
        "usage_hourly",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("service_tier", sa.Text, primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("events", sa.BigInteger, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in TOKEN_CLASSES),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )

    op.create_table(
        "ingest_progress",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("accepted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("conflicts", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )

    op.create_table(
        "rejections",
        sa.Column("rejection_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("tenant_id", sa.Text),
        sa.Column("key", BYTEA),
        sa.Column("raw", BYTEA, nullable=False),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("topic", "partition", "offset", name="rejections_source"),
    )
    op.create_index("rejections_reason", "rejections", ["reason", "replayed_at"])

    op.create_table(
        "ledger_conflicts",
        sa.Column("conflict_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("fingerprint", BYTEA, nullable=False),
        sa.Column("raw", BYTEA, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint("topic", "partition", "offset", name="ledger_conflicts_source"),
    )

    sums = ",\n           ".join(f"sum({c})::bigint AS {c}" for c in TOKEN_CLASSES)
    op.execute(
        f"""
        CREATE VIEW reporting.usage_hourly AS
        SELECT tenant_id, model, hour,
               sum(events)::bigint AS events,
               {sums}
          FROM public.usage_hourly
         GROUP BY tenant_id, model, hour
        """
    )
    op.execute(
        "COMMENT ON VIEW reporting.usage_hourly IS "
        "'Tokens per tenant, model and UTC hour of occurred_at; stable interface, docs/reports.md'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW reporting.usage_hourly")
    for table in (
        "ledger_conflicts",
        "rejections",
        "ingest_progress",
        "usage_hourly",
        "usage_ledger",
    ):
        op.drop_table(table)
