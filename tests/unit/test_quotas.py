"""Quotas: limits, threshold alerts, the block signal and the HTTP answer, from usage alone."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from metering.billing.events import Usage, UsageEvent
from metering.billing.periods import billing_period_of
from metering.billing.quotas import (
    MAX_TOKEN_LIMIT,
    Alert,
    Limit,
    LimitKind,
    PastUsage,
    QuotaPolicy,
    QuotaSignal,
    QuotaStatus,
    QuotaUsage,
    TenantQuotaState,
    alert_to_json,
    apply_usage,
    apply_usages,
    limit_statuses,
    quota_answer,
    reevaluate,
    seed_periods,
    seed_since,
    signal_allows,
    signal_from_json,
    signal_to_json,
    state_from_json,
    state_to_json,
    usage_from_event,
)

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)


def monthly(at: datetime) -> tuple[datetime, datetime]:
    """Calendar months in UTC, the billing period of these tests."""
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start, start.replace(year=year, month=month)


def tokens_per_period(amount: int, **kwargs: Any) -> Limit:
    return make_limit(LimitKind.TOKENS_PER_PERIOD, amount, **kwargs)


def spend_per_period(amount: str, **kwargs: Any) -> Limit:
    return make_limit(LimitKind.SPEND_PER_PERIOD, Decimal(amount), **kwargs)


def tokens_per_minute(amount: int, **kwargs: Any) -> Limit:
    return make_limit(LimitKind.TOKENS_PER_MINUTE, amount, **kwargs)


def make_limit(
    kind: LimitKind,
    amount: int | Decimal,
    *,
    limit_id: str | None = None,
    model: str | None = None,
    hard: bool = False,
    thresholds: tuple[int, ...] = (50, 80, 100),
) -> Limit:
    return Limit(
        limit_id=limit_id or f"{kind}-{model or 'all'}",
        tenant_id="acme",
        model=model,
        kind=kind,
        amount=amount,
        hard=hard,
        thresholds=thresholds,
    )


def usage(
    tokens: int,
    *,
    at: datetime = NOW,
    model: str = "grok-3",
    cost: str = "0",
    accepted: bool = True,
    event_id: uuid.UUID | None = None,
) -> QuotaUsage:
    return QuotaUsage(
        event_id=event_id or uuid.uuid4(),
        tenant_id="acme",
        model=model,
        occurred_at=at,
        tokens=tokens,
        estimated_cost=Decimal(cost),
        accepted=accepted,
    )


@dataclass
class Tenant:
    """Tenant "acme" as the worker sees it: its state, its limits, and what was emitted."""

    limits: list[Limit]
    state: TenantQuotaState = field(default_factory=lambda: TenantQuotaState("acme"))
    alerts: list[Alert] = field(default_factory=list)
    signals: list[QuotaSignal] = field(default_factory=list)

    def use(self, tokens: int, *, now: datetime = NOW, **kwargs: Any) -> None:
        kwargs.setdefault("at", now)
        self.apply(usage(tokens, **kwargs), now=now)

    def apply(self, event: QuotaUsage, *, now: datetime = NOW) -> None:
        self.state, alerts, signal = apply_usage(self.state, self.limits, event, now, monthly)
        self._emitted(alerts, signal)

    def reevaluate(self, *, now: datetime = NOW) -> None:
        self.state, alerts, signal = reevaluate(self.state, self.limits, now, monthly)
        self._emitted(alerts, signal)

    def seed(self, *past: PastUsage, anchor_day: int = 1, now: datetime = NOW) -> None:
        """A limit was set: the periods are counted from the ledger's ``past`` usage."""
        self.state = seed_periods(self.state, self.limits, past, now, anchor_day)

    def restart(self) -> None:
        """A worker restart: the state comes back from its changelog."""
        self.state = state_from_json(state_to_json(self.state))

    def answer(self, *, now: datetime = NOW, model: str | None = None) -> dict[str, Any]:
        period_of = billing_period_of(self.state.anchor_day)
        return quota_answer(self.state, self.limits, now, period_of, model=model)

    def thresholds_alerted(self) -> list[int]:
        return [alert.threshold for alert in self.alerts]

    @property
    def signal(self) -> QuotaSignal | None:
        return self.signals[-1] if self.signals else None

    @property
    def status(self) -> QuotaStatus | None:
        return None if self.signal is None else self.signal.state

    def _emitted(self, alerts: Iterable[Alert], signal: QuotaSignal | None) -> None:
        self.alerts.extend(alerts)
        if signal is not None:
            self.signals.append(signal)


