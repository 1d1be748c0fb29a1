"""Step 4: a committed batch's quota alerts and signals go out (``QuotaPublisher``).

If they cannot be published now, the quota service's sweeper publishes them later from
the outbox the batch's transaction wrote."""

from __future__ import annotations

import psycopg
from aiokafka.errors import KafkaError

from streams.ingest.batch import Forward, Step, Written, log
from streams.quota.publisher import QuotaPublisher


class PublishQuotas(Forward[Written]):
    def __init__(self, publisher: QuotaPublisher, *, next_step: Step[Written]) -> None:
        super().__init__(next_step)
        self.publisher = publisher

    async def submit(self, batch: Written) -> None:
        try:
            await self.publisher.publish(batch.quota)
        except (KafkaError, psycopg.OperationalError) as exc:  # the sweeper retries
            log.warning("quota effects not published yet: %r", exc)
        await self.next_step.submit(batch)
