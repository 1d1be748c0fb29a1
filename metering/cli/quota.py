"""`metering quota`: token and spend budgets and rate limits, per tenant or tenant and model."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer

from metering.billing.invoices import LineKind
from metering.billing.quotas.limits import (
    MAX_THRESHOLD,
    MAX_TOKEN_LIMIT,
    Amount,
    Limit,
    LimitKind,
    limit_amount,
    limit_thresholds,
)
from metering.billing.utc import rfc3339
from metering.cli import arguments as cli_input
from metering.cli.billing_common import late_window, now
from metering.cli.output import Format, render
from metering.cli.support import FormatOption, database, fail

quota_app = typer.Typer(
    help="Quotas: limits that alert (soft) or block (hard). Effective within a second.",
    no_args_is_help=True,
)


def limit_id_for(tenant: str, model: str | None, kind: LimitKind) -> str:
    """One limit per tenant, model (or all models) and kind: setting it again replaces it."""
    return f"{tenant}:{model or '*'}:{kind.value}"


@quota_app.command("set")
def quota_set(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    kind: Annotated[LimitKind, typer.Option(help="What is limited.")],
    limit: Annotated[str, typer.Option(help="Tokens (an integer), or money for spend.")],
    model: Annotated[str | None, typer.Option(help="Only this model (default: all).")] = None,
    hard: Annotated[bool, typer.Option("--hard", help="Block once used up.")] = False,
    soft: Annotated[bool, typer.Option("--soft", help="Only alert (the default).")] = False,
    thresholds: Annotated[
        str, typer.Option(help="Alert at these percentages, comma-separated.")
    ] = "50,80,100",
) -> None:
    """Create or replace the limit for a tenant (and model) and kind.

    The usage already in the current billing period counts at once, so a limit below it
    blocks (hard) or alerts straight away.
    """
    if hard and soft:
        raise fail("--hard and --soft contradict each other: give one (the default is --soft)")
    amount = _amount(kind, limit)
    try:
        percents = limit_thresholds(int(t) for t in thresholds.split(","))
    except ValueError:
        raise fail(
            f"--thresholds {thresholds!r}: give whole percentages from 1 to {MAX_THRESHOLD},"
            " comma-separated, like 50,80,100"
        ) from None
    from metering.store import quota_limits

    new = Limit(limit_id_for(tenant, model, kind), tenant, model, kind, amount, hard, percents)
    with database() as conn:
        cli_input.known(conn, tenant=tenant, model=model)
        status = quota_limits.set_limit(conn, new)
    window = "this minute" if kind.per_minute else "this billing period"
    typer.echo(
        f"limit {new.limit_id} set: {'hard' if hard else 'soft'} {new.amount};"
        f" {status.used} used {window} (until {rfc3339(status.resets_at)}),"
        f" {status.status.value}"
    )


def _amount(kind: LimitKind, given: str) -> Amount:
    """``--limit`` as the kind's amount, or a one-line refusal that says what is allowed."""
    amount = cli_input.decimal(given, "--limit")
    value: Amount = amount
    if not kind.is_spend:
        if amount != amount.to_integral_value():
            raise fail(f"--limit {given} for {kind.value} counts tokens: give a whole number")
        if amount.copy_abs() <= MAX_TOKEN_LIMIT:  # beyond, refused below without a huge int
            value = int(amount)
    try:
        return limit_amount(kind, value)
    except ValueError as exc:
        raise fail(f"--limit {given} is out of range: {exc}") from None