# --- alerts ---------------------------------------------------------------------------------


def test_usage_crossing_50_80_and_100_percent_alerts_once_for_each() -> None:
    acme = Tenant([tokens_per_period(1000)])
    for _ in range(15):
        acme.use(100)
    assert acme.thresholds_alerted() == [50, 80, 100]
    assert [alert.used for alert in acme.alerts] == [500, 800, 1000]


def test_one_event_crossing_several_thresholds_alerts_for_each_of_them_in_order() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(850)
    assert acme.thresholds_alerted() == [50, 80]


def test_thresholds_are_not_alerted_again_after_a_restart_from_the_changelog() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(600)
    acme.restart()
    acme.use(100)
    acme.restart()
    acme.use(200)
    acme.restart()
    acme.use(500)
    assert acme.thresholds_alerted() == [50, 80, 100]


def test_a_duplicate_delivery_changes_nothing() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    first = usage(1000)
    acme.apply(first)
    before = acme.state
    acme.apply(replace(first, accepted=False))  # the ledger already had it
    assert acme.state is before
    assert acme.thresholds_alerted() == [50, 80, 100]
    assert len(acme.signals) == 1


def test_an_alert_replayed_from_lost_state_has_the_same_id_so_an_outbox_can_drop_it() -> None:
    first_run, replay = Tenant([tokens_per_period(1000)]), Tenant([tokens_per_period(1000)])
    for tenant in (first_run, replay):
        tenant.use(400)
        tenant.use(200)
    assert [a.alert_id for a in first_run.alerts] == [a.alert_id for a in replay.alerts]


def test_thresholds_are_configurable_per_limit() -> None:
    acme = Tenant([tokens_per_period(1000, thresholds=(90, 25, 120))])
    acme.use(300)
    acme.use(700)
    acme.use(300)
    assert acme.thresholds_alerted() == [25, 90, 120]


def test_a_lowered_limit_alerts_the_thresholds_it_makes_reached_on_reevaluation() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(600)
    acme.limits = [tokens_per_period(700)]
    acme.reevaluate()
    assert acme.thresholds_alerted() == [50, 80]
    assert acme.alerts[-1].event_id is None


def test_a_raised_limit_rearms_the_thresholds_no_longer_reached() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(900)
    acme.limits = [tokens_per_period(2000)]
    acme.reevaluate()
    acme.use(1100)
    assert acme.thresholds_alerted() == [50, 80, 50, 80, 100]
    assert acme.alerts[2].alert_id != acme.alerts[0].alert_id


def test_an_alert_names_the_limit_the_period_and_the_event_that_crossed_it() -> None:
    acme = Tenant([tokens_per_period(1000, limit_id="acme-monthly", hard=True)])
    crossing = usage(500)
    acme.apply(crossing)
    alert = acme.alerts[0]
    assert orjson.loads(alert_to_json(alert)) == {
        "alert_id": str(alert.alert_id),
        "tenant_id": "acme",
        "limit_id": "acme-monthly",
        "kind": "tokens_per_period",
        "model": None,
        "hard": True,
        "threshold": 50,
        "limit": 1000,
        "used": 500,
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "event_id": str(crossing.event_id),
        "emitted_at": "2026-11-25T10:30:00Z",
    }


# --- blocking -------------------------------------------------------------------------------


