"""Step 1: each record's bytes become a ``UsageEvent`` or a ``Rejection``.

The rules are pure (``metering.billing.events``, ``pricing.check_priced``); this step
only supplies what they are checked against, the catalogs and the price book, and asks
the database again when a batch names something the cache does not know.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from metering.billing.event_decoder import parse_events
from metering.billing.events import Reason, Rejection, UsageEvent, ValidationPolicy
from metering.billing.rating import check_priced
from metering.store.catalog import CatalogCache
from metering.store.ledger import SourceRecord
from streams.ingest.batch import Decoded, Fetched, Forward, Step
from streams.ingest.retry import retrying
from streams.quota.rules import QuotaRules

CATALOG_REASONS = frozenset({Reason.UNKNOWN_TENANT, Reason.UNKNOWN_MODEL})
DECODE_CHUNK = 200
"""Records decoded in one go: about 3 ms of the thread, the longest a statement of the
batch being written waits to be sent."""


class Decode(Forward[Decoded]):
    def __init__(
        self,
        policy: ValidationPolicy,
        catalog: CatalogCache,
        rules: QuotaRules,
        *,
        next_step: Step[Decoded],
    ) -> None:
        super().__init__(next_step)
        self.policy = policy
        self.catalog = catalog
        self.rules = rules

    async def submit(self, batch: Fetched) -> None:
        results = await retrying(self._classify, batch.records)
        await self.next_step.submit(Decoded(batch, results))

    async def _classify(self, records: Sequence[SourceRecord]) -> list[UsageEvent | Rejection]:
        now = datetime.now(UTC)
        await self.catalog.load()
        results = await self._parse([r.value for r in records], now)
        # Something unknown or unpriced: the catalogs or the prices may have changed since.
        if await self._learn_from(results):
            again = [i for i, x in enumerate(results) if isinstance(x, Rejection)]
            retried = await self._parse([records[i].value for i in again], now)
            for i, result in zip(again, retried, strict=True):
                results[i] = result
        return results

    async def _learn_from(self, results: list[UsageEvent | Rejection]) -> bool:
        """Asks the database about what the rejections name; whether anything was new."""
        rejections = [x for x in results if isinstance(x, Rejection)]
        unknown = [x for x in rejections if x.reason in CATALOG_REASONS]
        learned = bool(unknown) and await self.catalog.learn(
            tenants={x.tenant_id for x in unknown if x.tenant_id},
            models={x.model for x in unknown if x.model},
        )
        # A model just added to the catalog may just have been priced too.
        if (learned or any(x.reason == Reason.UNPRICED for x in rejections)) and (
            await self.catalog.learn_prices()
        ):
            self.rules.prices = self.catalog.prices  # spend estimates use the new prices too
            learned = True
        return learned

    async def _parse(self, raws: list[bytes | None], now: datetime) -> list[UsageEvent | Rejection]:
        """The results in chunks, handing the event loop to the batch being written between
        them, so that its next statement goes to PostgreSQL without waiting for the whole
        batch to be decoded (its statements and this decoding share one thread)."""
        prices = self.catalog.prices
        results: list[UsageEvent | Rejection] = []
        for start in range(0, len(raws), DECODE_CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = raws[start : start + DECODE_CHUNK]
            results += [
                x if isinstance(x, Rejection) else check_priced(prices, x)
                for x in parse_events(
                    chunk, catalog=self.catalog.catalog, now=now, policy=self.policy
                )
            ]
        return results
