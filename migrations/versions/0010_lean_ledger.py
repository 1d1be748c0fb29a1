"""A leaner ledger row: no (tenant, time) index, a 16-byte fingerprint, 8-byte columns first.

- ``usage_ledger_tenant_time`` goes: no query reads the ledger by tenant and time (reports,
  invoices and quotas read ``usage_hourly``; reconcile and ``dlq conflicts`` read the ledger
  whole or by ``event_id``), and it cost ~52 bytes and ~6 µs of PostgreSQL per event.
- ``fingerprint`` keeps the first 16 bytes of the SHA-256 digest (the ledger compares it
  with a retry's; ``ledger_conflicts`` still records a conflicting payload's full digest).
- The columns are reordered, 8-byte ones first, so that no alignment padding sits between
  them. PostgreSQL cannot move a column in place, so the table is rebuilt and every row
  carried over; the primary key is built after the rows are in.
- Token counts stay ``bigint``: validation caps them at ``METERING_MAX_TOKENS_PER_EVENT``
  (50M by default), which an operator may raise past what ``integer`` holds. Tenant and
  model stay text: integer keys would save ~20 bytes a row more, but every query and test
  that reads the ledger by tenant would need a join; the row is under 300 bytes without.

Downgrade rebuilds the table in revision 0009's column order with its index and every row.
The fingerprints stay 16 bytes long (the rest of the digest is gone): revision 0009's code
compares a retry's full digest with the stored one, so a retry of an event stored before
the downgrade is recorded as a conflict rather than counted as a duplicate. Either way it
is not billed again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FINGERPRINT_BYTES = 16
TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
COUNTS = ",\n    ".join(f"{name} bigint NOT NULL" for name in TOKENS)
PADDING_FREE = f"""
    event_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    source_offset bigint NOT NULL,
    {COUNTS},
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    source_partition integer NOT NULL,
    long_context boolean NOT NULL DEFAULT false,
    fingerprint bytea NOT NULL,
    tenant_id text NOT NULL,
    model text NOT NULL,
    service_tier text NOT NULL,
    request_id text,
    deployment text,
    region text,
    attributes jsonb
"""
REVISION_0009 = f"""
    event_id uuid NOT NULL,
    tenant_id text NOT NULL,
    model text NOT NULL,
    service_tier text NOT NULL,
    occurred_at timestamptz NOT NULL,
    {COUNTS},
    request_id text,
    deployment text,
    region text,
    attributes jsonb,
    fingerprint bytea NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    long_context boolean NOT NULL DEFAULT false,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0
"""
ALL_COLUMNS = (
    "event_id, occurred_at, ingested_at, source_offset, "
    + ", ".join(TOKENS)
    + ", cache_write_1h_tokens, source_partition, long_context, fingerprint, tenant_id, model,"
    " service_tier, request_id, deployment, region, attributes"
)


def _rebuild(columns: str, fingerprint: str) -> None:
    """``usage_ledger`` rebuilt with ``columns``, every row carried over, then its key."""
    values = ALL_COLUMNS.replace("fingerprint", f"{fingerprint} AS fingerprint")
    op.execute(
        f"""
        SET LOCAL maintenance_work_mem = '256MB';
        CREATE TABLE usage_ledger_rebuilt ({columns});
        INSERT INTO usage_ledger_rebuilt ({ALL_COLUMNS}) SELECT {values} FROM usage_ledger;
        DROP TABLE usage_ledger;
        ALTER TABLE usage_ledger_rebuilt RENAME TO usage_ledger;
        ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_pkey PRIMARY KEY (event_id);
        """
    )


def upgrade() -> None:
    _rebuild(PADDING_FREE, f"substring(fingerprint FROM 1 FOR {FINGERPRINT_BYTES})")


def downgrade() -> None:
    _rebuild(REVISION_0009, "fingerprint")
    op.create_index("usage_ledger_tenant_time", "usage_ledger", ["tenant_id", "occurred_at"])
