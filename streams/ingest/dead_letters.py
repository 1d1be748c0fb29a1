"""Dead letters: each rejected record's original bytes, with its reason in the headers."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from streams.ingest.batch import Rejected, log


class DeadLetters:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, rejected: Rejected) -> asyncio.Future[list[RecordMetadata]]:
        """Queues the dead letters; the returned future resolves when all are acknowledged."""
        pending = [
            await self.producer.send(
                self.topic,
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
        if rejected:
            _log_dead_letters(rejected)
        return asyncio.gather(*pending)


def _log_dead_letters(rejected: Rejected) -> None:
    """One INFO line per batch: how many, why, and from where; each record at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        for record, rejection in rejected:
            log.debug(
                "dead-lettering %s[%d]@%d tenant=%s: %s (%s)",
                record.topic,
                record.partition,
                record.offset,
                rejection.tenant_id,
                rejection.reason,
                rejection.detail,
            )
    reasons = Counter(rejection.reason for _, rejection in rejected)
    offsets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for record, _ in rejected:
        offsets[(record.topic, record.partition)].append(record.offset)
    log.info(
        "dead-lettering %d: %s from %s",
        len(rejected),
        " ".join(f"{reason}={count}" for reason, count in sorted(reasons.items())),
        " ".join(
            f"{topic}[{partition}]@{min(found)}-{max(found)}"
            for (topic, partition), found in sorted(offsets.items())
        ),
    )