def test_a_hard_limit_blocks_on_the_event_that_crosses_it() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    acme.use(999)
    assert acme.status is QuotaStatus.WARNING
    acme.use(1)
    assert acme.status is QuotaStatus.BLOCKED
    assert acme.signal == QuotaSignal(
        tenant_id="acme",
        state=QuotaStatus.BLOCKED,
        limit_id="tokens_per_period-all",
        kind=LimitKind.TOKENS_PER_PERIOD,
        model=None,
        limit=1000,
        used=1000,
        resets_at=DECEMBER,
        updated_at=NOW,
    )
    assert not signal_allows(acme.signal, "grok-3")


def test_a_soft_limit_never_blocks() -> None:
    acme = Tenant([tokens_per_period(1000, hard=False)])
    acme.use(5000)
    assert acme.status is QuotaStatus.WARNING
    assert acme.thresholds_alerted() == [50, 80, 100]
    assert acme.answer()["allowed"] is True


def test_the_state_is_ok_until_a_limit_reaches_its_first_threshold() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True, thresholds=(75, 100))])
    acme.use(700)
    assert acme.signals == []  # no record on quota.state means ok
    acme.use(50)
    assert acme.status is QuotaStatus.WARNING


def test_raising_a_hard_limit_unblocks() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    acme.use(1000)
    acme.limits = [tokens_per_period(5000, hard=True)]
    acme.reevaluate()
    assert acme.status is QuotaStatus.OK
    assert acme.signal is not None and acme.signal.limit is None


def test_removing_a_hard_limit_unblocks() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    acme.use(1000)
    acme.limits = []
    acme.reevaluate()
    assert acme.status is QuotaStatus.OK
    assert signal_allows(acme.signal, "grok-3")


def test_turning_a_hard_limit_soft_leaves_a_warning() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    acme.use(1200)
    acme.limits = [tokens_per_period(1000, hard=False)]
    acme.reevaluate()
    assert acme.status is QuotaStatus.WARNING


def test_a_new_period_resets_usage_and_lifts_the_block() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    acme.use(1000)
    acme.reevaluate(now=DECEMBER)
    assert acme.status is QuotaStatus.OK
    acme.use(600, now=DECEMBER + timedelta(hours=1))
    assert acme.thresholds_alerted() == [50, 80, 100, 50]
    assert acme.alerts[-1].period_start == DECEMBER


def test_a_spend_limit_counts_the_estimated_cost_in_decimal() -> None:
    acme = Tenant([spend_per_period("10.00", hard=True)])
    for _ in range(99):
        acme.use(10, cost="0.1")
    assert acme.status is QuotaStatus.WARNING
    acme.use(10, cost="0.1")
    assert acme.status is QuotaStatus.BLOCKED
    assert acme.signal is not None and acme.signal.used == Decimal("10.0")
    assert orjson.loads(signal_to_json(acme.signal))["used"] == "10.0"


def test_growing_usage_sends_a_signal_per_5_percent_step_not_per_event() -> None:
    acme = Tenant([tokens_per_period(10_000)])
    for _ in range(1000):
        acme.use(10)  # 0% .. 100% in steps of 0.1%
    used = [signal.used for signal in acme.signals]
    assert used == list(range(5000, 10_001, 500))


def test_a_batch_sends_only_its_latest_signal_but_every_alert() -> None:
    limits = [tokens_per_period(1000, hard=True)]
    batch = [usage(300) for _ in range(4)]
    state, alerts, signal = apply_usages(TenantQuotaState("acme"), limits, batch, NOW, monthly)
    assert [alert.threshold for alert in alerts] == [50, 80, 100]
    assert signal is not None and signal.state is QuotaStatus.BLOCKED and signal.used == 1200
    assert state.signal == signal


def test_the_block_that_lasts_longest_determines_the_signal() -> None:
    acme = Tenant([tokens_per_minute(100, hard=True), tokens_per_period(1000, hard=True)])
    acme.use(1000)
    assert acme.signal is not None
    assert acme.signal.kind is LimitKind.TOKENS_PER_PERIOD
    assert acme.signal.resets_at == DECEMBER


