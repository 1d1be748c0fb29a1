"""Case 2, latency: from a record's Kafka timestamp to its row being committed in the ledger.

A producer process (``bench/sender.py``: the case 1 mix, made before the clock starts)
sends traffic at a fixed rate (default: half the drain rate of case 1) to a fresh topic
that a running worker consumes. Two clocks watch it, both on this machine:

- commits: every 50 ms the bench reads ``ingest_progress.next_offset`` per partition with
  ``clock_timestamp()``. The ledger updates it in the same transaction as the rows, so a
  record is committed at the first sample whose next offset is past it. That is an upper
  bound, late by at most one poll (50 ms plus the query).
- the baseline: a bare aiokafka consumer reading the same topic at the same time, whose
  receive time is the floor for any consumer of this broker on this machine.

A record's timestamp is its producer create time (CreateTime topics), set when ``send()``
is called, so the producer's 20 ms linger counts as latency, as it would for a caller.
``usage_ledger.ingested_at`` is not used for the headline: it is ``now()``, the start of
the batch's transaction, which precedes the commit by the whole write; it is reported
next to the others to show by how much it understates.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from bisect import bisect_right
from collections import defaultdict
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.drain import Say
from bench.harness import POLL_S, dsn, percentile, running_worker
from bench.report import Case, Figure, Target
from metering.config import PROJECT_ROOT, Settings
from metering.wire.kafka_admin import ensure_topics, partitions_of

TARGET_P99_MS = 1_000
SETTLE_S = 120.0  # how long the tail may take to arrive after the last send

Received = list[tuple[int, int, float, float]]  # (partition, offset, create time, received)
Commits = dict[int, tuple[list[int], list[float]]]  # partition: (next offsets, at)


class Watch:
    """Records what a bare consumer receives and when the ledger commits, until told the total."""

    def __init__(self, settings: Settings, say: Say) -> None:
        self.settings = settings
        self.say = say
        self.total: int | None = None  # set once the producer is done
        self.received: Received = []
        self.commits: Commits = defaultdict(lambda: ([], []))

    async def consume(self, ready: asyncio.Event) -> None:
        topic = self.settings.topic_usage
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in await partitions_of(self.settings, topic)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ready.set()
            while self.total is None or len(self.received) < self.total:
                fetched = await consumer.getmany(timeout_ms=100)
                now = time.time()
                self.received.extend(
                    (m.partition, m.offset, m.timestamp / 1000, now)
                    for messages in fetched.values()
                    for m in messages
                )
                self.say(f"received {len(self.received):,}")
        finally:
            await consumer.stop()

    async def poll_commits(self) -> None:
        query = (
            "SELECT partition, next_offset, extract(epoch FROM clock_timestamp())::float8"
            " FROM ingest_progress WHERE topic = %s"
        )
        async with await psycopg.AsyncConnection.connect(
            dsn(self.settings.database_url), autocommit=True
        ) as conn:
            committed = 0
            while self.total is None or committed < self.total:
                cursor = await conn.execute(query, (self.settings.topic_usage,))
                for partition, next_offset, at in await cursor.fetchall():
                    offsets, times = self.commits[partition]
                    if not offsets or next_offset > offsets[-1]:
                        offsets.append(next_offset)
                        times.append(at)
                committed = sum(offsets[-1] for offsets, _ in self.commits.values())
                await asyncio.sleep(POLL_S)

    def committed_at(self, partition: int, offset: int) -> float:
        offsets, times = self.commits[partition]
        return times[bisect_right(offsets, offset)]


def latency_case(
    settings: Settings,
    rate: float,
    seconds: float,
    drain_rate: float | None,
    log_path: Path,
    *,
    say: Say,
) -> Case:
    """Runs ``rate`` events/s for ``seconds`` through a worker and measures each record.

    The traffic comes from a process of its own (``bench/sender.py``), so that making it
    does not delay the bench's clocks.
    """
    asyncio.run(ensure_topics(settings))
    events = round(rate * seconds)
    with (
        running_worker(settings, log_path) as worker,
        log_path.with_suffix(".produce.log").open("wb") as produce_log,
    ):
        worker.wait_for_log("assigned", timeout_s=120)
        watch = Watch(settings, say)
        since = time.time()

        async def run() -> None:
            ready = asyncio.Event()
            watching = asyncio.gather(watch.consume(ready), watch.poll_commits())
            await ready.wait()
            producer = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.sender", str(events), str(rate), "7"),
                env=settings.child_env(),
                cwd=PROJECT_ROOT,
                stdout=produce_log,
                stderr=subprocess.STDOUT,
            )
            if await producer.wait() != 0:
                raise RuntimeError(f"the producer failed; see {produce_log.name}")
            watch.total = events
            await asyncio.wait_for(watching, SETTLE_S)

        asyncio.run(run())
        worker.check_alive()
    return _case(settings, watch, drain_rate, seconds, since)


def by_ingested_at(settings: Settings, watch: Watch, since: float) -> list[float]:
    """Latencies in ms measured to ``usage_ledger.ingested_at`` (accepted events only)."""
    created = {(p, o): ts for p, o, ts, _ in watch.received}
    with psycopg.connect(dsn(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT source_partition, source_offset, extract(epoch FROM ingested_at)::float8"
            " FROM usage_ledger WHERE ingested_at >= to_timestamp(%s)",
            (since,),
        ).fetchall()
    return sorted((at - created[(p, o)]) * 1000 for p, o, at in rows if (p, o) in created)


def _case(
    settings: Settings,
    watch: Watch,
    drain_rate: float | None,
    seconds: float,
    since: float,
) -> Case:
    pipeline = sorted((watch.committed_at(p, o) - ts) * 1000 for p, o, ts, _ in watch.received)
    floor = sorted((received - ts) * 1000 for _, _, ts, received in watch.received)
    stamped = by_ingested_at(settings, watch, since)
    created = [ts for _, _, ts, _ in watch.received]
    achieved = (len(created) - 1) / max(max(created) - min(created), 1e-3)
    figures = [
        Figure(
            "offered rate", achieved, "events/s", "drain rate, first to last commit", drain_rate
        ),
    ]
    for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        targets = (Target("<=", TARGET_P99_MS),) if name == "p99" else ()
        figures.append(
            Figure(
                f"{name} create time to commit",
                percentile(pipeline, q),
                "ms",
                f"bare consumer {name}",
                percentile(floor, q),
                targets,
            )
        )
    figures.append(Figure("p99 to ingested_at (understates)", percentile(stamped, 0.99), "ms"))
    return Case(
        "latency",
        figures,
        notes=[
            f"{len(pipeline):,} records over {seconds:.0f}s; commit times are 50 ms polls of "
            "ingest_progress (upper bounds); the ratio is to a bare consumer of the same topic",
        ],
        details={"records": len(pipeline), "seconds": seconds},
    )
