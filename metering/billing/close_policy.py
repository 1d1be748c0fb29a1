"""When a billing period may be closed, how long a closed period can still get usage, and
that a closed period never changes.

Pure: the store asks these rules and persists what they decided; the CLI turns their
errors into advice about its flags. The rules in prose are in ``docs/billing.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from metering.billing.invoice_errors import InvoiceError
from metering.billing.periods import BillingPeriod
from metering.billing.utc import rfc3339


def late_window(backdating: timedelta, clock_skew: timedelta, margin: timedelta) -> timedelta:
    """How long after its end a closed period can still receive usage: ingest accepts events
    up to ``backdating`` old, clocks may be ``clock_skew`` apart, and a margin on top."""
    return backdating + clock_skew + margin


def may_get_late_usage(period: BillingPeriod, checked_at: datetime, late_window: timedelta) -> bool:
    """Whether a closed ``period``, last compared with its usage at ``checked_at``, may have
    received usage since: only if that check was before its late window ended. The next
    close bills what it got as adjustments."""
    return checked_at < period.end + late_window


class PeriodNotStartedError(InvoiceError):
    """A period that has not started yet cannot be closed."""

    def __init__(self, label: str, tenant_id: str) -> None:
        super().__init__(f"period {label} of {tenant_id} has not started yet")


class PeriodClosedError(InvoiceError):
    """A change that would take effect inside a period already invoiced: a finalized invoice
    never changes. ``closed_until`` is the earliest moment the change may take effect."""

    def __init__(self, what: str, tenant_id: str, moment: datetime, closed_until: datetime) -> None:
        self.closed_until = closed_until
        at, until = rfc3339(moment, to_seconds=True), rfc3339(closed_until, to_seconds=True)
        super().__init__(
            f"{what} of {tenant_id} cannot take effect at {at}: {tenant_id} is"
            f" invoiced until {until}, and a finalized invoice never changes"
        )


def check_not_closed(
    what: str, tenant_id: str, moment: datetime, closed_until: datetime | None
) -> None:
    """Refuses ``what`` (e.g. "a contract change") from ``moment`` if the tenant is invoiced
    past it (``closed_until``: the end of its latest closed period, ``None`` if none)."""
    if closed_until is not None and moment < closed_until:
        raise PeriodClosedError(what, tenant_id, moment, closed_until)


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    """``grace``: how long after a period's end it may be closed (without ``force``), so that
    usage still in flight at its end is on its invoice rather than an adjustment."""

    grace: timedelta

    def __post_init__(self) -> None:
        if self.grace < timedelta(0):
            raise InvoiceError(f"the grace period ({self.grace}) must not be negative")

    def due_at(self, period: BillingPeriod) -> datetime:
        """From when ``period`` may be closed without ``force``."""
        return period.end + self.grace

    def check_started(self, period: BillingPeriod, tenant_id: str, now: datetime) -> None:
        """A period that has not started cannot be closed, ``force`` or not."""
        if period.start > now:
            raise PeriodNotStartedError(period.label, tenant_id)

    def is_due(self, period: BillingPeriod, now: datetime, *, force: bool = False) -> bool:
        """Whether ``period`` may be closed ``now``: any time after its start with ``force``,
        else from ``due_at``."""
        return period.start <= now and (force or now >= self.due_at(period))
