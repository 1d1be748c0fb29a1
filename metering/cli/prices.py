"""`metering prices`: import a price file, list the prices in effect."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metering.cli import arguments as cli_input
from metering.cli.output import Format, render
from metering.cli.support import FormatOption, database

if TYPE_CHECKING:
    from metering.billing.prices import PriceEntry
    from metering.store.billing.price_imports import Correction, PriceImport


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
    from metering.files.price_fields import PriceFileError
    from metering.files.price_files import load_price_file
    from metering.store import catalog
    from metering.store.billing.price_imports import import_prices

    try:
        entries = load_price_file(file)
    except PriceFileError as exc:
        for problem in exc.problems:
            typer.secho(f"error: {problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    with database(autocommit=True) as conn:
        known_models = {m.model_id for m in catalog.list_models(conn)}
        with _import_advice():
            result = import_prices(
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


@contextmanager
def _import_advice() -> Iterator[None]:
    """An import refused for want of a flag: which flag, and what it does."""
    from metering.cli.billing_common import advise
    from metering.store.billing.errors import PricesChangedError, PricesReachInvoicedError

    try:
        yield
    except PricesChangedError as exc:
        raise advise(exc, ", or pass --replace to replace the stored entries") from None
    except PricesReachInvoicedError as exc:
        raise advise(
            exc,
            ": see which invoices it would adjust with --dry-run, then import it with"
            " --correct-invoiced to bill the difference on each tenant's next invoice",
        ) from None


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
    file: Path, result: PriceImport, *, replace: bool, correct_invoiced: bool
) -> None:
    from metering.billing.utc import rfc3339

    typer.echo(
        f"{file} (dry run, nothing stored): would add {result.added} prices, replace"
        f" {result.replaced}, leave {result.unchanged} unchanged"
    )
    for verb, entries in (("add", result.added_entries), ("replace", result.replaced_entries)):
        for entry in entries:
            until = (
                f" until {rfc3339(entry.effective_to, to_seconds=True)}"
                if entry.effective_to
                else ""
            )
            typer.echo(
                f"  {verb} {entry.describe()}: {entry.price_per_million} {entry.currency}"
                f" per 1M from {rfc3339(entry.effective_from, to_seconds=True)}{until}"
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


def _show_corrections(corrections: tuple[Correction, ...], verb: str) -> None:
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


@prices_app.command("list")
def prices_list(
    at: Annotated[
        str | None, typer.Option(help="The moment (UTC) whose prices to show; default now.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the list prices in effect at a moment, per 1M tokens."""
    from metering.cli.billing_common import now
    from metering.store.billing.prices import load_price_book

    moment = cli_input.moment(at, "--at") if at is not None else now()
    with database(autocommit=True) as conn:
        cli_input.known(conn, model=model)
        book = load_price_book(conn)
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


def register(app: typer.Typer) -> None:
    """Adds `prices` to the CLI."""
    app.add_typer(prices_app, name="prices")
