"""`metering prices`, `metering tenants set|contract|override` and `metering invoices`.

Thin: parse the options, call ``metering.store.billing`` and the export writers, print.
``register(app, tenants_app)`` adds them to the `metering` command.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from metering.billing.events import SERVICE_TIERS
from metering.billing.invoicing import CURRENCY_MINOR_UNITS, FinalizedInvoice, InvoiceLine
from metering.billing.pricing import TOKEN_CLASSES, PriceEntry, TokenClass
from metering.cli import arguments as cli_input
from metering.cli.output import Format, progress, render
from metering.cli.support import FormatOption, database, fail
from metering.config import get_settings
from metering.files.invoice_export import (
    LINE_FIELDS,
    ExportFormat,
    export_invoices,
    invoice_json,
    line_record,
    summary_name,
)
from metering.files.price_files import PriceFileError, load_price_file

if TYPE_CHECKING:
    from metering.store import billing


class BillingSettings(BaseSettings):
    """Billing settings from ``METERING_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    invoice_grace_hours: float = Field(
        24.0, description="hours after a period's end before `invoices close` finalizes it"
    )
    late_margin_hours: float = Field(
        24.0, description="added to the ingest backdating window when looking for late usage"
    )


def late_window() -> timedelta:
    """How long after its end a closed period can still receive usage: ingest accepts events
    up to ``METERING_BACKDATING_DAYS`` old (plus clock skew); a margin on top."""
    settings = get_settings()
    return (
        timedelta(days=settings.backdating_days)
        + timedelta(seconds=settings.clock_skew_s)
        + timedelta(hours=BillingSettings().late_margin_hours)
    )


def now() -> datetime:
    return datetime.now(UTC)


def _json(document: Any) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(type(value).__name__)

    return orjson.dumps(document, default=default, option=orjson.OPT_INDENT_2).decode()


# --- prices ----------------------------------------------------------------------------------

prices_app = typer.Typer(
    help="The list-price book: per model, token class and service tier, per 1M tokens.",
    no_args_is_help=True,
)


