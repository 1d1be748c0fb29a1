"""Billing periods, tenant contracts, invoice building and rounding.

Pure: every input is a plain value the database can give (contracts, price entries, hourly
usage rows, lines already invoiced) and every output a frozen dataclass it can store. The
rules in prose are in ``docs/billing.md``; keep the two in step.

Rounding, once and in one place: each line is computed exactly, then rounded half-even to
the currency's minor unit; subtotal and total are sums of rounded lines, so an invoice always
adds up as printed.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from enum import StrEnum
from itertools import pairwise
from types import MappingProxyType
from typing import Final, NoReturn, Protocol

from metering.billing.events import SERVICE_TIERS
from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceEntry
from metering.billing.rating import EXACT, Charge, RatableUsage, rate
from metering.billing.tokens import TOKEN_COUNTS, TokenClass

CURRENCY_MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "CHF": 2,
        "CAD": 2,
        "AUD": 2,
        "SEK": 2,
        "NOK": 2,
        "DKK": 2,
        "INR": 2,
        "CNY": 2,
        "SGD": 2,
        "JPY": 0,
        "KRW": 0,
    }
)
"""Decimal places of each billing currency (ISO 4217). Add a currency here before billing
in it."""

_MONEY: Final = Context(
    prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Rounding to a minor unit: like ``EXACT``, but rounding is the point, so not trapped."""

_LABEL_SHAPE: Final = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_HUNDRED: Final = Decimal(100)


class InvoiceError(ValueError):
    """Inputs that cannot make an invoice; the message says what to fix."""


class ContractError(InvoiceError):
    """A contract, or a tenant's set of contracts, that is not valid."""


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency``: ``Decimal('0.01')`` for USD, ``Decimal('1')`` for
    JPY."""
    try:
        places = CURRENCY_MINOR_UNITS[currency]
    except KeyError:
        raise InvoiceError(
            f"currency {currency!r} is not in CURRENCY_MINOR_UNITS ("
            f"{', '.join(sorted(CURRENCY_MINOR_UNITS))}): add it with its number of decimal"
            " places"
        ) from None
    return Decimal(1).scaleb(-places)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-even (banker's rounding) to the currency's minor unit."""
    return _MONEY.quantize(amount, minor_unit(currency))


# --- billing periods -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class BillingPeriod:
    """``[start, end)`` in UTC. Its ``label`` is the month it starts in, e.g. ``2026-11``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise InvoiceError(f"period {name} must be timezone-aware, got {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise InvoiceError(f"period end {self.end} must be after its start {self.start}")

    @property
    def label(self) -> str:
        return f"{self.start.year:04d}-{self.start.month:02d}"

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def period_for(moment: datetime, anchor_day: int = 1) -> BillingPeriod:
    """The monthly billing period that contains ``moment``.

    Periods start at 00:00 UTC on ``anchor_day`` of each month (1 = calendar months). In a
    month shorter than the anchor day, the period starts on its last day instead: anchor 31
    gives Jan 31, Feb 28 (29 in a leap year), Mar 31, Apr 30, ...
    """
    _check_anchor_day(anchor_day)
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvoiceError(f"moment must be a timezone-aware datetime, got {moment!r}")
    moment = moment.astimezone(UTC)
    year, month = moment.year, moment.month
    start = _anchor(year, month, anchor_day)
    if moment < start:
        year, month = _previous_month(year, month)
        start = _anchor(year, month, anchor_day)
    return BillingPeriod(start, _anchor(*_next_month(year, month), anchor_day))


def billing_period_of(anchor_day: int) -> Callable[[datetime], tuple[datetime, datetime]]:
    """``period_for`` with the anchor day fixed, as ``(start, end)``: the ``period_of`` that
    quotas take, so that quota periods are the invoice's periods."""
    _check_anchor_day(anchor_day)

    def period_of(moment: datetime) -> tuple[datetime, datetime]:
        period = period_for(moment, anchor_day)
        return period.start, period.end

    return period_of


def period_from_label(label: str, anchor_day: int = 1) -> BillingPeriod:
    """The period that starts in the month ``label`` names (``YYYY-MM``)."""
    _check_anchor_day(anchor_day)
    match = _LABEL_SHAPE.fullmatch(label)
    if match is None:
        raise InvoiceError(f"period label {label!r} must look like 2026-11")
    year, month = int(match[1]), int(match[2])
    return BillingPeriod(
        _anchor(year, month, anchor_day), _anchor(*_next_month(year, month), anchor_day)
    )