@quota_app.command("list")
def quota_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List limits."""
    from metering.store import quota_limits

    with database() as conn:
        cli_input.known(conn, tenant=tenant)
        limits = quota_limits.list_limits(conn, tenant)
    rows = [
        {
            "limit_id": x.limit_id,
            "tenant_id": x.tenant_id,
            "model": x.model or "*",
            "kind": x.kind.value,
            "limit": x.amount,
            "hard": x.hard,
            "thresholds": ",".join(map(str, x.thresholds)),
        }
        for x in limits
    ]
    columns = ["limit_id", "tenant_id", "model", "kind", "limit", "hard", "thresholds"]
    typer.echo(render(rows, columns, fmt))


@quota_app.command("remove")
def quota_remove(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    kind: Annotated[LimitKind, typer.Option(help="Which kind of limit.")],
    model: Annotated[str | None, typer.Option(help="The model the limit is for.")] = None,
) -> None:
    """Remove a limit; a tenant it blocked is unblocked within a second."""
    from metering.store import quota_limits

    limit_id = limit_id_for(tenant, model, kind)
    with database() as conn:
        cli_input.known(conn, tenant=tenant, model=model)
        removed = quota_limits.remove_limit(conn, limit_id)
    if not removed:
        raise fail(f"no limit {limit_id}; see `metering quota list --tenant {tenant}`", code=1)
    typer.echo(f"limit {limit_id} removed")


@quota_app.command("alerts")
def quota_alerts(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Threshold alerts from reporting.quota_alerts, newest first."""
    from psycopg.rows import dict_row

    columns = ["emitted_at", "tenant_id", "limit_id", "threshold", "limit", "used", "hard"]
    with database() as conn, conn.cursor(row_factory=dict_row) as cur:
        cli_input.known(conn, tenant=tenant)
        rows = cur.execute(
            'SELECT emitted_at, tenant_id, limit_id, threshold, "limit", used, hard'
            " FROM reporting.quota_alerts WHERE %s::text IS NULL OR tenant_id = %s"
            " ORDER BY emitted_at DESC, threshold DESC LIMIT 200",
            (tenant, tenant),
        ).fetchall()
    typer.echo(render(rows, columns, fmt))


@quota_app.command("spend")
def quota_spend(
    period: Annotated[
        str | None, typer.Option(help="Billing period, YYYY-MM (default: the current one).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Spend estimated in the stream, next to what the invoice bills, for spend limits.

    The stream rates each event at its model's base price as it arrives; the invoice applies
    graduated tiers, overrides and rounding, so it is the final word. The difference is
    shown per tenant: usage lines of the finalized invoice, or of the running draft.
    """
    from metering.store import quota_limits
    from metering.store.billing.bills import compute_bill
    from metering.store.billing.context import BillingContext
    from metering.store.billing.invoices import closed_invoice_for

    period = cli_input.optional_period(period)
    rows = []
    with database() as conn:
        tenants = sorted({x.tenant_id for x in quota_limits.list_limits(conn) if x.kind.is_spend})
        ctx = BillingContext.load(conn, late_window())
        for tenant in tenants:
            chosen = ctx.period(tenant, period) if period else ctx.current_period(tenant, now())
            closed, invoice = closed_invoice_for(conn, tenant, chosen)
            if invoice is not None:
                lines, source = invoice.lines, f"invoice {invoice.invoice_number}"
            elif closed:
                lines, source = (), "closed, nothing billed"
            else:
                lines, source = compute_bill(conn, ctx, tenant, chosen).draft.lines, "draft"
            estimated = quota_limits.estimated_spend(conn, tenant, chosen.start)
            billed = sum((x.amount for x in lines if x.kind == LineKind.USAGE), Decimal(0))
            rows.append(
                {
                    "tenant_id": tenant,
                    "period": chosen.label,
                    "estimated": estimated.quantize(Decimal("0.0001")),
                    "invoiced_usage": billed,
                    "difference": (estimated - billed).quantize(Decimal("0.0001")),
                    "source": source,
                }
            )
    columns = ["tenant_id", "period", "estimated", "invoiced_usage", "difference", "source"]
    typer.echo(render(rows, columns, fmt))


def register(app: typer.Typer) -> None:
    app.add_typer(quota_app, name="quota")
