"""Quotas: limits per tenant (optionally per model), threshold alerts and the block signal.

Pure: no I/O, no clock and no settings. The caller passes ``now``, the tenant's limits and
``period_of`` (the billing period an instant falls in), so the same inputs always give the
same answer. The contract for consumers of ``quota.state``, ``quota.alerts`` and the HTTP
answer is ``docs/quotas.md``; keep the two in step.

The state of one tenant is a small immutable value (``TenantQuotaState``) meant to live in a
table keyed by ``tenant_id``. It holds usage per model in *windows* (billing periods, and event
time minutes for the per-minute limits), the thresholds already alerted in each window, and the
last signal sent, so that alerts and signals are not repeated after a restore.

Usage is kept per model rather than per limit, so that a limit added, raised or scoped to a
model in the middle of a period sees the usage of the whole period at once. A tenant's first
limit finds no state to read that from: ``seed_periods`` counts its periods from the usage the
ledger already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import orjson

from metering.billing.events import UsageEvent
from metering.billing.periods import billing_period_of

Amount = int | Decimal
"""Tokens are ``int``; money is ``Decimal``, in the currency of the price book."""

PeriodOf = Callable[[datetime], tuple[datetime, datetime]]
"""The billing period ``[start, end)`` an instant falls in, e.g. the tenant's calendar month."""

MINUTE: Final = timedelta(minutes=1)
DEFAULT_THRESHOLDS: Final = (50, 80, 100)
MAX_TOKEN_LIMIT: Final = 2**63 - 1
"""The most tokens a limit can allow: the ledger's ``bigint`` counters, and the largest JSON
integer every consumer of ``quota.state`` and the endpoint can read (64-bit)."""
MAX_SPEND_LIMIT: Final = Decimal(10) ** 15
"""Spend limits are below this (exclusive), with at most ``SPEND_LIMIT_PLACES`` decimals, and
thresholds at most ``MAX_THRESHOLD``: so ``amount * threshold`` has at most 25 digits and is
exact in ``Decimal``'s 28, and thresholds are compared exactly."""
SPEND_LIMIT_PLACES: Final = 6
_SPEND_LIMIT_QUANTUM: Final = Decimal(1).scaleb(-SPEND_LIMIT_PLACES)
MAX_THRESHOLD: Final = 10_000
STATE_JSON_VERSION: Final = 1

_ZERO: Final = Decimal(0)
# Alert ids are UUIDv5 names in this namespace, so a replay computes the same id again.
_ALERT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:metering:quota-alert")


class LimitKind(StrEnum):
    TOKENS_PER_PERIOD = "tokens_per_period"
    SPEND_PER_PERIOD = "spend_per_period"
    TOKENS_PER_MINUTE = "tokens_per_minute"

    @property
    def per_minute(self) -> bool:
        return self is LimitKind.TOKENS_PER_MINUTE

    @property
    def is_spend(self) -> bool:
        return self is LimitKind.SPEND_PER_PERIOD


class QuotaStatus(StrEnum):
    """``blocked``: a hard limit is used up. ``warning``: nothing hard is used up, but some
    limit has reached its first threshold (or, if that is above 100, its amount). ``ok``:
    neither."""

    OK = "ok"
    WARNING = "warning"
    BLOCKED = "blocked"


_SEVERITY: Final = {QuotaStatus.OK: 0, QuotaStatus.WARNING: 1, QuotaStatus.BLOCKED: 2}


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    skew: timedelta = timedelta(minutes=5)
    """How late (in event time) an event may arrive and still count for its minute; also how
    far ahead a minute is kept. Matches the validator's allowed clock skew."""
    retained_periods: int = 2
    """Previous billing periods kept besides the current one. Events older than those are
    ignored here (the ledger and the invoice still have them)."""
    signal_step_percent: int = 5
    """A new signal is sent when ``used`` moves into another step of this many percent of the
    determining limit, besides every change of state, limit or reset time."""

    def __post_init__(self) -> None:
        if self.skew < timedelta(0):
            raise ValueError(f"skew must not be negative, got {self.skew}")
        if self.retained_periods < 0:
            raise ValueError(f"retained_periods must be >= 0, got {self.retained_periods}")
        if not 0 < self.signal_step_percent <= 100:
            raise ValueError(
                f"signal_step_percent must be 1 to 100, got {self.signal_step_percent}"
            )


