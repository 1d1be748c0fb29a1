"""The ingest path: Kafka micro-batches → pure classification → one transaction per batch.

The worker reads ``usage.events`` with a batch consumer (aiokafka ``getmany``) running as
a service inside the Faust worker, rather than through a Faust agent's per-event stream:
on this machine Faust delivered about 5,000 events/s to ``stream.take_events`` doing no
work at all, while ``getmany`` delivers over 200,000/s (docs/performance.md). Faust still
runs the worker: its lifecycle, signals, web server, and the quota tables.

Exactly once in effect: the ledger stores each partition's next offset in the same
transaction as the batch and skips records it has already processed, and a partition
assigned to this worker starts where the ledger says. Kafka's committed offsets are
written after each commit for monitoring tools, but correctness never depends on them.

Failure policy (billing prefers stopping to guessing): a batch is retried until it
commits; transient PostgreSQL or Kafka errors are retried with back-off. No record can
hold the batch up for ever: validation rejects what PostgreSQL cannot store, and if the
database still refuses the batch because of what a record holds (a data or integrity
error), the records it refuses are found by bisection in rolled-back trial transactions
and dead-lettered as ``unstorable`` with the error, and the rest is written. On SIGTERM the
current batch finishes and commits. If it cannot finish within a grace period, or fails
with an error no record is to blame for, the process exits and the batch is processed
again on restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, RecordMetadata, TopicPartition
from mode import Service

from metering.billing.events import Reason, Rejection, UsageEvent, parse_event
from metering.billing.rating import check_priced
from metering.config import Settings
from metering.store import quota_store
from metering.store.catalog import CatalogCache
from metering.store.ledger import RECORD_ERRORS, BatchOutcome, Ledger, LedgerBatch, SourceRecord
from metering.store.quota_store import QuotaEffects
from streams.quota.publisher import QuotaPublisher
from streams.quota.rules import QuotaRules

log = logging.getLogger("metering.ingest")

CATALOG_REASONS = frozenset({Reason.UNKNOWN_TENANT, Reason.UNKNOWN_MODEL})
SHUTDOWN_GRACE_S = 20.0
EXIT_ABANDONED_BATCH = 75  # EX_TEMPFAIL: restart me, nothing was committed

_In = TypeVar("_In")
_Out = TypeVar("_Out")
Fetched = dict[TopicPartition, list[ConsumerRecord]]
Accepted = list[tuple[SourceRecord, UsageEvent]]
Classified = tuple[Accepted, list[tuple[SourceRecord, Rejection]]]
RecordKey = tuple[str, int, int]
Refused = tuple[tuple[SourceRecord, UsageEvent], str]  # an event and the database's error


@dataclass(frozen=True, slots=True)
class Written:
    """A committed batch: its counts, and the quota effects to publish now."""

    outcome: BatchOutcome
    quota: QuotaEffects


def _key(record: SourceRecord) -> RecordKey:
    return (record.topic, record.partition, record.offset)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A fetched batch, every record already classified (the CPU-heavy part).

    ``dead_lettered`` holds the records whose dead letters the broker has acknowledged, so
    that writing the batch again (after a record turned out to be unstorable) does not
    publish them twice."""

    records: Sequence[SourceRecord]
    results: dict[RecordKey, UsageEvent | Rejection]
    dead_lettered: set[RecordKey] = field(default_factory=set)

    def split(self, fresh: Sequence[SourceRecord]) -> Classified:
        accepted: Accepted = []
        rejected: list[tuple[SourceRecord, Rejection]] = []
        for record in fresh:
            result = self.results[_key(record)]
            if isinstance(result, Rejection):
                rejected.append((record, result))
            else:
                accepted.append((record, result))
        return accepted, rejected

    def refused(self, found: Sequence[Refused]) -> PreparedBatch:
        """This batch with the events the database refused turned into ``unstorable``
        rejections that carry its error."""
        results = dict(self.results)
        for (record, event), error in found:
            results[_key(record)] = Rejection(
                Reason.UNSTORABLE,
                f"the database refused the event: {error}",
                event_id=str(event.event_id),
                tenant_id=event.tenant_id,
                model=event.model,
            )
        return replace(self, results=results)


