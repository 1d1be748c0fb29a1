"""What the billing commands share: the late window from settings, the clock, advice on
closed periods, JSON output. Settings (pydantic) load only when a command asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from metering.billing import close_policy
from metering.billing.close_policy import PeriodClosedError
from metering.billing.utc import rfc3339
from metering.cli.support import UserError, fail


def late_window() -> timedelta:
    """``close_policy.late_window`` from ``METERING_BACKDATING_DAYS``,
    ``METERING_CLOCK_SKEW_S`` and ``METERING_LATE_MARGIN_HOURS``."""
    from metering.config import get_settings

    settings = get_settings()
    return close_policy.late_window(
        timedelta(days=settings.backdating_days),
        timedelta(seconds=settings.clock_skew_s),
        timedelta(hours=settings.late_margin_hours),
    )


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def effective_from_advice() -> Iterator[None]:
    """A change refused because the tenant is invoiced past the moment it would take effect:
    the refusal, and from when it can."""
    try:
        yield
    except PeriodClosedError as exc:
        raise advise(
            exc, f"; use --effective-from {rfc3339(exc.closed_until, to_seconds=True)} or later"
        ) from None


def advise(exc: Exception, advice: str) -> UserError:
    """A domain or store error (on one line, as the CLI prints every error) followed by
    ``advice`` about the CLI's own commands and flags, which only the CLI speaks of."""
    return fail(" ".join(f"{exc}{advice}".split()))


def json_text(document: Any) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(type(value).__name__)

    return orjson.dumps(document, default=default, option=orjson.OPT_INDENT_2).decode()
