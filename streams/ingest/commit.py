"""The last step: Kafka's committed offsets, for lag monitoring (as arroyo's
``CommitOffsets``). The ledger's own progress rows, written in each batch's transaction,
are the real record of what was processed."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from streams.ingest.batch import Written, log


class CommitOffsets:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def submit(self, batch: Written) -> None:
        offsets = {
            tp: OffsetAndMetadata(offset, "") for tp, offset in batch.fetched.next_offsets.items()
        }
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # partitions moved meanwhile
            log.info("offset commit skipped after a rebalance: %s", exc)

    async def join(self) -> None:
        """Nothing to wait for: each commit is done when ``submit`` returns."""
