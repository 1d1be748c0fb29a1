"""Reading what a user typed: moments, periods, amounts, paths, tenants and models.

The one parser of dates and periods for every command. Each function returns the value or
raises ``fail(...)`` with one line naming the option, what was wrong and what to write.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Final

from metering.cli.support import fail

if TYPE_CHECKING:
    import psycopg

EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9999, 1, 1, tzinfo=UTC)
"""Moments and periods the CLI accepts lie in [EARLIEST, LATEST): a period or window ends
after it starts, and that end must still be a date Python and PostgreSQL can hold."""

_PERIOD_SHAPE: Final = re.compile(r"([0-9]{4})-([0-9]{2})")
_DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MOMENT_HINT: Final = "use 2026-11-01 (00:00 UTC) or 2026-11-01T12:00:00Z"
_RANGE: Final = f"{EARLIEST:%Y-%m} to {LATEST.year - 1}-12"


def moment(value: str, option: str) -> datetime:
    """``2026-11-01`` (00:00 UTC) or an ISO time; a time without an offset is UTC."""
    try:
        if _DATE_SHAPE.fullmatch(value):
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise fail(f"{option} {value!r} is not a date or time: {_MOMENT_HINT}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST <= parsed < LATEST:
        raise fail(f"{option} {value!r} is beyond the supported range ({_RANGE})")
    return parsed.astimezone(UTC)


def optional_moment(value: str | None, option: str) -> datetime | None:
    return None if value is None else moment(value, option)


def time_window(
    start: str | None, end: str | None, start_option: str, end_option: str
) -> tuple[datetime | None, datetime | None]:
    """A half-open window [start, end); either side may be open. Empty windows are refused."""
    begins, ends = optional_moment(start, start_option), optional_moment(end, end_option)
    if begins is not None and ends is not None and begins >= ends:
        raise fail(
            f"{start_option} {start} is not before {end_option} {end}: the window would be"
            f" empty ({end_option} is exclusive)"
        )
    return begins, ends


def period(value: str, option: str = "--period") -> str:
    """A billing period label, ``YYYY-MM``, within the supported range."""
    match = _PERIOD_SHAPE.fullmatch(value)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise fail(f"{option} {value!r} is not a month: use YYYY-MM, e.g. 2026-11")
    if not EARLIEST.year <= int(match[1]) < LATEST.year:
        raise fail(f"{option} {value!r} is beyond the supported range ({_RANGE})")
    return value


def optional_period(value: str | None, option: str = "--period") -> str | None:
    return None if value is None else period(value, option)


def decimal(value: str, option: str) -> Decimal:
    """A finite decimal such as ``12.50``, written back in messages as the user wrote it."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise fail(f"{option} {value!r} is not a decimal number such as 12.50") from None
    if not amount.is_finite():
        raise fail(f"{option} {value!r} must be a finite number such as 12.50")
    return amount


def output_directory(path: Path, option: str = "--out") -> Path:
    """A directory to write into, created if missing; refused if it cannot be."""
    if path.exists() and not path.is_dir():
        raise fail(f"{option} {path} is a file: give a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"{option} {path} cannot be created: {exc.strerror}") from None
    probe = path / ".metering-write-check"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise fail(f"{option} {path} is not writable: {exc.strerror}") from None
    return path


def known_tenant(conn: psycopg.Connection, tenant: str) -> str:
    """``tenant`` if the catalog has it; otherwise one line naming the closest id."""
    return _known(conn, "tenant", tenant)


def known_model(conn: psycopg.Connection, model: str) -> str:
    """``model`` if the catalog has it or a price names it (prices and contract overrides
    may come before the model is served); otherwise one line naming the closest id."""
    return _known(conn, "model", model)


def known(conn: psycopg.Connection, *, tenant: str | None = None, model: str | None = None) -> None:
    """Checks the ``--tenant`` and ``--model`` filters a command was given."""
    if tenant is not None:
        known_tenant(conn, tenant)
    if model is not None:
        known_model(conn, model)


_CATALOG_IDS: Final = {
    "tenant": "SELECT tenant_id FROM tenants",
    "model": "SELECT model_id FROM models UNION SELECT model FROM price_entries",
}


def _known(conn: psycopg.Connection, what: str, value: str) -> str:
    ids = {row[0] for row in conn.execute(_CATALOG_IDS[what])}
    if value in ids:
        return value
    close = difflib.get_close_matches(value, sorted(ids), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise fail(f"unknown {what} {value!r}{hint}; see `metering {what}s list`")
