"""Kafka administration the pipeline needs: topics exist, offsets, consumer lag."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from metering.config import Settings


class TopicMissingError(LookupError):
    """A topic the command needs does not exist (often a typo in METERING_TOPIC_*)."""


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    partition: int
    start: int  # earliest offset still in the log
    end: int  # offset the next record will get
    committed: int | None  # the consumer group's committed offset


def pipeline_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The pipeline's topics and their configs; ``quota.state`` keeps the latest per tenant."""
    return {
        settings.topic_usage: {},
        settings.topic_dlq: {},
        settings.topic_quota_alerts: {},
        settings.topic_quota_state: {"cleanup.policy": "compact"},
    }


def worker_topics(settings: Settings) -> list[str]:
    """Every topic a worker with these settings uses, its Faust app's own included."""
    return [*pipeline_topics(settings), f"{settings.faust_app_id}-__assignor-__leader"]


async def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Deletes those of the topics that exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [name for name in names if name in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def ensure_topics(settings: Settings) -> None:
    """Creates the pipeline's topics if they are missing; leaves existing ones alone."""
    configs = pipeline_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                settings.topic_partitions,
                settings.replication_factor,
                topic_configs=config,
            )
            for name, config in configs.items()
            if name not in existing
        ]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another process was quicker
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The topic's partition numbers; empty if the topic does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"]:
        return []
    return sorted(p["partition"] for p in description["partitions"])


async def topic_offsets(settings: Settings, topic: str, group_id: str) -> list[PartitionOffsets]:
    tps = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if not tps:
        raise TopicMissingError(
            f"topic {topic!r} does not exist on {settings.kafka_bootstrap}; check "
            "METERING_TOPIC_USAGE, or start a worker or producer, which create it"
        )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        return [PartitionOffsets(tp.partition, starts[tp], ends[tp], committed[tp]) for tp in tps]
    finally:
        await consumer.stop()
