"""Quota state: usage per model in windows, and what a tenant's limits stand at.

Pure: no I/O, no clock and no settings. The state of one tenant is a small immutable value
(``TenantQuotaState``) meant to live in a table keyed by ``tenant_id``. It holds usage per
model in *windows* (billing periods, and event time minutes for the per-minute limits), the
thresholds already alerted in each window, and the last signal sent, so that alerts and
signals are not repeated after a restore.

Usage is kept per model rather than per limit, so that a limit added, raised or scoped to a
model in the middle of a period sees the usage of the whole period at once. A tenant's first
limit finds no state to read that from: ``seed_periods`` counts its periods from the usage the
ledger already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Final, NamedTuple

from metering.billing.events import UsageEvent
from metering.billing.periods import billing_period_of
from metering.billing.quotas.limits import (
    DEFAULT_POLICY,
    MINUTE,
    Amount,
    Limit,
    LimitKind,
    PeriodOf,
    QuotaPolicy,
    QuotaStatus,
    status_of,
    tenant_limits,
    threshold_reached,
)
from metering.billing.utc import as_utc

_ZERO: Final = Decimal(0)
# Alert ids are UUIDv5 names in this namespace, so a replay computes the same id again.


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What quotas need of one usage event.

    ``tokens`` is ``input_tokens + output_tokens``: cached and cache-write tokens are part of
    the input and reasoning tokens part of the output, so adding them again would count them
    twice. ``estimated_cost`` is rated in the stream from unit prices; the invoice is final.
    ``accepted`` is whether this delivery inserted the event into the ledger; a duplicate
    (``False``) changes nothing, which is what makes replays harmless.
    """

    event_id: uuid.UUID
    tenant_id: str
    model: str
    occurred_at: datetime
    tokens: int
    estimated_cost: Decimal
    accepted: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", as_utc(self.occurred_at, "occurred_at"))
        if type(self.tokens) is not int or self.tokens < 0:
            raise ValueError(f"tokens must be a non-negative int, got {self.tokens!r}")
        cost = self.estimated_cost
        if not isinstance(cost, Decimal) or not cost.is_finite() or cost < 0:
            raise ValueError(f"estimated_cost must be a non-negative Decimal, got {cost!r}")


def counted_tokens(input_tokens: int, output_tokens: int) -> int:
    """The tokens quotas count; see ``QuotaUsage`` for why they are input + output."""
    return input_tokens + output_tokens


def usage_from_event(event: UsageEvent, *, estimated_cost: Decimal, accepted: bool) -> QuotaUsage:
    """The quota view of a parsed event."""
    return QuotaUsage(
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        model=event.model,
        occurred_at=event.occurred_at,
        tokens=counted_tokens(event.usage.input_tokens, event.usage.output_tokens),
        estimated_cost=estimated_cost,
        accepted=accepted,
    )


class PastUsage(NamedTuple):
    """Usage the ledger already holds, as quotas count it: say, one model's hour of
    ``usage_hourly``, its tokens as ``counted_tokens`` and its estimated spend."""

    at: datetime
    model: str
    tokens: int
    spend: Decimal


@dataclass(frozen=True, slots=True)
class ModelUsage:
    tokens: int = 0
    spend: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class Window:
    """Usage in one billing period or one minute, per model, and the ``(limit_id, threshold)``
    pairs already alerted in it. Alerts live with their window, so they are dropped with it."""

    usage: Mapping[str, ModelUsage] = field(default_factory=dict, hash=False)
    alerted: frozenset[tuple[str, int]] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "usage", MappingProxyType(dict(self.usage)))

    def add(self, model: str, tokens: int, spend: Decimal) -> Window:
        before = self.usage.get(model, ModelUsage())
        after = ModelUsage(before.tokens + tokens, before.spend + spend)
        return replace(self, usage={**self.usage, model: after})

    def used(self, limit: Limit) -> Amount:
        """What counts against ``limit`` in this window."""
        counted = [usage for model, usage in self.usage.items() if limit.applies_to(model)]
        if limit.kind.is_spend:
            return sum((usage.spend for usage in counted), _ZERO)
        return sum(usage.tokens for usage in counted)


EMPTY_WINDOW: Final = Window()