def _check_anchor_day(anchor_day: int) -> None:
    if type(anchor_day) is not int or not 1 <= anchor_day <= 31:
        raise InvoiceError(
            f"anchor day must be a day of the month from 1 to 31, got {anchor_day!r}"
        )


def _anchor(year: int, month: int, anchor_day: int) -> datetime:
    last_day = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(anchor_day, last_day), tzinfo=UTC)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


# --- contracts -------------------------------------------------------------------------------


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
            _check_anchor_day(self.anchor_day)
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
            if minimum != minimum.quantize(quantum, rounding=ROUND_HALF_EVEN, context=_MONEY):
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


# --- usage and invoices ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One row of hourly usage (table ``usage_hourly``): a tenant's tokens of one model and
    service tier in the UTC hour starting at ``hour``. The counts have event schema v1's
    shape: cached and cache-write tokens are parts of ``input_tokens``, 1-hour cache writes
    part of ``cache_write_tokens``, reasoning tokens part of ``output_tokens``.
    ``long_context`` rows hold only the tokens of requests above the model's long-context
    threshold (decided per request by ingest), the others the rest."""

    tenant_id: str
    model: str
    service_tier: str
    hour: datetime
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    long_context: bool = False
    cache_write_1h_tokens: int = 0

    def __post_init__(self) -> None:
        if self.service_tier not in SERVICE_TIERS:
            raise InvoiceError(
                f"usage of {self.tenant_id!r}: service tier {self.service_tier!r} is not one"
                f" of {', '.join(SERVICE_TIERS)}"
            )
        if self.hour.utcoffset() is None:
            raise InvoiceError(f"usage of {self.tenant_id!r}: hour {self.hour} has no time zone")
        cached, write, write_1h, reasoning = (
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.reasoning_tokens,
        )
        if (
            cached < 0
            or write < 0
            or write_1h < 0
            or reasoning < 0
            or cached + write > self.input_tokens
            or write_1h > write
            or reasoning > self.output_tokens
        ):
            raise InvoiceError(
                f"usage of {self.tenant_id!r} for {self.model} at {self.hour}: counts must be"
                " non-negative with cached_input + cache_write <= input, cache_write_1h <="
                " cache_write and reasoning <= output, got"
                f" input={self.input_tokens} cached_input={cached} cache_write={write}"
                f" cache_write_1h={write_1h} output={self.output_tokens} reasoning={reasoning}"
            )


class TenantUsage(RatableUsage, Protocol):
    """What ``build_invoice`` reads of a usage row: ``UsageRow``, or anything with the same
    attributes. Closing a period for many tenants may pass database rows straight through
    (psycopg's ``namedtuple_row``), which skips ``UsageRow``'s per-row checks and its cost;
    ingest has already validated every event that the sums are made of."""

    @property
    def tenant_id(self) -> str: ...


class LineKind(StrEnum):
    USAGE = "usage"
    DISCOUNT = "discount"
    COMMITMENT = "commitment"  # minimum commitment shortfall
    ADJUSTMENT = "adjustment"  # late usage (or a corrected price) of an already-closed period


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of an invoice; ``amount`` is rounded to the currency's minor unit.

    Usage and adjustment lines name the model, token class, service tier, band (``tier``,
    0-based) and the unit price per million tokens; discount and commitment lines leave those
    ``None``. A line with ``adjusts_period`` (a label like ``2026-10``) corrects that earlier,
    already-closed period rather than billing this one: kind ``adjustment`` for its usage,
    ``discount`` and ``commitment`` for the change in its discount and shortfall.
    """

    kind: LineKind
    model: str | None
    token_class: TokenClass | None
    service_tier: str | None
    tier: int | None
    quantity: int
    unit_price_per_million: Decimal | None
    amount: Decimal
    adjusts_period: str | None = None
    long_context: bool = False


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """An invoice before it is finalized. ``subtotal`` is the sum of this period's usage
    lines; ``total`` the sum of every line (usage, discount, commitment shortfall and
    adjustments of earlier periods)."""

    tenant_id: str
    period: BillingPeriod
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    total: Decimal

    @property
    def period_label(self) -> str:
        return self.period.label


def build_invoice(
    tenant_id: str,
    period: BillingPeriod,
    contract: Contract,
    price_book: PriceBook,
    usage_rows: Sequence[TenantUsage],
    adjustments: Sequence[InvoiceLine] = (),
) -> InvoiceDraft:
    """The invoice of ``tenant_id`` for ``period``.

    ``usage_rows`` are all of the tenant's usage in the period (as ``usage_hourly`` holds
    it); ``contract`` is the one ``contract_for_period`` picks; ``adjustments`` are lines
    from ``adjustment_lines`` for earlier, already-closed periods that got late usage.

    Lines: one per model, token class, service tier, band and unit price, then a discount
    line, then a commitment shortfall line, then the adjustments. Linear in the rows.
    Raises ``InvoiceError`` for inconsistent inputs and ``PricingError`` (``NoPriceError``,
    ``CurrencyMismatchError``) for usage the price book cannot price in the contract's
    currency.
    """
    if contract.tenant_id != tenant_id:
        raise InvoiceError(
            f"the contract is {contract.tenant_id!r}'s, not {tenant_id!r}'s; pick it with"
            " contract_for_period"
        )
    if not contract.overlaps(period):
        raise InvoiceError(
            f"the contract of {tenant_id!r} from {contract.effective_from} is not in effect"
            f" during period {period.label}; pick it with contract_for_period"
        )
    start, end = period.start, period.end
    for row in usage_rows:
        if row.tenant_id != tenant_id or not start <= row.hour < end:
            raise InvoiceError(
                f"a usage row of {row.tenant_id!r} at {row.hour} is not {tenant_id!r}'s usage"
                f" in period {period.label} ({start} to {end})"
            )
    for line in adjustments:
        if line.adjusts_period is None or line.adjusts_period >= period.label:
            raise InvoiceError(
                f"an adjustment line must adjust a period before {period.label}, got"
                f" adjusts_period={line.adjusts_period!r}; make them with adjustment_lines"
            )
    currency = contract.currency
    quantum = minor_unit(currency)
    book = price_book.with_overrides(contract.price_overrides)
    lines = [_usage_line(charge, quantum) for charge in rate(book, usage_rows, currency)]
    subtotal = exact_sum(line.amount for line in lines)

    net = subtotal
    discount = _MONEY.quantize(
        EXACT.scaleb(EXACT.multiply(subtotal, contract.discount_percent), -2), quantum
    )
    if discount:
        net = EXACT.subtract(subtotal, discount)
        lines.append(_money_line(LineKind.DISCOUNT, EXACT.minus(discount)))
    minimum = contract.minimum_commitment
    if minimum is not None and net < minimum:
        shortfall = _MONEY.quantize(EXACT.subtract(minimum, net), quantum)
        lines.append(_money_line(LineKind.COMMITMENT, shortfall))
    lines.extend(sorted(adjustments, key=lambda line: line.adjusts_period or ""))
    return InvoiceDraft(
        tenant_id=tenant_id,
        period=period,
        currency=currency,
        lines=tuple(lines),
        subtotal=_MONEY.quantize(subtotal, quantum),
        total=_MONEY.quantize(exact_sum(line.amount for line in lines), quantum),
    )


def adjustment_lines(
    period: BillingPeriod,
    contract: Contract,
    price_book: PriceBook,
    usage_rows: Sequence[TenantUsage],
    billed: Iterable[InvoiceLine],
) -> tuple[InvoiceLine, ...]:
    """The lines that bring a closed ``period`` up to date, for the next open invoice.

    The period is billed again in full from ``usage_rows`` (all of its usage, late rows
    included, as ``usage_hourly`` holds it now) and compared line by line with ``billed``:
    the lines of its own invoice plus any lines that adjusted it since. Lines of its invoice
    that adjust even older periods may be included; they are skipped. What differs becomes a
    line with ``adjusts_period`` set: quantity and amount are the differences.

    Re-rating the whole period, rather than pricing the late rows alone, keeps band
    positions, the discount and the commitment right, and makes the period's lines over all
    invoices add up to exactly what one on-time invoice would have said. Because the
    difference of two rounded amounts is taken, an adjustment's amount can differ from its
    quantity times its unit price by up to one minor unit.
    """
    label = period.label
    rerated = build_invoice(contract.tenant_id, period, contract, price_book, usage_rows)
    now = _tally(rerated.lines)
    then = _tally(line for line in billed if line.adjusts_period in (None, label))
    result: list[InvoiceLine] = []
    for key in [*now, *(key for key in then if key not in now)]:
        current, previous = now.get(key), then.get(key)
        like = (current or previous).like  # type: ignore[union-attr]  # one of them exists
        quantity = (current.quantity if current else 0) - (previous.quantity if previous else 0)
        amount = EXACT.subtract(
            current.amount if current else Decimal(0), previous.amount if previous else Decimal(0)
        )
        if quantity or amount:
            kind = LineKind.ADJUSTMENT if like.kind is LineKind.USAGE else like.kind
            result.append(
                replace(like, kind=kind, quantity=quantity, amount=amount, adjusts_period=label)
            )
    return tuple(result)


@dataclass(slots=True)
class _Tally:
    quantity: int
    amount: Decimal
    like: InvoiceLine  # the first line of the key, as billed on the period's own invoice


def _tally(lines: Iterable[InvoiceLine]) -> dict[tuple[object, ...], _Tally]:
    """Quantities and amounts per line key; usage and the later adjustments of that usage
    share a key, and so do a discount (or shortfall) and its later adjustments."""
    tallies: dict[tuple[object, ...], _Tally] = {}
    for line in lines:
        kind = LineKind.USAGE if line.kind is LineKind.ADJUSTMENT else line.kind
        key = (
            kind,
            line.model,
            line.token_class,
            line.service_tier,
            line.tier,
            line.long_context,
            line.unit_price_per_million,
        )
        tally = tallies.get(key)
        if tally is None:
            tallies[key] = _Tally(line.quantity, line.amount, replace(line, kind=kind))
        else:
            tally.quantity += line.quantity
            tally.amount = EXACT.add(tally.amount, line.amount)
    return tallies


def _usage_line(charge: Charge, quantum: Decimal) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind.USAGE,
        model=charge.model,
        token_class=charge.token_class,
        service_tier=charge.service_tier,
        tier=charge.tier,
        quantity=charge.quantity,
        unit_price_per_million=charge.unit_price_per_million,
        amount=_MONEY.quantize(charge.exact_amount, quantum),
        long_context=charge.long_context,
    )


