"""Billing in the database: the price book, contracts and overrides, closing periods into
numbered, immutable invoices, and the bookkeeping of what each closed period has billed.

Thin on purpose: prices, contracts, invoices and adjustments are computed by the pure core
(``metering.billing.pricing``, ``metering.billing.invoicing``); this module reads its
inputs and stores its outputs. The rules in prose are in ``docs/billing.md``.

Closing a period for a tenant is one transaction: an advisory lock on the tenant, the usage
of the period, the adjustments of earlier closed periods that got late usage, the invoice with
a number taken from a counter row (so a rolled-back close leaves no gap), its lines, and the
record of what the period billed (``period_billing``, ``billed_usage``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg.rows import namedtuple_row

from metering.billing.events import SERVICE_TIERS
from metering.billing.invoicing import (
    USAGE_COUNTS,
    BillingPeriod,
    Contract,
    FinalizedInvoice,
    InvoiceDraft,
    InvoiceError,
    InvoiceLine,
    LineKind,
    UsageKey,
    adjustment_lines,
    anchor_day_of,
    build_invoice,
    contract_for_period,
    contract_history,
    exact_sum,
    minor_unit,
    period_for,
    period_from_label,
    usage_totals,
)
from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceBookError, PriceEntry, PricingError
from metering.billing.tokens import TokenClass
from metering.files.price_files import ImportPlan, Repricing, plan_import, repricings
from metering.store.hourly import HourlyUsage

NUMBER_PREFIX: Final = "INV"


class BillingError(ValueError):
    """Something about billing a person has to fix; the message says what and how."""


class BookChangedError(BillingError):
    """The price book changed after a close read it; that close must read it again."""

    def __init__(self) -> None:
        super().__init__("the price book changed while the period was being closed: close it again")


_PRICES_LOCK: Final = "hashtextextended('metering.billing:prices', 0)"
"""An advisory lock key: an import holds it exclusively, each tenant's close shared, so that a
close never bills with a book that an import is changing (see ``_close_tenant``)."""


def _lock_tenant(conn: psycopg.Connection, tenant_id: str, *, prices: bool = False) -> None:
    """Serializes contract changes and closes of one tenant (until the transaction ends);
    ``prices`` also holds off price imports (a shared hold on ``_PRICES_LOCK``)."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('metering.billing:' || %s, 0))"
        + (f", pg_advisory_xact_lock_shared({_PRICES_LOCK})" if prices else ""),
        (tenant_id,),
    )


def _show(moment: datetime | None) -> str:
    if moment is None:
        return "(open)"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- price book --------------------------------------------------------------------------------

_PRICE_COLUMNS: Final = (
    "model, token_class, service_tier, currency, price_per_million, effective_from,"
    " effective_to, tier_up_to, long_context_above, source"
)


def _entry(row: Sequence[Any]) -> PriceEntry:
    model, token_class, tier, currency, price, start, end, up_to, above, source = row
    return PriceEntry(
        model, TokenClass(token_class), tier, currency, price, start, end, up_to, above, source
    )


def _entry_values(entry: PriceEntry) -> tuple[Any, ...]:
    return (
        entry.model,
        entry.token_class.value,
        entry.service_tier,
        entry.currency,
        entry.price_per_million,
        entry.effective_from,
        entry.effective_to,
        entry.tier_up_to,
        entry.long_context_above,
        entry.source,
    )


PRICE_ENTRIES_QUERY: Final = f"SELECT {_PRICE_COLUMNS} FROM price_entries ORDER BY entry_id"
BOOK_REVISION_QUERY: Final = "SELECT coalesce(max(import_id), 0) FROM price_imports"
"""The price book's revision: the latest import that changed it (0: none yet)."""


def load_price_entries(conn: psycopg.Connection) -> list[PriceEntry]:
    return [_entry(row) for row in conn.execute(PRICE_ENTRIES_QUERY)]


def load_price_book(conn: psycopg.Connection) -> PriceBook:
    return PriceBook(load_price_entries(conn))


async def load_price_book_async(conn: psycopg.AsyncConnection) -> PriceBook:
    """``load_price_book`` for the worker's connections."""
    cursor = await conn.execute(PRICE_ENTRIES_QUERY)
    return PriceBook([_entry(row) for row in await cursor.fetchall()])


