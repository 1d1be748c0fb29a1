"""Case 1, drain throughput: a real worker from start to zero lag, next to two ceilings.

N realistic events are produced to a fresh topic first; then a `metering worker` process
is started and timed until the ledger has committed all N (``ingest_progress``). In the
same run, on the same records:

- the consumer ceiling: a bare aiokafka consumer fetching with ``getmany`` (the worker's
  fetch sizes and batch size) and decoding each value with orjson, doing nothing else;
- the database ceiling: one binary COPY from psycopg of the same N ledger rows into a
  scratch table with the ledger's own primary key and indexes (``LIKE usage_ledger
  INCLUDING ALL``): what any design keeping one durable, unique ledger row per event must
  pay. The rows are taken from the drained ledger so that no Python runs per row. Next to
  it, the bare COPY of the same rows into a table with no key or index.

The same code drains a ledger pre-filled with many rows (the growth case) and runs several
worker processes sharing the partitions (the processes case), each next to the drain on
the empty ledger with one worker, in the same run.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.ceilings import (
    Ceiling,
    CopyCeilings,
)
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
from metering.services.process import free_port
from metering.tools.traffic import TrafficMessage, TrafficPlan, TrafficSpec
from metering.wire.kafka_admin import ensure_topics

TARGET_RATE = 25_000  # events/s, start to zero lag
TARGET_SHARE = 0.5  # of the lower ceiling
RSS_EVERY_S = 0.5
BATCH_LINE = re.compile(rb"batch of (\d+) in (\d+) ms")

Say = Callable[[str], None]


def traffic(events: int, *, seed: int = 42, random_ids: bool = False) -> TrafficSpec:
    """The realistic mix: 50 skewed tenants, 10 models, 2% duplicates, 0.5% invalid, 1% late;
    the producer's time-ordered event ids, or random ones."""
    return TrafficSpec(
        events=events,
        tenants=50,
        models=10,
        duplicates=0.02,
        invalid=0.005,
        late=0.01,
        seed=seed,
        now=datetime.now(UTC),
        random_ids=random_ids,
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
    wal_bytes: int = 0  # WAL the server wrote from the first commit to the last
    processes: int = 1

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
    """CPU seconds used by the workers, their PostgreSQL sessions, the broker and the machine,
    and the server's WAL position (bytes written so far)."""

    def __init__(
        self, conn: psycopg.Connection, worker_pids: list[int], broker_pid: int | None
    ) -> None:
        self.conn = conn
        self.worker_pids = worker_pids
        self.broker_pid = broker_pid

    def read(self) -> dict[str, float]:
        backends = self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        wal = self.conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        return {
            "worker": sum(cpu_seconds(pid) for pid in self.worker_pids),
            "kafka": cpu_seconds(self.broker_pid),
            "worker_postgres_sessions": sum(cpu_seconds(pid) for (pid,) in backends),
            "machine_all_cores": busy_cpu_seconds(),
            "wall": time.perf_counter(),
            "wal_bytes": float(wal[0]) if wal else 0.0,
        }


def drain(
    settings: Settings, events: int, log_path: Path, *, say: Say, processes: int = 1
) -> Drain:
    """Starts ``processes`` workers (one consumer group) and samples the ledger's progress
    every 50 ms until all is in. Times are from the first worker's start."""
    deadline = time.monotonic() + max(300.0, events / 1_000)
    logs = [log_path] + [log_path.with_suffix(f".{i}.log") for i in range(1, processes)]
    with (
        psycopg.connect(dsn(settings.database_url), autocommit=True) as conn,
        ExitStack() as stack,
    ):
        # Each worker its own quota API port; the first keeps the one the settings name.
        workers = [
            stack.enter_context(
                running_worker(
                    settings.model_copy(update={"worker_web_port": free_port()}) if i else settings,
                    log,
                )
            )
            for i, log in enumerate(logs)
        ]
        worker = workers[0]
        clock = CpuClock(conn, [w.pid for w in workers], KafkaBroker(settings).status().pid)
        result: Drain | None = None
        cpu_at_first: dict[str, float] = {}
        next_rss = 0.0
        while True:
            done = processed(conn, settings.topic_usage)
            elapsed = time.perf_counter() - worker.started
            if done and result is None:
                result = Drain(events, startup_s=elapsed, first_batch=done, processes=processes)
                cpu_at_first = clock.read()
            if result is not None and (elapsed >= next_rss or done >= events):
                rss = sum(w.rss_bytes() for w in workers)
                result.rss.append((round(elapsed, 3), done, rss))
                next_rss = elapsed + RSS_EVERY_S
                say(f"drained {done:,}/{events:,}")
            if result is not None and done >= events:
                result.total_s = elapsed
                peak = sum(w.rss_bytes("VmHWM") for w in workers)
                result.peak_rss = max(peak, *(b for *_, b in result.rss))
                result.cpu_s = {k: v - cpu_at_first[k] for k, v in clock.read().items()}
                result.wal_bytes = int(result.cpu_s.pop("wal_bytes"))
                break
            for each in workers:
                each.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"drained {done:,} of {events:,}:\n{worker.log_tail()}")
            time.sleep(POLL_S)
    result.batches = batch_stats(b"".join(log.read_bytes() for log in logs))
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


