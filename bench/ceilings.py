"""The drain's same-run ceilings: a bare aiokafka consumer of the same records, and binary
COPYs of the same ledger rows, into a bare table and into one with the ledger's key and
indexes (what any design keeping one durable ledger row per event must pay)."""

from __future__ import annotations

import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import IO

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import (
    cpu_seconds,
    dsn,
)
from metering.config import Settings
from metering.wire.kafka_admin import partitions_of
from streams.ingest.service import (  # the ceiling fetches as the worker does
    FETCH_BYTES,
    PARTITION_FETCH_BYTES,
)


@dataclass(frozen=True, slots=True)
class Ceiling:
    rate: float  # events (rows) per second
    cpu_us: float  # CPU per event (row): the bare consumer's, or the COPY's session's
    wal_bytes: float | None = None  # WAL per row, for a COPY


async def consume_ceiling(settings: Settings, events: int) -> Ceiling:
    """A bare consumer (getmany + orjson), timed from the first fetched batch to the last."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_BYTES,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(settings, settings.topic_usage)
        tps = [TopicPartition(settings.topic_usage, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, first_count, first_at, first_cpu = 0, 0, 0.0, 0.0
        window_ms = int(settings.batch_window_s * 1000)
        while seen < events:
            fetched = await consumer.getmany(timeout_ms=window_ms, max_records=settings.batch_size)
            for messages in fetched.values():
                for message in messages:
                    with suppress(orjson.JSONDecodeError):
                        orjson.loads(message.value)
                seen += len(messages)
            if seen and not first_count:
                first_count, first_at, first_cpu = seen, time.perf_counter(), time.process_time()
        timed = max(seen - first_count, 1)
        seconds = max(time.perf_counter() - first_at, 1e-9)
        return Ceiling(timed / seconds, (time.process_time() - first_cpu) / timed * 1e6)
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class CopyCeilings:
    keyed: Ceiling  # into a table with the ledger's primary key and indexes: the honest one
    bare: Ceiling  # into a table with the ledger's columns only


def ledger_columns(conn: psycopg.Connection) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'usage_ledger'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
    ]


def _with_new_ids(
    columns: list[str],
    table: str = "usage_ledger",
    *,
    random_ids: bool = False,
    earlier_by: str | None = None,
) -> str:
    """The columns of ``table``'s rows with new event ids: random (version 4), or, as the
    producer mints them, version 7 stamped with the row's ``occurred_at``; ``earlier_by``
    (an SQL interval) moves ``occurred_at`` back, and a version 7 id with it."""
    occurred_at = f"{table}.occurred_at" + (f" - {earlier_by}" if earlier_by else "")
    new_id = "gen_random_uuid()" if random_ids else _UUID7_AT.format(occurred_at=occurred_at)
    values = {"event_id": new_id, "occurred_at": occurred_at}
    return ", ".join(values.get(c, f"{table}.{c}") for c in columns)


# The 48-bit Unix milliseconds of occurred_at over the first 6 bytes of a random UUID, and
# the version nibble set to 7 (gen_random_uuid's variant bits are already RFC 9562's).
_UUID7_AT = (
    "encode(set_byte(overlay(uuid_send(gen_random_uuid()) placing"
    " substring(int8send((extract(epoch FROM {occurred_at}) * 1000)::int8) FROM 3 FOR 6)"
    " FROM 1 FOR 6), 6, (get_byte(uuid_send(gen_random_uuid()), 6) & 15) | 112), 'hex')::uuid"
)


MIN_COPY_ROWS = 50_000
"""The fewest rows a COPY ceiling copies: its session's CPU is read from /proc in clock ticks
(10 ms), which a few thousand rows do not fill; a rate per row does not need the same N."""


def copy_ceilings(settings: Settings, rows: int, *, random_ids: bool = False) -> CopyCeilings:
    """One binary COPY of ``rows`` ledger rows (at least ``MIN_COPY_ROWS``), committed, into a
    table with the ledger's key and indexes, then the same into a table without them.

    The rows are the drained ledger's, exported first (not timed); the ones missing to make
    ``rows`` (duplicates and invalid events are not ledger rows) are copies with new ids.
    """
    rows = max(rows, MIN_COPY_ROWS)
    with psycopg.connect(dsn(settings.database_url)) as conn, tempfile.TemporaryFile() as data:
        columns = ledger_columns(conn)
        have = conn.execute("SELECT count(*) FROM usage_ledger").fetchone()[0]  # type: ignore[index]
        missing = max(0, rows - have)
        copies = -(-missing // max(have, 1))  # each drained row this many times at most
        export = (
            f"COPY (SELECT * FROM usage_ledger UNION ALL"
            f" (SELECT {_with_new_ids(columns, random_ids=random_ids)} FROM usage_ledger,"
            f" generate_series(1, {copies}) LIMIT {missing})) TO STDOUT (FORMAT BINARY)"
        )
        with conn.cursor().copy(export) as copy:
            for chunk in copy:
                data.write(chunk)
        keyed = _timed_copy(conn, data, "INCLUDING ALL")
        bare = _timed_copy(conn, data, "INCLUDING DEFAULTS")
        return CopyCeilings(keyed, bare)


def _timed_copy(conn: psycopg.Connection, data: IO[bytes], like: str) -> Ceiling:
    """COPYs ``data`` into a new table ``LIKE usage_ledger {like}``: rate, CPU, WAL per row."""
    data.seek(0)
    conn.execute(f"CREATE TABLE bench_copy (LIKE usage_ledger {like})")
    conn.commit()
    session = conn.info.backend_pid
    try:
        cursor = conn.cursor()
        wal_before = _wal_position(conn)
        started, cpu = time.perf_counter(), cpu_seconds(session)
        with cursor.copy("COPY bench_copy FROM STDIN (FORMAT BINARY)") as copy:
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        seconds, cpu = time.perf_counter() - started, cpu_seconds(session) - cpu
        wal = _wal_position(conn) - wal_before
        rows = cursor.rowcount
        return Ceiling(rows / seconds, cpu / rows * 1e6, wal / rows)
    finally:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.commit()


def _wal_position(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0]) if row else 0
