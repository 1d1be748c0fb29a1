"""The quota effects of a batch: the domain decides, the store persists, inside the
batch's own transaction (so a replay or a crash can neither lose nor double-count them)."""

from __future__ import annotations

from datetime import UTC, datetime

from metering.store import quota_store
from metering.store.ledger import LedgerBatch
from metering.store.quota_store import QuotaEffects
from streams.quota.rules import QuotaRules


class ApplyQuotas:
    def __init__(self, rules: QuotaRules) -> None:
        self.rules = rules

    async def __call__(self, batch: LedgerBatch) -> QuotaEffects:
        """Counts the events new to the ledger toward their tenants' limits."""
        return await quota_store.apply(
            batch.connection, batch.inserted_events, self.rules.usage, datetime.now(UTC)
        )
