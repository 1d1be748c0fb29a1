"""Usage written straight into the hourly aggregates, for tests of what reads them (billing,
reporting, tenant isolation) without running ingest."""

from __future__ import annotations

from datetime import datetime

import psycopg

_ADD_EVENT = """
INSERT INTO usage_hourly AS h (tenant_id, model, service_tier, long_context, hour, events,
    input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens)
VALUES (%s, %s, %s, %s, %s, 1, %s, %s, 0, %s, 0)
ON CONFLICT (tenant_id, model, service_tier, long_context, hour) DO UPDATE SET
    events = h.events + 1,
    input_tokens = h.input_tokens + EXCLUDED.input_tokens,
    cached_input_tokens = h.cached_input_tokens + EXCLUDED.cached_input_tokens,
    output_tokens = h.output_tokens + EXCLUDED.output_tokens,
    updated_at = now()
"""


def add_usage(
    conn: psycopg.Connection,
    tenant: str,
    model: str,
    hour: datetime,
    *,
    input_tokens: int,
    output_tokens: int = 0,
    cached: int = 0,
    tier: str = "standard",
    long_context: bool = False,
) -> None:
    """What ingest does with one event: add it to its hourly aggregate row (the same upsert
    as the ledger's, in ``metering/store/ledger.py``, for one event)."""
    conn.execute(
        _ADD_EVENT, (tenant, model, tier, long_context, hour, input_tokens, cached, output_tokens)
    )