def _money_line(kind: LineKind, amount: Decimal) -> InvoiceLine:
    return InvoiceLine(kind, None, None, None, None, 0, None, amount)


def exact_sum(amounts: Iterable[Decimal]) -> Decimal:
    """The sum of amounts in ``EXACT``: never rounded, an error rather than inexact."""
    total = Decimal(0)
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


# --- closing periods -------------------------------------------------------------------------

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


UsageKey = tuple[str, str, bool]
"""model, service tier, long-context: how ``billed_usage`` keeps what a period billed."""

USAGE_COUNTS: Final = ("events", *TOKEN_COUNTS)


class CountedUsage(TenantUsage, Protocol):
    @property
    def events(self) -> int: ...


def usage_totals(rows: Iterable[CountedUsage]) -> dict[UsageKey, tuple[int, ...]]:
    """Events and the six token counts per model, service tier and long-context flag: what a
    closed period billed, to compare with its usage later (late usage is the difference)."""
    totals: dict[UsageKey, list[int]] = {}
    for row in rows:
        key = (row.model, row.service_tier, row.long_context)
        sums = totals.get(key)
        if sums is None:
            totals[key] = [
                row.events,
                row.input_tokens,
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.output_tokens,
                row.reasoning_tokens,
                row.cache_write_1h_tokens,
            ]
        else:
            sums[0] += row.events
            sums[1] += row.input_tokens
            sums[2] += row.cached_input_tokens
            sums[3] += row.cache_write_tokens
            sums[4] += row.output_tokens
            sums[5] += row.reasoning_tokens
            sums[6] += row.cache_write_1h_tokens
    return {key: tuple(sums) for key, sums in totals.items()}


