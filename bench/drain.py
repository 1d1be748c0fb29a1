"""Case 1, drain throughput: a real worker from start to zero lag, next to two ceilings.

N realistic events are produced to a fresh topic first; then a `metering worker` process
is started and timed until the ledger has committed all N (``ingest_progress``). In the
same run, on the same records:

- the consumer ceiling: a bare aiokafka consumer fetching with ``getmany`` (the worker's
  fetch sizes and batch size) and decoding each value with orjson, doing nothing else;
- the database ceiling: one binary COPY from psycopg of N ledger rows into a scratch
  table ``LIKE usage_ledger INCLUDING ALL`` (same columns and indexes), the rows taken
  from the drained ledger so that no Python runs per row.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import (
    POLL_S,
    busy_cpu_seconds,
    cpu_seconds,
    dsn,
    processed,
    running_worker,
)
from bench.report import Case, Figure, Target
from metering.config import Settings
from metering.produce.producer import produce
from metering.services import KafkaBroker
from metering.tools.traffic import TrafficMessage, TrafficPlan, TrafficSpec
from metering.wire.kafka_admin import ensure_topics, partitions_of

TARGET_RATE = 25_000  # events/s, start to zero lag
TARGET_SHARE = 0.5  # of the lower ceiling
RSS_EVERY_S = 0.5
# The worker's fetch sizes (streams/ingest.py), so that the ceiling fetches as it does.
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
FETCH_MAX_BYTES = 32 * 1024 * 1024
BATCH_LINE = re.compile(rb"batch of (\d+) in (\d+) ms")

Say = Callable[[str], None]


def traffic(events: int, *, seed: int = 42) -> TrafficSpec:
    """The realistic mix: 50 skewed tenants, 10 models, 2% duplicates, 0.5% invalid, 1% late."""
    return TrafficSpec(
        events=events,
        tenants=50,
        models=10,
        duplicates=0.02,
        invalid=0.005,
        late=0.01,
        seed=seed,
        now=datetime.now(UTC),
    )


@dataclass(slots=True)
class Produced:
    events: int = 0
    seconds: float = 0.0
    billable: int = 0  # valid and late messages: what becomes ledger rows
    billable_bytes: int = 0  # their JSON

    def count(self, messages: Iterable[TrafficMessage]) -> Iterator[TrafficMessage]:
        for message in messages:
            if message.kind in ("valid", "late"):
                self.billable += 1
                self.billable_bytes += len(message.value)
            yield message


async def send_traffic(
    settings: Settings, spec: TrafficSpec, *, rate: float | None = None, say: Say
) -> Produced:
    """Sends ``spec``'s messages to ``settings.topic_usage`` and waits for every ack."""
    produced = Produced()
    await ensure_topics(settings)
    started = time.perf_counter()
    produced.events = await produce(
        produced.count(TrafficPlan(spec).messages()),
        bootstrap_servers=settings.kafka_bootstrap,
        topic=settings.topic_usage,
        rate=rate,
        progress=lambda sent: say(f"produced {sent:,}/{spec.events:,}"),
    )
    produced.seconds = time.perf_counter() - started
    return produced


@dataclass(slots=True)
class Drain:
    events: int
    startup_s: float  # worker start to its first committed batch
    total_s: float = 0.0  # worker start to all N committed
    first_batch: int = 0  # records committed at the first sample
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (s, processed, bytes)
    peak_rss: int = 0
    batches: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # first commit to last, per process

    @property
    def steady_events(self) -> int:
        return self.events - self.first_batch

    @property
    def rate_end_to_end(self) -> float:
        return self.events / self.total_s

    @property
    def rate_steady(self) -> float | None:
        """From the first committed batch to the last; None if there was only one."""
        seconds = self.total_s - self.startup_s
        return self.steady_events / seconds if seconds > 0 else None


class CpuClock:
    """CPU seconds used by the worker, its PostgreSQL sessions, the broker and the machine."""

    def __init__(self, conn: psycopg.Connection, worker_pid: int, broker_pid: int | None) -> None:
        self.conn = conn
        self.pids = {"worker": worker_pid, "kafka": broker_pid}

    def read(self) -> dict[str, float]:
        backends = self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return {
            **{name: cpu_seconds(pid) for name, pid in self.pids.items()},
            "worker_postgres_sessions": sum(cpu_seconds(pid) for (pid,) in backends),
            "machine_all_cores": busy_cpu_seconds(),
            "wall": time.perf_counter(),
        }


def drain(settings: Settings, events: int, log_path: Path, *, say: Say) -> Drain:
    """Starts a worker and samples the ledger's progress every 50 ms until all is in."""
    deadline = time.monotonic() + max(300.0, events / 1_000)
    with (
        psycopg.connect(dsn(settings.database_url), autocommit=True) as conn,
        running_worker(settings, log_path) as worker,
    ):
        clock = CpuClock(conn, worker.pid, KafkaBroker(settings).status().pid)
        result: Drain | None = None
        cpu_at_first: dict[str, float] = {}
        next_rss = 0.0
        while True:
            done = processed(conn, settings.topic_usage)
            elapsed = time.perf_counter() - worker.started
            if done and result is None:
                result = Drain(events, startup_s=elapsed, first_batch=done)
                cpu_at_first = clock.read()
            if result is not None and (elapsed >= next_rss or done >= events):
                result.rss.append((round(elapsed, 3), done, worker.rss_bytes()))
                next_rss = elapsed + RSS_EVERY_S
                say(f"drained {done:,}/{events:,}")
            if result is not None and done >= events:
                result.total_s = elapsed
                result.peak_rss = max(worker.rss_bytes("VmHWM"), *(b for *_, b in result.rss))
                result.cpu_s = {k: v - cpu_at_first[k] for k, v in clock.read().items()}
                break
            worker.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"drained {done:,} of {events:,}:\n{worker.log_tail()}")
            time.sleep(POLL_S)
    result.batches = batch_stats(log_path.read_bytes())
    return result