def test_the_most_used_limit_determines_a_warning() -> None:
    acme = Tenant([tokens_per_period(1000, limit_id="a"), spend_per_period("10", limit_id="b")])
    acme.use(600, cost="9")
    assert acme.signal is not None and acme.signal.limit_id == "b"


def test_a_period_warning_is_not_displaced_by_a_busy_minute() -> None:
    acme = Tenant([tokens_per_period(1000, limit_id="monthly"), tokens_per_minute(100)])
    acme.use(90)
    assert acme.signal is not None and acme.signal.kind is LimitKind.TOKENS_PER_MINUTE
    acme.use(500)
    assert acme.signal.limit_id == "monthly"
    assert acme.signal.resets_at == DECEMBER


# --- per-model limits -----------------------------------------------------------------------


def test_a_per_model_limit_counts_only_that_model() -> None:
    acme = Tenant([tokens_per_period(1000, model="grok-4")])
    acme.use(900, model="grok-3")
    assert acme.alerts == []
    acme.use(500, model="grok-4")
    assert acme.thresholds_alerted() == [50]
    assert acme.alerts[0].model == "grok-4"


def test_a_per_model_hard_limit_blocks_only_that_model() -> None:
    acme = Tenant([tokens_per_period(1000, model="grok-4", hard=True), tokens_per_period(5000)])
    acme.use(1000, model="grok-4")
    assert acme.status is QuotaStatus.BLOCKED
    assert acme.signal is not None and acme.signal.blocked_models == ("grok-4",)
    assert not signal_allows(acme.signal, "grok-4")
    assert signal_allows(acme.signal, "grok-3")
    assert acme.answer(model="grok-3")["allowed"] is True
    assert acme.answer(model="grok-4")["allowed"] is False


def test_a_tenant_wide_block_blocks_every_model() -> None:
    acme = Tenant(
        [tokens_per_period(100, model="grok-4", hard=True), tokens_per_period(1000, hard=True)]
    )
    acme.use(100, model="grok-4")
    acme.use(900, model="grok-3")
    assert acme.signal is not None and acme.signal.model is None
    assert not signal_allows(acme.signal, "grok-3")


def test_a_tenant_wide_limit_counts_every_model() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(300, model="grok-3")
    acme.use(300, model="grok-4")
    assert acme.thresholds_alerted() == [50]


def test_a_limit_added_mid_period_sees_the_usage_of_the_whole_period() -> None:
    acme = Tenant([])
    acme.use(900, model="grok-4")
    acme.limits = [tokens_per_period(1000, model="grok-4")]
    acme.reevaluate()
    assert acme.thresholds_alerted() == [50, 80]


# --- seeding from the ledger ---------------------------------------------------------------


def past(tokens: int, *, at: datetime = NOW - timedelta(days=2), **kwargs: Any) -> PastUsage:
    return PastUsage(at, kwargs.get("model", "grok-3"), tokens, Decimal(kwargs.get("cost", "0")))


def test_a_limit_below_the_seeded_usage_blocks_and_alerts_each_threshold_once() -> None:
    acme = Tenant([tokens_per_period(1_000_000, hard=True)])
    acme.seed(past(4_100_000))
    acme.reevaluate()
    assert (acme.thresholds_alerted(), acme.status) == ([50, 80, 100], QuotaStatus.BLOCKED)
    assert acme.answer()["limits"][0]["used"] == 4_100_000
    acme.use(1000)
    acme.restart()
    acme.reevaluate()
    assert acme.thresholds_alerted() == [50, 80, 100]


def test_seeding_replaces_what_the_periods_counted_so_seeding_again_changes_nothing() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(600)  # counted by the worker, and in the ledger
    acme.seed(past(600, at=NOW))
    seeded = acme.state
    acme.seed(past(600, at=NOW))
    assert acme.state is seeded
    assert acme.answer()["limits"][0]["used"] == 600
    acme.reevaluate()
    assert acme.thresholds_alerted() == [50]


