"""What the billing commands read when they run: their settings, the clock, JSON output.

Imported by command bodies only, not when the CLI starts (pydantic).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from metering.billing import close_policy
from metering.billing.close_policy import PeriodClosedError
from metering.cli.support import UserError, fail
from metering.config import get_settings


class BillingSettings(BaseSettings):
    """Billing settings from ``METERING_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    invoice_grace_hours: float = Field(
        24.0, description="hours after a period's end before `invoices close` finalizes it"
    )
    late_margin_hours: float = Field(
        24.0, description="added to the ingest backdating window when looking for late usage"
    )


def late_window() -> timedelta:
    """``close_policy.late_window`` from ``METERING_BACKDATING_DAYS``,
    ``METERING_CLOCK_SKEW_S`` and ``METERING_LATE_MARGIN_HOURS``."""
    settings = get_settings()
    return close_policy.late_window(
        timedelta(days=settings.backdating_days),
        timedelta(seconds=settings.clock_skew_s),
        timedelta(hours=BillingSettings().late_margin_hours),
    )


def now() -> datetime:
    return datetime.now(UTC)


def show_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def effective_from_advice() -> Iterator[None]:
    """A change refused because the tenant is invoiced past the moment it would take effect:
    the refusal, and from when it can."""
    try:
        yield
    except PeriodClosedError as exc:
        raise advise(
            exc, f"; use --effective-from {show_time(exc.closed_until)} or later"
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