@prices_app.command("import")
def prices_import(
    file: Annotated[Path, typer.Argument(help="A price file, .yaml/.yml or .csv.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace stored entries whose price or end the file changes.",
        ),
    ] = False,
    correct_invoiced: Annotated[
        bool,
        typer.Option(
            "--correct-invoiced",
            help="Allow prices that change periods already invoiced: their tenants' next"
            " invoices get the difference as adjustment lines (check with --dry-run first).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show what the import would store and which invoices it would adjust by how"
            " much; change nothing.",
        ),
    ] = False,
) -> None:
    """Import prices from a YAML or CSV file (see docs/billing.md); idempotent.

    Every problem is reported as FILE:LINE: what is wrong. Entries already stored with the
    same price are left alone, so importing the same file twice changes nothing. Long-context
    rules also set the model catalog's long_context_above, which ingest uses. A price for a
    period already invoiced is a correction: the finalized invoice stays as it is, and the
    difference goes on the tenant's next invoice (--correct-invoiced).
    """
    from metering.store import billing, catalog

    try:
        entries = load_price_file(file)
    except PriceFileError as exc:
        for problem in exc.problems:
            typer.secho(f"error: {problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    with database(autocommit=True) as conn:
        known_models = {m.model_id for m in catalog.list_models(conn)}
        result = billing.import_prices(
            conn,
            entries,
            replace_changed=replace,
            correct_invoiced=correct_invoiced,
            dry_run=dry_run,
            source=str(file),
        )
    if dry_run:
        _show_dry_run(file, result, replace=replace, correct_invoiced=correct_invoiced)
        return
    typer.echo(
        f"{file}: {result.added} prices added, {result.replaced} replaced,"
        f" {result.unchanged} unchanged"
    )
    if result.corrections:
        _show_corrections(result.corrections, "will")
    for model, old, new in result.thresholds:
        typer.echo(f"model {model}: long_context_above {old} -> {new}")
    _warn_unknown_models(file, entries, set(result.uncataloged), known_models)
    for model in result.uncataloged:
        typer.secho(
            f"warning: {model} has a long-context rule but is not in the model catalog: add it"
            f" with `metering models add {model} --provider P` and its threshold",
            fg=typer.colors.YELLOW,
            err=True,
        )


def _warn_unknown_models(
    file: Path, entries: Sequence[PriceEntry], warned: set[str], known_models: set[str]
) -> None:
    """Prices of a model the catalog lacks are kept (the model may be added next), but its
    events are rejected as unknown_model until then: often a typo, so it is said."""
    unknown = sorted({e.model for e in entries} - known_models - warned)
    if not unknown:
        return
    named = []
    for model in unknown:
        close = difflib.get_close_matches(model, sorted(known_models), n=1)
        named.append(f"{model} (did you mean {close[0]}?)" if close else model)
    typer.secho(
        f"warning: {file}: prices for models not in the catalog: {', '.join(named)}; their"
        " events are rejected until `metering models add MODEL --provider P`",
        fg=typer.colors.YELLOW,
        err=True,
    )


def _show_dry_run(
    file: Path, result: billing.PriceImport, *, replace: bool, correct_invoiced: bool
) -> None:
    typer.echo(
        f"{file} (dry run, nothing stored): would add {result.added} prices, replace"
        f" {result.replaced}, leave {result.unchanged} unchanged"
    )
    for verb, entries in (("add", result.added_entries), ("replace", result.replaced_entries)):
        for entry in entries:
            until = f" until {_show_time(entry.effective_to)}" if entry.effective_to else ""
            typer.echo(
                f"  {verb} {entry.describe()}: {entry.price_per_million} {entry.currency}"
                f" per 1M from {_show_time(entry.effective_from)}{until}"
            )
    if result.corrections:
        _show_corrections(result.corrections, "would")
    elif result.retroactive:
        typer.echo(
            "it changes prices of invoiced periods, but no invoiced usage: nothing to adjust"
        )
    needs = [
        flag
        for flag, needed, given in (
            ("--replace", result.replaced, replace),
            ("--correct-invoiced", result.retroactive, correct_invoiced),
        )
        if needed and not given
    ]
    if needs:
        typer.echo(f"to import it, pass {' and '.join(needs)}")


def _show_corrections(corrections: tuple[billing.Correction, ...], verb: str) -> None:
    """The closed periods a correction re-rates: what each tenant's next invoice adds.
    ``verb`` is ``will`` or ``would`` (a dry run)."""
    typer.echo(
        f"{len(corrections)} invoiced periods re-rated: the tenants' next invoices {verb} adjust"
        " them by these amounts (the finalized invoices never change)"
    )
    rows = [
        {
            "tenant_id": c.tenant_id,
            "period": c.period_label,
            "invoice_number": c.invoice_number,
            "adjustment": c.amount,
            "currency": c.currency,
            "lines": c.lines,
        }
        for c in corrections
    ]
    typer.echo(render(rows, list(rows[0]), Format.table))


def _show_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@prices_app.command("list")
def prices_list(
    at: Annotated[
        str | None, typer.Option(help="The moment (UTC) whose prices to show; default now.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the list prices in effect at a moment, per 1M tokens."""
    from metering.store import billing

    moment = cli_input.moment(at, "--at") if at is not None else now()
    with database(autocommit=True) as conn:
        cli_input.known(conn, model=model)
        book = billing.load_price_book(conn)
    rows = [
        {
            "model": e.model,
            "service_tier": e.service_tier,
            "token_class": e.token_class.value,
            "long_context_above": e.long_context_above,
            "tier_up_to": e.tier_up_to,
            "price_per_million": e.price_per_million,
            "currency": e.currency,
            "effective_from": e.effective_from,
            "effective_to": e.effective_to,
        }
        for e in book.in_effect(moment)
        if model is None or e.model == model
    ]
    columns = list(rows[0]) if rows else ["model", "service_tier", "token_class"]
    typer.echo(render(rows, columns, fmt))


# --- contracts -----------------------------------------------------------------------------


def tenants_set(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    currency: Annotated[
        str | None, typer.Option(help=f"Billing currency: {', '.join(CURRENCY_MINOR_UNITS)}.")
    ] = None,
    anchor_day: Annotated[
        int | None,
        typer.Option(help="Billing periods start on this day of the month (1-31; 1 = calendar)."),
    ] = None,
    discount_percent: Annotated[
        str | None, typer.Option(help="Percent taken off each period's usage, e.g. 10 or 7.5.")
    ] = None,
    minimum_commitment: Annotated[
        str | None,
        typer.Option(help="Least amount billed per period, after the discount; 'none' removes it."),
    ] = None,
    effective_from: Annotated[
        str | None,
        typer.Option(help="When these terms take effect (default now); they govern the period."),
    ] = None,
) -> None:
    """Set a tenant's contract terms from a moment on, as a new contract version.

    Options left out keep the previous version's value (defaults: USD, anchor day 1, no
    discount, no commitment). The contract that took effect last during a period governs
    that whole period. A change cannot take effect inside a period already invoiced.
    """
    from metering.store import billing, quota_store

    changes: dict[str, Any] = {}
    if currency is not None:
        changes["currency"] = currency.upper()
        if changes["currency"] not in CURRENCY_MINOR_UNITS:
            raise fail(
                f"--currency {currency!r} is not one we bill in: {', '.join(CURRENCY_MINOR_UNITS)}"
            )
    if anchor_day is not None:
        changes["anchor_day"] = anchor_day
    if discount_percent is not None:
        discount = cli_input.decimal(discount_percent, "--discount-percent")
        if not 0 <= discount <= 100:
            raise fail(f"--discount-percent {discount_percent} must be from 0 to 100")
        changes["discount_percent"] = discount
    if minimum_commitment is not None and minimum_commitment.lower() == "none":
        changes["minimum_commitment"] = None
    elif minimum_commitment is not None:
        minimum = cli_input.decimal(minimum_commitment, "--minimum-commitment")
        if minimum < 0:
            raise fail(f"--minimum-commitment {minimum_commitment} must not be negative")
        changes["minimum_commitment"] = minimum
    start = (
        cli_input.moment(effective_from, "--effective-from")
        if effective_from is not None
        else now().replace(microsecond=0)
    )
    with database(autocommit=True) as conn, conn.transaction():
        cli_input.known_tenant(conn, tenant_id)
        contract, changed = billing.set_contract(conn, tenant_id, start, **changes)
        # Quota periods are billing periods: a new anchor day moves them, in this transaction.
        if changed:
            quota_store.follow_anchor_day(conn, tenant_id)
    commitment = contract.minimum_commitment
    typer.echo(
        f"{tenant_id}: {'contract from' if changed else 'unchanged, contract from'}"
        f" {contract.effective_from.isoformat()}: {contract.currency}, anchor day"
        f" {contract.anchor_day}, discount {contract.discount_percent}%, minimum commitment"
        f" {commitment if commitment is not None else 'none'}"
    )


def tenants_contract(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    fmt: FormatOption = Format.table,
) -> None:
    """Show a tenant's contract history and price overrides, oldest first.

    Before its first contract a tenant is billed on the default terms (USD, list prices,
    calendar months), shown as the first row.
    """
    from metering.store import billing

    with database(autocommit=True) as conn:
        cli_input.known_tenant(conn, tenant_id)
        history = billing.contract_history(tenant_id, billing.contracts_of(conn, tenant_id))
        overrides = billing.overrides_of(conn, tenant_id).get(tenant_id, [])
    contracts = [
        {
            "effective_from": c.effective_from,
            "effective_to": c.effective_to,
            "currency": c.currency,
            "anchor_day": c.anchor_day,
            "discount_percent": c.discount_percent,
            "minimum_commitment": c.minimum_commitment,
            "terms": "default" if index == 0 and c.effective_from.year == 1970 else "contract",
        }
        for index, c in enumerate(history)
    ]
    prices = [
        {
            "model": e.model,
            "token_class": e.token_class.value,
            "service_tier": e.service_tier,
            "long_context_above": e.long_context_above,
            "tier_up_to": e.tier_up_to,
            "price_per_million": e.price_per_million,
            "currency": e.currency,
            "effective_from": e.effective_from,
            "effective_to": e.effective_to,
        }
        for e in overrides
    ]
    if fmt is Format.json:
        typer.echo(_json({"contracts": contracts, "overrides": prices}))
        return
    typer.echo(render(contracts, list(contracts[0]), fmt))
    if prices:
        typer.echo("")
        typer.echo(render(prices, list(prices[0]), fmt))


def tenants_override(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    model: Annotated[str, typer.Option(help="The model whose price to override.")],
    token_class: Annotated[str, typer.Option(help=f"Token class: {', '.join(TOKEN_CLASSES)}.")],
    tier: Annotated[str, typer.Option(help=f"Service tier: {', '.join(SERVICE_TIERS)}.")],
    price: Annotated[
        str,
        typer.Option(
            help="Per 1M tokens: 2.50; bands as UP_TO:PRICE,...,PRICE (1000000:2.00,1.50);"
            " 'list' ends the override (back to the list price)."
        ),
    ],
    effective_from: Annotated[
        str | None, typer.Option(help="When the price takes effect (default: now, on the hour).")
    ] = None,
    effective_to: Annotated[
        str | None, typer.Option(help="When it ends (exclusive); default: until replaced.")
    ] = None,
    long_context_above: Annotated[
        int | None,
        typer.Option(help="Override the long-context price of requests above this many tokens."),
    ] = None,
) -> None:
    """Give a tenant its own price for one model, token class and service tier.

    The override replaces the list price of that class (all its bands) while in effect, in
    the contract's currency; other classes stay at list price. A new override ends the one
    in effect at its start. Times must be on whole hours.
    """
    from metering.store import billing

    if token_class not in TOKEN_CLASSES:
        raise fail(f"--token-class {token_class!r} is not one of {', '.join(TOKEN_CLASSES)}")
    if tier not in SERVICE_TIERS:
        raise fail(f"--tier {tier!r} is not one of {', '.join(SERVICE_TIERS)}")
    hour = now().replace(minute=0, second=0, microsecond=0)
    start, end = cli_input.time_window(
        effective_from, effective_to, "--effective-from", "--effective-to"
    )
    start = start or hour
    bands = None if price.strip().lower() == "list" else billing.Bands.parse(price)
    with database(autocommit=True) as conn:
        cli_input.known(conn, tenant=tenant_id, model=model)
        written = billing.set_override(
            conn,
            tenant_id,
            model=model,
            token_class=TokenClass(token_class),
            service_tier=tier,
            price=bands,
            effective_from=start,
            effective_to=end,
            long_context_above=long_context_above,
        )
    if not written:
        typer.echo(f"{tenant_id}: {model} {token_class} {tier} at list price from {start}")
    for entry in written:
        typer.echo(
            f"{tenant_id}: {entry.describe()} at {entry.price_per_million} {entry.currency}"
            f" per 1M from {entry.effective_from}"
            + (f" until {entry.effective_to}" if entry.effective_to else "")
        )


# --- invoices --------------------------------------------------------------------------------

invoices_app = typer.Typer(
    help="Invoices: running drafts, closing periods, numbered immutable invoices, export.",
    no_args_is_help=True,
)

PeriodOption = Annotated[str, typer.Option("--period", help="Billing period, YYYY-MM.")]


def _print_invoice(header: dict[str, Any], lines: tuple[InvoiceLine, ...], fmt: Format) -> None:
    as_text = fmt is not Format.table
    rows = [line_record(n, line, as_text=as_text) for n, line in enumerate(lines, start=1)]
    if fmt is Format.json:
        typer.echo(_json({**header, "lines": rows}))
        return
    if fmt is Format.csv:
        columns = list(rows[0]) if rows else ["line_no"]
        typer.echo(render(rows, columns, fmt))
        return
    for name, value in header.items():
        if name not in ("subtotal", "total"):
            typer.echo(f"{name:>14}: {value}")
    typer.echo("")
    columns = [name for name in LINE_FIELDS if name != "line_no"]
    if rows:
        typer.echo(render(rows, columns, fmt))
    else:
        typer.echo("(no lines)")
    typer.echo("")
    typer.echo(f"{'subtotal':>14}: {header['subtotal']} {header['currency']}")
    typer.echo(f"{'total':>14}: {header['total']} {header['currency']}")


@invoices_app.command("preview")
def invoices_preview(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    period: Annotated[
        str | None, typer.Option(help="Billing period, YYYY-MM (default: the current one).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show a tenant's invoice for a period as it stands now: the running draft.

    Computed on the fly from the hourly usage, with the adjustments that late usage of
    closed periods will add. A period already closed shows its finalized invoice.
    """
    from metering.store import billing

    period = cli_input.optional_period(period)
    with database(autocommit=True) as conn:
        cli_input.known_tenant(conn, tenant)
        ctx = billing.BillingContext.load(conn, late_window(), tenant)
        chosen = (
            ctx.period(tenant, period) if period is not None else ctx.current_period(tenant, now())
        )
        closed, invoice = billing.closed_invoice_for(conn, tenant, chosen)
        if invoice is not None:
            _show_finalized(invoice, fmt)
            return
        if closed:
            typer.echo(f"{tenant}: period {chosen.label} is closed with nothing billed")
            return
        bill = billing.compute_bill(conn, ctx, tenant, chosen)
    draft = bill.draft
    header = {
        "invoice_number": None,
        "tenant_id": tenant,
        "period_label": chosen.label,
        "period": chosen.label,
        "period_start": _utc(chosen.start),
        "period_end": _utc(chosen.end),
        "status": "draft",
        "as_of": _utc(now().replace(microsecond=0)),
        "currency": draft.currency,
        "subtotal": draft.subtotal,
        "total": draft.total,
    }
    _print_invoice(header, draft.lines, fmt)


@invoices_app.command("close")
def invoices_close(
    period: PeriodOption,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Close before the grace period has passed.")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Finalize a billing period into numbered, immutable invoices.

    Each tenant with usage, a commitment or adjustments gets one. Closes
    METERING_INVOICE_GRACE_HOURS (default 24) after the period's end, or earlier with
    --force. Numbers are gap-free (INV-YYYY-NNNNNN). Running it again creates nothing new.
    Late usage of closed periods becomes adjustment lines. Exits 1 if a tenant could not be
    billed (the others are).
    """
    from metering.store import billing

    label = cli_input.period(period)
    grace = timedelta(hours=BillingSettings().invoice_grace_hours)
    started = time.monotonic()
    with (
        database(autocommit=True) as conn,
        progress(f"closing {label}: tenants") as advance,
    ):
        cli_input.known(conn, tenant=tenant)
        results = billing.close_period(
            conn,
            label,
            now=now(),
            grace=grace,
            late_window=late_window(),
            tenant_id=tenant,
            force=force,
            progress=lambda done, total, invoiced: advance(done, total, f"{invoiced:,} invoices"),
        )
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    shown = [
        asdict(r)
        for r in results
        if fmt is not Format.table
        or r.outcome in (billing.Outcome.INVOICED, billing.Outcome.FAILED)
    ]
    columns = [
        "tenant_id",
        "outcome",
        "invoice_number",
        "currency",
        "total",
        "lines",
        "adjustments",
        "detail",
    ]
    if shown or fmt is not Format.table:
        typer.echo(render(shown, columns, fmt))
    summary = ", ".join(f"{count:,} {outcome}" for outcome, count in sorted(counts.items()))
    typer.echo(f"{label}: {summary or 'no tenants'} in {time.monotonic() - started:.1f}s", err=True)
    if counts.get(billing.Outcome.NOT_DUE) and not any(
        r.outcome in (billing.Outcome.INVOICED, billing.Outcome.NOTHING) for r in results
    ):
        detail = next(r.detail for r in results if r.outcome == billing.Outcome.NOT_DUE)
        typer.echo(f"period {label} is not due yet: {detail}", err=True)
    if counts.get(billing.Outcome.FAILED):
        raise typer.Exit(1)


@invoices_app.command("list")
def invoices_list(
    period: Annotated[str | None, typer.Option(help="Only this period, YYYY-MM.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List finalized invoices by number."""
    from metering.store import billing

    period = cli_input.optional_period(period)
    with database(autocommit=True) as conn:
        cli_input.known(conn, tenant=tenant)
        invoices = billing.finalized_invoices(conn, period_label=period, tenant_id=tenant)
    rows = [
        {
            "invoice_number": i.invoice_number,
            "tenant_id": i.tenant_id,
            "period": i.period_label,
            "currency": i.currency,
            "subtotal": i.subtotal,
            "total": i.total,
            "lines": len(i.lines),
            "line_count": len(i.lines),
            "finalized_at": i.finalized_at,
        }
        for i in invoices
    ]
    columns = ["invoice_number", "tenant_id", "period", "currency", "subtotal", "total", "lines"]
    typer.echo(render(rows, [*columns, "line_count", "finalized_at"], fmt))


@invoices_app.command("show")
def invoices_show(
    number: Annotated[str, typer.Argument(help="Invoice number, e.g. INV-2026-000001.")],
    fmt: FormatOption = Format.table,
) -> None:
    """Show one finalized invoice with its lines."""
    from metering.store import billing

    with database(autocommit=True) as conn:
        found = billing.finalized_invoices(conn, invoice_number=number)
    if not found:
        raise fail(f"no invoice {number!r}: `metering invoices list` shows the numbers")
    _show_finalized(found[0], fmt)


def _show_finalized(invoice: FinalizedInvoice, fmt: Format) -> None:
    """JSON: the exported document itself (``invoice_json``); else the header and lines."""
    if fmt is Format.json:
        typer.echo(invoice_json(invoice, get_settings().issuer()), nl=False)
        return
    header = {
        "invoice_number": invoice.invoice_number,
        "tenant_id": invoice.tenant_id,
        "tenant_name": invoice.tenant_name,
        "period_label": invoice.period_label,
        "period_start": _utc(invoice.period.start),
        "period_end": _utc(invoice.period.end),
        "status": invoice.status,
        "finalized_at": _utc(invoice.finalized_at),
        "due_on": get_settings().issuer().due_on(invoice).isoformat(),
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "total": invoice.total,
    }
    _print_invoice(header, invoice.lines, fmt)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@invoices_app.command("export")
def invoices_export(
    period: PeriodOption,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format: json, csv or pdf.")],
    out: Annotated[Path, typer.Option(help="Directory to write into (created if missing).")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's invoice.")] = None,
) -> None:
    """Write a period's finalized invoices to files, plus a summary.

    One OUT/NUMBER.FORMAT per invoice and OUT/summary-PERIOD.FORMAT. Files depend only on
    the stored invoices: exporting again gives identical bytes.
    """
    from metering.store import billing

    label = cli_input.period(period)
    cli_input.output_directory(out)
    with database(autocommit=True) as conn:
        cli_input.known(conn, tenant=tenant)
        invoices = billing.finalized_invoices(conn, period_label=label, tenant_id=tenant)
    started = time.monotonic()
    with progress(f"exporting {label}", len(invoices)) as advance:
        export_invoices(
            label,
            invoices,
            fmt,
            out,
            get_settings().issuer(),
            advance,
        )
    typer.echo(
        f"{len(invoices):,} invoices of {label} written to {out}"
        f" ({summary_name(label, fmt)}) in {time.monotonic() - started:.1f}s"
    )


def register(app: typer.Typer, tenants_app: typer.Typer) -> None:
    """Adds `prices`, `invoices` and the contract commands of `tenants` to the CLI."""
    app.add_typer(prices_app, name="prices")
    app.add_typer(invoices_app, name="invoices")
    tenants_app.command("set")(tenants_set)
    tenants_app.command("contract")(tenants_contract)
    tenants_app.command("override")(tenants_override)