def test_thresholds_that_seeded_usage_reached_in_an_earlier_period_do_not_alert_later() -> None:
    acme = Tenant([tokens_per_period(1000)])
    october = NOW - timedelta(days=40)
    acme.seed(past(900, at=october))
    acme.reevaluate()
    acme.use(200, at=october)  # a late event for October
    assert acme.thresholds_alerted() == [100]


def test_seeding_counts_per_model_and_in_money() -> None:
    acme = Tenant([tokens_per_period(1000, model="grok-4"), spend_per_period("10")])
    acme.seed(past(3000, cost="0.0042"), past(500, model="grok-4", cost="0.0105"))
    used = [x["used"] for x in acme.answer()["limits"]]
    assert used == [500, "0.0147"]


def test_seeded_usage_older_than_the_retained_periods_is_left_out() -> None:
    acme = Tenant([tokens_per_period(1000)])
    since = seed_since(NOW, anchor_day=1)
    acme.seed(past(100, at=since), past(900, at=since - timedelta(microseconds=1)))
    assert sum(w.used(acme.limits[0]) for w in acme.state.periods.values()) == 100
    assert since == datetime(2026, 9, 1, tzinfo=UTC)


def test_seeded_periods_are_the_billing_periods_of_the_tenants_anchor_day() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.seed(past(700, at=NOW.replace(day=14)), past(300, at=NOW.replace(day=16)), anchor_day=15)
    [limit] = acme.answer()["limits"]
    assert (limit["used"], limit["resets_at"]) == (300, "2026-12-15T00:00:00Z")


def test_a_new_anchor_day_rebuilds_the_period_windows_on_its_periods() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.seed(past(700, at=NOW.replace(day=14)), past(300, at=NOW.replace(day=16)))
    acme.reevaluate()
    assert acme.thresholds_alerted() == [50, 80, 100]
    acme.seed(past(700, at=NOW.replace(day=14)), past(300, at=NOW.replace(day=16)), anchor_day=15)
    assert sorted(acme.state.periods) == [
        datetime(2026, 10, 15, tzinfo=UTC),
        datetime(2026, 11, 15, tzinfo=UTC),
    ]
    acme.reevaluate()
    assert acme.answer()["limits"][0]["used"] == 300
    assert (acme.thresholds_alerted(), acme.status) == ([50, 80, 100], QuotaStatus.OK)


# --- late events and retention --------------------------------------------------------------


def test_a_late_event_counts_toward_the_period_it_occurred_in_and_cannot_block() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True)])
    december = DECEMBER + timedelta(days=2)
    acme.use(100, now=december)
    acme.use(1000, at=NOW, now=december)
    november = datetime(2026, 11, 1, tzinfo=UTC)
    assert [(a.threshold, a.period_start) for a in acme.alerts] == [
        (50, november),
        (80, november),
        (100, november),
    ]
    assert acme.signals == []
    assert acme.answer(now=december)["limits"][0]["used"] == 100


def test_usage_older_than_the_retained_periods_is_ignored_and_its_periods_dropped() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(600, at=datetime(2026, 9, 10, tzinfo=UTC), now=datetime(2026, 9, 10, tzinfo=UTC))
    later = datetime(2026, 12, 3, tzinfo=UTC)
    acme.use(600, at=datetime(2026, 9, 20, tzinfo=UTC), now=later)
    assert dict(acme.state.periods) == {}
    assert acme.thresholds_alerted() == [50]


def test_a_worker_with_a_slower_clock_cannot_bring_back_a_dropped_period() -> None:
    acme = Tenant([tokens_per_period(1000)])
    september = datetime(2026, 9, 10, tzinfo=UTC)
    acme.use(600, at=september, now=september)
    acme.reevaluate(now=DECEMBER)
    acme.use(600, at=september, now=september + timedelta(days=1))
    assert acme.thresholds_alerted() == [50]