def has_price(conn: psycopg.Connection, model: str, moment: datetime) -> bool:
    """Whether ``model`` has list prices in effect at ``moment`` on any service tier."""
    book = load_price_book(conn)
    return any(book.find(model, tier, moment) is not None for tier in SERVICE_TIERS)


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


def closed_until(conn: psycopg.Connection, tenant_id: str | None = None) -> datetime | None:
    """The end of the latest closed period (of one tenant, or of any): what is billed before
    it must not change any more."""
    row = conn.execute(
        "SELECT max(period_end) FROM period_billing WHERE %(t)s::text IS NULL OR tenant_id = %(t)s",
        {"t": tenant_id},
    ).fetchone()
    return row[0] if row else None


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
        conn.execute(f"SELECT pg_advisory_xact_lock({_PRICES_LOCK})")
        stored = load_price_entries(conn)
        plan = plan_import(stored, entries)
        if plan.changed and not (replace_changed or dry_run):
            raise BillingError(
                "\n".join(
                    f"{new.source or new.describe()}: {new.describe()} from"
                    f" {_show(new.effective_from)} is stored as {old.price_per_million} until"
                    f" {_show(old.effective_to)}; the file says {new.price_per_million} until"
                    f" {_show(new.effective_to)}"
                    for old, new in plan.changed
                )
                + "\nadd a new block from the moment the price changes (ending the old one"
                " with effective_to), or pass --replace to replace the stored entries"
            )
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
        import_id = conn.execute(
            "INSERT INTO price_imports (source, added, replaced, corrected)"
            " VALUES (%s, %s, %s, %s) RETURNING import_id",
            (source, len(plan.added), len(plan.changed), bool(retroactive)),
        ).fetchone()[0]  # type: ignore[index]
        if marked:
            conn.execute(
                "UPDATE period_billing p SET repriced_by = %s"
                " FROM unnest(%s::text[], %s::timestamptz[]) AS m(tenant_id, period_start)"
                " WHERE p.tenant_id = m.tenant_id AND p.period_start = m.period_start",
                (import_id, [t for t, _ in marked], [s for _, s in marked]),
            )
        touched = {
            e.model
            for e in (*plan.added, *(new for _, new in plan.changed))
            if e.long_context_above is not None
        }
        thresholds, uncataloged = _set_long_context_thresholds(conn, merged, touched)
    return replace(result, thresholds=thresholds, uncataloged=uncataloged)


