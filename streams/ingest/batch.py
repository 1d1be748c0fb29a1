"""What flows down the ingest chain, one batch at a time, and what a step is."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiokafka.structs import TopicPartition

from metering.billing.events import Rejection, UsageEvent
from metering.store.ledger import BatchOutcome, SourceRecord
from metering.store.quota_store import QuotaEffects

log = logging.getLogger("metering.ingest")

RecordKey = tuple[str, int, int]
Accepted = list[tuple[SourceRecord, UsageEvent]]
Rejected = list[tuple[SourceRecord, Rejection]]

_Batch = TypeVar("_Batch", contravariant=True)
_Next = TypeVar("_Next")


def key(record: SourceRecord) -> RecordKey:
    return (record.topic, record.partition, record.offset)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One ``getmany``'s records, in partition order, and each partition's next offset."""

    records: Sequence[SourceRecord]
    next_offsets: dict[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A fetched batch with each record's result, in the records' order."""

    fetched: Fetched
    results: Sequence[UsageEvent | Rejection]


@dataclass(frozen=True, slots=True)
class Written:
    """A committed batch: its counts, and the quota effects to publish now."""

    fetched: Fetched
    outcome: BatchOutcome
    quota: QuotaEffects


class Step(Protocol[_Batch]):
    """One step of the chain: takes a batch, hands what it makes to the next step."""

    async def submit(self, batch: _Batch) -> None: ...

    async def join(self) -> None:
        """Waits until every batch submitted so far has gone through the rest of the chain."""


class Forward(Generic[_Next]):
    """A step with a next one; ``join`` has nothing of its own to wait for."""

    def __init__(self, next_step: Step[_Next]) -> None:
        self.next_step = next_step

    async def join(self) -> None:
        await self.next_step.join()
