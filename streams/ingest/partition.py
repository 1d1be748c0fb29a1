"""Step 2: a decoded batch split into the events to write and the records to dead-letter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metering.billing.events import Reason, Rejection, UsageEvent
from metering.store.ledger import SourceRecord
from streams.ingest.batch import Accepted, Decoded, Fetched, Forward, Rejected, Step, key

Refused = tuple[tuple[SourceRecord, UsageEvent], str]  # an event and the database's error


@dataclass(frozen=True, slots=True)
class Partitioned:
    """A batch's accepted events and rejected records, each in the records' order."""

    fetched: Fetched
    results: Sequence[UsageEvent | Rejection]
    accepted: Accepted
    rejected: Rejected

    def fresh(self, fresh: Sequence[SourceRecord]) -> tuple[Accepted, Rejected]:
        """Only the records the ledger has not processed before (``LedgerBatch.fresh``)."""
        if len(fresh) == len(self.fetched.records):
            return self.accepted, self.rejected
        keys = set(map(key, fresh))
        return (
            [x for x in self.accepted if key(x[0]) in keys],
            [x for x in self.rejected if key(x[0]) in keys],
        )

    def refused(self, found: Sequence[Refused]) -> Partitioned:
        """This batch with the events the database refused turned into ``unstorable``
        rejections that carry its error."""
        refusals = {
            key(record): Rejection(
                Reason.UNSTORABLE,
                f"the database refused the event: {error}",
                event_id=str(event.event_id),
                tenant_id=event.tenant_id,
                model=event.model,
            )
            for (record, event), error in found
        }
        results = [
            refusals.get(key(record), result)
            for record, result in zip(self.fetched.records, self.results, strict=True)
        ]
        return partition(self.fetched, results)


def partition(fetched: Fetched, results: Sequence[UsageEvent | Rejection]) -> Partitioned:
    accepted: Accepted = []
    rejected: Rejected = []
    for record, result in zip(fetched.records, results, strict=True):
        if isinstance(result, Rejection):
            rejected.append((record, result))
        else:
            accepted.append((record, result))
    return Partitioned(fetched, results, accepted, rejected)


class Partition(Forward[Partitioned]):
    def __init__(self, *, next_step: Step[Partitioned]) -> None:
        super().__init__(next_step)

    async def submit(self, batch: Decoded) -> None:
        await self.next_step.submit(partition(batch.fetched, batch.results))
