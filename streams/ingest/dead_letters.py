"""Dead letters: each rejected record's original bytes, with its reason in the headers."""

from __future__ import annotations

import asyncio

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