@dataclass(frozen=True, slots=True)
class FinalizedInvoice:
    """An invoice as finalized and stored: numbered, immutable, everything it prints.

    ``tenant_name`` is the tenant's display name when it was finalized, so that re-printing it
    gives the same document whatever happened to the catalog since."""

    invoice_number: str
    tenant_id: str
    tenant_name: str
    period: BillingPeriod
    period_label: str
    currency: str
    status: str
    finalized_at: datetime
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    total: Decimal
    discount_percent: Decimal = Decimal(0)
    """The governing contract's discount, which this invoice's own discount line took off;
    a closed period's contract cannot change, so reading it later gives the same value."""

    @property
    def issued_on(self) -> date:
        """The issue date: the UTC day it was finalized."""
        return self.finalized_at.astimezone(UTC).date()

    @property
    def amount_due(self) -> Decimal:
        """What the customer pays: the total (payments and credit notes are not tracked)."""
        return self.total


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who sends the invoices and on what terms: the letterhead of every invoice."""

    name: str
    address: tuple[str, ...] = ()
    tax_id: str = ""
    payment_terms_days: int = 30

    def __post_init__(self) -> None:
        if type(self.payment_terms_days) is not int or self.payment_terms_days < 0:
            raise InvoiceError(
                f"payment terms must be a whole number of days of 0 or more, got"
                f" {self.payment_terms_days!r}"
            )

    def due_on(self, invoice: FinalizedInvoice) -> date:
        """The due date: the issue date plus the payment terms (0 = due on receipt)."""
        return invoice.issued_on + timedelta(days=self.payment_terms_days)