DEFAULT_POLICY: Final = QuotaPolicy()


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit. ``model=None`` applies to all of the tenant's usage; a model name
    applies to that model's usage only. A hard limit blocks once used up; a soft one only
    alerts. ``thresholds`` are percentages of ``amount`` and may exceed 100."""

    limit_id: str
    tenant_id: str
    model: str | None
    kind: LimitKind
    amount: Amount
    hard: bool
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LimitKind(self.kind))
        object.__setattr__(self, "amount", limit_amount(self.kind, self.amount))
        object.__setattr__(self, "thresholds", limit_thresholds(self.thresholds))

    @property
    def warning_percent(self) -> int:
        """Usage at or past this percentage makes the limit (at least) a warning."""
        return min(self.thresholds[0], 100)

    def applies_to(self, model: str) -> bool:
        return self.model is None or self.model == model


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
        object.__setattr__(self, "occurred_at", _utc("occurred_at", self.occurred_at))
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


_EMPTY_WINDOW: Final = Window()


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
    keys of ``periods`` follow: ``billing_period_of(state.anchor_day)`` is the ``period_of``
    to pass with this state. ``seed_periods`` sets it.
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


class QuotaOutcome(NamedTuple):
    state: TenantQuotaState
    alerts: list[Alert]
    signal: QuotaSignal | None
    """``None`` when nothing material changed since the last signal: send nothing."""


def apply_usage(
    state: TenantQuotaState,
    limits: Iterable[Limit],
    usage: QuotaUsage,
    now: datetime,
    period_of: PeriodOf,
    *,
    policy: QuotaPolicy = DEFAULT_POLICY,
) -> QuotaOutcome:
    """Count one event and report the thresholds it made reach and the signal, if it changed.

    The event counts toward the period and the minute it occurred in, whatever the order of
    arrival. Its minute is skipped when it ended more than ``policy.skew`` before ``now`` (no
    longer enforceable) or starts more than ``policy.skew`` after it; its period is skipped
    when older than the retained ones. The current period and minute are evaluated too, so
    that limits changed since the last call take effect.
    """
    own_limits = _tenant_limits(state.tenant_id, limits)
    now = _utc("now", now)
    if usage.tenant_id != state.tenant_id:
        raise ValueError(f"usage of tenant {usage.tenant_id!r} applied to {state.tenant_id!r}")
    if not usage.accepted:
        return QuotaOutcome(state, [], None)
    pruned = _prune(state, now, period_of, policy)
    periods, minutes = dict(pruned.periods), dict(pruned.minutes)
    touched_periods: list[datetime] = []
    touched_minutes: list[datetime] = []
    period_start, _ = _period(period_of, usage.occurred_at)
    if pruned.periods_from is None or period_start >= pruned.periods_from:
        window = periods.get(period_start, _EMPTY_WINDOW)
        periods[period_start] = window.add(usage.model, usage.tokens, usage.estimated_cost)
        touched_periods.append(period_start)
    minute = _minute_of(usage.occurred_at)
    if _minute_is_kept(minute, pruned.minutes_from, now, policy):
        window = minutes.get(minute, _EMPTY_WINDOW)
        minutes[minute] = window.add(usage.model, usage.tokens, usage.estimated_cost)
        touched_minutes.append(minute)
    counted = replace(pruned, periods=periods, minutes=minutes)
    return _settle(
        state, counted, own_limits, now, period_of, policy, touched_periods, touched_minutes, usage
    )


def apply_usages(
    state: TenantQuotaState,
    limits: Iterable[Limit],
    usages: Iterable[QuotaUsage],
    now: datetime,
    period_of: PeriodOf,
    *,
    policy: QuotaPolicy = DEFAULT_POLICY,
) -> QuotaOutcome:
    """``apply_usage`` over a batch: all alerts, and only the latest signal, since the topic
    is compacted and the latest one says everything the earlier ones did."""
    own_limits = _tenant_limits(state.tenant_id, limits)
    alerts: list[Alert] = []
    signal: QuotaSignal | None = None
    for usage in usages:
        state, new_alerts, new_signal = apply_usage(
            state, own_limits, usage, now, period_of, policy=policy
        )
        alerts.extend(new_alerts)
        signal = new_signal or signal
    return QuotaOutcome(state, alerts, signal)


def reevaluate(
    state: TenantQuotaState,
    limits: Iterable[Limit],
    now: datetime,
    period_of: PeriodOf,
    *,
    policy: QuotaPolicy = DEFAULT_POLICY,
) -> QuotaOutcome:
    """Evaluate without new usage: after limits changed, and on a timer, so that a new period
    or a new minute lifts a block without waiting for the tenant's next event. Drops windows
    that are no longer retained. A lowered limit alerts here; a raised or removed one
    unblocks here."""
    own_limits = _tenant_limits(state.tenant_id, limits)
    now = _utc("now", now)
    pruned = _prune(state, now, period_of, policy)
    return _settle(state, pruned, own_limits, now, period_of, policy, [], [], None)


def seed_since(now: datetime, anchor_day: int, *, policy: QuotaPolicy = DEFAULT_POLICY) -> datetime:
    """Where the usage that ``seed_periods`` needs begins: the oldest retained period."""
    return _retained_from(_utc("now", now), billing_period_of(anchor_day), policy)


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
    own_limits = _tenant_limits(state.tenant_id, limits)
    now = _utc("now", now)
    period_of = billing_period_of(anchor_day)
    same_periods = anchor_day == state.anchor_day
    floor = _retained_from(now, period_of, policy)
    if same_periods and state.periods_from is not None:
        floor = max(floor, state.periods_from)
    counted: dict[datetime, Window] = {}
    for past in usage:
        start = _period(period_of, _utc("usage time", past.at))[0]
        if start >= floor:
            window = counted.get(start, _EMPTY_WINDOW)
            counted[start] = window.add(past.model, past.tokens, past.spend)
    kept = {s: w for s, w in state.periods.items() if same_periods and s >= floor}
    current = _period(period_of, now)[0]
    period_limits = [limit for limit in own_limits if not limit.kind.per_minute]
    periods = {}
    for start in sorted({*counted, *kept}):
        window = replace(
            counted.get(start, _EMPTY_WINDOW),
            alerted=kept.get(start, _EMPTY_WINDOW).alerted,
        )
        if start < current:
            reached = {
                (limit.limit_id, threshold)
                for limit in period_limits
                for threshold in limit.thresholds
                if _reached(window.used(limit), limit, threshold)
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
    now = _utc("now", now)
    current_period = _period(period_of, now)
    current_minute = _minute_of(now)
    statuses = []
    for limit in _tenant_limits(state.tenant_id, limits):
        if limit.kind.per_minute:
            window = state.minutes.get(current_minute, _EMPTY_WINDOW)
            resets_at = current_minute + MINUTE
        else:
            window = state.periods.get(current_period[0], _EMPTY_WINDOW)
            resets_at = current_period[1]
        used = window.used(limit)
        statuses.append(LimitStatus(limit, used, resets_at, _status(limit, used)))
    return sorted(statuses, key=_listing_order)


def quota_answer(
    state: TenantQuotaState,
    limits: Iterable[Limit],
    now: datetime,
    period_of: PeriodOf,
    *,
    model: str | None = None,
) -> dict[str, Any]:
    """The HTTP endpoint's answer, JSON-ready (money as strings, times as RFC 3339 ``Z``).

    Computed from the usage at ``now``, not from the last signal, so a per-minute block has
    already lifted here when its minute is over. With ``model``, only the limits that apply to
    that model count (tenant-wide and that model's); without, all of the tenant's limits do.
    """
    statuses = limit_statuses(state, limits, now, period_of)
    if model is not None:
        statuses = [status for status in statuses if status.limit.applies_to(model)]
    overall = max(
        (status.status for status in statuses), key=_SEVERITY.__getitem__, default=QuotaStatus.OK
    )
    return {
        "tenant_id": state.tenant_id,
        "allowed": overall is not QuotaStatus.BLOCKED,
        "state": overall.value,
        "limits": [
            {
                "limit_id": status.limit.limit_id,
                "kind": status.limit.kind.value,
                "model": status.limit.model,
                "hard": status.limit.hard,
                "state": status.status.value,
                "limit": _amount_json(status.limit.amount),
                "used": _amount_json(status.used),
                "remaining": _amount_json(status.remaining),
                "resets_at": _time_json(status.resets_at),
            }
            for status in statuses
        ],
    }


def signal_allows(signal: QuotaSignal | None, model: str) -> bool:
    """Whether the serving layer may serve ``model`` for the signal's tenant. No signal yet
    means ``ok``."""
    if signal is None or signal.state is not QuotaStatus.BLOCKED:
        return True
    return signal.model is not None and model not in signal.blocked_models


# --- JSON -----------------------------------------------------------------------------------


def signal_to_json(signal: QuotaSignal) -> bytes:
    """The value for topic ``quota.state`` (key: ``tenant_id``)."""
    return orjson.dumps(_signal_document(signal))


def signal_from_json(raw: bytes | str) -> QuotaSignal:
    return _signal_from_document(orjson.loads(raw))


def alert_to_json(alert: Alert) -> bytes:
    """The value for topic ``quota.alerts`` (key: ``tenant_id``)."""
    return orjson.dumps(
        {
            "alert_id": str(alert.alert_id),
            "tenant_id": alert.tenant_id,
            "limit_id": alert.limit_id,
            "kind": alert.kind.value,
            "model": alert.model,
            "hard": alert.hard,
            "threshold": alert.threshold,
            "limit": _amount_json(alert.limit),
            "used": _amount_json(alert.used),
            "period_start": _time_json(alert.period_start),
            "period_end": _time_json(alert.period_end),
            "event_id": None if alert.event_id is None else str(alert.event_id),
            "emitted_at": _time_json(alert.emitted_at),
        }
    )


def state_to_json(state: TenantQuotaState) -> bytes:
    """Compact JSON of the state, for a changelog or a database row. Usage per model is
    ``[tokens, "spend"]``; alerted thresholds are ``[limit_id, threshold]``."""
    document = {
        "v": STATE_JSON_VERSION,
        "tenant_id": state.tenant_id,
        "revision": state.revision,
        "periods_from": _optional_time_json(state.periods_from),
        "minutes_from": _optional_time_json(state.minutes_from),
        "periods": _windows_document(state.periods),
        "minutes": _windows_document(state.minutes),
        "signal": None if state.signal is None else _signal_document(state.signal),
        "anchor_day": state.anchor_day,
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def state_from_json(raw: bytes | str) -> TenantQuotaState:
    document = orjson.loads(raw)
    if document.get("v") != STATE_JSON_VERSION:
        raise ValueError(f"unsupported quota state version {document.get('v')!r}")
    signal = document["signal"]
    return TenantQuotaState(
        tenant_id=document["tenant_id"],
        periods=_windows_from_document(document["periods"]),
        minutes=_windows_from_document(document["minutes"]),
        periods_from=_optional_time(document["periods_from"]),
        minutes_from=_optional_time(document["minutes_from"]),
        signal=None if signal is None else _signal_from_document(signal),
        revision=document["revision"],
        anchor_day=document.get("anchor_day", 1),  # states stored before it: calendar months
    )


# --- evaluation -----------------------------------------------------------------------------


def _settle(
    before: TenantQuotaState,
    state: TenantQuotaState,
    limits: tuple[Limit, ...],
    now: datetime,
    period_of: PeriodOf,
    policy: QuotaPolicy,
    touched_periods: list[datetime],
    touched_minutes: list[datetime],
    usage: QuotaUsage | None,
) -> QuotaOutcome:
    """Alert the thresholds newly reached in the touched and current windows, re-arm those no
    longer reached (the limit was raised), and decide whether the signal is worth sending."""
    event_id = None if usage is None else usage.event_id
    alerts: list[Alert] = []
    windows_by_kind = {False: dict(state.periods), True: dict(state.minutes)}
    current = {False: _period(period_of, now)[0], True: _minute_of(now)}
    touched = {False: touched_periods, True: touched_minutes}
    for per_minute, windows in windows_by_kind.items():
        kind_limits = [limit for limit in limits if limit.kind.per_minute == per_minute]
        for start in sorted({*touched[per_minute], current[per_minute]}):
            window = windows.get(start)
            if window is None:
                continue
            end = start + MINUTE if per_minute else _period(period_of, start)[1]
            alerted = set(window.alerted)
            for limit in kind_limits:
                used = window.used(limit)
                for threshold in limit.thresholds:
                    key = (limit.limit_id, threshold)
                    reached = _reached(used, limit, threshold)
                    if reached and key not in alerted:
                        alerted.add(key)
                        alerts.append(
                            _alert(
                                state.tenant_id, limit, threshold, used, start, end, event_id, now
                            )
                        )
                    elif not reached:
                        alerted.discard(key)
            if alerted != window.alerted:
                windows[start] = replace(window, alerted=frozenset(alerted))
    state = replace(state, periods=windows_by_kind[False], minutes=windows_by_kind[True])
    candidate = _signal(state.tenant_id, limit_statuses(state, limits, now, period_of), now)
    signal = None
    if _is_material(candidate, state.signal, policy):
        signal = candidate
        state = replace(state, signal=candidate)
    if state != before:
        state = replace(state, revision=before.revision + 1)
    return QuotaOutcome(state, alerts, signal)


def _reached(used: Amount, limit: Limit, threshold: int) -> bool:
    """Exact: ``used * 100 >= amount * threshold``, in integers or ``Decimal``."""
    return used * 100 >= limit.amount * threshold


def _status(limit: Limit, used: Amount) -> QuotaStatus:
    if used >= limit.amount:
        return QuotaStatus.BLOCKED if limit.hard else QuotaStatus.WARNING
    if used * 100 >= limit.amount * limit.warning_percent:
        return QuotaStatus.WARNING
    return QuotaStatus.OK


def _signal(tenant_id: str, statuses: list[LimitStatus], now: datetime) -> QuotaSignal:
    """The tenant's state and the limit that determines it: of the limits in that state, a
    tenant-wide one first (a tenant-wide block blocks every model), then the one that lasts
    longest (so ``resets_at`` is when the tenant can really resume, and a monthly warning is
    not displaced by every busy minute), then the most used, then the smallest id."""
    worst = max((s.status for s in statuses), key=_SEVERITY.__getitem__, default=QuotaStatus.OK)
    if worst is QuotaStatus.OK:
        return QuotaSignal(tenant_id, QuotaStatus.OK, None, None, None, None, None, None, now)
    determining = min(
        (s for s in statuses if s.status is worst),
        key=lambda s: (
            s.limit.model is not None,
            -s.resets_at.timestamp(),
            -s.utilisation,
            s.limit.limit_id,
        ),
    )
    blocked_models = {
        s.limit.model
        for s in statuses
        if s.status is QuotaStatus.BLOCKED and s.limit.model is not None
    }
    limit = determining.limit
    return QuotaSignal(
        tenant_id=tenant_id,
        state=worst,
        limit_id=limit.limit_id,
        kind=limit.kind,
        model=limit.model,
        limit=limit.amount,
        used=determining.used,
        resets_at=determining.resets_at,
        updated_at=now,
        blocked_models=tuple(sorted(blocked_models)),
    )


def _is_material(new: QuotaSignal, last: QuotaSignal | None, policy: QuotaPolicy) -> bool:
    """Worth sending: the first signal that is not ``ok`` (no record means ``ok``), a change of
    state, determining limit, reset time or blocked models, or ``used`` entering another
    ``signal_step_percent`` step. So at most 100 / step signals per limit and period come from
    growing usage, however many events there are."""
    if last is None:
        return new.state is not QuotaStatus.OK
    return _signal_key(new, policy) != _signal_key(last, policy)


def _signal_key(signal: QuotaSignal, policy: QuotaPolicy) -> tuple[Any, ...]:
    step = None
    if signal.limit is not None and signal.used is not None:
        step = int(signal.used * 100 // (signal.limit * policy.signal_step_percent))
    return (
        signal.state,
        signal.limit_id,
        signal.kind,
        signal.model,
        signal.limit,
        signal.resets_at,
        signal.blocked_models,
        step,
    )


def _alert(
    tenant_id: str,
    limit: Limit,
    threshold: int,
    used: Amount,
    start: datetime,
    end: datetime,
    event_id: uuid.UUID | None,
    now: datetime,
) -> Alert:
    name = "\x1f".join(
        (
            tenant_id,
            limit.limit_id,
            _time_json(start),
            str(threshold),
            str(_amount_json(limit.amount)),
        )
    )
    return Alert(
        alert_id=uuid.uuid5(_ALERT_NAMESPACE, name),
        tenant_id=tenant_id,
        limit_id=limit.limit_id,
        kind=limit.kind,
        model=limit.model,
        hard=limit.hard,
        threshold=threshold,
        limit=limit.amount,
        used=used,
        period_start=start,
        period_end=end,
        event_id=event_id,
        emitted_at=now,
    )


def _prune(
    state: TenantQuotaState, now: datetime, period_of: PeriodOf, policy: QuotaPolicy
) -> TenantQuotaState:
    """Drop the windows that can no longer take usage: periods before the retained ones, and
    minutes that ended more than ``skew`` before ``now``. The floors never move back."""
    periods_from = _retained_from(now, period_of, policy)
    minutes_from = _minute_of(now - policy.skew)
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


def _retained_from(now: datetime, period_of: PeriodOf, policy: QuotaPolicy) -> datetime:
    """The start of the oldest period kept at ``now``."""
    start = _period(period_of, now)[0]
    for _ in range(policy.retained_periods):
        start = _period(period_of, start - timedelta(microseconds=1))[0]
    return start


def _minute_is_kept(
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


def _tenant_limits(tenant_id: str, limits: Iterable[Limit]) -> tuple[Limit, ...]:
    limits = tuple(limits)
    strangers = sorted({limit.limit_id for limit in limits if limit.tenant_id != tenant_id})
    if strangers:
        raise ValueError(f"limits {strangers} are not limits of tenant {tenant_id!r}")
    ids = [limit.limit_id for limit in limits]
    if len(set(ids)) != len(ids):
        raise ValueError(f"tenant {tenant_id!r} has duplicate limit ids: {sorted(ids)}")
    return tuple(sorted(limits, key=lambda limit: limit.limit_id))


def limit_amount(kind: LimitKind, amount: Any) -> Amount:
    """``amount`` as a limit of ``kind`` can hold it; ``ValueError`` says what is allowed."""
    kind = LimitKind(kind)
    if kind.is_spend:
        if type(amount) is int:
            amount = Decimal(amount)
        if (
            not isinstance(amount, Decimal)
            or not amount.is_finite()
            or not 0 < amount < MAX_SPEND_LIMIT
            or amount != amount.quantize(_SPEND_LIMIT_QUANTUM)
        ):
            raise ValueError(
                f"the amount of a {kind} limit is money above 0 and below {MAX_SPEND_LIMIT:,f}"
                f" with at most {SPEND_LIMIT_PLACES} decimals, not {_shown(amount)}"
            )
        return amount
    if type(amount) is not int or not 0 < amount <= MAX_TOKEN_LIMIT:
        raise ValueError(
            f"the amount of a {kind} limit is a whole number of tokens from 1 to {MAX_TOKEN_LIMIT},"
            f" not {_shown(amount)}"
        )
    return amount


def limit_thresholds(thresholds: Iterable[Any]) -> tuple[int, ...]:
    """Alert percentages, sorted and distinct; ``ValueError`` says what is allowed."""
    given = tuple(thresholds)
    if not given or any(type(t) is not int or not 0 < t <= MAX_THRESHOLD for t in given):
        raise ValueError(
            f"thresholds are whole percentages from 1 to {MAX_THRESHOLD}, like 50,80,100;"
            f" not {','.join(map(str, given)) or 'none'}"
        )
    return tuple(sorted(set(given)))


def _shown(value: Any) -> str:
    """A rejected amount as given: plain digits unless that would be very long."""
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) < 40:
        return format(value, "f")
    return str(value)


def _period(period_of: PeriodOf, at: datetime) -> tuple[datetime, datetime]:
    start, end = period_of(at)
    start, end = _utc("period start", start), _utc("period end", end)
    if not start <= at < end:
        raise ValueError(f"period_of({at.isoformat()}) gave [{start}, {end}), which misses it")
    return start, end


def _minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


# --- JSON helpers ---------------------------------------------------------------------------


def _amount_json(amount: Amount) -> int | str:
    """Tokens as JSON integers; money as a plain decimal string (never a float, no exponent)."""
    return format(amount, "f") if isinstance(amount, Decimal) else amount


def _amount_from_json(value: int | str) -> Amount:
    return Decimal(value) if isinstance(value, str) else value


def _time_json(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _optional_time_json(at: datetime | None) -> str | None:
    return None if at is None else _time_json(at)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else _time(value)


def _signal_document(signal: QuotaSignal) -> dict[str, Any]:
    return {
        "tenant_id": signal.tenant_id,
        "state": signal.state.value,
        "limit_id": signal.limit_id,
        "kind": None if signal.kind is None else signal.kind.value,
        "model": signal.model,
        "limit": None if signal.limit is None else _amount_json(signal.limit),
        "used": None if signal.used is None else _amount_json(signal.used),
        "resets_at": _optional_time_json(signal.resets_at),
        "updated_at": _time_json(signal.updated_at),
        "blocked_models": list(signal.blocked_models),
    }


def _signal_from_document(document: dict[str, Any]) -> QuotaSignal:
    kind = document["kind"]
    limit, used = document["limit"], document["used"]
    return QuotaSignal(
        tenant_id=document["tenant_id"],
        state=QuotaStatus(document["state"]),
        limit_id=document["limit_id"],
        kind=None if kind is None else LimitKind(kind),
        model=document["model"],
        limit=None if limit is None else _amount_from_json(limit),
        used=None if used is None else _amount_from_json(used),
        resets_at=_optional_time(document["resets_at"]),
        updated_at=_time(document["updated_at"]),
        blocked_models=tuple(document["blocked_models"]),
    )


def _windows_document(windows: Mapping[datetime, Window]) -> dict[str, Any]:
    documents = {}
    for start, window in windows.items():
        document: dict[str, Any] = {
            "usage": {
                model: [usage.tokens, _amount_json(usage.spend)]
                for model, usage in window.usage.items()
            }
        }
        if window.alerted:
            document["alerted"] = sorted([limit_id, t] for limit_id, t in window.alerted)
        documents[_time_json(start)] = document
    return documents


def _windows_from_document(documents: dict[str, Any]) -> dict[datetime, Window]:
    return {
        _time(start): Window(
            usage={
                model: ModelUsage(tokens, Decimal(spend))
                for model, (tokens, spend) in document["usage"].items()
            },
            alerted=frozenset((limit_id, t) for limit_id, t in document.get("alerted", ())),
        )
        for start, document in documents.items()
    }
