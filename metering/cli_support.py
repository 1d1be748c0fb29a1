"""What every `metering` command shares: clear errors, the database, output format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from aiokafka.errors import KafkaConnectionError

from metering.config import get_settings
from metering.kafka_admin import TopicMissingError
from metering.output import Format
from metering.services import ServiceError

FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]

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
        except (ServiceError, TopicMissingError) as exc:
            raise fail(str(exc)) from None
        except psycopg.errors.UndefinedTable:
            raise fail("the database has no schema yet: run `metering db upgrade`") from None
        except psycopg.OperationalError as exc:
            settings = get_settings()
            raise fail(
                f"cannot use the database at {settings.database_url}: {str(exc).strip()}\n"
                "Start the local one with `metering services up`, or set METERING_DATABASE_URL."
            ) from None
        except KafkaConnectionError as exc:
            raise fail(
                f"cannot reach Kafka at {get_settings().kafka_bootstrap}: {exc}\n"
                "Start the local broker with `metering services up`, or set "
                "METERING_KAFKA_BOOTSTRAP."
            ) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def database() -> Iterator[psycopg.Connection]:
    """A connection to the billing database, committed when the block succeeds."""
    with psycopg.connect(get_settings().psycopg_dsn, connect_timeout=5) as conn:
        yield conn
