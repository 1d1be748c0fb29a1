"""What every tenant's bill in a run reads, read once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg

from metering.billing.contracts import (
    Contract,
    anchor_day_of,
    contract_for_period,
    contract_history,
)
from metering.billing.periods import BillingPeriod, period_for, period_from_label
from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceEntry
from metering.store.billing.contracts import all_contracts
from metering.store.billing.errors import UnknownTenantError
from metering.store.billing.prices import book_revision, load_price_book, overrides_of


@dataclass(frozen=True, slots=True)
class BillingContext:
    """What every tenant's bill in a run reads: prices, contracts, overrides, the catalog.
    ``late_window`` is how long after a period's end late usage can still arrive (ingest's
    backdating window plus clock skew and a margin)."""

    book: PriceBook
    contracts: Mapping[str, Sequence[Contract]]
    overrides: Mapping[str, Sequence[PriceEntry]]
    tenant_names: Mapping[str, str]
    late_window: timedelta
    revision: int = 0
    """The price book's revision (the latest ``price_imports`` id) when ``book`` was read."""

    @classmethod
    def load(
        cls, conn: psycopg.Connection, late_window: timedelta, tenant_id: str | None = None
    ) -> BillingContext:
        rows = conn.execute(
            "SELECT tenant_id, display_name FROM tenants"
            " WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id",
            {"t": tenant_id},
        )
        names: dict[str, str] = {tenant: name for tenant, name in rows}
        if tenant_id is not None and tenant_id not in names:
            raise UnknownTenantError(tenant_id)
        revision = book_revision(conn)  # before the book: the book is at least this new
        return cls(
            revision=revision,
            book=load_price_book(conn),
            contracts=all_contracts(conn),
            overrides=overrides_of(conn, tenant_id),
            tenant_names=names,
            late_window=late_window,
        )

    def history(self, tenant_id: str) -> tuple[Contract, ...]:
        return contract_history(tenant_id, self.contracts.get(tenant_id, ()))

    def period(self, tenant_id: str, label: str) -> BillingPeriod:
        return period_from_label(label, anchor_day_of(self.contracts.get(tenant_id, ())))

    def current_period(self, tenant_id: str, now: datetime) -> BillingPeriod:
        return period_for(now, anchor_day_of(self.contracts.get(tenant_id, ())))

    def contract(self, tenant_id: str, period: BillingPeriod) -> Contract:
        """The contract that governs ``period``, with the tenant's overrides during it."""
        contract = contract_for_period(self.history(tenant_id), period)
        overrides = tuple(
            e
            for e in self.overrides.get(tenant_id, ())
            if e.effective_from < period.end
            and (e.effective_to is None or e.effective_to > period.start)
        )
        return replace(contract, price_overrides=overrides)