@dataclass(frozen=True, slots=True)
class QuotaSignal:
    """The value of topic ``quota.state`` for one tenant, for the serving layer.

    ``limit_id`` .. ``resets_at`` describe the limit that determines ``state`` (all ``None``
    when ``ok``). ``blocked_models`` lists the models blocked by per-model hard limits; when a
    tenant-wide hard limit is used up, ``model`` is ``None`` and every model is blocked.
    ``signal_allows`` applies these rules.
    """

    tenant_id: str
    state: QuotaStatus
    limit_id: str | None
    kind: LimitKind | None
    model: str | None
    limit: Amount | None
    used: Amount | None
    resets_at: datetime | None
    updated_at: datetime
    blocked_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """One threshold of one limit reached in one window (for ``tokens_per_minute`` the period
    is the minute). ``alert_id`` is derived from tenant, limit, period, threshold and amount,
    so a replay that emits it again emits the same id: an outbox with a unique key on it
    delivers it once even if the state was lost. ``event_id`` is the event whose processing
    emitted the alert, ``None`` when ``reevaluate`` did (e.g. after a limit was lowered)."""

    alert_id: uuid.UUID
    tenant_id: str
    limit_id: str
    kind: LimitKind
    model: str | None
    hard: bool
    threshold: int
    limit: Amount
    used: Amount
    period_start: datetime
    period_end: datetime
    event_id: uuid.UUID | None
    emitted_at: datetime


