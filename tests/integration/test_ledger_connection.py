"""The ledger's connection is the batch's alone: a rebalance that asks where to resume while a
batch is being written gets its answer without disturbing the batch, and a batch never starts
inside whatever an earlier, abandoned use of the connection left open."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from metering.store import catalog
from metering.store.ledger import Ledger
from tests.integration.test_lean_ledger import MODELS, TOPIC, dsn, event, write_batch

BATCHES = 12
EVENTS_PER_BATCH = 200


def seed(url: str) -> None:
    with psycopg.connect(dsn(url)) as conn:
        catalog.add_tenants(conn, [catalog.TenantRow("acme", "Acme")])
        catalog.add_models(conn, MODELS)


def test_a_rebalance_asking_where_to_resume_during_a_write_neither_wedges_nor_changes_it(
    database: str,
) -> None:
    """Each batch is raced by an assignment's ``next_offsets``, started a different number of
    event-loop turns into the write, so that it lands in each of the write's statements."""
    seed(database)

    async def run() -> tuple[list[int], list[dict[int, int]]]:
        ledger = Ledger(dsn(database))
        accepted, answers = [], []
        try:
            for n in range(BATCHES):
                events = [event(uuid.uuid4()) for _ in range(EVENTS_PER_BATCH)]

                async def assignment(turns: int = n) -> dict[int, int]:
                    for _ in range(turns):
                        await asyncio.sleep(0)
                    return await ledger.next_offsets(TOPIC, [0])

                written, answer = await asyncio.wait_for(
                    asyncio.gather(write_batch(ledger, events, n * EVENTS_PER_BATCH), assignment()),
                    timeout=30,
                )
                accepted.append(written.accepted)
                answers.append(answer)
        finally:
            await ledger.close()
        return accepted, answers

    accepted, answers = asyncio.run(run())

    assert accepted == [EVENTS_PER_BATCH] * BATCHES
    for n, answer in enumerate(answers):  # committed progress: before or after this batch
        assert answer.get(0, 0) in (n * EVENTS_PER_BATCH, (n + 1) * EVENTS_PER_BATCH)
    with psycopg.connect(dsn(database)) as conn:
        assert conn.execute("SELECT count(*) FROM usage_ledger").fetchone() == (
            BATCHES * EVENTS_PER_BATCH,
        )
        assert conn.execute("SELECT sum(events) FROM usage_hourly").fetchone() == (
            BATCHES * EVENTS_PER_BATCH,
        )


def test_a_batch_starts_afresh_when_the_connection_was_left_inside_a_transaction(
    database: str,
) -> None:
    """What an abandoned transaction wrote is rolled back, not committed with the next batch."""
    seed(database)
    abandoned = event(uuid.uuid4())

    async def run() -> int:
        ledger = Ledger(dsn(database))
        try:
            conn = await ledger.connection()
            await conn.execute("BEGIN")
            await conn.execute(
                "INSERT INTO usage_hourly (tenant_id, model, service_tier, hour, events,"
                " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,"
                " reasoning_tokens) VALUES ('acme', 'grok-3', 'standard', %s, 1000, 0, 0, 0,"
                " 0, 0)",
                (abandoned.occurred_at,),
            )
            return (await write_batch(ledger, [event(uuid.uuid4())], 0)).accepted
        finally:
            await ledger.close()

    assert asyncio.run(run()) == 1
    with psycopg.connect(dsn(database)) as conn:
        assert conn.execute("SELECT sum(events) FROM usage_hourly").fetchone() == (1,)
