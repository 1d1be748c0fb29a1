"""The `metering` command: services, schema, worker, catalogs, usage, reconcile, DLQ, load.

Start-up loads only typer and what the commands' options are made of. Settings (pydantic),
the services, the store (psycopg), Kafka and the domain's heavier modules are imported in
the command that needs them, so that `metering --help` and every mistake answer at once.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from metering.billing.tokens import TOKEN_COUNTS
from metering.cli import arguments as cli_input
from metering.cli.bench import register as register_bench
from metering.cli.contracts import register as register_contracts
from metering.cli.invoices import register as register_invoices
from metering.cli.logins import register as register_logins
from metering.cli.output import Format, progress, render
from metering.cli.prices import register as register_prices
from metering.cli.quota import register as register_quota
from metering.cli.support import (
    FormatOption,
    GuardedGroup,
    command_group,
    database,
    fail,
    quiet_libraries,
)
from metering.store.reports import UsageGrouping
from metering.tools.traffic import DEMO_MODELS

TENANT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
USAGE_COLUMNS = ("events", *TOKEN_COUNTS)

app = command_group(
    "Usage metering and billing for LLM hosting: Kafka in, exact bills out.",
    cls=GuardedGroup,
    pretty_exceptions_enable=False,
)
app.callback()(quiet_libraries)
services_app = command_group("Run the local Kafka broker and PostgreSQL server.")
db_app = command_group("Manage the billing database schema (Alembic migrations).")
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")


@services_app.command("up")
def services_up() -> None:
    """Start Kafka (KRaft) and PostgreSQL on 127.0.0.1, installing them on first use.

    Idempotent: services already running are reused. Ports come from METERING_KAFKA_PORT,
    METERING_KAFKA_CONTROLLER_PORT and METERING_PG_PORT.
    """
    from metering.config import get_settings
    from metering.services import local_services

    for service in local_services(get_settings()):
        status = service.up()
        typer.echo(f"{status.name:9} up   {status.address:16} pid {status.pid}  ({status.version})")


@services_app.command("down")
def services_down() -> None:
    """Stop the services that `services up` started (by pid); others are left alone."""
    from metering.config import get_settings
    from metering.services import local_services

    for service in reversed(local_services(get_settings())):
        stopped = service.down()
        typer.echo(f"{service.status().name:9} {'stopped' if stopped else 'was not running'}")


@services_app.command("status")
def services_status() -> None:
    """Show whether each local service is running, where, and its log file."""
    from metering.config import get_settings
    from metering.services import local_services

    statuses = [service.status() for service in local_services(get_settings())]
    for s in statuses:
        state = f"running  pid {s.pid}" if s.running else "stopped"
        typer.echo(f"{s.name:9} {state:18} {s.address:16} {s.version:8} log {s.log}")
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


@services_app.command("env")
def services_env() -> None:
    """Print `export METERING_...` lines for a shell: eval "$(metering services env)"."""
    from metering.config import get_settings
    from metering.services import env_lines

    for line in env_lines(get_settings()):
        typer.echo(line)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Bring the database at METERING_DATABASE_URL to a schema revision (default: head)."""
    from metering.config import get_settings
    from metering.store import migrate

    migrate.upgrade(get_settings().database_url, revision)


@db_app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base."),
) -> None:
    """Undo migrations down to a revision."""
    from metering.config import get_settings
    from metering.store import migrate

    migrate.downgrade(get_settings().database_url, revision)


@db_app.command("current")
def db_current() -> None:
    """Show the database's current schema revision."""
    from metering.config import get_settings
    from metering.store import migrate

    migrate.current(get_settings().database_url)


@app.command()
def worker(
    processes: Annotated[
        int,
        typer.Option(
            help="Worker processes to run, sharing the partitions and the HTTP port.",
        ),
    ] = 1,
) -> None:
    """Run the stream worker: consume usage events, write the ledger, dead-letter bad input.

    Stops cleanly on SIGTERM or Ctrl-C. Run several to share the load (same consumer group);
    with METERING_WORKER_WEB_PORT unset, each takes the first free HTTP port from 6066.
    """
    from metering.config import get_settings
    from streams.main import run_worker
    from streams.web import WebPortError

    if processes < 1:
        raise fail(f"--processes must be at least 1, got {processes}")
    try:
        code = run_worker(get_settings(), processes=processes)
    except WebPortError as exc:
        raise fail(str(exc)) from None
    sys.exit(code)


