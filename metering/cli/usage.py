"""`metering usage`, `reconcile`, `lag`, `conflicts` and `metering dlq`: what ingest made
of the events."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from metering.cli import arguments as cli_input
from metering.cli.output import Format, progress, render
from metering.cli.support import (
    FormatOption,
    command_group,
    database,
    fail,
)
from metering.store.reports import UsageGrouping

dlq_app = command_group("Dead letters: rejected events, their reasons, and replay.")


def usage(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="From this date/time (UTC), inclusive.")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Up to this date/time (UTC), exclusive.")] = None,
    by: Annotated[UsageGrouping, typer.Option(help="Group rows by.")] = UsageGrouping.tenant,
    fmt: FormatOption = Format.table,
) -> None:
    """Token usage from reporting.usage_hourly, grouped by hour, day, model or tenant."""
    from metering.store import reports

    where = reports.UsageFilter(tenant, model, *cli_input.time_window(from_, to, "--from", "--to"))
    with database() as conn:
        cli_input.known(conn, tenant=tenant, model=model)
        columns, rows = reports.usage(conn, by, where)
    if by is UsageGrouping.day and fmt is Format.table:
        rows = [{**row, "day": row["day"].date()} for row in rows]
    typer.echo(render(rows, columns, fmt))


def reconcile(fmt: FormatOption = Format.table) -> None:
    """Check produced = accepted + duplicates + conflicts + rejected and ledger = aggregates.

    Prints both figures of each check; exits 1 if any pair differs.
    """
    from metering.config import get_settings
    from metering.store.reconcile import reconcile as run_checks

    checks = run_checks(get_settings())
    rows = [
        {
            "check": c.name,
            "expected": c.expected,
            "actual": c.actual,
            "result": "ok" if c.ok else "MISMATCH",
            "how": c.how,
        }
        for c in checks
    ]
    typer.echo(render(rows, ["check", "expected", "actual", "result", "how"], fmt))
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def lag(
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for zero lag.")] = 0.0,
) -> None:
    """Records in the usage topic the ledger has not processed yet; exits 1 if not zero."""
    import asyncio

    from metering.config import get_settings
    from metering.store.reconcile import lag as unprocessed

    settings = get_settings()
    deadline = time.monotonic() + wait
    while True:
        remaining = asyncio.run(unprocessed(settings))
        if remaining == 0 or time.monotonic() >= deadline:
            break
        typer.echo(f"lag: {remaining:,} records to go", err=True)
        time.sleep(1.0)
    typer.echo(f"lag: {remaining:,}")
    if remaining:
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(fmt: FormatOption = Format.table) -> None:
    """Summarise dead letters by reason, with the latest detail for each."""
    from metering.store import reports

    with database() as conn:
        columns, rows = reports.dead_letter_summary(conn)
    typer.echo(render(rows, columns, fmt))


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[str, typer.Option(help="Replay the dead letters with this reason.")],
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
) -> None:
    """Send rejected originals back through ingest once the cause is fixed.

    Never bills twice: the ledger ignores event ids it already has.
    """
    import asyncio

    from metering.billing.events import REASONS
    from metering.config import get_settings
    from metering.wire import dlq

    if reason not in REASONS:
        raise fail(f"unknown reason {reason!r}; reasons are: {', '.join(REASONS)}")
    settings = get_settings()
    with progress(f"replaying {reason}", limit) as advance:
        count = asyncio.run(
            dlq.replay(
                settings.psycopg_dsn,
                settings.kafka_bootstrap,
                settings.topic_usage,
                reason,
                limit=limit,
                progress=advance,
            )
        )
    typer.echo(f"replayed {count:,} dead letters with reason {reason} to {settings.topic_usage}")


def conflicts(
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 50,
    fmt: FormatOption = Format.table,
) -> None:
    """Events re-sent under a known event_id with a different payload.

    The first payload stands and is billed; each conflicting copy is recorded here, with
    where it came from, for the producer's owners to investigate.
    """
    from metering.store import reports

    with database() as conn:
        columns, rows = reports.conflicts(conn, limit)
    typer.echo(render(rows, columns, fmt))


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
    for command in (usage, reconcile, lag, conflicts):
        app.command()(command)
