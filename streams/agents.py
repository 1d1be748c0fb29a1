"""The ingest agent: decode, classify with the pure core, write one transaction per batch.

Failure policy (billing prefers stopping to guessing): a batch is retried until it
commits; transient PostgreSQL or Kafka errors are retried with back-off. On SIGTERM
Faust waits for the agent's current batch, which then commits normally. Should the
batch be cancelled anyway, or fail with an unexpected error, the process exits without
committing Kafka offsets, so the batch is simply processed again on restart (the ledger
ignores what it already has).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import faust
import psycopg
from aiokafka.errors import KafkaError

from metering.config import Settings
from metering.db.catalog import CatalogCache
from metering.db.ledger import BatchOutcome, Ledger, SourceRecord
from metering.events import Rejection, UsageEvent, parse_event
from streams.topics import dead_letters, usage_events

log = logging.getLogger("metering.ingest")

CATALOG_REASONS = frozenset({"unknown_tenant", "unknown_model"})
SHUTDOWN_GRACE_S = 20.0
EXIT_ABANDONED_BATCH = 75  # EX_TEMPFAIL: restart me, nothing was committed


class Ingest:
    """Turns micro-batches of Kafka records into ledger rows and dead letters."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.policy = settings.validation_policy()
        self.ledger = Ledger(settings.psycopg_dsn)
        self.catalog = CatalogCache()
        self.dlq_topic = settings.topic_dlq

    async def process(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        """Processes a batch until it is committed, retrying transient failures."""
        delay = 0.2
        while True:
            try:
                return await self._process_once(records)
            except (psycopg.OperationalError, psycopg.errors.TransactionRollback) as exc:
                log.warning("database unavailable, retrying batch in %.1fs: %s", delay, exc)
            except KafkaError as exc:
                log.warning("dead-letter publish failed, retrying batch in %.1fs: %r", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _process_once(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        async with await self.ledger.batch(records) as batch:
            accepted, rejected = await self._classify(batch.fresh)
            await self._publish_dead_letters(rejected)  # before commit: at least once
            outcome = await batch.write(accepted, rejected)
        return outcome

    async def _classify(
        self, records: Sequence[SourceRecord]
    ) -> tuple[list[tuple[SourceRecord, UsageEvent]], list[tuple[SourceRecord, Rejection]]]:
        now = datetime.now(UTC)
        conn = await self.ledger.connection()
        await self.catalog.load(conn)
        results = [self._parse(r.value, now) for r in records]
        unknown = [x for x in results if isinstance(x, Rejection) and x.reason in CATALOG_REASONS]
        # Something unknown: the catalog may have grown since we last looked.
        if unknown and await self.catalog.learn(
            conn,
            tenants={x.tenant_id for x in unknown if x.tenant_id},
            models={x.model for x in unknown if x.model},
        ):
            results = [
                self._parse(r.value, now) if isinstance(x, Rejection) else x
                for r, x in zip(records, results, strict=True)
            ]
        accepted: list[tuple[SourceRecord, UsageEvent]] = []
        rejected: list[tuple[SourceRecord, Rejection]] = []
        for record, result in zip(records, results, strict=True):
            if isinstance(result, Rejection):
                rejected.append((record, result))
            else:
                accepted.append((record, result))
        return accepted, rejected

    def _parse(self, raw: bytes, now: datetime) -> UsageEvent | Rejection:
        return parse_event(raw, catalog=self.catalog.catalog, now=now, policy=self.policy)

    async def _publish_dead_letters(self, rejected: list[tuple[SourceRecord, Rejection]]) -> None:
        if not rejected:
            return
        producer = self.app.producer
        pending = [
            await producer.send(
                self.dlq_topic,
                record.key,
                record.value,  # the original bytes, untouched
                None,
                None,
                [
                    ("reason", rejection.reason.encode()),
                    ("detail", rejection.detail.encode()),
                    ("source_topic", record.topic.encode()),
                    ("source_partition", str(record.partition).encode()),
                    ("source_offset", str(record.offset).encode()),
                ],
            )
            for record, rejection in rejected
        ]
        await asyncio.gather(*pending)
        for record, rejection in rejected:
            log.info(
                "dead-lettered %s[%d]@%d tenant=%s: %s (%s)",
                record.topic,
                record.partition,
                record.offset,
                rejection.tenant_id,
                rejection.reason,
                rejection.detail,
            )


def register_agents(app: faust.App, settings: Settings) -> None:
    ingest = Ingest(app, settings)
    dead_letters(app, settings)  # declared so the worker knows the topic

    @app.agent(usage_events(app, settings), name="ingest")
    async def ingest_agent(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_window_s):
            records = [
                SourceRecord(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                )
                for e in events
            ]
            started = time.perf_counter()
            outcome = await _finish_or_exit(ingest.process(records))
            log.info(
                "batch of %d in %.0f ms: accepted=%d duplicates=%d conflicts=%d rejected=%d"
                " skipped=%d",
                len(records),
                (time.perf_counter() - started) * 1000,
                outcome.accepted,
                outcome.duplicates,
                outcome.conflicts,
                outcome.rejected,
                outcome.skipped,
            )


async def _finish_or_exit(work: Awaitable[BatchOutcome]) -> BatchOutcome:
    """Shields the batch from cancellation; exits the process if it cannot finish.

    Faust acknowledges a batch's offsets when the agent leaves it, even by an exception,
    and commits acknowledged offsets on shutdown. Exiting hard is the only way to leave
    an unfinished batch uncommitted on both sides.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(task, SHUTDOWN_GRACE_S)
        except BaseException:
            log.error("stopping mid-batch and the batch could not finish: exiting uncommitted")
            logging.shutdown()
            os._exit(EXIT_ABANDONED_BATCH)
        log.info("finished the current batch before stopping")
        raise
    except BaseException:
        log.exception("unexpected error in a batch: exiting uncommitted, restart to resume")
        logging.shutdown()
        os._exit(EXIT_ABANDONED_BATCH)
