"""`metering produce`: synthetic traffic for demos and load tests, with the totals it
should bill."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from metering.billing.tokens import TOKEN_COUNTS
from metering.cli import arguments as cli_input
from metering.cli.output import Format, progress, render
from metering.cli.support import (
    fail,
)
from metering.tools.traffic import DEMO_MODELS, TrafficPlan

USAGE_COLUMNS = ("events", *TOKEN_COUNTS)


def produce(
    events: Annotated[int, typer.Option(help="Messages to send in all.")] = 100_000,
    tenants: Annotated[int, typer.Option(help="Demo tenants to spread them over (skewed).")] = 50,
    models: Annotated[int, typer.Option(help=f"Demo models to use (1-{len(DEMO_MODELS)}).")] = 10,
    duplicates: Annotated[float, typer.Option(help="Fraction resent as exact duplicates.")] = 0.02,
    invalid: Annotated[float, typer.Option(help="Fraction that is invalid.")] = 0.005,
    late: Annotated[
        float, typer.Option(help="Fraction arriving 1-72 h late (still billable).")
    ] = 0.01,
    rate: Annotated[
        float | None, typer.Option(help="Messages per second (default: flat out).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same traffic.")] = 42,
    period: Annotated[
        str | None,
        typer.Option(
            help="Events occur across this calendar month, YYYY-MM, as far back as ingest"
            " accepts (METERING_BACKDATING_DAYS) and not after now (default: the last hour)."
        ),
    ] = None,
) -> None:
    """Generate realistic usage traffic and print the totals a correct pipeline must show.

    Compare the printed totals with `metering usage --by tenant`.
    """
    import asyncio

    from metering.billing.periods import period_from_label
    from metering.config import get_settings
    from metering.produce.producer import produce as send_all
    from metering.tools.traffic import TrafficSpec, period_span
    from metering.wire.kafka_admin import ensure_topics

    settings = get_settings()
    now = datetime.now(UTC)
    occurred_from = None
    try:
        if period is not None:
            month = period_from_label(cli_input.period(period))
            backdating = timedelta(days=settings.backdating_days)
            occurred_from, now = period_span(month.start, month.end, now, backdating)
        spec = TrafficSpec(
            events,
            tenants,
            models,
            duplicates,
            invalid,
            late,
            seed,
            now,
            occurred_from=occurred_from,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    plan = TrafficPlan(spec)
    started = time.monotonic()
    asyncio.run(ensure_topics(settings))
    with progress(f"producing to {settings.topic_usage}", events) as advance:
        sent = asyncio.run(
            send_all(
                plan.messages(),
                bootstrap_servers=settings.kafka_bootstrap,
                topic=settings.topic_usage,
                rate=rate,
                progress=advance,
            )
        )
    elapsed = time.monotonic() - started
    typer.echo(
        f"produced {sent:,} messages to {settings.topic_usage} in {elapsed:.1f}s "
        f"({sent / max(elapsed, 1e-9):,.0f}/s)",
        err=True,
    )
    _print_expected(plan)


def _print_expected(plan: TrafficPlan) -> None:
    """What the traffic should bill, per tenant: the totals `metering usage` must match."""
    expected = plan.expected
    typer.echo("messages by kind: " + ", ".join(f"{k}={v:,}" for k, v in expected.messages.items()))
    by_tenant: dict[str, dict[str, Any]] = {}
    for (tenant_id, _), totals in sorted(expected.usage.items()):
        row = by_tenant.setdefault(
            tenant_id, {"tenant_id": tenant_id, **dict.fromkeys(USAGE_COLUMNS, 0)}
        )
        for column in USAGE_COLUMNS:
            row[column] += getattr(totals, column)
    typer.echo("expected usage (compare with `metering usage --by tenant`):")
    typer.echo(render(list(by_tenant.values()), ["tenant_id", *USAGE_COLUMNS], Format.table))


def register(app: typer.Typer) -> None:
    app.command()(produce)
