"""The consumer: fetches micro-batches for as long as the worker runs and feeds them to
the ingest chain; on assignment, each partition resumes where the ledger says."""

from __future__ import annotations

import gc

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition
from mode import Service

from metering.config import Settings
from metering.store.catalog import CatalogCache
from metering.store.connection import Reconnecting
from metering.store.ledger import Ledger
from streams.ingest.batch import Fetched, log
from streams.ingest.chain import build_ingest
from streams.ingest.dead_letters import DeadLetters
from streams.quota.publisher import QuotaPublisher
from streams.quota.rules import QuotaRules

PARTITION_FETCH_BYTES = 16 * 1024 * 1024
"""How much one fetch takes from a partition: a batch of 10,000 events (about 4 MB) from
the partitions that carry most of the traffic (keyed by tenant, one may carry half)."""
FETCH_BYTES = 32 * 1024 * 1024
FETCH_MAX_WAIT_MS = 50
"""How long the broker holds a fetch for partitions with nothing new. The client has one
fetch in flight per broker and does not fetch again for a partition whose records are still
buffered, so while a backlog drains, a fetch that holds only caught-up partitions stalls the
rest; at Kafka's default (500 ms) such stalls cost 5-8% of a drain."""
GC_THRESHOLDS = (50_000, 50, 100)
"""Python's cyclic collector, run less often: a batch allocates hundreds of thousands of
objects that are freed by reference counting, and with the defaults (700, 10, 10) the
collector took about 16% of the worker's CPU."""


def collect_as_running() -> None:
    """The cyclic collector as the running worker needs it: objects made at start-up are
    frozen out of its view (``gc.freeze``), and it runs at ``GC_THRESHOLDS``. `metering
    worker` turns it off while it starts (imports make few cycles): collecting them first
    took 0.05-0.15 s of start-up, and the imports 5-10% longer with it on."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()


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
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.catalog = CatalogCache(settings.psycopg_dsn)
        self.ledger = Ledger(settings.psycopg_dsn, self.catalog)
        # Its own connection: a batch's quota effects are marked published while the
        # ledger's connection is in the next batch's transaction.
        self.published = Reconnecting(settings.psycopg_dsn)
        self.chain = build_ingest(
            settings,
            ledger=self.ledger,
            catalog=self.catalog,
            rules=self.rules,
            dead_letters=DeadLetters(self.producer, settings.topic_dlq),
            quota_publisher=QuotaPublisher(settings, self.producer, self.published),
            consumer=self.consumer,
        )
        await self.producer.start()
        self.consumer.subscribe(
            [settings.topic_usage],
            listener=StartWhereTheLedgerIs(self.consumer, self.ledger, settings.topic_usage),
        )
        await self.consumer.start()

    async def on_started(self) -> None:
        collect_as_running()

    async def on_shutdown(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.ledger.close()
        await self.published.close()
        await self.catalog.close()

    @Service.task
    async def _consume(self) -> None:
        """Feeds each fetched batch to the chain; the chain decodes batch N+1 while the
        database writes batch N."""
        window_ms = int(self.settings.batch_window_s * 1000)
        try:
            while not self.should_stop:
                fetched = await self.consumer.getmany(
                    timeout_ms=window_ms, max_records=self.settings.batch_size
                )
                records = [m for messages in fetched.values() for m in messages]
                if records:
                    next_offsets = {tp: ms[-1].offset + 1 for tp, ms in fetched.items() if ms}
                    await self.chain.submit(Fetched(records, next_offsets))
        finally:
            await self.chain.join()