def test_usage_and_alerts_do_not_depend_on_the_order_of_arrival() -> None:
    rng = random.Random(7)
    this_and_last_month = [NOW - timedelta(days=rng.randint(0, 40)) for _ in range(40)]
    last_four_minutes = [NOW - timedelta(seconds=rng.randint(0, 240)) for _ in range(40)]
    events = [usage(rng.randint(1, 200), at=at) for at in this_and_last_month + last_four_minutes]
    outcomes = set()
    for _ in range(5):
        rng.shuffle(events)
        acme = Tenant([tokens_per_period(3000), tokens_per_minute(500)])
        for event in events:
            acme.apply(event)
        document = orjson.loads(state_to_json(acme.state))
        windows = orjson.dumps([document["periods"], document["minutes"]])
        outcomes.add((frozenset(alert.alert_id for alert in acme.alerts), windows))
    assert len(outcomes) == 1


# --- tokens per minute ----------------------------------------------------------------------


def test_tokens_per_minute_counts_by_event_time_in_fixed_minutes() -> None:
    acme = Tenant([tokens_per_minute(1000, hard=True)])
    acme.use(600, at=NOW + timedelta(seconds=10), now=NOW + timedelta(seconds=11))
    acme.use(600, at=NOW + timedelta(seconds=70), now=NOW + timedelta(seconds=71))
    assert acme.status is QuotaStatus.WARNING
    acme.use(400, at=NOW + timedelta(seconds=80), now=NOW + timedelta(seconds=81))
    assert acme.status is QuotaStatus.BLOCKED
    assert acme.signal is not None and acme.signal.resets_at == NOW + timedelta(minutes=2)


def test_an_out_of_order_event_within_the_skew_counts_for_the_minute_it_occurred_in() -> None:
    acme = Tenant([tokens_per_minute(1000)])
    later = NOW + timedelta(minutes=3)
    acme.use(700, at=NOW + timedelta(seconds=30), now=later)
    acme.use(100, at=later, now=later)
    acme.use(300, at=NOW + timedelta(seconds=5), now=later)
    assert [(a.threshold, a.period_start) for a in acme.alerts] == [
        (50, NOW),
        (80, NOW),
        (100, NOW),
    ]


def test_an_event_later_than_the_skew_counts_for_its_period_but_not_its_minute() -> None:
    acme = Tenant([tokens_per_minute(1000), tokens_per_period(1000)])
    acme.use(1000, at=NOW, now=NOW + timedelta(minutes=7))
    assert {a.kind for a in acme.alerts} == {LimitKind.TOKENS_PER_PERIOD}


def test_a_per_minute_block_lifts_when_the_minute_ends() -> None:
    acme = Tenant([tokens_per_minute(1000, hard=True)])
    acme.use(1000)
    assert acme.status is QuotaStatus.BLOCKED
    next_minute = NOW + timedelta(minutes=1)
    assert acme.answer(now=next_minute)["allowed"] is True  # even before the timer runs
    acme.reevaluate(now=next_minute)
    assert acme.status is QuotaStatus.OK


def test_per_minute_alerts_are_once_per_threshold_per_minute() -> None:
    acme = Tenant([tokens_per_minute(100)])
    for second in range(0, 120, 10):
        acme.use(20, at=NOW + timedelta(seconds=second), now=NOW + timedelta(seconds=second))
    assert [(a.threshold, a.period_start.minute) for a in acme.alerts] == [
        (50, 30),
        (80, 30),
        (100, 30),
        (50, 31),
        (80, 31),
        (100, 31),
    ]


def test_only_minutes_within_the_skew_are_kept() -> None:
    acme = Tenant([tokens_per_minute(1000)])
    for minute in range(60):
        at = NOW + timedelta(minutes=minute)
        acme.use(10, at=at, now=at)
    assert len(acme.state.minutes) == 6  # the current minute and the 5 before it


def test_the_skew_allowance_is_configurable() -> None:
    limits = [tokens_per_minute(100)]
    _, alerts, _ = apply_usage(
        TenantQuotaState("acme"),
        limits,
        usage(100, at=NOW),
        NOW + timedelta(minutes=7),
        monthly,
        policy=QuotaPolicy(skew=timedelta(minutes=10)),
    )
    assert [alert.threshold for alert in alerts] == [50, 80, 100]