# --- catalogs -------------------------------------------------------------------------

tenants_app = command_group("The tenant catalog: events for unknown tenants are rejected.")
models_app = command_group("The model catalog: events for unknown models are rejected.")
dlq_app = command_group("Dead letters: rejected events, their reasons, and replay.")
app.add_typer(tenants_app, name="tenants")
app.add_typer(models_app, name="models")
app.add_typer(dlq_app, name="dlq")


@tenants_app.command("add")
def tenants_add(
    tenant_id: Annotated[str, typer.Argument(help="1-64 chars of A-Za-z0-9._-")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
) -> None:
    """Add a tenant (no-op if it exists)."""
    from metering.store import catalog

    if not TENANT_ID.fullmatch(tenant_id):
        raise fail(f"tenant id {tenant_id!r} must be 1-64 characters of A-Za-z0-9._-")
    with database() as conn:
        added = catalog.add_tenants(conn, [catalog.TenantRow(tenant_id, name or tenant_id)])
    typer.echo(f"tenant {tenant_id} {'added' if added else 'already exists'}")


@tenants_app.command("list")
def tenants_list(fmt: FormatOption = Format.table) -> None:
    """List tenants."""
    from metering.store import catalog

    with database() as conn:
        rows = [asdict(t) for t in catalog.list_tenants(conn)]
    typer.echo(render(rows, ["tenant_id", "display_name"], fmt))


@models_app.command("add")
def models_add(
    model_id: Annotated[str, typer.Argument(help="Model id as events name it, e.g. grok-3.")],
    provider: Annotated[str, typer.Option(help="Who serves it: xai, openai, meta, ...")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
    long_context_above: Annotated[
        int | None,
        typer.Option(help="Requests with more input tokens than this are long-context."),
    ] = None,
) -> None:
    """Add a model (no-op if it exists). Events rejected as unknown_model can then be replayed."""
    from metering.store import catalog
    from metering.store.billing.prices import has_price

    row = catalog.ModelRow(model_id, provider, name or model_id, long_context_above)
    with database() as conn:
        added = catalog.add_models(conn, [row])
        priced = has_price(conn, model_id, datetime.now(UTC))
    typer.echo(f"model {model_id} {'added' if added else 'already exists'}")
    if not priced:
        typer.secho(
            f"warning: model {model_id} has no price in effect now: its events are"
            " dead-lettered as unpriced until one covers them; import one with `metering"
            " prices import FILE`",
            fg=typer.colors.YELLOW,
            err=True,
        )


@models_app.command("list")
def models_list(fmt: FormatOption = Format.table) -> None:
    """List models."""
    from metering.store import catalog

    with database() as conn:
        rows = [asdict(m) for m in catalog.list_models(conn)]
    typer.echo(render(rows, ["model_id", "provider", "display_name", "long_context_above"], fmt))


@app.command("seed-demo")
def seed_demo(
    tenants: Annotated[int, typer.Option(help="How many demo tenants.")] = 50,
) -> None:
    """Seed the catalogs with the demo tenants and models `metering produce` uses."""
    from metering.store import catalog
    from metering.tools.traffic import demo_tenants

    with database() as conn:
        new_models = catalog.add_models(
            conn, [catalog.ModelRow(m.model_id, m.provider, m.display_name) for m in DEMO_MODELS]
        )
        new_tenants = catalog.add_tenants(
            conn, [catalog.TenantRow(t, t) for t in demo_tenants(tenants)]
        )
    typer.echo(f"seeded {new_tenants} new tenants and {new_models} new models")


# --- reading the numbers -----------------------------------------------------------------


@app.command()
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


@app.command()
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


@app.command()
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


# --- dead letters ---------------------------------------------------------------------------


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


@app.command()
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


# --- load -------------------------------------------------------------------------------------


@app.command()
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
    from metering.tools.traffic import TrafficPlan, TrafficSpec, period_span
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


register_quota(app)

register_bench(app)

register_prices(app)
register_invoices(app)
register_contracts(tenants_app)

register_logins(tenants_app)
