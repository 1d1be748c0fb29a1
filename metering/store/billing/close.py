"""Closing a period: one transaction per tenant that numbers its invoice, stores it and
records what the period billed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg

from metering.billing.close_policy import ClosePolicy
from metering.billing.invoice_errors import InvoiceError
from metering.billing.invoices import Issuer
from metering.billing.money import minor_unit
from metering.billing.periods import BillingPeriod
from metering.billing.prices import PricingError
from metering.billing.usage_rows import USAGE_COUNTS, UsageKey
from metering.store.billing.bills import Bill, compute_bill
from metering.store.billing.context import BillingContext
from metering.store.billing.errors import BillingError, BookChangedError
from metering.store.billing.guards import lock_tenant, show_moment
from metering.store.billing.prices import book_revision
from metering.store.billing.usage import summed_usage
from metering.store.hourly import HourlyUsage

NUMBER_PREFIX: Final = "INV"


class Outcome:
    INVOICED = "invoiced"
    NOTHING = "nothing to bill"
    ALREADY = "already closed"
    NOT_DUE = "not due"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TenantClose:
    """What closing a period did for one tenant."""

    tenant_id: str
    period_label: str
    outcome: str
    invoice_number: str | None = None
    currency: str | None = None
    total: Decimal | None = None
    lines: int = 0
    adjustments: int = 0
    detail: str = ""


Progress = Callable[[int, int, int], None]
"""``progress(tenants done, tenants in all, invoices created)``."""


def close_period(
    conn: psycopg.Connection,
    label: str,
    *,
    now: datetime,
    grace: timedelta,
    late_window: timedelta,
    tenant_id: str | None = None,
    issuer: Issuer,
    force: bool = False,
    progress: Progress | None = None,
) -> list[TenantClose]:
    """Finalizes period ``label`` for every tenant (or one): an invoice for each tenant with
    usage, a commitment shortfall or adjustments; a closed period without invoice for the
    others. Each tenant is one transaction, so ``conn`` must be in autocommit mode; a tenant
    that fails (no price, say) is rolled back, numbers included, and reported. Running it
    again creates nothing new. Each invoice stores ``issuer`` (name, address, tax id and
    payment terms), which its exports print from then on. When a period may be closed is
    ``ClosePolicy``'s to say: ``grace`` after its end, or any time after its start with
    ``force``."""
    if not conn.autocommit:
        raise ValueError(
            "close_period runs a transaction per tenant: pass an autocommit connection"
        )
    policy = ClosePolicy(grace)
    ctx = BillingContext.load(conn, late_window, tenant_id)
    tenants = list(ctx.tenant_names)
    summed = _bulk_usage(conn, ctx, tenants, label, now, policy, force)
    results: list[TenantClose] = []
    invoiced = 0
    for done, tenant in enumerate(tenants, start=1):
        try:
            try:
                result = _close_tenant(conn, ctx, tenant, label, now, policy, force, issuer, summed)
            except BookChangedError:  # an import came in: read the book again, then go on
                ctx, summed = BillingContext.load(conn, late_window, tenant_id), {}
                result = _close_tenant(conn, ctx, tenant, label, now, policy, force, issuer, summed)
        except (PricingError, InvoiceError, BillingError) as exc:
            result = TenantClose(tenant, label, Outcome.FAILED, detail=str(exc))
        results.append(result)
        invoiced += result.outcome == Outcome.INVOICED
        if progress is not None:
            progress(done, len(tenants), invoiced)
    return results


_BULK_FROM: Final = 2
"""Closing at least this many tenants of one period reads their usage in one pass."""


def _bulk_usage(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenants: Sequence[str],
    label: str,
    now: datetime,
    policy: ClosePolicy,
    force: bool,
) -> dict[BillingPeriod, dict[str, list[HourlyUsage]]]:
    """The usage of the periods that many tenants are about to close, read in one pass each
    (tenants of another anchor day have another period for the same label). Usage that
    arrives after this read is late usage, billed as an adjustment next time."""
    closed = {
        tenant
        for (tenant,) in conn.execute(
            "SELECT tenant_id FROM period_billing WHERE period_label = %s", (label,)
        )
    }
    due: dict[BillingPeriod, int] = {}
    for tenant in tenants:
        period = ctx.period(tenant, label)
        if tenant not in closed and policy.is_due(period, now, force=force):
            due[period] = due.get(period, 0) + 1
    return {
        period: summed_usage(conn, ctx, period)
        for period, count in due.items()
        if count >= _BULK_FROM
    }


def _close_tenant(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    label: str,
    now: datetime,
    policy: ClosePolicy,
    force: bool,
    issuer: Issuer,
    summed: Mapping[BillingPeriod, Mapping[str, Sequence[HourlyUsage]]],
) -> TenantClose:
    period = ctx.period(tenant_id, label)
    policy.check_started(period, tenant_id, now)
    if not policy.is_due(period, now, force=force):
        return TenantClose(
            tenant_id,
            label,
            Outcome.NOT_DUE,
            detail=f"can be closed from {show_moment(policy.due_at(period))}",
        )
    with conn.transaction():
        lock_tenant(conn, tenant_id, prices=True)
        closed = conn.execute(
            "SELECT i.invoice_number FROM period_billing p LEFT JOIN invoices i USING (invoice_id)"
            " WHERE p.tenant_id = %s AND p.period_start = %s",
            (tenant_id, period.start),
        ).fetchone()
        if closed is not None:
            return TenantClose(tenant_id, label, Outcome.ALREADY, invoice_number=closed[0])
        # No import can commit until this transaction ends; one that committed since the book
        # was read would be billed with stale prices, and its marks cleared unbilled.
        if book_revision(conn) != ctx.revision:
            raise BookChangedError
        bulk = summed.get(period)
        rows = bulk.get(tenant_id, []) if bulk is not None else None
        bill = compute_bill(conn, ctx, tenant_id, period, rows)
        with conn.pipeline():  # the writes go out together: one round trip, then commit
            numbered = _insert_invoice(conn, bill, now, issuer) if bill.billable else None
            _record_billing(conn, bill)
            number = numbered.fetchone()[0] if numbered is not None else None  # type: ignore[index]
    if number is None:
        return TenantClose(tenant_id, label, Outcome.NOTHING)
    return TenantClose(
        tenant_id,
        label,
        Outcome.INVOICED,
        invoice_number=number,
        currency=bill.draft.currency,
        total=bill.draft.total,
        lines=len(bill.draft.lines),
        adjustments=bill.adjustments,
    )


_INVOICE_ID: Final = "(SELECT invoice_id FROM invoices WHERE tenant_id = %s AND period_start = %s)"


def _insert_invoice(
    conn: psycopg.Connection, bill: Bill, now: datetime, issuer: Issuer
) -> psycopg.Cursor[Any]:
    """Queues the invoice and its lines; the returned cursor gives its number. The number is
    taken from the series' counter row in the same statement as the invoice is inserted, so
    a transaction that rolls back leaves no gap (and holds the counter row until it ends)."""
    draft = bill.draft
    series = f"{NUMBER_PREFIX}-{now.astimezone(UTC).year}"
    numbered = conn.execute(
        "WITH counter AS ("
        " INSERT INTO invoice_number_counters AS c (series, last_number) VALUES (%(series)s, 1)"
        " ON CONFLICT (series) DO UPDATE SET last_number = c.last_number + 1"
        " RETURNING last_number)"
        " INSERT INTO invoices (invoice_number, tenant_id, tenant_name, period_label,"
        " period_start, period_end, currency, minor_unit, subtotal, total, issuer_name,"
        " issuer_address, issuer_tax_id, payment_terms_days)"
        " SELECT %(series)s || '-'"
        " || lpad(last_number::text, greatest(6, length(last_number::text)), '0'),"
        " %(tenant)s, %(name)s, %(label)s, %(start)s, %(end)s, %(currency)s, %(minor)s,"
        " %(subtotal)s, %(total)s, %(issuer)s, %(address)s, %(tax_id)s, %(terms)s FROM counter"
        " RETURNING invoice_number",
        {
            "series": series,
            "tenant": bill.tenant_id,
            "name": bill.tenant_name,
            "label": bill.period.label,
            "start": bill.period.start,
            "end": bill.period.end,
            "currency": draft.currency,
            "minor": minor_unit(draft.currency),
            "subtotal": draft.subtotal,
            "total": draft.total,
            "issuer": issuer.name,
            "address": list(issuer.address),
            "tax_id": issuer.tax_id or None,
            "terms": issuer.payment_terms_days,
        },
    )
    adjusted = {check.label: check.period for check in bill.late}
    lines = draft.lines
    periods = [adjusted[line.adjusts_period] if line.adjusts_period else None for line in lines]
    conn.execute(  # one statement for all lines: one round trip
        "INSERT INTO invoice_lines (invoice_id, line_no, tenant_id, kind, model, token_class,"
        " service_tier, tier, long_context, quantity, unit_price_per_million, amount,"
        " adjusts_period, adjusts_period_start, adjusts_period_end)"
        f" SELECT {_INVOICE_ID}, n, %s, kind, model, token_class, service_tier, tier, long_context,"
        " quantity, price, amount, adjusts, adjusts_start, adjusts_end"
        " FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[],"
        " %s::bool[], %s::bigint[], %s::numeric[], %s::numeric[], %s::text[],"
        " %s::timestamptz[], %s::timestamptz[])"
        " AS l(n, kind, model, token_class, service_tier, tier, long_context, quantity, price,"
        " amount, adjusts, adjusts_start, adjusts_end)",
        (
            bill.tenant_id,
            bill.period.start,
            bill.tenant_id,
            list(range(1, len(lines) + 1)),
            [line.kind.value for line in lines],
            [line.model for line in lines],
            [line.token_class.value if line.token_class else None for line in lines],
            [line.service_tier for line in lines],
            [line.tier for line in lines],
            [line.long_context for line in lines],
            [line.quantity for line in lines],
            [line.unit_price_per_million for line in lines],
            [line.amount for line in lines],
            [line.adjusts_period for line in lines],
            [period.start if period else None for period in periods],
            [period.end if period else None for period in periods],
        ),
    )
    return numbered


def _record_billing(conn: psycopg.Connection, bill: Bill) -> None:
    """The period is closed (with its invoice, if one was inserted); it billed
    ``bill.totals``; the adjusted periods now have billed their usage as it is now; every
    closed period looked at was checked now."""
    conn.execute(
        "INSERT INTO period_billing (tenant_id, period_start, period_end, period_label,"
        f" invoice_id) VALUES (%s, %s, %s, %s, {_INVOICE_ID})",
        (
            bill.tenant_id,
            bill.period.start,
            bill.period.end,
            bill.period.label,
            bill.tenant_id,
            bill.period.start,
        ),
    )
    _write_totals(conn, bill.tenant_id, bill.period, bill.totals)
    for check in bill.late:
        conn.execute(  # the close holds the prices lock at the book's revision: see _close_tenant
            "UPDATE period_billing SET checked_at = now(), repriced_by = NULL"
            " WHERE tenant_id = %s AND period_start = %s",
            (bill.tenant_id, check.period.start),
        )
        if check.changed:
            conn.execute(
                "DELETE FROM billed_usage WHERE tenant_id = %s AND period_start = %s",
                (bill.tenant_id, check.period.start),
            )
            _write_totals(conn, bill.tenant_id, check.period, check.totals)


def _write_totals(
    conn: psycopg.Connection,
    tenant_id: str,
    period: BillingPeriod,
    totals: Mapping[UsageKey, tuple[int, ...]],
) -> None:
    if not totals:
        return
    keys = list(totals)
    counts = [[totals[key][n] for key in keys] for n in range(len(USAGE_COUNTS))]
    conn.execute(  # one statement for all rows: one round trip
        f"INSERT INTO billed_usage (tenant_id, period_start, model, service_tier, long_context,"
        f" {', '.join(USAGE_COUNTS)})"
        " SELECT %s, %s, * FROM unnest(%s::text[], %s::text[], %s::bool[],"
        + ", ".join(["%s::bigint[]"] * len(USAGE_COUNTS))
        + ")",
        (
            tenant_id,
            period.start,
            [key[0] for key in keys],
            [key[1] for key in keys],
            [key[2] for key in keys],
            *counts,
        ),
    )
