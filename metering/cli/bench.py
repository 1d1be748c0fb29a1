"""`metering bench`: the pipeline's benchmarks, each next to its baseline (bench/)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import orjson
import typer

from metering.cli.output import Format, render
from metering.cli.support import FormatOption, fail


def bench(
    events: Annotated[
        int | None,
        typer.Option(help="Events drained in case 1 (default 1,000,000; quick 100,000)."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            help="A few minutes: 300k events, a 1M-row growth ledger, 20 s latency, 100 tenants."
        ),
    ] = False,
    ledger_rows: Annotated[
        int | None,
        typer.Option(
            help="Rows in the ledger before the growth case's drain (default 10M; quick 1M)."
        ),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(help="Worker processes in the processes case (default 2)."),
    ] = None,
    latency_seconds: Annotated[
        float | None, typer.Option(help="Length of the latency run (default 60, quick 20).")
    ] = None,
    latency_rate: Annotated[
        float | None, typer.Option(help="Events/s of the latency run (default: half the drain).")
    ] = None,
    random_ids: Annotated[
        bool,
        typer.Option(
            help="Event ids as random UUID4s (a caller minting its own) instead of the"
            " producer's time-ordered UUID7s."
        ),
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Measure drain throughput (empty and pre-filled ledger, one and several workers),
    latency, memory, storage and invoice close.

    Starts the local services if needed, then uses a scratch database and fresh topics,
    dropped afterwards. Prints each figure next to its same-run baseline and its target,
    and writes every figure and the machine's facts to bench/results/<timestamp>.json.
    """
    from rich.console import Console

    from bench.report import COLUMNS, rows
    from bench.run import BenchConfig, Progress, run_bench
    from metering.config import get_settings
    from metering.services import local_services

    if events is not None and events < 1:
        raise fail("--events must be at least 1")
    if ledger_rows is not None and ledger_rows < 1:
        raise fail("--ledger-rows must be at least 1")
    if processes is not None and processes < 2:
        raise fail("--processes must be at least 2 (the drain case runs one worker)")
    config = BenchConfig.quick() if quick else BenchConfig()
    overrides: dict[str, Any] = {
        "events": events,
        "latency_s": latency_seconds,
        "latency_rate": latency_rate,
        "ledger_rows": ledger_rows,
        "processes": processes,
        "random_ids": random_ids or None,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    settings = get_settings()
    for service in local_services(settings):
        service.up()
    result = run_bench(settings, config, progress=Progress(Console(stderr=True)))
    if fmt is Format.json:
        typer.echo(orjson.dumps(result.document, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render(rows(result.cases), COLUMNS, fmt))
    if fmt is Format.table:
        typer.echo("\n" + "\n".join(f"{c.name}: {note}" for c in result.cases for note in c.notes))
    typer.echo(f"\nresults: {result.path}", err=True)
    if any(case.status.startswith("failed") for case in result.cases):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
