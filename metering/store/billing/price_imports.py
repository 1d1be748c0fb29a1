"""Importing a price file: refusals, the closed periods a correction re-rates, the
long-context thresholds it sets in the model catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from metering.billing.money import exact_sum
from metering.billing.periods import BillingPeriod
from metering.billing.price_book import PriceBook
from metering.billing.price_changes import ImportPlan, Repricing, plan_import, repricings
from metering.billing.prices import PriceBookError, PriceEntry, PricingError
from metering.store.billing.bills import recheck
from metering.store.billing.context import BillingContext
from metering.store.billing.errors import BillingError, PricesChangedError, PricesReachInvoicedError
from metering.store.billing.guards import PRICES_LOCK, closed_until, show_moment
from metering.store.billing.prices import PRICE_COLUMNS, load_price_entries, price_entry_values


@dataclass(frozen=True, slots=True)
class Correction:
    """What a price correction does to one closed period of a tenant: the next invoice of the
    tenant adds ``amount`` (negative: a credit) in ``lines`` adjustment lines that name
    ``period_label``, whose own invoice (``invoice_number``, if it had one) never changes.
    The amount is everything that next invoice will adjust the period by, so it includes
    late usage of the period not adjusted yet."""

    tenant_id: str
    period_label: str
    invoice_number: str | None
    currency: str
    amount: Decimal
    lines: int


@dataclass(frozen=True, slots=True)
class PriceImport:
    """What ``import_prices`` did, or would do in a dry run. ``thresholds`` lists ``(model,
    old, new)`` long-context thresholds set in the model catalog; ``uncataloged`` models have
    a long-context rule but are not in the catalog (ingest rejects their events until they
    are added). ``retroactive`` entries change prices inside periods already invoiced (they
    need ``correct_invoiced``); ``corrections`` are the closed periods whose bills they
    change. ``added_entries`` and ``replaced_entries`` are what it stores."""

    added: int
    unchanged: int
    replaced: int
    thresholds: tuple[tuple[str, int | None, int], ...] = ()
    uncataloged: tuple[str, ...] = ()
    retroactive: int = 0
    corrections: tuple[Correction, ...] = ()
    added_entries: tuple[PriceEntry, ...] = ()
    replaced_entries: tuple[PriceEntry, ...] = ()


def import_prices(
    conn: psycopg.Connection,
    entries: Sequence[PriceEntry],
    *,
    replace_changed: bool = False,
    correct_invoiced: bool = False,
    dry_run: bool = False,
    source: str | None = None,
) -> PriceImport:
    """Stores a price file's entries; importing the same entries again changes nothing.

    An entry whose key is stored with another price or ``effective_to`` is *changed*: refused
    unless ``replace_changed``. A change of prices already in effect (``repricings``) inside
    a period already closed is refused unless ``correct_invoiced``: then every closed period
    of a tenant whose bill it changes is marked, and the tenant's next invoice adjusts it (see
    ``compute_bill``). The stored book plus the file must still be a valid ``PriceBook``.
    Long-context rules set the model catalog's ``long_context_above`` (the threshold of the
    model's latest rule), which ingest uses to flag requests. ``dry_run`` checks and computes
    everything, refuses nothing for want of a flag, and stores nothing."""
    with conn.transaction():
        conn.execute("LOCK TABLE price_entries IN SHARE ROW EXCLUSIVE MODE")
        conn.execute(f"SELECT pg_advisory_xact_lock({PRICES_LOCK})")
        stored = load_price_entries(conn)
        plan = plan_import(stored, entries)
        if plan.changed and not (replace_changed or dry_run):
            raise _changed_refusal(plan)
        replaced_keys = {old.key for old, _ in plan.changed}
        merged = [
            *(e for e in stored if e.key not in replaced_keys),
            *(new for _, new in plan.changed),
            *plan.added,
        ]
        try:
            book = PriceBook(merged)
        except PriceBookError as exc:
            raise BillingError(
                f"{exc}\n(checked together with the prices already stored)"
            ) from None
        until = closed_until(conn)
        retroactive = [
            r for r in repricings(stored, plan) if until is not None and r.reaches_before(until)
        ]
        if until is not None and retroactive and not (correct_invoiced or dry_run):
            raise _retroactive_refusal(retroactive, until)
        marked, corrections = _corrections(conn, book, retroactive)
        result = PriceImport(
            added=len(plan.added),
            unchanged=len(plan.unchanged),
            replaced=len(plan.changed),
            retroactive=len(retroactive),
            corrections=tuple(corrections),
            added_entries=plan.added,
            replaced_entries=tuple(new for _, new in plan.changed),
        )
        if dry_run or plan.is_noop:
            return result
        _store_entries(conn, plan)
        _record_import(conn, plan, source, corrected=bool(retroactive), marked=marked)
        touched = {
            e.model
            for e in (*plan.added, *(new for _, new in plan.changed))
            if e.long_context_above is not None
        }
        thresholds, uncataloged = _set_long_context_thresholds(conn, merged, touched)
    return replace(result, thresholds=thresholds, uncataloged=uncataloged)


def _changed_refusal(plan: ImportPlan) -> PricesChangedError:
    """Every entry the file changes, one line each, and how to write the file instead."""
    return PricesChangedError(
        "\n".join(
            f"{new.source or new.describe()}: {new.describe()} from"
            f" {show_moment(new.effective_from)} is stored as {old.price_per_million} until"
            f" {show_moment(old.effective_to)}; the file says {new.price_per_million} until"
            f" {show_moment(new.effective_to)}"
            for old, new in plan.changed
        )
        + "\nadd a new block from the moment the price changes (ending the old one"
        " with effective_to)"
    )


def _record_import(
    conn: psycopg.Connection,
    plan: ImportPlan,
    source: str | None,
    *,
    corrected: bool,
    marked: Sequence[tuple[str, datetime]],
) -> None:
    """The import as a revision of the book (``price_imports``), and the closed periods it
    re-rates marked with it, for their tenants' next invoices to adjust."""
    import_id = conn.execute(
        "INSERT INTO price_imports (source, added, replaced, corrected)"
        " VALUES (%s, %s, %s, %s) RETURNING import_id",
        (source, len(plan.added), len(plan.changed), corrected),
    ).fetchone()[0]  # type: ignore[index]
    if marked:
        conn.execute(
            "UPDATE period_billing p SET repriced_by = %s"
            " FROM unnest(%s::text[], %s::timestamptz[]) AS m(tenant_id, period_start)"
            " WHERE p.tenant_id = m.tenant_id AND p.period_start = m.period_start",
            (import_id, [t for t, _ in marked], [s for _, s in marked]),
        )


