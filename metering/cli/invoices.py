"""`metering invoices`: running drafts, closing periods, finalized invoices, export."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metering.billing.utc import rfc3339
from metering.cli import arguments as cli_input
from metering.cli.output import Format, progress, render
from metering.cli.support import FormatOption, database, fail
from metering.files.invoice_export import ExportFormat, export_invoices, summary_name

if TYPE_CHECKING:
    from metering.billing.invoices import FinalizedInvoice, InvoiceLine
    from metering.store.billing.close import TenantClose


invoices_app = typer.Typer(
    help="Invoices: running drafts, closing periods, numbered immutable invoices, export.",
    no_args_is_help=True,
)

PeriodOption = Annotated[str, typer.Option("--period", help="Billing period, YYYY-MM.")]


def _print_invoice(header: dict[str, Any], lines: tuple[InvoiceLine, ...], fmt: Format) -> None:
    from metering.cli.billing_common import json_text
    from metering.files.invoice_records import LINE_FIELDS, line_record

    as_text = fmt is not Format.table
    rows = [line_record(n, line, as_text=as_text) for n, line in enumerate(lines, start=1)]
    if fmt is Format.json:
        typer.echo(json_text({**header, "lines": rows}))
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
    from metering.cli.billing_common import late_window, now
    from metering.store.billing.bills import compute_bill
    from metering.store.billing.context import BillingContext
    from metering.store.billing.invoices import closed_invoice_for

    period = cli_input.optional_period(period)
    with database(autocommit=True) as conn:
        cli_input.known_tenant(conn, tenant)
        ctx = BillingContext.load(conn, late_window(), tenant)
        chosen = (
            ctx.period(tenant, period) if period is not None else ctx.current_period(tenant, now())
        )
        closed, invoice = closed_invoice_for(conn, tenant, chosen)
        if invoice is not None:
            _show_finalized(invoice, fmt)
            return
        if closed:
            typer.echo(f"{tenant}: period {chosen.label} is closed with nothing billed")
            return
        bill = compute_bill(conn, ctx, tenant, chosen)
    draft = bill.draft
    header = {
        "invoice_number": None,
        "tenant_id": tenant,
        "period_label": chosen.label,
        "period": chosen.label,
        "period_start": rfc3339(chosen.start),
        "period_end": rfc3339(chosen.end),
        "status": "draft",
        "as_of": rfc3339(now().replace(microsecond=0)),
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
    from metering.cli.billing_common import late_window, now
    from metering.config import get_settings
    from metering.store.billing.close import Outcome, close_period

    label = cli_input.period(period)
    grace = timedelta(hours=get_settings().invoice_grace_hours)
    started = time.monotonic()
    with (
        database(autocommit=True) as conn,
        progress(f"closing {label}: tenants") as advance,
    ):
        cli_input.known(conn, tenant=tenant)
        results = close_period(
            conn,
            label,
            now=now(),
            grace=grace,
            late_window=late_window(),
            tenant_id=tenant,
            issuer=get_settings().issuer(),
            force=force,
            progress=lambda done, total, invoiced: advance(done, total, f"{invoiced:,} invoices"),
        )
    not_due = " (or now with --force)"  # the policy says from when; the flag is ours to offer
    _show_closes(
        label,
        [
            replace(r, detail=r.detail + not_due) if r.outcome == Outcome.NOT_DUE else r
            for r in results
        ],
        fmt,
        time.monotonic() - started,
    )


def _show_closes(label: str, results: list[TenantClose], fmt: Format, seconds: float) -> None:
    """The invoiced and failed tenants (every tenant but in a table), a summary line, and
    whether the period was not due; exits 1 if a tenant could not be billed."""
    from metering.store.billing.close import Outcome

    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    shown = [
        asdict(r)
        for r in results
        if fmt is not Format.table or r.outcome in (Outcome.INVOICED, Outcome.FAILED)
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
    typer.echo(f"{label}: {summary or 'no tenants'} in {seconds:.1f}s", err=True)
    if counts.get(Outcome.NOT_DUE) and not any(
        r.outcome in (Outcome.INVOICED, Outcome.NOTHING) for r in results
    ):
        detail = next(r.detail for r in results if r.outcome == Outcome.NOT_DUE)
        typer.echo(f"period {label} is not due yet: {detail}", err=True)
    if counts.get(Outcome.FAILED):
        raise typer.Exit(1)


@invoices_app.command("list")
def invoices_list(
    period: Annotated[str | None, typer.Option(help="Only this period, YYYY-MM.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List finalized invoices by number."""
    from metering.store.billing.invoices import finalized_invoices

    period = cli_input.optional_period(period)
    with database(autocommit=True) as conn:
        cli_input.known(conn, tenant=tenant)
        invoices = finalized_invoices(conn, period_label=period, tenant_id=tenant)
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
    from metering.store.billing.invoices import finalized_invoices

    with database(autocommit=True) as conn:
        found = finalized_invoices(conn, invoice_number=number)
    if not found:
        raise fail(f"no invoice {number!r}: `metering invoices list` shows the numbers")
    _show_finalized(found[0], fmt)


def _show_finalized(invoice: FinalizedInvoice, fmt: Format) -> None:
    """JSON: the exported document itself (``invoice_json``); else the header and lines."""
    from metering.config import get_settings
    from metering.files.invoice_records import invoice_json

    if fmt is Format.json:
        typer.echo(invoice_json(invoice, get_settings().issuer()), nl=False)
        return
    header = {
        "invoice_number": invoice.invoice_number,
        "tenant_id": invoice.tenant_id,
        "tenant_name": invoice.tenant_name,
        "period_label": invoice.period_label,
        "period_start": rfc3339(invoice.period.start),
        "period_end": rfc3339(invoice.period.end),
        "status": invoice.status,
        "finalized_at": rfc3339(invoice.finalized_at),
        "due_on": invoice.issued_by(get_settings().issuer()).due_on(invoice).isoformat(),
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "total": invoice.total,
    }
    _print_invoice(header, invoice.lines, fmt)


@invoices_app.command("export")
def invoices_export(
    period: PeriodOption,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format: json, csv or pdf.")],
    out: Annotated[Path, typer.Option(help="Directory to write into (created if missing).")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's invoice.")] = None,
) -> None:
    """Write a period's finalized invoices to files, plus a summary.

    One OUT/NUMBER.FORMAT per invoice and OUT/summary-PERIOD.FORMAT, or with --tenant
    OUT/summary-PERIOD-TENANT.FORMAT (a period's summary in OUT stays as it is). Files
    depend only on the stored invoices: exporting again gives identical bytes.
    """
    from metering.config import get_settings
    from metering.store.billing.invoices import finalized_invoices

    label = cli_input.period(period)
    cli_input.output_directory(out)
    with database(autocommit=True) as conn:
        cli_input.known(conn, tenant=tenant)
        invoices = finalized_invoices(conn, period_label=label, tenant_id=tenant)
    started = time.monotonic()
    with progress(f"exporting {label}", len(invoices)) as advance:
        export_invoices(
            label,
            invoices,
            fmt,
            out,
            get_settings().issuer(),
            advance,
            tenant_id=tenant,
        )
    typer.echo(
        f"{len(invoices):,} invoices of {label} written to {out}"
        f" ({summary_name(label, fmt, tenant)}) in {time.monotonic() - started:.1f}s"
    )


def register(app: typer.Typer) -> None:
    """Adds `invoices` to the CLI."""
    app.add_typer(invoices_app, name="invoices")