def batch_stats(log: bytes) -> dict[str, float]:
    """The worker's own account of its batches, from its "batch of N in X ms" lines."""
    batches = [(int(n), int(ms)) for n, ms in BATCH_LINE.findall(log)]
    if not batches:
        return {}
    return {
        "count": len(batches),
        "mean_records": sum(n for n, _ in batches) / len(batches),
        "mean_logged_ms": sum(ms for _, ms in batches) / len(batches),
    }


@dataclass(frozen=True, slots=True)
class Ceiling:
    rate: float  # events (rows) per second
    cpu_us: float  # CPU per event (row): the bare consumer's, or the COPY's session's


async def consume_ceiling(settings: Settings, events: int) -> Ceiling:
    """A bare consumer (getmany + orjson), timed from the first fetched batch to the last."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_MAX_BYTES,
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


def copy_ceiling(settings: Settings, rows: int) -> Ceiling:
    """One binary COPY of ``rows`` ledger rows, committed.

    The rows are the drained ledger's, exported first (not timed); the few missing to make
    ``rows`` (duplicates and invalid events are not ledger rows) are copies with new ids.
    """
    with psycopg.connect(dsn(settings.database_url)) as conn, tempfile.TemporaryFile() as data:
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'usage_ledger'::regclass"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        ]
        refill = ", ".join("gen_random_uuid()" if c == "event_id" else c for c in columns)
        have = conn.execute("SELECT count(*) FROM usage_ledger").fetchone()[0]  # type: ignore[index]
        export = (
            f"COPY (SELECT * FROM usage_ledger UNION ALL"
            f" (SELECT {refill} FROM usage_ledger LIMIT {max(0, rows - have)}))"
            " TO STDOUT (FORMAT BINARY)"
        )
        with conn.cursor().copy(export) as copy:
            for chunk in copy:
                data.write(chunk)
        data.seek(0)
        conn.execute("CREATE TABLE bench_copy (LIKE usage_ledger INCLUDING ALL)")
        conn.commit()
        session = conn.info.backend_pid
        try:
            cursor = conn.cursor()
            started, cpu = time.perf_counter(), cpu_seconds(session)
            with cursor.copy("COPY bench_copy FROM STDIN (FORMAT BINARY)") as copy:
                while chunk := data.read(1 << 20):
                    copy.write(chunk)
            conn.commit()
            seconds, cpu = time.perf_counter() - started, cpu_seconds(session) - cpu
            return Ceiling(cursor.rowcount / seconds, cpu / cursor.rowcount * 1e6)
        finally:
            conn.execute("DROP TABLE IF EXISTS bench_copy")
            conn.commit()


def drain_case(run: Drain, produced: Produced, consume: Ceiling, copy: Ceiling) -> Case:
    ceiling_name, ceiling = min(
        ("consume ceiling", consume.rate), ("COPY ceiling", copy.rate), key=lambda c: c[1]
    )
    targets = (Target(">=", TARGET_RATE), Target(">=", TARGET_SHARE, of_ratio=True))
    per_event = 1e6 / max(run.steady_events, 1)
    cpu = run.cpu_s
    return Case(
        "drain",
        [
            Figure(
                "events/s, worker start to zero lag",
                run.rate_end_to_end,
                "events/s",
                ceiling_name,
                ceiling,
                targets,
            ),
            Figure(
                "events/s, first to last commit",
                run.rate_steady,
                "events/s",
                ceiling_name,
                ceiling,
                targets,
            ),
            Figure("worker startup to first commit", run.startup_s, "s"),
            Figure("drain time incl. startup", run.total_s, "s"),
            Figure("consume ceiling: getmany + orjson", consume.rate, "events/s"),
            Figure("COPY ceiling: binary COPY of ledger rows", copy.rate, "rows/s"),
            Figure(
                "worker CPU per event",
                cpu["worker"] * per_event,
                "us",
                "bare consumer",
                consume.cpu_us,
            ),
            Figure(
                "PostgreSQL CPU per event, worker's sessions",
                cpu["worker_postgres_sessions"] * per_event,
                "us",
                "COPY's session, per row",
                copy.cpu_us,
            ),
        ],
        notes=[
            f"{run.events:,} events (2% duplicates, 0.5% invalid, 1% late) pre-produced in "
            f"{produced.seconds:.1f}s; the worker ran as `metering worker`",
            "ratios are to the lower ceiling; the ceilings are timed from the first batch",
            f"first to last commit ({cpu['wall']:.1f}s), CPU seconds: worker "
            f"{cpu['worker']:.1f}, its PostgreSQL sessions {cpu['worker_postgres_sessions']:.1f}, "
            f"Kafka {cpu['kafka']:.1f}, whole machine {cpu['machine_all_cores']:.1f} "
            f"of {cpu['wall'] * (os.cpu_count() or 1):.1f}",
        ],
        details={
            "events": run.events,
            "first_batch_records": run.first_batch,
            "worker_batches": run.batches,
            "cpu_seconds_first_to_last_commit": cpu,
            "produce_events_per_s": produced.events / produced.seconds,
        },
    )
