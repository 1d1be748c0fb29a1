"""What quotas answer: to usage, the alerts and the block signal; to the gateway, whether a
tenant may be served.

Pure: no I/O, no clock and no settings. The caller passes ``now``, the tenant's limits and
``period_of`` (the billing period an instant falls in), so the same inputs always give the
same answer. The contract for consumers of ``quota.state``, ``quota.alerts`` and the HTTP
answer is ``docs/quotas.md``; keep the two in step.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, Final, NamedTuple

from metering.billing.quotas.limits import (
    DEFAULT_POLICY,
    MINUTE,
    SEVERITY,
    Amount,
    Limit,
    PeriodOf,
    QuotaPolicy,
    QuotaStatus,
    amount_json,
    tenant_limits,
    threshold_reached,
)
from metering.billing.quotas.state import (
    EMPTY_WINDOW,
    Alert,
    LimitStatus,
    QuotaSignal,
    QuotaUsage,
    TenantQuotaState,
    limit_statuses,
    minute_is_kept,
    minute_of,
    period_bounds,
    prune,
)
from metering.billing.utc import as_utc, rfc3339

# Alert ids are UUIDv5 names in this namespace, so a replay computes the same id again.
_ALERT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:metering:quota-alert")


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
    own_limits = tenant_limits(state.tenant_id, limits)
    now = as_utc(now, "now")
    if usage.tenant_id != state.tenant_id:
        raise ValueError(f"usage of tenant {usage.tenant_id!r} applied to {state.tenant_id!r}")
    if not usage.accepted:
        return QuotaOutcome(state, [], None)
    pruned = prune(state, now, period_of, policy)
    periods, minutes = dict(pruned.periods), dict(pruned.minutes)
    touched_periods: list[datetime] = []
    touched_minutes: list[datetime] = []
    period_start, _ = period_bounds(period_of, usage.occurred_at)
    if pruned.periods_from is None or period_start >= pruned.periods_from:
        window = periods.get(period_start, EMPTY_WINDOW)
        periods[period_start] = window.add(usage.model, usage.tokens, usage.estimated_cost)
        touched_periods.append(period_start)
    minute = minute_of(usage.occurred_at)
    if minute_is_kept(minute, pruned.minutes_from, now, policy):
        window = minutes.get(minute, EMPTY_WINDOW)
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
    own_limits = tenant_limits(state.tenant_id, limits)
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
    own_limits = tenant_limits(state.tenant_id, limits)
    now = as_utc(now, "now")
    pruned = prune(state, now, period_of, policy)
    return _settle(state, pruned, own_limits, now, period_of, policy, [], [], None)


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
        (status.status for status in statuses), key=SEVERITY.__getitem__, default=QuotaStatus.OK
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
                "limit": amount_json(status.limit.amount),
                "used": amount_json(status.used),
                "remaining": amount_json(status.remaining),
                "resets_at": rfc3339(status.resets_at),
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
    current = {False: period_bounds(period_of, now)[0], True: minute_of(now)}
    touched = {False: touched_periods, True: touched_minutes}
    for per_minute, windows in windows_by_kind.items():
        kind_limits = [limit for limit in limits if limit.kind.per_minute == per_minute]
        for start in sorted({*touched[per_minute], current[per_minute]}):
            window = windows.get(start)
            if window is None:
                continue
            end = start + MINUTE if per_minute else period_bounds(period_of, start)[1]
            alerted = set(window.alerted)
            for limit in kind_limits:
                used = window.used(limit)
                for threshold in limit.thresholds:
                    key = (limit.limit_id, threshold)
                    reached = threshold_reached(used, limit, threshold)
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


def _signal(tenant_id: str, statuses: list[LimitStatus], now: datetime) -> QuotaSignal:
    """The tenant's state and the limit that determines it: of the limits in that state, a
    tenant-wide one first (a tenant-wide block blocks every model), then the one that lasts
    longest (so ``resets_at`` is when the tenant can really resume, and a monthly warning is
    not displaced by every busy minute), then the most used, then the smallest id."""
    worst = max((s.status for s in statuses), key=SEVERITY.__getitem__, default=QuotaStatus.OK)
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
            rfc3339(start),
            str(threshold),
            str(amount_json(limit.amount)),
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
