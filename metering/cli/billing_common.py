"""What the billing commands read when they run: their settings, the clock, JSON output.

Imported by command bodies only, not when the CLI starts (pydantic).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    """How long after its end a closed period can still receive usage: ingest accepts events
    up to ``METERING_BACKDATING_DAYS`` old (plus clock skew); a margin on top."""
    settings = get_settings()
    return (
        timedelta(days=settings.backdating_days)
        + timedelta(seconds=settings.clock_skew_s)
        + timedelta(hours=BillingSettings().late_margin_hours)
    )


def now() -> datetime:
    return datetime.now(UTC)


def json_text(document: Any) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(type(value).__name__)

    return orjson.dumps(document, default=default, option=orjson.OPT_INDENT_2).decode()
