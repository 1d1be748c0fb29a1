"""A tenant's bill for a period as it stands: its usage now, and the adjustments its
earlier closed periods need. Reads only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from metering.billing.close_policy import may_get_late_usage
from metering.billing.contracts import Contract
from metering.billing.invoices import InvoiceDraft, InvoiceLine, adjustment_lines, build_invoice
from metering.billing.periods import BillingPeriod
from metering.billing.usage_rows import UsageKey, usage_totals
from metering.store.billing.context import BillingContext
from metering.store.billing.invoices import LINE_COLUMNS, invoice_line
from metering.store.billing.usage import complete_usage, period_usage, sums_billed, sums_now


@dataclass(frozen=True, slots=True)
class LateCheck:
    """A closed period of the tenant compared with its usage now. ``totals`` is its usage now
    when it ``changed`` (what ``billed_usage`` must say once the adjustments are billed)."""

    period: BillingPeriod
    label: str
    changed: bool
    totals: Mapping[UsageKey, tuple[int, ...]] = field(default_factory=dict)
    lines: tuple[InvoiceLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Bill:
    """One tenant's invoice for one period as it stands: the draft, the usage it bills, and
    the closed periods it adjusts."""

    tenant_id: str
    tenant_name: str
    period: BillingPeriod
    contract: Contract
    draft: InvoiceDraft
    totals: Mapping[UsageKey, tuple[int, ...]]
    late: tuple[LateCheck, ...]

    @property
    def adjustments(self) -> int:
        return sum(len(check.lines) for check in self.late)

    @property
    def billable(self) -> bool:
        """Usage, a commitment shortfall or adjustments make an invoice; nothing at all does
        not."""
        return bool(self.totals) or bool(self.draft.lines)


def compute_bill(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    period: BillingPeriod,
    summed: Sequence[Any] | None = None,
) -> Bill:
    """The invoice of ``tenant_id`` for ``period`` from the usage as it is now, with the
    adjustments its earlier closed periods need. Reads only. ``summed`` are the tenant's
    rows from ``summed_usage`` when a bulk close has read them already."""
    contract = ctx.contract(tenant_id, period)
    if summed is None:
        rows = period_usage(conn, ctx, tenant_id, period)
    else:
        rows = complete_usage(conn, ctx, tenant_id, period, summed)
    late = tuple(_late_checks(conn, ctx, tenant_id, period))
    adjustments = [line for check in late for line in check.lines]
    draft = build_invoice(tenant_id, period, contract, ctx.book, rows, adjustments)
    return Bill(
        tenant_id=tenant_id,
        tenant_name=ctx.tenant_names.get(tenant_id, tenant_id),
        period=period,
        contract=contract,
        draft=draft,
        totals=usage_totals(rows),
        late=late,
    )


def _late_checks(
    conn: psycopg.Connection, ctx: BillingContext, tenant_id: str, period: BillingPeriod
) -> Iterable[LateCheck]:
    """Closed periods before ``period`` that late usage may still reach (checked last before
    their end plus the late window), compared with what they billed; and those a price
    correction marked (``repriced_by``), re-rated whatever their usage and age."""
    closed = conn.execute(
        "SELECT period_start, period_end, period_label, checked_at, repriced_by IS NOT NULL"
        " FROM period_billing WHERE tenant_id = %s AND period_start < %s ORDER BY period_start",
        (tenant_id, period.start),
    ).fetchall()
    for start, end, label, checked_at, repriced in closed:
        earlier = BillingPeriod(start, end)
        if not (repriced or may_get_late_usage(earlier, checked_at, ctx.late_window)):
            continue
        if not repriced and sums_now(conn, tenant_id, earlier) == sums_billed(
            conn, tenant_id, earlier
        ):
            yield LateCheck(earlier, label, changed=False)
            continue
        yield recheck(conn, ctx, tenant_id, earlier, label)


def recheck(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    period: BillingPeriod,
    label: str,
) -> LateCheck:
    """A closed period billed again in full from its usage now and ``ctx.book``, compared with
    everything billed for it so far: the one calculation behind late usage and price
    corrections (``adjustment_lines``)."""
    rows = period_usage(conn, ctx, tenant_id, period)
    billed = _billed_lines(conn, tenant_id, period, label)
    contract = ctx.contract(tenant_id, period)
    lines = adjustment_lines(period, contract, ctx.book, rows, billed)
    return LateCheck(period, label, changed=True, totals=usage_totals(rows), lines=lines)


def _billed_lines(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod, label: str
) -> list[InvoiceLine]:
    """What a closed period has billed: its own invoice's lines (those that bill it, not the
    older periods it adjusts) and every later line that adjusted it."""
    rows = conn.execute(
        f"SELECT {', '.join('l.' + c.strip() for c in LINE_COLUMNS.split(','))}"
        "  FROM invoice_lines l JOIN invoices i USING (invoice_id)"
        " WHERE l.tenant_id = %(t)s"
        "   AND ((i.period_start = %(start)s AND l.adjusts_period IS NULL)"
        "        OR l.adjusts_period = %(label)s)"
        " ORDER BY i.finalized_at, l.invoice_id, l.line_no",
        {"t": tenant_id, "start": period.start, "label": label},
    )
    return [invoice_line(row) for row in rows]