class Ingest:
    """Turns micro-batches of Kafka records into ledger rows and dead letters.

    Two steps, so that the worker can classify one batch while the database writes the
    previous one: ``prepare`` parses and validates (pure, plus catalog lookups on their
    own connection); ``write`` is the one transaction that decides what is new.
    """

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, rules: QuotaRules) -> None:
        self.rules = rules
        self.policy = settings.validation_policy()
        self.dlq_topic = settings.topic_dlq
        self.catalog = CatalogCache(settings.psycopg_dsn)
        self.ledger = Ledger(settings.psycopg_dsn, self.catalog)
        self.producer = producer

    async def close(self) -> None:
        await self.ledger.close()
        await self.catalog.close()

    async def prepare(self, records: Sequence[SourceRecord]) -> PreparedBatch:
        results = await _retrying(self._classify, records)
        return PreparedBatch(records, dict(zip(map(_key, records), results, strict=True)))

    async def write(self, prepared: PreparedBatch) -> Written:
        """Writes a batch until it is committed, retrying transient failures; events the
        database refuses are dead-lettered as ``unstorable`` and the rest written."""
        while True:
            try:
                return await _retrying(self._write_once, prepared)
            except RECORD_ERRORS:
                found = await _retrying(self._find_unstorable, prepared)
                if not found:  # no one record is to blame: stop rather than guess
                    raise
                for (record, event), error in found:
                    log.warning(
                        "unstorable %s[%d]@%d tenant=%s event_id=%s: %s",
                        record.topic,
                        record.partition,
                        record.offset,
                        event.tenant_id,
                        event.event_id,
                        error,
                    )
                prepared = prepared.refused(found)

    async def _write_once(self, prepared: PreparedBatch) -> Written:
        async with await self.ledger.batch(prepared.records) as batch:
            accepted, rejected = prepared.split(batch.fresh)
            # Dead letters travel while the ledger rows are written; both are done before
            # the commit, so a dead letter is published at least once.
            pending = [x for x in rejected if _key(x[0]) not in prepared.dead_lettered]
            delivered = await self._publish_dead_letters(pending)
            try:
                written = await self._store(batch, accepted, rejected)
            finally:
                await delivered
                prepared.dead_lettered.update(_key(record) for record, _ in pending)
        return written

    async def _store(
        self, batch: LedgerBatch, accepted: Accepted, rejected: list[tuple[SourceRecord, Rejection]]
    ) -> Written:
        """Everything a batch writes in its transaction: ledger rows, aggregates, quotas."""
        outcome = await batch.write(accepted, rejected)
        effects = await quota_store.apply(
            batch.connection, batch.inserted_events, self.rules.usage, datetime.now(UTC)
        )
        return Written(outcome, effects)

    async def _find_unstorable(self, prepared: PreparedBatch) -> list[Refused]:
        """The batch's events that the database refuses, each with its error, found by
        writing halves of the batch in trial transactions that are always rolled back."""

        async def refusal(part: Accepted) -> str | None:
            keys = {_key(record) for record, _ in part}
            try:
                async with await self.ledger.batch(prepared.records, trial=True) as trial:
                    accepted, _ = prepared.split(trial.fresh)
                    await self._store(trial, [x for x in accepted if _key(x[0]) in keys], [])
            except RECORD_ERRORS as exc:
                return _error_text(exc)
            return None

        results = prepared.results
        events = [(r, x) for r in prepared.records if isinstance(x := results[_key(r)], UsageEvent)]
        return await bisect_refused(events, refusal)

    async def _classify(self, records: Sequence[SourceRecord]) -> list[UsageEvent | Rejection]:
        now = datetime.now(UTC)
        await self.catalog.load()
        results = [self._parse(r.value, now) for r in records]
        # Something unknown or unpriced: the catalogs or the prices may have changed since.
        if await self._learn_from(results):
            results = [
                self._parse(r.value, now) if isinstance(x, Rejection) else x
                for r, x in zip(records, results, strict=True)
            ]
        return results

    async def _learn_from(self, results: list[UsageEvent | Rejection]) -> bool:
        """Asks the database about what the rejections name; whether anything was new."""
        rejections = [x for x in results if isinstance(x, Rejection)]
        unknown = [x for x in rejections if x.reason in CATALOG_REASONS]
        learned = bool(unknown) and await self.catalog.learn(
            tenants={x.tenant_id for x in unknown if x.tenant_id},
            models={x.model for x in unknown if x.model},
        )
        # A model just added to the catalog may just have been priced too.
        if (learned or any(x.reason == Reason.UNPRICED for x in rejections)) and (
            await self.catalog.learn_prices()
        ):
            self.rules.prices = self.catalog.prices  # spend estimates use the new prices too
            learned = True
        return learned

    def _parse(self, raw: bytes | None, now: datetime) -> UsageEvent | Rejection:
        result = parse_event(raw, catalog=self.catalog.catalog, now=now, policy=self.policy)
        if isinstance(result, Rejection):
            return result
        return check_priced(self.catalog.prices, result)

    async def _publish_dead_letters(
        self, rejected: list[tuple[SourceRecord, Rejection]]
    ) -> asyncio.Future[list[RecordMetadata]]:
        """Queues the dead letters; the returned future resolves when all are acknowledged."""
        pending = [
            await self.producer.send(
                self.dlq_topic,
                record.value,  # the original bytes, untouched
                key=record.key,
                headers=[
                    ("reason", rejection.reason.encode()),
                    ("detail", rejection.detail.encode()),
                    ("source_topic", record.topic.encode()),
                    ("source_partition", str(record.partition).encode()),
                    ("source_offset", str(record.offset).encode()),
                ],
            )
            for record, rejection in rejected
        ]
        for record, rejection in rejected:
            log.info(
                "dead-lettering %s[%d]@%d tenant=%s: %s (%s)",
                record.topic,
                record.partition,
                record.offset,
                rejection.tenant_id,
                rejection.reason,
                rejection.detail,
            )
        return asyncio.gather(*pending)


