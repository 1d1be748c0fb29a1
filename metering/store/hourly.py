"""One row of ``usage_hourly`` as the billing and quota reads see it."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from metering.billing.tokens import Usage


class HourlyUsage(Usage, frozen=True, kw_only=True):
    """A tenant's usage of one model, service tier and long-context flag from ``hour``: one
    hour of ``usage_hourly``, or a stretch of hours summed and dated at its start. Its token
    counts are ``Usage``'s (so it is a ``RatableUsage``); ``events`` is how many events."""

    tenant_id: str
    model: str
    service_tier: str
    long_context: bool
    hour: datetime
    events: int


HOURLY_COLUMNS: Final = HourlyUsage.__struct_fields__
"""The columns of ``usage_hourly`` that make a ``HourlyUsage``."""