def _store_entries(conn: psycopg.Connection, plan: ImportPlan) -> None:
    if plan.added:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO price_entries ({_PRICE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [_entry_values(e) for e in plan.added],
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


def _retroactive_refusal(retroactive: Sequence[Repricing], until: datetime) -> BillingError:
    """One line: the first entry that reaches into invoiced periods, and what to do."""
    first = retroactive[0]
    more = f" (and {len(retroactive) - 1} more entries)" if len(retroactive) > 1 else ""
    return BillingError(
        f"{first.entry.source or first.entry.describe()}: {first.entry.describe()} changes"
        f" prices from {_show(first.since)}, inside periods already invoiced (until"
        f" {_show(until)}){more}: see which invoices it would adjust with --dry-run, then"
        " import it with --correct-invoiced to bill the difference on each tenant's next"
        " invoice"
    )


def _corrections(
    conn: psycopg.Connection, book: PriceBook, retroactive: Sequence[Repricing]
) -> tuple[list[tuple[str, datetime]], list[Correction]]:
    """The closed periods whose bill ``book`` changes, of the tenants that used a model in a
    span it reprices: ``(tenant, period start)`` to mark, and what their next invoices will
    adjust. Re-rated exactly as the next close will (``_recheck``)."""
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
            check = _recheck(conn, ctx, tenant_id, period, label)
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


# --- contracts and overrides ----------------------------------------------------------------

_CONTRACT_COLUMNS: Final = (
    "tenant_id, currency, anchor_day, discount_percent, minimum_commitment, effective_from,"
    " effective_to"
)


class _Keep:
    """Leave this term as the previous contract version has it."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


def _contract(row: Sequence[Any]) -> Contract:
    tenant_id, currency, anchor_day, discount, minimum, start, end = row
    return Contract(
        tenant_id,
        currency,
        start,
        effective_to=end,
        anchor_day=anchor_day,
        discount_percent=discount,
        minimum_commitment=minimum,
    )


def contracts_of(conn: psycopg.Connection, tenant_id: str) -> list[Contract]:
    """A tenant's contract versions, oldest first (without the default terms)."""
    rows = conn.execute(
        f"SELECT {_CONTRACT_COLUMNS} FROM contracts WHERE tenant_id = %s ORDER BY effective_from",
        (tenant_id,),
    )
    return [_contract(row) for row in rows]


def all_contracts(conn: psycopg.Connection) -> dict[str, list[Contract]]:
    result: dict[str, list[Contract]] = {}
    rows = conn.execute(
        f"SELECT {_CONTRACT_COLUMNS} FROM contracts ORDER BY tenant_id, effective_from"
    )
    for row in rows:
        result.setdefault(row[0], []).append(_contract(row))
    return result


def overrides_of(
    conn: psycopg.Connection, tenant_id: str | None = None
) -> dict[str, list[PriceEntry]]:
    """Price overrides per tenant (of one tenant, or of all)."""
    result: dict[str, list[PriceEntry]] = {}
    rows = conn.execute(
        f"SELECT tenant_id, {_PRICE_COLUMNS} FROM tenant_price_overrides"
        " WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, override_id",
        {"t": tenant_id},
    )
    for row in rows:
        result.setdefault(row[0], []).append(_entry(row[1:]))
    return result


def require_tenant(conn: psycopg.Connection, tenant_id: str) -> str:
    row = conn.execute("SELECT display_name FROM tenants WHERE tenant_id = %s", (tenant_id,))
    found = row.fetchone()
    if found is None:
        raise BillingError(
            f"unknown tenant {tenant_id!r}: add it with `metering tenants add {tenant_id}`"
        )
    return str(found[0])


def _refuse_before_closed(
    conn: psycopg.Connection, tenant_id: str, moment: datetime, what: str
) -> None:
    until = closed_until(conn, tenant_id)
    if until is not None and moment < until:
        raise BillingError(
            f"{what} of {tenant_id} cannot take effect at {_show(moment)}: {tenant_id} is"
            f" invoiced until {_show(until)}, and a finalized invoice never changes; use"
            f" --effective-from {_show(until)} or later"
        )


def set_contract(
    conn: psycopg.Connection,
    tenant_id: str,
    effective_from: datetime,
    *,
    currency: str | _Keep = KEEP,
    anchor_day: int | _Keep = KEEP,
    discount_percent: Decimal | _Keep = KEEP,
    minimum_commitment: Decimal | _Keep | None = KEEP,
) -> tuple[Contract, bool]:
    """Adds a contract version from ``effective_from`` with the given terms, the others
    carried over from the version it follows (or the defaults). The version in effect then
    ends there; a later version, if any, ends the new one. Returns the version and whether
    anything changed (the same terms at the same moment are a no-op)."""
    with conn.transaction():
        _lock_tenant(conn, tenant_id)
        require_tenant(conn, tenant_id)
        _refuse_before_closed(conn, tenant_id, effective_from, "a contract change")
        history = contracts_of(conn, tenant_id)
        before = [c for c in history if c.effective_from <= effective_from]
        after = [c for c in history if c.effective_from > effective_from]
        base = before[-1] if before else contract_history(tenant_id, [])[0]
        new = Contract(
            tenant_id,
            base.currency if isinstance(currency, _Keep) else currency,
            effective_from,
            effective_to=after[0].effective_from if after else None,
            anchor_day=base.anchor_day if isinstance(anchor_day, _Keep) else anchor_day,
            discount_percent=(
                base.discount_percent if isinstance(discount_percent, _Keep) else discount_percent
            ),
            minimum_commitment=(
                base.minimum_commitment
                if isinstance(minimum_commitment, _Keep)
                else minimum_commitment
            ),
        )
        _check_anchor_day(conn, tenant_id, history, new.anchor_day)
        _check_override_currency(conn, tenant_id, new)
        same = before[-1] if before and before[-1].effective_from == effective_from else None
        if same is not None:
            if same == new:
                return new, False
            conn.execute(
                "UPDATE contracts SET currency = %s, anchor_day = %s, discount_percent = %s,"
                " minimum_commitment = %s WHERE tenant_id = %s AND effective_from = %s",
                (
                    new.currency,
                    new.anchor_day,
                    new.discount_percent,
                    new.minimum_commitment,
                    tenant_id,
                    effective_from,
                ),
            )
            return new, True
        if before:
            conn.execute(
                "UPDATE contracts SET effective_to = %s"
                " WHERE tenant_id = %s AND effective_from = %s",
                (effective_from, tenant_id, before[-1].effective_from),
            )
        conn.execute(
            f"INSERT INTO contracts ({_CONTRACT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                tenant_id,
                new.currency,
                new.anchor_day,
                new.discount_percent,
                new.minimum_commitment,
                new.effective_from,
                new.effective_to,
            ),
        )
    return new, True


def _check_anchor_day(
    conn: psycopg.Connection, tenant_id: str, history: Sequence[Contract], anchor_day: int
) -> None:
    current = history[0].anchor_day if history else None
    if current is None:
        row = conn.execute(
            "SELECT period_start FROM period_billing WHERE tenant_id = %s LIMIT 1", (tenant_id,)
        ).fetchone()
        current = 1 if row is not None else None  # closed on the default terms' calendar months
    if current is not None and current != anchor_day:
        raise BillingError(
            f"{tenant_id} is billed from anchor day {current}; changing the anchor day is not"
            " supported (the period in which it changes would be irregular)"
        )


def _check_override_currency(conn: psycopg.Connection, tenant_id: str, contract: Contract) -> None:
    for entry in overrides_of(conn, tenant_id).get(tenant_id, []):
        starts_before_end = contract.effective_to is None or entry.effective_from < (
            contract.effective_to
        )
        ends_after_start = entry.effective_to is None or entry.effective_to > (
            contract.effective_from
        )
        if entry.currency != contract.currency and starts_before_end and ends_after_start:
            raise BillingError(
                f"{tenant_id} has a price override {entry.describe()} in {entry.currency} from"
                f" {_show(entry.effective_from)}; a contract in {contract.currency} cannot"
                " apply while it does: end it first (`metering tenants override ... --price"
                " list`)"
            )


@dataclass(frozen=True, slots=True)
class Bands:
    """An override's price: one flat price, or graduated bands ``((up_to, price), ...)`` with
    ``None`` as the top band's bound."""

    bands: tuple[tuple[int | None, Decimal], ...]

    @classmethod
    def parse(cls, text: str) -> Bands:
        """``2.50`` or ``1000000:2.00,1.50`` (the first million tokens at 2.00, then 1.50)."""
        bands: list[tuple[int | None, Decimal]] = []
        parts = [p.strip() for p in text.split(",")]
        for index, part in enumerate(parts):
            bound, _, price = part.rpartition(":")
            try:
                amount = Decimal(price.strip())
                up_to = int(bound.replace("_", "")) if bound else None
            except ArithmeticError:
                raise BillingError(f"price {part!r} is not a decimal amount such as 2.50") from None
            except ValueError:
                raise BillingError(
                    f"band bound {bound!r} is not a whole number of tokens"
                ) from None
            if not amount.is_finite() or amount < 0:
                raise BillingError(f"price {price!r} must be a finite amount of zero or more")
            last = index == len(parts) - 1
            if (up_to is None) != last:
                raise BillingError(
                    f"bands are written UP_TO:PRICE,...,PRICE: every band but the last needs a"
                    f" bound, and the last has none (got {text!r})"
                )
            bands.append((up_to, amount))
        return cls(tuple(bands))


def set_override(
    conn: psycopg.Connection,
    tenant_id: str,
    *,
    model: str,
    token_class: TokenClass,
    service_tier: str,
    price: Bands | None,
    effective_from: datetime,
    effective_to: datetime | None = None,
    long_context_above: int | None = None,
) -> list[PriceEntry]:
    """Gives a tenant its own price for one model, token class and service tier (optionally
    its long-context price) from ``effective_from``: the override in effect then ends there.
    ``price=None`` just ends it (back to list price). Returns the overrides written."""
    with conn.transaction():
        _lock_tenant(conn, tenant_id)
        require_tenant(conn, tenant_id)
        _refuse_before_closed(conn, tenant_id, effective_from, "a price override")
        history = contract_history(tenant_id, contracts_of(conn, tenant_id))
        currency = next(c for c in reversed(history) if c.effective_from <= effective_from).currency
        long_context = "IS NOT NULL" if long_context_above is not None else "IS NULL"
        conn.execute(
            "UPDATE tenant_price_overrides SET effective_to = %(at)s"
            " WHERE tenant_id = %(t)s AND model = %(m)s AND token_class = %(c)s"
            f" AND service_tier = %(s)s AND long_context_above {long_context}"
            " AND effective_from < %(at)s AND (effective_to IS NULL OR effective_to > %(at)s)",
            {
                "at": effective_from,
                "t": tenant_id,
                "m": model,
                "c": token_class.value,
                "s": service_tier,
            },
        )
        written: list[PriceEntry] = []
        for up_to, amount in price.bands if price is not None else ():
            entry = PriceEntry(
                model,
                token_class,
                service_tier,
                currency,
                amount,
                effective_from,
                effective_to,
                tier_up_to=up_to,
                long_context_above=long_context_above,
                source=f"override of {tenant_id}",
            )
            conn.execute(
                f"INSERT INTO tenant_price_overrides (tenant_id, {_PRICE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT ON CONSTRAINT tenant_price_overrides_key DO UPDATE"
                " SET price_per_million = EXCLUDED.price_per_million,"
                " effective_to = EXCLUDED.effective_to, currency = EXCLUDED.currency",
                (tenant_id, *_entry_values(entry)),
            )
            written.append(entry)
        try:
            PriceBook(load_price_entries(conn), overrides_of(conn, tenant_id).get(tenant_id, []))
        except PriceBookError as exc:
            raise BillingError(f"the override does not fit the price book: {exc}") from None
    return written


# --- closing periods --------------------------------------------------------------------------


def book_revision(conn: psycopg.Connection) -> int:
    """The latest import that changed the price book (0: none yet). Imports are serialized
    (``import_prices`` locks), so a higher revision is a later book."""
    row = conn.execute(BOOK_REVISION_QUERY).fetchone()
    return int(row[0]) if row else 0


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
            raise BillingError(
                f"unknown tenant {tenant_id!r}: add it with `metering tenants add {tenant_id}`"
            )
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


_USAGE_QUERY: Final = """
WITH usage AS (
    SELECT model, service_tier, long_context, hour, events, input_tokens, cached_input_tokens,
           cache_write_tokens, output_tokens, reasoning_tokens, cache_write_1h_tokens
      FROM usage_hourly
     WHERE tenant_id = %(tenant)s AND hour >= %(start)s AND hour < %(end)s
), hour_by_hour AS (
    SELECT model FROM usage
     WHERE model = ANY(%(tiered)s)
     GROUP BY model
    HAVING count(DISTINCT (service_tier, long_context)) > 1
)
SELECT %(tenant)s::text AS tenant_id, model, service_tier, long_context,
       CASE WHEN model IN (SELECT model FROM hour_by_hour) THEN hour
            ELSE (%(cuts)s::timestamptz[])[width_bucket(hour, %(cuts)s::timestamptz[])]
       END AS hour,
       sum(events)::bigint AS events,
       sum(input_tokens)::bigint AS input_tokens,
       sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(cache_write_tokens)::bigint AS cache_write_tokens,
       sum(output_tokens)::bigint AS output_tokens,
       sum(reasoning_tokens)::bigint AS reasoning_tokens,
       sum(cache_write_1h_tokens)::bigint AS cache_write_1h_tokens
  FROM usage
 GROUP BY 2, 3, 4, 5
"""


def _usage(
    conn: psycopg.Connection, ctx: BillingContext, tenant_id: str, period: BillingPeriod
) -> list[Any]:
    """The tenant's usage in ``period``, ready for ``build_invoice``.

    Hours are summed in the database per stretch of time in which no price of the book or of
    the tenant's overrides changes, each sum dated at the start of its stretch: the sums
    ``rate`` makes itself, at a fraction of the rows to fetch. Except for a model with
    graduated bands used on several service tiers (or with long-context requests): band
    positions then depend on how the hours of those interleave, so it comes hour by hour.
    (With one service tier, the hours of a stretch are contiguous in the band volume, and
    their sum falls into the bands exactly as they would one by one.)"""
    entries = (*ctx.book.entries, *ctx.overrides.get(tenant_id, ()))
    changes = {
        moment
        for entry in entries
        for moment in (entry.effective_from, entry.effective_to)
        if moment is not None and period.start < moment < period.end
    }
    params = {
        "tenant": tenant_id,
        "start": period.start,
        "end": period.end,
        "cuts": sorted({period.start, *changes}),
        "tiered": sorted({e.model for e in entries if e.tier_up_to is not None}),
    }
    with conn.cursor(row_factory=namedtuple_row, binary=True) as cur:
        return cur.execute(_USAGE_QUERY, params).fetchall()


_SUMMED: Final = ("tenant_id", "model", "service_tier", "long_context", "hour", *USAGE_COUNTS)
_SUMS: Final = ", ".join(f"sum({c})::bigint" for c in USAGE_COUNTS)


def _summed_usage(
    conn: psycopg.Connection, ctx: BillingContext, period: BillingPeriod
) -> dict[str, list[HourlyUsage]]:
    """Every tenant's usage in ``period``, summed in one pass over the table per model,
    service tier, long-context flag and stretch without a price change (of the book or of any
    tenant's overrides). What a bulk close reads instead of one query per tenant, whose rows
    ingest has scattered over the table.

    The stretches are told apart by grouping on ``hour >= change`` for each change inside the
    period (an estimate the planner gets right, so it hashes the groups), and each group is
    dated at the start of its stretch."""
    entries = (*ctx.book.entries, *(e for group in ctx.overrides.values() for e in group))
    changes = sorted(
        {
            moment
            for entry in entries
            for moment in (entry.effective_from, entry.effective_to)
            if moment is not None and period.start < moment < period.end
        }
    )
    starts = [period.start, *changes]
    flags = "".join(f", hour >= %(change{n})s" for n in range(len(changes)))
    params: dict[str, Any] = {"start": period.start, "end": period.end}
    params.update({f"change{n}": change for n, change in enumerate(changes)})
    query = (
        "SELECT tenant_id, model, service_tier, long_context, min(hour), "
        + _SUMS
        + " FROM usage_hourly WHERE hour >= %(start)s AND hour < %(end)s"
        " GROUP BY tenant_id, model, service_tier, long_context" + flags
    )
    result: dict[str, list[HourlyUsage]] = {}
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")  # compiling takes longer than the hashing
        for row in conn.execute(query, params):
            first_hour = row[4]
            stretch = starts[bisect.bisect_right(starts, first_hour) - 1]
            summed = dict(zip(_SUMMED, (*row[:4], stretch, *row[5:]), strict=True))
            result.setdefault(row[0], []).append(HourlyUsage(**summed))
    return result


def _complete_usage(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    period: BillingPeriod,
    summed: Sequence[HourlyUsage],
) -> list[Any]:
    """The tenant's usage from a bulk read: summed rows, except for models with bands used on
    several service tiers (or with long-context requests), which are read again hour by hour
    (see ``_usage``)."""
    entries = (*ctx.book.entries, *ctx.overrides.get(tenant_id, ()))
    tiered = {e.model for e in entries if e.tier_up_to is not None}
    streams: dict[str, set[tuple[str, bool]]] = {}
    for row in summed:
        if row.model in tiered:
            streams.setdefault(row.model, set()).add((row.service_tier, row.long_context))
    interleaved = sorted(model for model, seen in streams.items() if len(seen) > 1)
    rows: list[Any] = [row for row in summed if row.model not in interleaved]
    if interleaved:
        with conn.cursor(row_factory=namedtuple_row, binary=True) as cur:
            rows += cur.execute(
                "SELECT tenant_id, model, service_tier, long_context, hour, events,"
                " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,"
                " reasoning_tokens, cache_write_1h_tokens FROM usage_hourly"
                " WHERE tenant_id = %s AND hour >= %s AND hour < %s AND model = ANY(%s)",
                (tenant_id, period.start, period.end, interleaved),
            ).fetchall()
    return rows


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
    rows from ``_summed_usage`` when a bulk close has read them already."""
    contract = ctx.contract(tenant_id, period)
    if summed is None:
        rows = _usage(conn, ctx, tenant_id, period)
    else:
        rows = _complete_usage(conn, ctx, tenant_id, period, summed)
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
        "SELECT period_start, period_end, period_label, repriced_by IS NOT NULL"
        " FROM period_billing WHERE tenant_id = %s AND period_start < %s"
        " AND (checked_at < period_end + %s OR repriced_by IS NOT NULL)"
        " ORDER BY period_start",
        (tenant_id, period.start, ctx.late_window),
    ).fetchall()
    for start, end, label, repriced in closed:
        earlier = BillingPeriod(start, end)
        if not repriced and _sums_now(conn, tenant_id, earlier) == _sums_billed(
            conn, tenant_id, earlier
        ):
            yield LateCheck(earlier, label, changed=False)
            continue
        yield _recheck(conn, ctx, tenant_id, earlier, label)


def _recheck(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    period: BillingPeriod,
    label: str,
) -> LateCheck:
    """A closed period billed again in full from its usage now and ``ctx.book``, compared with
    everything billed for it so far: the one calculation behind late usage and price
    corrections (``adjustment_lines``)."""
    rows = _usage(conn, ctx, tenant_id, period)
    billed = _billed_lines(conn, tenant_id, period, label)
    contract = ctx.contract(tenant_id, period)
    lines = adjustment_lines(period, contract, ctx.book, rows, billed)
    return LateCheck(period, label, changed=True, totals=usage_totals(rows), lines=lines)


def _sums_now(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod
) -> dict[UsageKey, tuple[int, ...]]:
    sums = ", ".join(f"sum({c})::bigint" for c in USAGE_COUNTS)
    rows = conn.execute(
        f"SELECT model, service_tier, long_context, {sums} FROM usage_hourly"
        " WHERE tenant_id = %s AND hour >= %s AND hour < %s GROUP BY 1, 2, 3",
        (tenant_id, period.start, period.end),
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def _sums_billed(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod
) -> dict[UsageKey, tuple[int, ...]]:
    rows = conn.execute(
        f"SELECT model, service_tier, long_context, {', '.join(USAGE_COUNTS)} FROM billed_usage"
        " WHERE tenant_id = %s AND period_start = %s",
        (tenant_id, period.start),
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


_LINE_COLUMNS: Final = (
    "kind, model, token_class, service_tier, tier, quantity, unit_price_per_million, amount,"
    " adjusts_period, long_context"
)


def _line(row: Sequence[Any]) -> InvoiceLine:
    kind, model, token_class, tier_name, tier, quantity, price, amount, adjusts, long_ctx = row
    return InvoiceLine(
        LineKind(kind),
        model,
        TokenClass(token_class) if token_class is not None else None,
        tier_name,
        tier,
        quantity,
        price,
        amount,
        adjusts,
        long_ctx,
    )


def _billed_lines(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod, label: str
) -> list[InvoiceLine]:
    """What a closed period has billed: its own invoice's lines (those that bill it, not the
    older periods it adjusts) and every later line that adjusted it."""
    rows = conn.execute(
        f"SELECT {', '.join('l.' + c.strip() for c in _LINE_COLUMNS.split(','))}"
        "  FROM invoice_lines l JOIN invoices i USING (invoice_id)"
        " WHERE l.tenant_id = %(t)s"
        "   AND ((i.period_start = %(start)s AND l.adjusts_period IS NULL)"
        "        OR l.adjusts_period = %(label)s)"
        " ORDER BY i.finalized_at, l.invoice_id, l.line_no",
        {"t": tenant_id, "start": period.start, "label": label},
    )
    return [_line(row) for row in rows]


# --- finalizing ---------------------------------------------------------------------------


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
    force: bool = False,
    progress: Progress | None = None,
) -> list[TenantClose]:
    """Finalizes period ``label`` for every tenant (or one): an invoice for each tenant with
    usage, a commitment shortfall or adjustments; a closed period without invoice for the
    others. Each tenant is one transaction, so ``conn`` must be in autocommit mode; a tenant
    that fails (no price, say) is rolled back, numbers included, and reported. Running it
    again creates nothing new. A period can be closed ``grace`` after its end, or any time
    after its start with ``force``."""
    if not conn.autocommit:
        raise ValueError(
            "close_period runs a transaction per tenant: pass an autocommit connection"
        )
    ctx = BillingContext.load(conn, late_window, tenant_id)
    tenants = list(ctx.tenant_names)
    summed = _bulk_usage(conn, ctx, tenants, label, now, grace, force)
    results: list[TenantClose] = []
    invoiced = 0
    for done, tenant in enumerate(tenants, start=1):
        try:
            try:
                result = _close_tenant(conn, ctx, tenant, label, now, grace, force, summed)
            except BookChangedError:  # an import came in: read the book again, then go on
                ctx, summed = BillingContext.load(conn, late_window, tenant_id), {}
                result = _close_tenant(conn, ctx, tenant, label, now, grace, force, summed)
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
    grace: timedelta,
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
        if tenant not in closed and period.start <= now and (force or now >= period.end + grace):
            due[period] = due.get(period, 0) + 1
    return {
        period: _summed_usage(conn, ctx, period)
        for period, count in due.items()
        if count >= _BULK_FROM
    }


def _close_tenant(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    label: str,
    now: datetime,
    grace: timedelta,
    force: bool,
    summed: Mapping[BillingPeriod, Mapping[str, Sequence[HourlyUsage]]],
) -> TenantClose:
    period = ctx.period(tenant_id, label)
    if period.start > now:
        raise BillingError(f"period {label} of {tenant_id} has not started yet")
    due = period.end + grace
    if now < due and not force:
        return TenantClose(
            tenant_id,
            label,
            Outcome.NOT_DUE,
            detail=f"can be closed from {_show(due)} (or now with --force)",
        )
    with conn.transaction():
        _lock_tenant(conn, tenant_id, prices=True)
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
            numbered = _insert_invoice(conn, bill, now) if bill.billable else None
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


def _insert_invoice(conn: psycopg.Connection, bill: Bill, now: datetime) -> psycopg.Cursor[Any]:
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
        " period_start, period_end, currency, minor_unit, subtotal, total)"
        " SELECT %(series)s || '-'"
        " || lpad(last_number::text, greatest(6, length(last_number::text)), '0'),"
        " %(tenant)s, %(name)s, %(label)s, %(start)s, %(end)s, %(currency)s, %(minor)s,"
        " %(subtotal)s, %(total)s FROM counter"
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


# --- reading finalized invoices ----------------------------------------------------------------


def finalized_invoices(
    conn: psycopg.Connection,
    *,
    period_label: str | None = None,
    tenant_id: str | None = None,
    invoice_number: str | None = None,
) -> list[FinalizedInvoice]:
    """Finalized invoices, by number, with their lines and the discount percentage of the
    contract that governed their period."""
    headers = conn.execute(
        "SELECT invoice_id, invoice_number, tenant_id, tenant_name, period_label, period_start,"
        " period_end, currency, status, finalized_at, subtotal, total FROM invoices"
        " WHERE (%(p)s::text IS NULL OR period_label = %(p)s)"
        "   AND (%(t)s::text IS NULL OR tenant_id = %(t)s)"
        "   AND (%(n)s::text IS NULL OR invoice_number = %(n)s)"
        " ORDER BY invoice_number",
        {"p": period_label, "t": tenant_id, "n": invoice_number},
    ).fetchall()
    lines: dict[int, list[InvoiceLine]] = {}
    contracts: dict[str, list[Contract]] = {}
    if headers:
        contracts = all_contracts(conn)
        rows = conn.execute(
            f"SELECT invoice_id, {_LINE_COLUMNS} FROM invoice_lines"
            " WHERE invoice_id = ANY(%s) ORDER BY invoice_id, line_no",
            ([h[0] for h in headers],),
        )
        for row in rows:
            lines.setdefault(row[0], []).append(_line(row[1:]))
    return [
        FinalizedInvoice(
            invoice_number=number,
            tenant_id=tenant,
            tenant_name=name,
            period=BillingPeriod(start, end),
            period_label=label,
            currency=currency,
            status=status,
            finalized_at=finalized_at,
            lines=tuple(lines.get(invoice_id, ())),
            subtotal=subtotal,
            total=total,
            discount_percent=contract_for_period(
                contract_history(tenant, contracts.get(tenant, ())), BillingPeriod(start, end)
            ).discount_percent,
        )
        for (
            invoice_id,
            number,
            tenant,
            name,
            label,
            start,
            end,
            currency,
            status,
            finalized_at,
            subtotal,
            total,
        ) in headers
    ]


def closed_invoice_for(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod
) -> tuple[bool, FinalizedInvoice | None]:
    """Whether the tenant's period is closed, and its invoice if it got one."""
    row = conn.execute(
        "SELECT i.invoice_number FROM period_billing p LEFT JOIN invoices i USING (invoice_id)"
        " WHERE p.tenant_id = %s AND p.period_start = %s",
        (tenant_id, period.start),
    ).fetchone()
    if row is None:
        return False, None
    if row[0] is None:
        return True, None
    (invoice,) = finalized_invoices(conn, invoice_number=row[0])
    return True, invoice
