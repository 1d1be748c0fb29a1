"""Invoices: lines, drafts built from usage, adjustments of closed periods, and the
finalized invoice with its issuer.

Pure: every input is a plain value the database can give (contracts, price entries, hourly
usage rows, lines already invoiced) and every output a frozen dataclass it can store. The
rules in prose are in ``docs/billing.md``; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from metering.billing.contracts import Contract
from metering.billing.invoice_errors import InvoiceError
from metering.billing.money import MONEY, exact_sum, minor_unit
from metering.billing.periods import BillingPeriod
from metering.billing.price_book import PriceBook
from metering.billing.rating import EXACT, Charge, rate
from metering.billing.tokens import TokenClass
from metering.billing.usage_rows import TenantUsage


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
    _check_inputs(tenant_id, period, contract, usage_rows, adjustments)
    currency = contract.currency
    quantum = minor_unit(currency)
    book = price_book.with_overrides(contract.price_overrides)
    lines = [_usage_line(charge, quantum) for charge in rate(book, usage_rows, currency)]
    subtotal = exact_sum(line.amount for line in lines)

    net = subtotal
    discount = MONEY.quantize(
        EXACT.scaleb(EXACT.multiply(subtotal, contract.discount_percent), -2), quantum
    )
    if discount:
        net = EXACT.subtract(subtotal, discount)
        lines.append(_money_line(LineKind.DISCOUNT, EXACT.minus(discount)))
    minimum = contract.minimum_commitment
    if minimum is not None and net < minimum:
        shortfall = MONEY.quantize(EXACT.subtract(minimum, net), quantum)
        lines.append(_money_line(LineKind.COMMITMENT, shortfall))
    lines.extend(sorted(adjustments, key=lambda line: line.adjusts_period or ""))
    return InvoiceDraft(
        tenant_id=tenant_id,
        period=period,
        currency=currency,
        lines=tuple(lines),
        subtotal=MONEY.quantize(subtotal, quantum),
        total=MONEY.quantize(exact_sum(line.amount for line in lines), quantum),
    )


def _check_inputs(
    tenant_id: str,
    period: BillingPeriod,
    contract: Contract,
    usage_rows: Sequence[TenantUsage],
    adjustments: Sequence[InvoiceLine],
) -> None:
    """``build_invoice``'s inputs belong together: the tenant's contract during the period,
    its usage in the period, adjustments of earlier periods."""
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
        amount=MONEY.quantize(charge.exact_amount, quantum),
        long_context=charge.long_context,
    )


def _money_line(kind: LineKind, amount: Decimal) -> InvoiceLine:
    return InvoiceLine(kind, None, None, None, None, 0, None, amount)


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
    issuer: Issuer | None = None
    """Who issued it and on what terms, as set when it was finalized; ``None`` for invoices
    finalized before that was stored (see ``issued_by``)."""

    def issued_by(self, current: Issuer) -> Issuer:
        """The issuer to print: the one stored with the invoice, so that changing the settings
        changes no issued invoice; ``current`` (from the settings) for an invoice finalized
        before issuers were stored."""
        return self.issuer if self.issuer is not None else current

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