# --- the HTTP answer ------------------------------------------------------------------------


def test_the_answer_lists_every_limit_with_its_usage_and_reset() -> None:
    acme = Tenant(
        [
            tokens_per_period(1000, hard=True, limit_id="monthly"),
            spend_per_period("50", limit_id="budget"),
            tokens_per_minute(300, model="grok-4", hard=True, limit_id="burst"),
        ]
    )
    acme.use(200, model="grok-4", cost="12.5")
    assert acme.answer() == {
        "tenant_id": "acme",
        "allowed": True,
        "state": "warning",
        "limits": [
            {
                "limit_id": "monthly",
                "kind": "tokens_per_period",
                "model": None,
                "hard": True,
                "state": "ok",
                "limit": 1000,
                "used": 200,
                "remaining": 800,
                "resets_at": "2026-12-01T00:00:00Z",
            },
            {
                "limit_id": "budget",
                "kind": "spend_per_period",
                "model": None,
                "hard": False,
                "state": "ok",
                "limit": "50",
                "used": "12.5",
                "remaining": "37.5",
                "resets_at": "2026-12-01T00:00:00Z",
            },
            {
                "limit_id": "burst",
                "kind": "tokens_per_minute",
                "model": "grok-4",
                "hard": True,
                "state": "warning",
                "limit": 300,
                "used": 200,
                "remaining": 100,
                "resets_at": "2026-11-25T10:31:00Z",
            },
        ],
    }


def test_the_answer_for_a_model_lists_only_the_limits_that_apply_to_it() -> None:
    acme = Tenant([tokens_per_period(1000), tokens_per_minute(300, model="grok-4")])
    limits = acme.answer(model="grok-3")["limits"]
    assert [limit["kind"] for limit in limits] == ["tokens_per_period"]


def test_remaining_is_never_negative() -> None:
    acme = Tenant([spend_per_period("1")])
    acme.use(10, cost="3")
    assert acme.answer()["limits"][0]["remaining"] == "0"


def test_a_tenant_without_limits_is_allowed() -> None:
    assert Tenant([]).answer() == {
        "tenant_id": "acme",
        "allowed": True,
        "state": "ok",
        "limits": [],
    }


# --- serialisation --------------------------------------------------------------------------


def test_the_state_round_trips_through_json() -> None:
    acme = Tenant([tokens_per_period(1000, hard=True), tokens_per_minute(100)])
    acme.use(1200, cost="0.0123456789")
    acme.use(10, model="grok-4", at=NOW - timedelta(days=30))
    restored = state_from_json(state_to_json(acme.state))
    assert restored == acme.state
    assert restored.revision == 2


def test_the_state_json_stays_small() -> None:
    acme = Tenant([tokens_per_period(10**9), tokens_per_minute(10**6)])
    for second in range(0, 3600, 5):
        at = NOW + timedelta(seconds=second)
        acme.use(100, at=at, now=at, cost="0.001", model=f"model-{second % 7}")
    assert len(state_to_json(acme.state)) < 2000


def test_the_signal_json_has_the_documented_shape() -> None:
    acme = Tenant([tokens_per_period(1000, model="grok-4", hard=True, limit_id="g4")])
    acme.use(1000, model="grok-4")
    assert acme.signal is not None
    document = orjson.loads(signal_to_json(acme.signal))
    assert document == {
        "tenant_id": "acme",
        "state": "blocked",
        "limit_id": "g4",
        "kind": "tokens_per_period",
        "model": "grok-4",
        "limit": 1000,
        "used": 1000,
        "resets_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-11-25T10:30:00Z",
        "blocked_models": ["grok-4"],
    }
    assert signal_from_json(signal_to_json(acme.signal)) == acme.signal


def test_the_anchor_day_round_trips_and_a_state_stored_without_one_is_on_calendar_months() -> None:
    state = TenantQuotaState("acme", anchor_day=15)
    assert state_from_json(state_to_json(state)).anchor_day == 15
    document = orjson.loads(state_to_json(TenantQuotaState("acme")))
    del document["anchor_day"]
    assert state_from_json(orjson.dumps(document)).anchor_day == 1


