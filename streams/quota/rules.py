"""What quota accounting in the worker needs to know: the limits and the prices, and the
spend estimate of an event."""

from __future__ import annotations

import logging
from decimal import Decimal

from metering.billing.events import UsageEvent
from metering.billing.price_book import PriceBook
from metering.billing.quotas.limits import Limit
from metering.billing.quotas.state import QuotaUsage, usage_from_event
from metering.billing.rating import estimate_at

log = logging.getLogger("metering.quotas")


class QuotaRules:
    """What quota accounting needs to know, kept fresh by ``QuotaService``: the limits (for
    the endpoint; batches read them in their transaction) and the prices."""

    def __init__(self) -> None:
        self.limits: dict[str, tuple[Limit, ...]] = {}
        self.prices = PriceBook(())
        self._unpriced: set[tuple[str, str]] = set()

    def usage(self, event: UsageEvent) -> QuotaUsage:
        """The quota usage of a newly accepted event, its spend estimated."""
        return usage_from_event(event, estimated_cost=self._estimate(event), accepted=True)

    def _estimate(self, event: UsageEvent) -> Decimal:
        """In-stream spend estimate at list prices; the invoice is the final word."""
        cost = estimate_at(
            self.prices, event.usage, event.model, event.service_tier, event.occurred_at
        )
        if cost is None:
            if (event.model, event.service_tier) not in self._unpriced:
                self._unpriced.add((event.model, event.service_tier))
                log.warning(
                    "no price for %s (%s) at %s: its spend counts as 0 toward spend limits",
                    event.model,
                    event.service_tier,
                    event.occurred_at.isoformat(),
                )
            return Decimal(0)
        return cost
