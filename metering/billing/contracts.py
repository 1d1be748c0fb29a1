"""Tenant contracts: the terms a tenant is billed on, and which of them governs a period."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Final, NoReturn

from metering.billing.invoice_errors import InvoiceError
from metering.billing.money import MONEY, minor_unit
from metering.billing.periods import BillingPeriod, check_anchor_day
from metering.billing.prices import PriceEntry


class ContractError(InvoiceError):
    """A contract, or a tenant's set of contracts, that is not valid."""


@dataclass(frozen=True, slots=True)
class Contract:
    """What a tenant has agreed to, from ``effective_from`` until ``effective_to`` (exclusive).

    - ``anchor_day``: billing periods are monthly from this day (1 = calendar months).
    - ``discount_percent``: taken off the period's usage as one discount line.
    - ``minimum_commitment``: the least the tenant pays per period, after the discount; a
      shortfall is billed as its own line. Not prorated for partial periods.
    - ``price_overrides``: entries in the contract's currency that replace the list price of
      each model, service tier and token class they price, while they are in effect.

    One contract governs a whole period: the one ``contract_for_period`` picks.
    """

    tenant_id: str
    currency: str
    effective_from: datetime
    effective_to: datetime | None = None
    anchor_day: int = 1
    discount_percent: Decimal = Decimal(0)
    minimum_commitment: Decimal | None = None
    price_overrides: tuple[PriceEntry, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not self.tenant_id:
            self._fail(f"tenant_id must be a non-empty string, got {self.tenant_id!r}")
        try:
            quantum = minor_unit(self.currency)
        except InvoiceError as exc:
            self._fail(str(exc))
        for name in ("effective_from", "effective_to"):
            value = getattr(self, name)
            if value is None and name == "effective_to":
                continue
            if not isinstance(value, datetime) or value.utcoffset() is None:
                self._fail(f"{name} must be a timezone-aware datetime, got {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            self._fail("effective_to must be after effective_from")
        try:
            check_anchor_day(self.anchor_day)
        except InvoiceError as exc:
            self._fail(str(exc))
        discount = self.discount_percent
        if type(discount) is not Decimal or not discount.is_finite() or not 0 <= discount <= 100:
            self._fail(
                f"discount_percent must be a Decimal from 0 to 100, got {discount!r}"
                " (10% is Decimal('10'))"
            )
        minimum = self.minimum_commitment
        if minimum is not None:
            if type(minimum) is not Decimal or not minimum.is_finite() or minimum < 0:
                self._fail(f"minimum_commitment must be a Decimal of 0 or more, got {minimum!r}")
            if minimum != minimum.quantize(quantum, rounding=ROUND_HALF_EVEN, context=MONEY):
                self._fail(
                    f"minimum_commitment {minimum} has more decimal places than {self.currency} has"
                )
        object.__setattr__(self, "price_overrides", tuple(self.price_overrides))
        for entry in self.price_overrides:
            if not isinstance(entry, PriceEntry):
                self._fail(f"price_overrides must be PriceEntry values, got {entry!r}")
            if entry.currency != self.currency:
                self._fail(
                    f"the override {entry.describe()} is in {entry.currency}, but the contract"
                    f" bills in {self.currency}: overrides are in the contract's currency"
                )

    def covers(self, moment: datetime) -> bool:
        return self.effective_from <= moment and (
            self.effective_to is None or moment < self.effective_to
        )

    def overlaps(self, period: BillingPeriod) -> bool:
        return self.effective_from < period.end and (
            self.effective_to is None or self.effective_to > period.start
        )

    def _fail(self, message: str) -> NoReturn:
        raise ContractError(f"contract of {self.tenant_id!r} from {self.effective_from}: {message}")


def contract_for_period(contracts: Iterable[Contract], period: BillingPeriod) -> Contract:
    """The contract that governs ``period``: of one tenant's contracts in effect at any time
    during it, the one that took effect last. So a tenant who signs mid-period is billed for
    that period, and a change mid-period applies to the whole period it falls in."""
    history = sorted(contracts, key=lambda c: c.effective_from)
    tenants = {c.tenant_id for c in history}
    if len(tenants) > 1:
        raise ContractError(f"contracts of several tenants given: {', '.join(sorted(tenants))}")
    for earlier, later in pairwise(history):
        if earlier.effective_to is None or earlier.effective_to > later.effective_from:
            raise ContractError(
                f"contracts of {later.tenant_id!r} overlap: the one from"
                f" {earlier.effective_from} runs past {later.effective_from}, when the next"
                " takes effect; end it with effective_to"
            )
    during = [c for c in history if c.overlaps(period)]
    if not during:
        who = f" of {next(iter(tenants))!r}" if tenants else ""
        raise ContractError(f"no contract{who} is in effect during period {period.label}")
    return during[-1]


DEFAULT_CURRENCY: Final = "USD"
"""The currency of a tenant that has no contract: list prices, calendar months, no discount."""

_DEFAULT_SINCE: Final = datetime(1970, 1, 1, tzinfo=UTC)


def contract_history(
    tenant_id: str, contracts: Sequence[Contract], *, anchor_day: int | None = None
) -> tuple[Contract, ...]:
    """A tenant's contracts, preceded by the default terms until the first one takes effect.

    A tenant without a contract is billed at list prices in ``DEFAULT_CURRENCY``, with no
    discount or commitment, on billing periods of its contracts' anchor day (``anchor_day``
    when it has no contract, else 1). So every period has a governing contract
    (``contract_for_period``), and a tenant that signs on the 20th is billed on its new terms
    for that whole period."""
    history = sorted(contracts, key=lambda c: c.effective_from)
    anchor = history[0].anchor_day if history else (anchor_day or 1)
    first = history[0].effective_from if history else None
    if first is not None and first <= _DEFAULT_SINCE:
        return tuple(history)
    default = Contract(
        tenant_id, DEFAULT_CURRENCY, _DEFAULT_SINCE, effective_to=first, anchor_day=anchor
    )
    return (default, *history)


def anchor_day_of(contracts: Sequence[Contract]) -> int:
    """The anchor day of a tenant's billing periods: that of its latest contract version, or
    1 (calendar months) without one. ``contract_history`` gives the default terms the first
    version's day, and changing the day later is refused, so every version agrees and this
    is the day of every period the tenant has been or will be invoiced for."""
    latest = max(contracts, key=lambda c: c.effective_from, default=None)
    return 1 if latest is None else latest.anchor_day
