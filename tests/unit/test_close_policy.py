"""The close policy: when a period may be closed, how long a closed period can still get
usage, and that a closed period never changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metering.billing.close_policy import (
    ClosePolicy,
    PeriodClosedError,
    PeriodNotStartedError,
    check_not_closed,
    late_window,
    may_get_late_usage,
)
from metering.billing.periods import period_from_label

OCTOBER = period_from_label("2026-10")
POLICY = ClosePolicy(grace=timedelta(hours=24))


def test_a_period_is_due_once_its_grace_period_has_passed() -> None:
    end = datetime(2026, 11, 1, tzinfo=UTC)
    assert POLICY.due_at(OCTOBER) == end + timedelta(hours=24)
    assert not POLICY.is_due(OCTOBER, end + timedelta(hours=23, minutes=59))
    assert POLICY.is_due(OCTOBER, end + timedelta(hours=24))


def test_force_closes_a_started_period_before_it_is_due() -> None:
    mid_october = datetime(2026, 10, 15, tzinfo=UTC)
    assert not POLICY.is_due(OCTOBER, mid_october)
    assert POLICY.is_due(OCTOBER, mid_october, force=True)


def test_a_period_that_has_not_started_cannot_be_closed_even_with_force() -> None:
    september = datetime(2026, 9, 30, tzinfo=UTC)
    assert not POLICY.is_due(OCTOBER, september, force=True)
    with pytest.raises(PeriodNotStartedError, match="period 2026-10 of acme has not started yet"):
        POLICY.check_started(OCTOBER, "acme", september)
    POLICY.check_started(OCTOBER, "acme", OCTOBER.start)


def test_a_closed_period_awaits_late_usage_until_its_late_window_ends() -> None:
    window = timedelta(days=36)
    window_ends = OCTOBER.end + window
    assert may_get_late_usage(OCTOBER, window_ends - timedelta(seconds=1), window)
    assert not may_get_late_usage(OCTOBER, window_ends, window)


def test_the_late_window_covers_backdating_clock_skew_and_a_margin() -> None:
    assert late_window(timedelta(days=35), timedelta(seconds=300), timedelta(hours=24)) == (
        timedelta(days=36, seconds=300)
    )


def test_a_change_inside_an_invoiced_period_is_refused_saying_until_when() -> None:
    until = OCTOBER.end
    with pytest.raises(PeriodClosedError) as refused:
        check_not_closed("a contract change", "acme", datetime(2026, 10, 20, tzinfo=UTC), until)
    assert str(refused.value) == (
        "a contract change of acme cannot take effect at 2026-10-20T00:00:00Z: acme is invoiced"
        " until 2026-11-01T00:00:00Z, and a finalized invoice never changes"
    )
    assert refused.value.closed_until == until
    assert "--" not in str(refused.value)  # the CLI, not the rule, speaks of flags


def test_a_change_from_the_end_of_the_invoiced_periods_or_without_any_is_allowed() -> None:
    check_not_closed("a price override", "acme", OCTOBER.end, OCTOBER.end)
    check_not_closed("a price override", "acme", OCTOBER.start, None)


def test_a_negative_grace_period_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        ClosePolicy(grace=timedelta(hours=-1))
