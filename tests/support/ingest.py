"""What the ingest tests do to the pipeline from the outside, the way its users would.

Events are built here as plain JSON and sent with plain aiokafka (not
``metering.produce.producer``), so a bug shared by the producer and the parser cannot hide
itself; expected totals are summed here, from the events a test sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from metering.billing.events import SERVICE_TIERS
from metering.billing.prices import PriceEntry
from metering.billing.tokens import TokenClass
from metering.config import Settings
from metering.files.price_files import LIST_PRICES, load_price_file
from metering.services.worker import WorkerProcess
from metering.store import catalog
from metering.store.billing.price_imports import import_prices
from metering.store.reconcile import Progress, read_progress
from metering.wire.kafka_admin import ensure_topics

TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
)
USAGE_COLUMNS = ("events", *TOKEN_COLUMNS)


# --- events --------------------------------------------------------------------------------


def event(
    *,
    tenant_id: str,
    model: str,
    occurred_at: datetime,
    input_tokens: int = 1000,
    output_tokens: int = 200,
    cached_input_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    service_tier: str | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A schema v1 event as a serving layer would write it: optional fields only when set."""
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    for name, value in (
        ("cached_input_tokens", cached_input_tokens),
        ("cache_write_tokens", cache_write_tokens),
        ("reasoning_tokens", reasoning_tokens),
    ):
        if value is not None:
            usage[name] = value
    document: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "model": model,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "usage": usage,
    }
    if service_tier is not None:
        document["service_tier"] = service_tier
    document.update(extra)
    return document


def encode(document: Any) -> bytes:
    return orjson.dumps(document)


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes | None  # None: a tombstone


def message(document: dict[str, Any]) -> Message:
    """The Kafka message for an event, keyed by its tenant like the serving layer does."""
    tenant = document.get("tenant_id")
    return Message(tenant.encode() if isinstance(tenant, str) else None, encode(document))


def hour_of(document: dict[str, Any]) -> datetime:
    moment = datetime.fromisoformat(document["occurred_at"].replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def expected_hourly(
    documents: Iterable[dict[str, Any]],
) -> dict[tuple[str, str, datetime], dict[str, int]]:
    """Events and tokens per (tenant, model, UTC hour), summed from what a test sent."""
    totals: dict[tuple[str, str, datetime], Counter[str]] = {}
    for document in documents:
        row = totals.setdefault(
            (document["tenant_id"], document["model"], hour_of(document)), Counter()
        )
        row["events"] += 1
        for column in TOKEN_COLUMNS:
            row[column] += document["usage"].get(column, 0)
    return {key: {c: row[c] for c in USAGE_COLUMNS} for key, row in totals.items()}


def expected_by_tenant(documents: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for (tenant, _, _), row in expected_hourly(documents).items():
        tenant_row = totals.setdefault(tenant, dict.fromkeys(USAGE_COLUMNS, 0))
        for column in USAGE_COLUMNS:
            tenant_row[column] += row[column]
    return totals


# --- the catalog ---------------------------------------------------------------------------


PRICED_SINCE = datetime(2020, 1, 1, tzinfo=UTC)


def seed_catalog(settings: Settings, *, tenants: Sequence[str], models: Sequence[str]) -> None:
    """Tenants and models that ingest accepts usage for: each model priced (list prices,
    or a flat test price for a model the list does not have)."""
    with psycopg.connect(settings.psycopg_dsn) as conn:
        catalog.add_tenants(conn, [catalog.TenantRow(t, t.title()) for t in tenants])
        catalog.add_models(conn, [catalog.ModelRow(m, "test", m) for m in models])
        price_models(conn, models)


def price_models(conn: psycopg.Connection, models: Sequence[str]) -> None:
    """Imports the list prices, and a flat test price on every tier for the other models."""
    listed = load_price_file(LIST_PRICES)
    unlisted = set(models) - {entry.model for entry in listed}
    flat = [
        PriceEntry(model, token_class, tier, "USD", Decimal(price), PRICED_SINCE, source="tests")
        for model in sorted(unlisted)
        for tier in SERVICE_TIERS
        for token_class, price in ((TokenClass.INPUT, "1.00"), (TokenClass.OUTPUT, "2.00"))
    ]
    import_prices(conn, [*listed, *flat])


# --- Kafka ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """Where the broker put a message."""

    message: Message
    partition: int
    offset: int


def produce(settings: Settings, messages: Sequence[Message]) -> list[Sent]:
    """Sends messages in order with plain aiokafka and waits for every acknowledgement."""

    async def send_all() -> list[Sent]:
        await ensure_topics(settings)  # the worker's partition count, not the broker default
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            max_request_size=1024 * 1024,
        )
        await producer.start()
        try:
            acks = [await producer.send(settings.topic_usage, m.value, key=m.key) for m in messages]
            metadata = await asyncio.gather(*acks)
        finally:
            await producer.stop()
        return [Sent(m, md.partition, md.offset) for m, md in zip(messages, metadata, strict=True)]

    return asyncio.run(send_all())


def read_dead_letters(
    settings: Settings, count: int, timeout_s: float = 30
) -> list[ConsumerRecord]:
    """Reads the dead-letter topic from the start until ``count`` records (or the timeout)."""

    async def read() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            settings.topic_dlq,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        await consumer.start()
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(records) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def headers(record: ConsumerRecord) -> dict[str, bytes]:
    return dict(record.headers)


# --- the ledger ----------------------------------------------------------------------------


def progress(settings: Settings) -> Progress:
    """The ledger's counters for the test's usage topic, summed over partitions."""
    with psycopg.connect(settings.psycopg_dsn) as conn:
        return read_progress(conn, settings.topic_usage)


def wait_until_processed(
    settings: Settings, worker: WorkerProcess, records: int, timeout_s: float = 30
) -> Progress:
    """Waits until the ledger has committed ``records`` records of the usage topic.

    Fails at once if it has committed more (something was processed twice) or if the
    worker died.
    """

    def done() -> Progress | None:
        now = progress(settings)
        assert now.processed <= records, f"processed {now.processed} records, sent {records}"
        return now if now.processed == records else None

    return worker.wait_until(done, f"the ledger processing {records} records", timeout_s)


def billed_hourly(settings: Settings) -> dict[tuple[str, str, datetime], dict[str, int]]:
    """What ``reporting.usage_hourly`` shows, in the shape of ``expected_hourly``."""
    columns = ", ".join(USAGE_COLUMNS)
    with psycopg.connect(settings.psycopg_dsn) as conn:
        rows = conn.execute(
            f"SELECT tenant_id, model, hour, {columns} FROM reporting.usage_hourly"
        ).fetchall()
    return {
        (tenant, model, hour.astimezone(UTC)): dict(zip(USAGE_COLUMNS, values, strict=True))
        for tenant, model, hour, *values in rows
    }


def ledger_rows_per_event(settings: Settings) -> dict[str, int]:
    with psycopg.connect(settings.psycopg_dsn) as conn:
        rows = conn.execute("SELECT event_id::text, count(*) FROM usage_ledger GROUP BY 1")
        return {event_id: count for event_id, count in rows}


def fetched(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it to the worker, for a test that writes to the ledger
    directly."""
    return ConsumerRecord(
        topic, partition, offset, 0, 0, key, value, None, len(key or b""), len(value), []
    )
