"""Step 3: one PostgreSQL transaction per batch, which decides what is new.

In the transaction: the ledger rows and rejections (``LedgerBatch.write``), the quota
effects (``ApplyQuotas``), and meanwhile the dead letters, which the broker acknowledges
before the commit, so that each is published at least once. One batch is written at a
time, in the order submitted: ``submit`` returns as soon as its batch is under way, so
the steps before it can decode the next batch while the database writes this one. The
rows are formatted for COPY before the previous batch is done (``Ledger.stage``), and a
committed batch is handed on to the next steps in order while the next one is written.
"""

from __future__ import annotations

import asyncio
import time

from metering.store.ledger import RECORD_ERRORS, Ledger, LedgerBatch, StagedEvents
from metering.store.quota_store import QuotaEffects
from streams.ingest.batch import Accepted, Forward, RecordKey, Rejected, Step, Written, key, log
from streams.ingest.dead_letters import DeadLetters
from streams.ingest.lifecycle import exit_if_failed, finish_or_exit
from streams.ingest.partition import Partitioned, Refused
from streams.ingest.quotas import ApplyQuotas
from streams.ingest.retry import retrying
from streams.ingest.unstorable import bisect_refused, error_text


class WriteBatch(Forward[Written]):
    def __init__(
        self,
        ledger: Ledger,
        dead_letters: DeadLetters,
        quotas: ApplyQuotas,
        *,
        next_step: Step[Written],
    ) -> None:
        super().__init__(next_step)
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.quotas = quotas
        self._writing: asyncio.Future[None] | None = None
        self._handing_on: asyncio.Future[None] | None = None

    async def submit(self, batch: Partitioned) -> None:
        staged = await retrying(self.ledger.stage, batch.accepted)  # while the last is written
        if self._writing is not None:  # batches commit in order
            await finish_or_exit(self._writing)
        self._writing = asyncio.ensure_future(self._write(batch, staged))
        self._writing.add_done_callback(exit_if_failed)

    async def join(self) -> None:
        if self._writing is not None:  # stopping: the batch being written must finish
            await finish_or_exit(self._writing)
        if self._handing_on is not None:
            await finish_or_exit(self._handing_on)
        await super().join()

    async def _write(self, batch: Partitioned, staged: StagedEvents) -> None:
        started = time.perf_counter()
        written = await self._until_committed(batch, staged)
        outcome = written.outcome
        log.info(
            "batch of %d in %.0f ms: accepted=%d duplicates=%d conflicts=%d rejected=%d skipped=%d",
            len(batch.fetched.records),
            (time.perf_counter() - started) * 1000,
            outcome.accepted,
            outcome.duplicates,
            outcome.conflicts,
            outcome.rejected,
            outcome.skipped,
        )
        # The next steps take committed batches in order, one at a time, while the
        # database writes the next one.
        if self._handing_on is not None:
            await finish_or_exit(self._handing_on)
        self._handing_on = asyncio.ensure_future(self.next_step.submit(written))
        self._handing_on.add_done_callback(exit_if_failed)

    async def _until_committed(self, batch: Partitioned, staged: StagedEvents) -> Written:
        """Writes a batch until it is committed, retrying transient failures; events the
        database refuses are dead-lettered as ``unstorable`` and the rest written."""
        dead_lettered: set[RecordKey] = set()  # acknowledged: not to be published again

        async def write_once(batch: Partitioned) -> Written:
            async with await self.ledger.batch(batch.fetched.records) as transaction:
                accepted, rejected = batch.fresh(transaction.fresh)
                whole = len(transaction.fresh) == len(batch.fetched.records)
                # Dead letters travel while the ledger rows are written; both are done
                # before the commit, so a dead letter is published at least once.
                pending = [x for x in rejected if key(x[0]) not in dead_lettered]
                delivered = await self.dead_letters.send(pending)
                try:
                    quota = await self._store(
                        transaction, accepted, rejected, staged if whole else None
                    )
                finally:
                    await delivered
                    dead_lettered.update(key(record) for record, _ in pending)
            return Written(batch.fetched, transaction.outcome, quota)

        while True:
            try:
                return await retrying(write_once, batch)
            except RECORD_ERRORS:
                found = await retrying(self._find_unstorable, batch)
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
                batch = batch.refused(found)
                staged = await retrying(self.ledger.stage, batch.accepted)

    async def _store(
        self,
        transaction: LedgerBatch,
        accepted: Accepted,
        rejected: Rejected,
        staged: StagedEvents | None = None,
    ) -> QuotaEffects:
        """Everything a batch writes in its transaction: ledger rows, aggregates, quotas."""
        await transaction.write(accepted, rejected, staged=staged)
        return await self.quotas(transaction)

    async def _find_unstorable(self, batch: Partitioned) -> list[Refused]:
        """The batch's events that the database refuses, each with its error, found by
        writing halves of the batch in trial transactions that are always rolled back."""

        async def refusal(part: Accepted) -> str | None:
            keys = {key(record) for record, _ in part}
            try:
                async with await self.ledger.batch(batch.fetched.records, trial=True) as trial:
                    accepted, _ = batch.fresh(trial.fresh)
                    await self._store(trial, [x for x in accepted if key(x[0]) in keys], [])
            except RECORD_ERRORS as exc:
                return error_text(exc)
            return None

        return await bisect_refused(batch.accepted, refusal)
