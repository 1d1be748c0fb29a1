"""The ledger's lean layout (migration 0010) keeps every row and every dedup decision, and the
long-context flag is the domain's rule applied with the catalog's thresholds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from metering.billing.event_decoder import parse_event
from metering.billing.events import Catalog, UsageEvent
from metering.store import catalog, migrate
from metering.store.catalog import CatalogCache
from metering.store.ledger import BatchOutcome, Ledger
from tests.support.ingest import fetched

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
TOPIC = "usage.events.lean"
MODELS = [catalog.ModelRow("grok-3", "xai", "Grok 3", long_context_above=100_000)]
CATALOG = Catalog(tenants=frozenset({"acme"}), models=frozenset({"grok-3"}))


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def event(event_id: uuid.UUID, input_tokens: int = 1_000, output_tokens: int = 200) -> UsageEvent:
    document = {
        "event_id": str(event_id),
        "tenant_id": "acme",
        "model": "grok-3",
        "occurred_at": "2026-11-25T10:00:00Z",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    parsed = parse_event(orjson.dumps(document), catalog=CATALOG, now=NOW)
    assert isinstance(parsed, UsageEvent), parsed
    return parsed


async def write_batch(ledger: Ledger, events: list[UsageEvent], first_offset: int) -> BatchOutcome:
    """Writes ``events`` through ``ledger`` as one batch of records from partition 0."""
    records = [fetched(TOPIC, 0, first_offset + i, b"acme", b"{}") for i in range(len(events))]
    async with await ledger.batch(records) as batch:
        return await batch.write(list(zip(batch.fresh, events, strict=True)), [])


def write(
    url: str, events: list[UsageEvent], first_offset: int, *, cached: bool = True
) -> BatchOutcome:
    """Writes ``events`` as one batch of records from partition 0, as the worker does (with
    its catalog cache) or, ``cached=False``, as a ledger on its own."""

    async def run() -> BatchOutcome:
        cache = CatalogCache(dsn(url))
        ledger = Ledger(dsn(url), cache if cached else None)
        try:
            await cache.load()
            return await write_batch(ledger, events, first_offset)
        finally:
            await ledger.close()
            await cache.close()

    return asyncio.run(run())


def store_at_revision_0009(conn: psycopg.Connection, stored: UsageEvent) -> None:
    """A ledger row as revision 0009's code wrote it: the full 32-byte digest."""
    conn.execute(
        "INSERT INTO usage_ledger (event_id, tenant_id, model, service_tier, occurred_at,"
        " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,"
        " reasoning_tokens, fingerprint, source_partition, source_offset, attributes)"
        " VALUES (%s, 'acme', 'grok-3', 'standard', %s, 1000, 0, 0, 200, 0, %s, 3, 77,"
        ' \'{"team": "x"}\')',
        (stored.event_id, stored.occurred_at, stored.fingerprint),
    )


def ledger_rows(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT event_id, tenant_id, model, service_tier, occurred_at, input_tokens,"
        " output_tokens, attributes, source_partition, source_offset, ingested_at,"
        " long_context, cache_write_1h_tokens FROM usage_ledger ORDER BY event_id"
    ).fetchall()


def indexes(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'usage_ledger'")
    return {name for (name,) in rows}


def test_rows_stored_before_the_lean_layout_are_carried_over_both_ways(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database, "0009")
    stored = event(uuid.uuid4())
    with psycopg.connect(dsn(empty_database)) as conn:
        store_at_revision_0009(conn, stored)
        conn.commit()
        before = ledger_rows(conn)

    migrate.upgrade(empty_database)
    with psycopg.connect(dsn(empty_database)) as conn:
        assert ledger_rows(conn) == before
        (fingerprint,) = conn.execute("SELECT fingerprint FROM usage_ledger").fetchone()  # type: ignore[misc]
        assert bytes(fingerprint) == stored.fingerprint[:16]  # the digest's first half
        assert indexes(conn) == {"usage_ledger_pkey"}

    migrate.downgrade(empty_database, "0009")
    with psycopg.connect(dsn(empty_database)) as conn:
        assert ledger_rows(conn) == before
        assert indexes(conn) == {"usage_ledger_pkey", "usage_ledger_tenant_time"}


def test_a_retry_of_an_event_stored_before_the_lean_layout_is_a_duplicate_and_a_change_a_conflict(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database, "0009")
    stored = event(uuid.uuid4())
    with psycopg.connect(dsn(empty_database)) as conn:
        catalog.add_tenants(conn, [catalog.TenantRow("acme", "Acme")])
        catalog.add_models(conn, MODELS)
        store_at_revision_0009(conn, stored)
    migrate.upgrade(empty_database)

    outcome = write(empty_database, [event(stored.event_id), event(stored.event_id, 999)], 0)

    assert (outcome.accepted, outcome.duplicates, outcome.conflicts) == (0, 1, 1)
    with psycopg.connect(dsn(empty_database)) as conn:
        assert conn.execute("SELECT count(*) FROM usage_ledger").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM ledger_conflicts").fetchone() == (1,)


@pytest.mark.parametrize("cached", [True, False], ids=["worker's catalog cache", "ledger alone"])
def test_long_context_follows_the_catalogs_threshold_at_the_time_of_the_batch(
    database: str, cached: bool
) -> None:
    with psycopg.connect(dsn(database)) as conn:
        catalog.add_tenants(conn, [catalog.TenantRow("acme", "Acme")])
        catalog.add_models(conn, MODELS)
    at_threshold, above = event(uuid.uuid4(), 100_000), event(uuid.uuid4(), 150_000)
    assert write(database, [at_threshold, above], 0, cached=cached).accepted == 2
    with psycopg.connect(dsn(database)) as conn:
        conn.execute("UPDATE models SET long_context_above = 200000 WHERE model_id = 'grok-3'")
    assert write(database, [event(uuid.uuid4(), 150_000)], 2, cached=cached).accepted == 1

    with psycopg.connect(dsn(database)) as conn:
        flags = conn.execute(
            "SELECT input_tokens, long_context FROM usage_ledger ORDER BY ingested_at, input_tokens"
        ).fetchall()
        hourly = conn.execute(
            "SELECT long_context, events FROM usage_hourly ORDER BY long_context"
        ).fetchall()
    assert flags == [(100_000, False), (150_000, True), (150_000, False)]
    assert hourly == [(False, 2), (True, 1)]