def drain_case(run: Drain, produced: Produced, consume: Ceiling, copies: CopyCeilings) -> Case:
    copy = copies.keyed
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
            Figure(
                "COPY ceiling: binary COPY, ledger's key and indexes",
                copy.rate,
                "rows/s",
                "bare COPY, no key or index",
                copies.bare.rate,
            ),
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
            Figure(
                "WAL per event, whole server",
                run.wal_bytes / max(run.steady_events, 1),
                "B",
                "COPY, per row",
                copy.wal_bytes,
            ),
        ],
        notes=[
            f"{run.events:,} events (2% duplicates, 0.5% invalid, 1% late) pre-produced in "
            f"{produced.seconds:.1f}s; the worker ran as `metering worker`",
            "ratios are to the lower ceiling; the ceilings are timed from the first batch;"
            " the COPY ceiling has the ledger's primary key and indexes, as any design keeping"
            f" one unique ledger row per event must (bare COPY: {copies.bare.rate:,.0f} rows/s,"
            f" {copies.bare.cpu_us:.1f} us per row)",
            cpu_note(run),
        ],
        details={
            "events": run.events,
            "first_batch_records": run.first_batch,
            "worker_batches": run.batches,
            "cpu_seconds_first_to_last_commit": cpu,
            "wal_bytes_first_to_last_commit": run.wal_bytes,
            "produce_events_per_s": produced.events / produced.seconds,
            "copy_ceilings": {
                "keyed": {"rows_per_s": copy.rate, "cpu_us": copy.cpu_us, "wal": copy.wal_bytes},
                "bare": {
                    "rows_per_s": copies.bare.rate,
                    "cpu_us": copies.bare.cpu_us,
                    "wal": copies.bare.wal_bytes,
                },
            },
        },
    )


def cpu_note(run: Drain) -> str:
    cpu = run.cpu_s
    return (
        f"first to last commit ({cpu['wall']:.1f}s), CPU seconds: worker "
        f"{cpu['worker']:.1f}, its PostgreSQL sessions {cpu['worker_postgres_sessions']:.1f}, "
        f"Kafka {cpu['kafka']:.1f}, whole machine {cpu['machine_all_cores']:.1f} "
        f"of {cpu['wall'] * (os.cpu_count() or 1):.1f}"
    )


def figures_against(
    name: str, run: Drain, baseline: Drain, targets: tuple[Target, ...]
) -> list[Figure]:
    """A drain's rates and costs, each next to the same figure of ``baseline``."""
    per_event, base_per_event = (
        1e6 / max(run.steady_events, 1),
        1e6 / max(baseline.steady_events, 1),
    )
    return [
        Figure(
            "events/s, worker start to zero lag",
            run.rate_end_to_end,
            "events/s",
            name,
            baseline.rate_end_to_end,
            targets,
        ),
        Figure(
            "events/s, first to last commit",
            run.rate_steady,
            "events/s",
            name,
            baseline.rate_steady,
            targets,
        ),
        Figure("worker startup to first commit", run.startup_s, "s", name, baseline.startup_s),
        Figure(
            "PostgreSQL CPU per event, worker's sessions",
            run.cpu_s["worker_postgres_sessions"] * per_event,
            "us",
            name,
            baseline.cpu_s["worker_postgres_sessions"] * base_per_event,
        ),
        Figure(
            "WAL per event, whole server",
            run.wal_bytes / max(run.steady_events, 1),
            "B",
            name,
            baseline.wal_bytes / max(baseline.steady_events, 1),
        ),
    ]


def processes_case(run: Drain, single: Drain) -> Case:
    """``run.processes`` worker processes in one consumer group against one."""
    return Case(
        "processes",
        figures_against("one worker", run, single, ()),
        notes=[
            f"{run.events:,} new events drained by {run.processes} `metering worker` processes"
            " sharing the partitions (one consumer group); baseline: the drain case, one worker",
            cpu_note(run),
        ],
        details={"processes": run.processes, "batches": run.batches},
    )
