"""Kafka administration the pipeline needs: topics exist, offsets, consumer lag."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from metering.config import Settings


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    partition: int
    start: int  # earliest offset still in the log
    end: int  # offset the next record will get
    committed: int | None  # the consumer group's committed offset


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> None:
    """Creates the pipeline's topics if they are missing; leaves existing ones alone."""
    wanted = list(names) if names is not None else [settings.topic_usage, settings.topic_dlq]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, settings.topic_partitions, settings.replication_factor)
            for name in wanted
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it in between
    finally:
        await admin.close()


async def topic_offsets(settings: Settings, topic: str, group_id: str) -> list[PartitionOffsets]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # loads cluster metadata
        partitions = sorted(consumer.partitions_for_topic(topic) or set())
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        return [
            PartitionOffsets(tp.partition, starts[tp], ends[tp], committed[tp]) for tp in tps
        ]
    finally:
        await consumer.stop()