@dataclass(frozen=True, slots=True)
class TenantQuotaState:
    """Everything quotas remember about one tenant; ``TenantQuotaState("acme")`` is a new one.

    ``periods`` and ``minutes`` are keyed by window start (UTC). ``periods_from`` and
    ``minutes_from`` only move forward: usage of an earlier window is ignored, so a window
    once dropped can never come back and alert a second time, even if clocks disagree.
    ``signal`` is the last signal emitted, to decide whether the next one is worth sending.
    ``revision`` goes up by one with every change, so that of two stored copies (say, the
    table's changelog and a row written in the ledger's transaction) the newer can be told.
    ``anchor_day`` is the day of the month the tenant's billing periods start on, which the
    keys of ``periods`` follow: ``state.period_of`` is the ``period_of`` to pass with this
    state. ``seed_periods`` sets it.
    """

    tenant_id: str
    periods: Mapping[datetime, Window] = field(default_factory=dict, hash=False)
    minutes: Mapping[datetime, Window] = field(default_factory=dict, hash=False)
    periods_from: datetime | None = None
    minutes_from: datetime | None = None
    signal: QuotaSignal | None = None
    revision: int = 0
    anchor_day: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "periods", MappingProxyType(dict(self.periods)))
        object.__setattr__(self, "minutes", MappingProxyType(dict(self.minutes)))
        if type(self.anchor_day) is not int or not 1 <= self.anchor_day <= 31:
            raise ValueError(f"anchor_day must be 1 to 31, got {self.anchor_day!r}")

    @property
    def period_of(self) -> PeriodOf:
        """The tenant's billing periods, which the period windows follow: the invoice's
        periods for ``anchor_day`` (``billing_period_of``), not calendar months. The one
        place that decides what a quota period is."""
        return billing_period_of(self.anchor_day)


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One limit evaluated at ``now``: its usage in the current period (or minute)."""

    limit: Limit
    used: Amount
    resets_at: datetime
    status: QuotaStatus

    @property
    def remaining(self) -> Amount:
        left = self.limit.amount - self.used
        if left > 0:
            return left
        return _ZERO if isinstance(left, Decimal) else 0

    @property
    def utilisation(self) -> Decimal:
        return Decimal(self.used) / Decimal(self.limit.amount)


def seed_since(now: datetime, anchor_day: int, *, policy: QuotaPolicy = DEFAULT_POLICY) -> datetime:
    """Where the usage that ``seed_periods`` needs begins: the oldest retained period."""
    return retained_from(as_utc(now, "now"), billing_period_of(anchor_day), policy)


def seed_periods(
    state: TenantQuotaState,
    limits: Iterable[Limit],
    usage: Iterable[PastUsage],
    now: datetime,
    anchor_day: int,
    *,
    policy: QuotaPolicy = DEFAULT_POLICY,
) -> TenantQuotaState:
    """The state with its period windows counted afresh from the ledger, on the billing
    periods of ``anchor_day``: for a limit set mid-period, and when the anchor day changes.

    ``usage`` is everything the ledger holds since ``seed_since(now, anchor_day)``; it
    replaces what the windows counted, so seeding twice gives the same state. Alerts:

    - In the current period (and any later one), thresholds already alerted stay alerted;
      those the seeded usage reaches besides alert at the next evaluation (``reevaluate`` or
      the next usage), once, as if the usage had just arrived.
    - In earlier periods, the thresholds the seeded usage reaches are recorded as alerted,
      without alerting: those periods were over before the limit was set, and a late event
      for one of them must not alert them all then.

    Minute windows are kept as they are (the ledger's aggregates are hourly). A new anchor
    day rebuilds the period windows, including their floor; with the same one, the floor
    only moves forward, as ever.
    """
    own_limits = tenant_limits(state.tenant_id, limits)
    now = as_utc(now, "now")
    period_of = billing_period_of(anchor_day)
    same_periods = anchor_day == state.anchor_day
    floor = retained_from(now, period_of, policy)
    if same_periods and state.periods_from is not None:
        floor = max(floor, state.periods_from)
    counted: dict[datetime, Window] = {}
    for past in usage:
        start = period_bounds(period_of, as_utc(past.at, "usage time"))[0]
        if start >= floor:
            window = counted.get(start, EMPTY_WINDOW)
            counted[start] = window.add(past.model, past.tokens, past.spend)
    kept = {s: w for s, w in state.periods.items() if same_periods and s >= floor}
    current = period_bounds(period_of, now)[0]
    period_limits = [limit for limit in own_limits if not limit.kind.per_minute]
    periods = {}
    for start in sorted({*counted, *kept}):
        window = replace(
            counted.get(start, EMPTY_WINDOW),
            alerted=kept.get(start, EMPTY_WINDOW).alerted,
        )
        if start < current:
            reached = {
                (limit.limit_id, threshold)
                for limit in period_limits
                for threshold in limit.thresholds
                if threshold_reached(window.used(limit), limit, threshold)
            }
            window = replace(window, alerted=frozenset(reached))
        periods[start] = window
    seeded = replace(state, periods=periods, periods_from=floor, anchor_day=anchor_day)
    if seeded == state:
        return state
    return replace(seeded, revision=state.revision + 1)


def limit_statuses(
    state: TenantQuotaState, limits: Iterable[Limit], now: datetime, period_of: PeriodOf
) -> list[LimitStatus]:
    """Each limit's usage in the period (or minute) containing ``now``, sorted by kind,
    model (tenant-wide first) and id."""
    now = as_utc(now, "now")
    current_period = period_bounds(period_of, now)
    current_minute = minute_of(now)
    statuses = []
    for limit in tenant_limits(state.tenant_id, limits):
        if limit.kind.per_minute:
            window = state.minutes.get(current_minute, EMPTY_WINDOW)
            resets_at = current_minute + MINUTE
        else:
            window = state.periods.get(current_period[0], EMPTY_WINDOW)
            resets_at = current_period[1]
        used = window.used(limit)
        statuses.append(LimitStatus(limit, used, resets_at, status_of(limit, used)))
    return sorted(statuses, key=_listing_order)


def prune(
    state: TenantQuotaState, now: datetime, period_of: PeriodOf, policy: QuotaPolicy
) -> TenantQuotaState:
    """Drop the windows that can no longer take usage: periods before the retained ones, and
    minutes that ended more than ``skew`` before ``now``. The floors never move back."""
    periods_from = retained_from(now, period_of, policy)
    minutes_from = minute_of(now - policy.skew)
    if state.periods_from is not None:
        periods_from = max(periods_from, state.periods_from)
    if state.minutes_from is not None:
        minutes_from = max(minutes_from, state.minutes_from)
    return replace(
        state,
        periods={start: w for start, w in state.periods.items() if start >= periods_from},
        minutes={start: w for start, w in state.minutes.items() if start >= minutes_from},
        periods_from=periods_from,
        minutes_from=minutes_from,
    )


def retained_from(now: datetime, period_of: PeriodOf, policy: QuotaPolicy) -> datetime:
    """The start of the oldest period kept at ``now``."""
    start = period_bounds(period_of, now)[0]
    for _ in range(policy.retained_periods):
        start = period_bounds(period_of, start - timedelta(microseconds=1))[0]
    return start


def minute_is_kept(
    minute: datetime, minutes_from: datetime | None, now: datetime, policy: QuotaPolicy
) -> bool:
    return (minutes_from is None or minute >= minutes_from) and minute <= now + policy.skew


def _listing_order(status: LimitStatus) -> tuple[int, bool, str, str]:
    limit = status.limit
    return (
        list(LimitKind).index(limit.kind),
        limit.model is not None,
        limit.model or "",
        limit.limit_id,
    )


def period_bounds(period_of: PeriodOf, at: datetime) -> tuple[datetime, datetime]:
    start, end = period_of(at)
    start, end = as_utc(start, "period start"), as_utc(end, "period end")
    if not start <= at < end:
        raise ValueError(f"period_of({at.isoformat()}) gave [{start}, {end}), which misses it")
    return start, end


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)
