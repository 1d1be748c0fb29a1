"""The `metering` command: services, schema, worker, catalogs, usage, reconcile, DLQ, load."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from metering.config import get_settings
from metering.services import ServiceError, env_lines, local_services

app = typer.Typer(
    help="Usage metering and billing for LLM hosting: Kafka in, exact bills out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(help="Run the local Kafka broker and PostgreSQL server.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the billing database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turns the errors a user can fix into one clear line instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ServiceError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@services_app.command("up")
@friendly_errors
def services_up() -> None:
    """Start Kafka (KRaft) and PostgreSQL on 127.0.0.1, installing them on first use.

    Idempotent: services already running are reused. Ports come from METERING_KAFKA_PORT,
    METERING_KAFKA_CONTROLLER_PORT and METERING_PG_PORT.
    """
    for service in local_services(get_settings()):
        status = service.up()
        typer.echo(f"{status.name:9} up   {status.address:16} pid {status.pid}  ({status.version})")


@services_app.command("down")
@friendly_errors
def services_down() -> None:
    """Stop the services that `services up` started (by pid); others are left alone."""
    for service in reversed(local_services(get_settings())):
        stopped = service.down()
        typer.echo(f"{service.status().name:9} {'stopped' if stopped else 'was not running'}")


@services_app.command("status")
def services_status() -> None:
    """Show whether each local service is running, where, and its log file."""
    statuses = [service.status() for service in local_services(get_settings())]
    for s in statuses:
        state = f"running  pid {s.pid}" if s.running else "stopped"
        typer.echo(f"{s.name:9} {state:18} {s.address:16} {s.version:8} log {s.log}")
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


@services_app.command("env")
def services_env() -> None:
    """Print `export METERING_...` lines for a shell: eval "$(metering services env)"."""
    for line in env_lines(get_settings()):
        typer.echo(line)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Bring the database at METERING_DATABASE_URL to a schema revision (default: head)."""
    from metering.db import migrate

    migrate.upgrade(get_settings().database_url, revision)


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base.")) -> None:
    """Undo migrations down to a revision."""
    from metering.db import migrate

    migrate.downgrade(get_settings().database_url, revision)


@db_app.command("current")
def db_current() -> None:
    """Show the database's current schema revision."""
    from metering.db import migrate

    migrate.current(get_settings().database_url)


@app.command()
def worker() -> None:
    """Run the stream worker: consume usage events, write the ledger, dead-letter bad input.

    Stops cleanly on SIGTERM or Ctrl-C. Run several to share the load (same consumer group).
    """
    from streams.main import run_worker

    sys.exit(run_worker(get_settings()))


if __name__ == "__main__":
    app()