_T = TypeVar("_T")


async def bisect_refused(
    items: Sequence[_T], refusal: Callable[[list[_T]], Awaitable[str | None]]
) -> list[tuple[_T, str]]:
    """The items that ``refusal`` refuses on their own, each with its reason: halves of a
    refused set are tried in turn, so k bad items among n cost about 2k·log2(n) trials.
    Items refused only together with others are not singled out."""
    reason = await refusal(list(items))
    if reason is None:
        return []
    if len(items) == 1:
        return [(items[0], reason)]
    middle = len(items) // 2
    return [
        *await bisect_refused(items[:middle], refusal),
        *await bisect_refused(items[middle:], refusal),
    ]


def _error_text(error: BaseException) -> str:
    """The database's one-line message (the ledger stores any text it holds)."""
    lines = str(error).splitlines() or [type(error).__name__]
    return lines[0]


async def _retrying(step: Callable[[_In], Awaitable[_Out]], arg: _In) -> _Out:
    """Runs a step until it succeeds, backing off while PostgreSQL or Kafka is away.
    An error caused by a record's content (``RECORD_ERRORS``) is raised at once."""
    delay = 0.2
    while True:
        try:
            return await step(arg)
        except RECORD_ERRORS:
            raise
        except (psycopg.OperationalError, psycopg.errors.TransactionRollback) as exc:
            log.warning("database unavailable, retrying in %.1fs: %s", delay, exc)
        except KafkaError as exc:
            log.warning("dead-letter publish failed, retrying in %.1fs: %r", delay, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


class StartWhereTheLedgerIs(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, each partition resumes at the ledger's next offset for it, and a
    partition the ledger has never seen starts at the beginning of the topic: Kafka's
    committed offsets belong to the consumer group, which may have fed another database."""

    def __init__(self, consumer: AIOKafkaConsumer, ledger: Ledger, topic: str) -> None:
        self.consumer = consumer
        self.ledger = ledger
        self.topic = topic

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to hand over: progress lives in the ledger, committed per batch."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            offsets = await self.ledger.next_offsets(self.topic, [tp.partition for tp in assigned])
        except psycopg.OperationalError as exc:
            # Committed offsets trail this ledger's own progress (they are written after its
            # commits), so starting from them only re-reads what the ledger will skip.
            log.warning("ledger unavailable at assignment, using committed offsets: %s", exc)
            return
        unseen = [tp for tp in assigned if tp.partition not in offsets]
        for tp in assigned:
            if tp.partition in offsets:
                self.consumer.seek(tp, offsets[tp.partition])
        if unseen:
            await self.consumer.seek_to_beginning(*unseen)
        log.info(
            "assigned %s",
            sorted(f"{tp.partition}@{offsets.get(tp.partition, '-')}" for tp in assigned),
        )


class IngestService(Service):
    """Consumes usage events in micro-batches for as long as the worker runs."""

    def __init__(self, settings: Settings, rules: QuotaRules) -> None:
        super().__init__()
        self.settings = settings
        self.rules = rules

    async def on_start(self) -> None:
        # aiokafka clients bind to the running event loop, so they are made here.
        settings = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(settings.session_timeout_s / 5, 0.5) * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        self.ingest = Ingest(settings, self.producer, self.rules)
        self.quota_publisher = QuotaPublisher(settings, self.producer, self.ingest.ledger)
        await self.producer.start()
        self.consumer.subscribe(
            [settings.topic_usage],
            listener=StartWhereTheLedgerIs(self.consumer, self.ingest.ledger, settings.topic_usage),
        )
        await self.consumer.start()

    async def on_shutdown(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.ingest.close()

    @Service.task
    async def _consume(self) -> None:
        """Fetch and classify batch N+1 while batch N is being written."""
        window_ms = int(self.settings.batch_window_s * 1000)
        writing: asyncio.Future[BatchOutcome] | None = None
        try:
            while not self.should_stop:
                fetched = await self.consumer.getmany(
                    timeout_ms=window_ms, max_records=self.settings.batch_size
                )
                records = [
                    SourceRecord(m.topic, m.partition, m.offset, m.key, m.value)
                    for messages in fetched.values()
                    for m in messages
                ]
                if not records:
                    continue
                prepared = await self.ingest.prepare(records)
                if writing is not None:  # batches commit in order
                    await finish_or_exit(writing)
                writing = asyncio.ensure_future(self._write(prepared, fetched))
                writing.add_done_callback(_exit_if_failed)
        finally:
            if writing is not None:  # stopping: the batch being written must finish
                await finish_or_exit(writing)

    async def _write(self, prepared: PreparedBatch, fetched: Fetched) -> BatchOutcome:
        """Writes a batch, then at once tells Kafka and publishes its quota effects."""
        started = time.perf_counter()
        written = await self.ingest.write(prepared)
        outcome = written.outcome
        log.info(
            "batch of %d in %.0f ms: accepted=%d duplicates=%d conflicts=%d rejected=%d skipped=%d",
            len(prepared.records),
            (time.perf_counter() - started) * 1000,
            outcome.accepted,
            outcome.duplicates,
            outcome.conflicts,
            outcome.rejected,
            outcome.skipped,
        )
        await self._commit_offsets(fetched)
        try:
            await self.quota_publisher.publish(written.quota)
        except (KafkaError, psycopg.OperationalError) as exc:  # the sweeper retries
            log.warning("quota effects not published yet: %r", exc)
        return outcome

    async def _commit_offsets(self, fetched: Fetched) -> None:
        """Tells Kafka how far we are, for lag monitoring; the ledger is the real record."""
        offsets = {
            tp: OffsetAndMetadata(messages[-1].offset + 1, "")
            for tp, messages in fetched.items()
            if messages
        }
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # partitions moved meanwhile
            log.info("offset commit skipped after a rebalance: %s", exc)


def _exit_if_failed(task: asyncio.Future[BatchOutcome]) -> None:
    """A batch that fails unexpectedly stops the worker at once, uncommitted."""
    if not task.cancelled() and task.exception() is not None:
        _exit_uncommitted("unexpected error in a batch", task.exception())


async def finish_or_exit(task: asyncio.Future[BatchOutcome]) -> BatchOutcome:
    """Waits for a batch, shielded from cancellation; exits if it cannot finish in time.

    A batch interrupted between the dead-letter publish and the commit is harmless (the
    ledger skips it on replay), but stopping half-way through the loop that drives it
    would leave Kafka offsets and the database telling different stories. Exiting hard is
    the one way to leave an unfinished batch uncommitted everywhere. (A batch that fails
    is handled by ``_exit_if_failed``, its done callback, before this wakes up.)
    """
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(task, SHUTDOWN_GRACE_S)
        except TimeoutError:
            _exit_uncommitted("stopping mid-batch and the batch could not finish")
        log.info("finished the current batch before stopping")
        raise


def _exit_uncommitted(reason: str, error: BaseException | None = None) -> NoReturn:
    log.error("%s: exiting uncommitted, restart to resume", reason, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_ABANDONED_BATCH)
