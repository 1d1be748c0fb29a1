"""`metering services`, `metering db` and `metering worker`: the local services, the schema
and the stream worker."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from metering.cli.support import (
    command_group,
    fail,
)

services_app = command_group("Run the local Kafka broker and PostgreSQL server.")
db_app = command_group("Manage the billing database schema (Alembic migrations).")


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
    import gc

    # Nothing that start-up makes is garbage for long: the collector stays off until the
    # worker runs, then leaves it out of its view (streams.ingest.service.collect_as_running).
    gc.disable()
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


def register(app: typer.Typer) -> None:
    app.add_typer(services_app, name="services")
    app.add_typer(db_app, name="db")
    app.command()(worker)