def _store_entries(conn: psycopg.Connection, plan: ImportPlan) -> None:
    if plan.added:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO price_entries ({PRICE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [price_entry_values(e) for e in plan.added],
            )
    for _, new in plan.changed:
        conn.execute(
            "UPDATE price_entries SET price_per_million = %s, effective_to = %s, source = %s,"
            " imported_at = now()"
            " WHERE model = %s AND token_class = %s AND service_tier = %s AND currency = %s"
            " AND long_context_above IS NOT DISTINCT FROM %s"
            " AND tier_up_to IS NOT DISTINCT FROM %s AND effective_from = %s",
            (
                new.price_per_million,
                new.effective_to,
                new.source,
                new.model,
                new.token_class.value,
                new.service_tier,
                new.currency,
                new.long_context_above,
                new.tier_up_to,
                new.effective_from,
            ),
        )


def _retroactive_refusal(
    retroactive: Sequence[Repricing], until: datetime
) -> PricesReachInvoicedError:
    """One line: the first entry that reaches into invoiced periods."""
    first = retroactive[0]
    more = f" (and {len(retroactive) - 1} more entries)" if len(retroactive) > 1 else ""
    return PricesReachInvoicedError(
        f"{first.entry.source or first.entry.describe()}: {first.entry.describe()} changes"
        f" prices from {show_moment(first.since)}, inside periods already invoiced (until"
        f" {show_moment(until)}){more}"
    )


def _corrections(
    conn: psycopg.Connection, book: PriceBook, retroactive: Sequence[Repricing]
) -> tuple[list[tuple[str, datetime]], list[Correction]]:
    """The closed periods whose bill ``book`` changes, of the tenants that used a model in a
    span it reprices: ``(tenant, period start)`` to mark, and what their next invoices will
    adjust. Re-rated exactly as the next close will (``recheck``)."""
    if not retroactive:
        return [], []
    candidates = conn.execute(
        "SELECT DISTINCT p.tenant_id, p.period_start, p.period_end, p.period_label,"
        " i.invoice_number"
        " FROM period_billing p"
        " JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS s(model, since, until)"
        "   ON p.period_end > s.since AND (s.until IS NULL OR p.period_start < s.until)"
        " LEFT JOIN invoices i ON i.invoice_id = p.invoice_id"
        " WHERE EXISTS (SELECT 1 FROM usage_hourly u"
        "  WHERE u.tenant_id = p.tenant_id AND u.model = s.model"
        "    AND u.hour >= greatest(p.period_start, s.since)"
        "    AND u.hour < least(p.period_end, coalesce(s.until, 'infinity')))"
        " ORDER BY p.tenant_id, p.period_start",
        (
            [r.entry.model for r in retroactive],
            [r.since for r in retroactive],
            [r.until for r in retroactive],
        ),
    ).fetchall()
    if not candidates:
        return [], []
    ctx = replace(BillingContext.load(conn, timedelta(0)), book=book)
    marked: list[tuple[str, datetime]] = []
    corrections: list[Correction] = []
    for tenant_id, start, end, label, number in candidates:
        period = BillingPeriod(start, end)
        try:
            check = recheck(conn, ctx, tenant_id, period, label)
        except PricingError as exc:
            raise BillingError(
                f"re-rating {label} of {tenant_id} with these prices: {exc}"
            ) from None
        if not check.lines:
            continue
        marked.append((tenant_id, start))
        corrections.append(
            Correction(
                tenant_id,
                label,
                number,
                ctx.contract(tenant_id, period).currency,
                exact_sum(line.amount for line in check.lines),
                len(check.lines),
            )
        )
    return marked, corrections


def _set_long_context_thresholds(
    conn: psycopg.Connection, entries: Sequence[PriceEntry], models: set[str]
) -> tuple[tuple[tuple[str, int | None, int], ...], tuple[str, ...]]:
    changes: list[tuple[str, int | None, int]] = []
    uncataloged: list[str] = []
    for model in sorted(models):
        rules = [e for e in entries if e.model == model and e.long_context_above is not None]
        latest = max(rules, key=lambda e: (e.effective_from, e.long_context_above or 0))
        threshold = latest.long_context_above
        assert threshold is not None
        row = conn.execute(
            "SELECT long_context_above FROM models WHERE model_id = %s FOR UPDATE", (model,)
        ).fetchone()
        if row is None:
            uncataloged.append(model)
        elif row[0] != threshold:
            conn.execute(
                "UPDATE models SET long_context_above = %s WHERE model_id = %s", (threshold, model)
            )
            changes.append((model, row[0], threshold))
    return tuple(changes), tuple(uncataloged)
