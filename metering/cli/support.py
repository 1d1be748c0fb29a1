"""What every `metering` command shares: one-line errors, the database, output format.

``GuardedGroup`` is the one place that turns failures into messages: every command runs
inside it, so no traceback reaches a user. Heavy libraries (psycopg, aiokafka, SQLAlchemy)
are imported only when a command needs them, never to start the CLI.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click import exceptions as click_errors  # typer's own click, vendored
from typer.core import TyperGroup

from metering.cli.output import Format

if TYPE_CHECKING:
    import psycopg

FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]

USAGE = 2
"""Exit code of a mistake in the command line (a bad option, an unknown tenant)."""
FAILED = 1
"""Exit code of a failed check or of something the user's environment did not provide."""

DEBUG_VARIABLE = "METERING_DEBUG"


class UserError(Exception):
    """A mistake the user can fix, said in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = USAGE) -> UserError:
    """The error to ``raise`` for a mistake: the guard prints it as one line."""
    return UserError(message, code)


def command_group(help_text: str, **options: Any) -> typer.Typer:
    """A `metering` command group with plain help: paragraphs re-wrapped, no type noise."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, **options)


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _say(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class GuardedGroup(TyperGroup):
    """The `metering` command group: every failure ends as one line on stderr.

    Usage mistakes exit 2 and name the command's --help; known failures (a service down, a
    path that cannot be written) say what to do; anything else names its type and how to see
    the traceback (METERING_DEBUG=1), exit 1.
    """

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        extra.setdefault("prog_name", "metering")  # also when run as `python -m metering.cli.app`
        try:
            code = super().main(args=args, standalone_mode=False, **extra)
        except click_errors.ClickException as exc:
            code = _usage_error(exc)
        except typer.Abort:
            _say("aborted")
            code = FAILED
        except Exception as exc:
            if debugging():
                raise
            message, code = explain(exc)
            _say(message)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def quiet_libraries(ctx: typer.Context) -> None:
    """Runs before every command: libraries log connection retries and unclosed clients to
    stderr when nothing handles their records, and the one error line already says what went
    wrong. The worker keeps its logs; METERING_DEBUG=1 keeps everyone's."""
    if not debugging() and ctx.invoked_subcommand != "worker":
        logging.getLogger().addHandler(logging.NullHandler())


def _usage_error(exc: click_errors.ClickException) -> int:
    if isinstance(exc, click_errors.NoArgsIsHelpError):
        typer.echo(exc.format_message())  # a group run without a command: its help
        return exc.exit_code
    where = ""
    if isinstance(exc, click_errors.UsageError) and exc.ctx is not None:
        where = f"; see `{exc.ctx.command_path} --help`"
    _say(_one_line(exc.format_message()) + where)
    return exc.exit_code


def explain(exc: BaseException) -> tuple[str, int]:
    """The line and exit code for a failure raised by a command."""
    if isinstance(exc, UserError):
        return str(exc), exc.code
    for explainer in (_settings_failure, _database_failure, _kafka_failure, _domain_failure):
        found = explainer(exc)
        if found is not None:
            return found
    if isinstance(exc, OSError):
        path = f"{exc.filename}: " if exc.filename else ""
        return f"{path}{exc.strerror or exc}", FAILED
    return (
        f"unexpected {type(exc).__name__}: {_one_line(str(exc))}; run it again with"
        f" {DEBUG_VARIABLE}=1 for the traceback, and report it",
        FAILED,
    )


def _settings_failure(exc: BaseException) -> tuple[str, int] | None:
    """A METERING_* variable that does not parse: name it and what it needs."""
    if "pydantic" not in sys.modules:
        return None
    import pydantic

    if not isinstance(exc, pydantic.ValidationError) or exc.title != "Settings":
        return None
    problems = "; ".join(
        f"METERING_{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg'].lower()}"
        for e in exc.errors()
    )
    return f"{problems}; fix or unset the variable", USAGE


def _database_failure(exc: BaseException) -> tuple[str, int] | None:
    if "psycopg" not in sys.modules:
        return None
    import psycopg

    cause = getattr(exc, "orig", None) if "sqlalchemy" in sys.modules else None
    error = cause if isinstance(cause, psycopg.Error) else exc
    if isinstance(error, psycopg.errors.UndefinedTable):
        return "the database has no schema yet: run `metering db upgrade`", FAILED
    if not isinstance(error, psycopg.OperationalError):
        return None
    from metering.config import get_settings

    settings = get_settings()
    reason = str(error).strip().splitlines()[0].split(": ")[-1]
    return (
        f"the database at {_host_port(settings.psycopg_dsn)} is not reachable ({reason}):"
        " start it with `metering services up` or set METERING_DATABASE_URL",
        FAILED,
    )


def _host_port(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(dsn)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"


def _kafka_failure(exc: BaseException) -> tuple[str, int] | None:
    if "aiokafka" in sys.modules:
        from aiokafka.errors import KafkaConnectionError

        if isinstance(exc, KafkaConnectionError):
            from metering.config import get_settings

            return (
                f"Kafka at {get_settings().kafka_bootstrap} is not reachable: start it with"
                " `metering services up` or set METERING_KAFKA_BOOTSTRAP",
                FAILED,
            )
    if "metering.wire.kafka_admin" in sys.modules:
        from metering.wire.kafka_admin import TopicMissingError

        if isinstance(exc, TopicMissingError):
            return str(exc), FAILED
    return None


def _domain_failure(exc: BaseException) -> tuple[str, int] | None:
    """Errors of the domain and store that a user fixes with other options or data."""
    if "metering.services.process" in sys.modules:
        from metering.services import ServiceError

        if isinstance(exc, ServiceError):
            return str(exc), FAILED
    known: list[type[BaseException]] = []
    for module, names in _USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None:
            known.extend(getattr(loaded, name) for name in names)
    if known and isinstance(exc, tuple(known)):
        return _one_line(str(exc)) + _advice(exc), USAGE
    return None


def _advice(exc: BaseException) -> str:
    """What to do about a domain error whose message says only what is wrong."""
    for module, name, advice in _ADVICE:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return f": {advice}"
    return ""


_USER_ERRORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metering.store.billing.errors", ("BillingError",)),
    ("metering.billing.prices", ("PricingError",)),
    ("metering.billing.invoice_errors", ("InvoiceError",)),
    ("metering.store.logins", ("LoginError",)),
)
"""Exceptions that mean "your input cannot be used", by module: an exception of a module
never imported cannot have been raised, so the CLI need not import it to recognise it."""

_ADVICE: tuple[tuple[str, str, str], ...] = (
    (
        "metering.billing.prices",
        "NoPriceError",
        "import a price file that covers it (`metering prices import FILE`), or check the model",
    ),
)
"""Advice about commands for domain errors, which say only what is wrong (same lookup)."""


@contextmanager
def database(*, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection to the billing database, committed when the block succeeds.

    ``autocommit`` for the billing adapters, which open their own transactions.
    """
    import psycopg

    from metering.config import get_settings

    dsn = get_settings().psycopg_dsn
    with psycopg.connect(dsn, connect_timeout=5, autocommit=autocommit) as conn:
        yield conn
