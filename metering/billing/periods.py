"""Billing periods: monthly from a tenant's anchor day, in UTC, named by their label."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from metering.billing.invoice_errors import InvoiceError

_LABEL_SHAPE: Final = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True, order=True)
class BillingPeriod:
    """``[start, end)`` in UTC. Its ``label`` is the month it starts in, e.g. ``2026-11``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise InvoiceError(f"period {name} must be timezone-aware, got {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise InvoiceError(f"period end {self.end} must be after its start {self.start}")

    @property
    def label(self) -> str:
        return f"{self.start.year:04d}-{self.start.month:02d}"

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def period_for(moment: datetime, anchor_day: int = 1) -> BillingPeriod:
    """The monthly billing period that contains ``moment``.

    Periods start at 00:00 UTC on ``anchor_day`` of each month (1 = calendar months). In a
    month shorter than the anchor day, the period starts on its last day instead: anchor 31
    gives Jan 31, Feb 28 (29 in a leap year), Mar 31, Apr 30, ...
    """
    check_anchor_day(anchor_day)
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvoiceError(f"moment must be a timezone-aware datetime, got {moment!r}")
    moment = moment.astimezone(UTC)
    year, month = moment.year, moment.month
    start = _anchor(year, month, anchor_day)
    if moment < start:
        year, month = _previous_month(year, month)
        start = _anchor(year, month, anchor_day)
    return BillingPeriod(start, _anchor(*_next_month(year, month), anchor_day))


def billing_period_of(anchor_day: int) -> Callable[[datetime], tuple[datetime, datetime]]:
    """``period_for`` with the anchor day fixed, as ``(start, end)``: the ``period_of`` that
    quotas take, so that quota periods are the invoice's periods."""
    check_anchor_day(anchor_day)

    def period_of(moment: datetime) -> tuple[datetime, datetime]:
        period = period_for(moment, anchor_day)
        return period.start, period.end

    return period_of


def period_from_label(label: str, anchor_day: int = 1) -> BillingPeriod:
    """The period that starts in the month ``label`` names (``YYYY-MM``)."""
    check_anchor_day(anchor_day)
    match = _LABEL_SHAPE.fullmatch(label)
    if match is None:
        raise InvoiceError(f"period label {label!r} must look like 2026-11")
    year, month = int(match[1]), int(match[2])
    return BillingPeriod(
        _anchor(year, month, anchor_day), _anchor(*_next_month(year, month), anchor_day)
    )


def check_anchor_day(anchor_day: int) -> None:
    if type(anchor_day) is not int or not 1 <= anchor_day <= 31:
        raise InvoiceError(
            f"anchor day must be a day of the month from 1 to 31, got {anchor_day!r}"
        )


def _anchor(year: int, month: int, anchor_day: int) -> datetime:
    last_day = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(anchor_day, last_day), tzinfo=UTC)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)