def test_a_state_of_an_unknown_version_is_refused() -> None:
    document = orjson.loads(state_to_json(TenantQuotaState("acme")))
    with pytest.raises(ValueError, match="version"):
        state_from_json(orjson.dumps({**document, "v": 99}))


def test_the_revision_goes_up_only_when_the_state_changes() -> None:
    acme = Tenant([tokens_per_period(1000)])
    acme.use(10)
    acme.reevaluate()
    acme.reevaluate()
    assert acme.state.revision == 1


# --- inputs ---------------------------------------------------------------------------------


def test_tokens_counted_are_input_plus_output_since_cached_and_reasoning_are_inside() -> None:
    event = UsageEvent(
        event_id=uuid.uuid4(),
        tenant_id="acme",
        model="grok-3",
        occurred_at=NOW,
        usage=Usage(1000, 300, cached_input_tokens=800, reasoning_tokens=200),
    )
    quota_usage = usage_from_event(event, estimated_cost=Decimal("0.01"), accepted=True)
    assert quota_usage.tokens == 1300


@pytest.mark.parametrize(
    ("kind", "amount"),
    [
        (LimitKind.SPEND_PER_PERIOD, 10.5),
        (LimitKind.SPEND_PER_PERIOD, Decimal("NaN")),
        (LimitKind.TOKENS_PER_PERIOD, Decimal("1000")),
        (LimitKind.TOKENS_PER_MINUTE, 0),
        (LimitKind.TOKENS_PER_PERIOD, True),
        (LimitKind.TOKENS_PER_PERIOD, 10**23),
        (LimitKind.TOKENS_PER_PERIOD, MAX_TOKEN_LIMIT + 1),
        (LimitKind.SPEND_PER_PERIOD, Decimal("1e15")),
        (LimitKind.SPEND_PER_PERIOD, Decimal("0.0000001")),
        (LimitKind.SPEND_PER_PERIOD, Decimal("-1")),
    ],
)
def test_a_limit_amount_must_be_positive_and_of_its_kinds_type(
    kind: LimitKind, amount: Any
) -> None:
    with pytest.raises(ValueError, match="amount"):
        make_limit(kind, amount)


def test_the_largest_limits_are_what_the_ledger_and_json_integers_hold() -> None:
    assert make_limit(LimitKind.TOKENS_PER_PERIOD, 2**63 - 1).amount == MAX_TOKEN_LIMIT
    assert make_limit(LimitKind.SPEND_PER_PERIOD, Decimal("999999999999999.999999")).amount


@pytest.mark.parametrize("thresholds", [(), (0,), (50, 10_001), (-5,)])
def test_thresholds_must_be_whole_percentages_up_to_10000(thresholds: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        tokens_per_period(1000, thresholds=thresholds)


def test_a_limit_of_another_tenant_is_refused() -> None:
    stranger = Limit("x", "globex", None, LimitKind.TOKENS_PER_PERIOD, 10, hard=True)
    with pytest.raises(ValueError, match="not limits of tenant"):
        reevaluate(TenantQuotaState("acme"), [stranger], NOW, monthly)


def test_usage_of_another_tenant_is_refused() -> None:
    stranger = QuotaUsage(uuid.uuid4(), "globex", "grok-3", NOW, 10, Decimal(0), accepted=True)
    with pytest.raises(ValueError, match="globex"):
        apply_usage(TenantQuotaState("acme"), [], stranger, NOW, monthly)


def test_limit_statuses_report_usage_in_the_current_windows() -> None:
    acme = Tenant([tokens_per_period(1000), tokens_per_minute(100)])
    acme.use(50)
    statuses = limit_statuses(acme.state, acme.limits, NOW + timedelta(minutes=1), monthly)
    assert [(s.limit.kind, s.used) for s in statuses] == [
        (LimitKind.TOKENS_PER_PERIOD, 50),
        (LimitKind.TOKENS_PER_MINUTE, 0),
    ]
