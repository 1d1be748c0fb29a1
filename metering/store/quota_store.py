"""Quota limits, per-tenant quota state and the alert outbox in PostgreSQL.

The state of a tenant is written in the same transaction as the ledger rows that changed
it, so a crash or a replay can neither lose nor double-count quota usage, and alerts are
inserted under their deterministic ``alert_id``: each is stored, and so published, once.
Publishing to Kafka happens after the commit; what was not yet published is swept up.

**Seeding, and the race it must not lose.** A batch counts a tenant's usage toward its
quota state only if the tenant has limits; ``set_limit`` counts the usage already in the
ledger (``usage_hourly``) into the state in the transaction that stores the limit. A batch
committing between that read and the limit's commit would be counted by neither, and one
whose usage the read saw and that then found the limit, by both. So every batch holds its
tenants' *quota locks* (shared; batches never wait for each other) from before it decides
which tenants have limits until it commits, and ``set_limit`` takes the tenant's lock
exclusively before it reads anything. The seed then waits for the batches in flight, and
sees all their usage; those batches found no limit and counted nothing. Batches that come
later wait for the seed's commit, then find the limit and the seeded state, and count their
own usage on top: each batch is counted exactly once, by the seed or by itself. Limits are
read from the table in the batch's transaction, after the lock, never from a worker's
in-memory copy, which may not know the new limit yet. The locks are PostgreSQL advisory
locks, tenants hashed onto ``QUOTA_LOCKS`` of them, so a batch of thousands of tenants
takes a bounded number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, NamedTuple

import psycopg
from psycopg.rows import class_row

from metering.billing.contracts import anchor_day_of
from metering.billing.events import UsageEvent
from metering.billing.periods import billing_period_of
from metering.billing.pricing import estimate_at
from metering.billing.quotas import (
    Alert,
    Limit,
    LimitKind,
    LimitStatus,
    PastUsage,
    QuotaSignal,
    QuotaUsage,
    TenantQuotaState,
    apply_usages,
    counted_tokens,
    limit_statuses,
    reevaluate,
    seed_periods,
    seed_since,
    signal_from_json,
    signal_to_json,
    state_from_json,
    state_to_json,
)
from metering.store.billing.contracts import contracts_of
from metering.store.billing.prices import load_price_book

QUOTA_LOCKS: Final = 64
_LOCK_SPACE: Final = 0x71756F74  # "quot": the first key of every quota advisory lock
_HOLD_SHARED: Final = (
    "SELECT pg_advisory_xact_lock_shared(%(space)s, lock) FROM ("
    " SELECT DISTINCT (hashtextextended(t, 0) & %(mask)s)::int AS lock"
    " FROM unnest(%(tenants)s::text[]) AS t ORDER BY lock) AS locks"
)
_HOLD: Final = (
    "SELECT pg_advisory_xact_lock(%(space)s, (hashtextextended(%(tenant)s, 0) & %(mask)s)::int)"
)


@dataclass(slots=True)
class QuotaEffects:
    """What a transaction decided and must be published once it has committed."""

    alerts: list[Alert] = field(default_factory=list)
    signals: list[QuotaSignal] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.signals)

    def extend(self, other: QuotaEffects) -> None:
        self.alerts.extend(other.alerts)
        self.signals.extend(other.signals)


# --- limits (the CLI) -------------------------------------------------------------------


def set_limit(conn: psycopg.Connection, limit: Limit) -> LimitStatus:
    """Creates or replaces a limit and counts the tenant's usage already in the ledger into
    its quota state (see the module's docstring for why that is exact), in one transaction;
    the worker evaluates it within a second (alerts, block or unblock). Returns the limit's
    status as seeded."""
    now = datetime.now(UTC)
    with conn.transaction():
        _hold_tenant(conn, limit.tenant_id)
        conn.execute(
            "INSERT INTO quota_limits"
            " (limit_id, tenant_id, model, kind, amount, hard, thresholds)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (limit_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,"
            " model = EXCLUDED.model, kind = EXCLUDED.kind, amount = EXCLUDED.amount,"
            " hard = EXCLUDED.hard, thresholds = EXCLUDED.thresholds, updated_at = now()",
            (
                limit.limit_id,
                limit.tenant_id,
                limit.model,
                limit.kind.value,
                limit.amount,
                limit.hard,
                list(limit.thresholds),
            ),
        )
        state = _locked_state(conn, limit.tenant_id) or TenantQuotaState(limit.tenant_id)
        state, limits = _seed(conn, state, now)
    [status] = [
        s
        for s in limit_statuses(state, limits, now, billing_period_of(state.anchor_day))
        if s.limit.limit_id == limit.limit_id
    ]
    return status


def follow_anchor_day(conn: psycopg.Connection, tenant_id: str) -> bool:
    """After a contract change: if the tenant's quota periods no longer start on its billing
    anchor day, counts them afresh from the ledger on the new periods (in the caller's
    transaction). Returns whether it did."""
    _hold_tenant(conn, tenant_id)
    state = _locked_state(conn, tenant_id)
    if state is None or state.anchor_day == anchor_day_of(contracts_of(conn, tenant_id)):
        return False
    _seed(conn, state, datetime.now(UTC))
    return True


def remove_limit(conn: psycopg.Connection, limit_id: str) -> bool:
    row = conn.execute(
        "DELETE FROM quota_limits WHERE limit_id = %s RETURNING tenant_id", (limit_id,)
    ).fetchone()
    if row is None:
        return False
    _reevaluate_soon(conn, row[0])
    return True


def list_limits(conn: psycopg.Connection, tenant_id: str | None = None) -> list[Limit]:
    rows = conn.execute(
        f"SELECT {_LIMIT_COLUMNS} FROM quota_limits"
        " WHERE %s::text IS NULL OR tenant_id = %s ORDER BY tenant_id, kind, model, limit_id",
        (tenant_id, tenant_id),
    ).fetchall()
    return [_limit(row) for row in rows]


def _reevaluate_soon(conn: psycopg.Connection, tenant_id: str) -> None:
    conn.execute("UPDATE quota_state SET reevaluate_at = now() WHERE tenant_id = %s", (tenant_id,))


def _hold_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    """Waits for the batches in flight that carry the tenant's usage, and keeps new ones
    from counting it, until the transaction ends."""
    conn.execute(_HOLD, {"space": _LOCK_SPACE, "tenant": tenant_id, "mask": QUOTA_LOCKS - 1})


def _locked_state(conn: psycopg.Connection, tenant_id: str) -> TenantQuotaState | None:
    row = conn.execute(
        "SELECT state::text FROM quota_state WHERE tenant_id = %s FOR UPDATE", (tenant_id,)
    ).fetchone()
    return None if row is None else state_from_json(row[0])


def _seed(
    conn: psycopg.Connection, state: TenantQuotaState, now: datetime
) -> tuple[TenantQuotaState, list[Limit]]:
    """Counts the retained periods from ``usage_hourly`` on the tenant's billing periods,
    stores the state and asks the worker to evaluate it now. Needs the tenant's lock."""
    tenant_id = state.tenant_id
    anchor_day = anchor_day_of(contracts_of(conn, tenant_id))
    limits = list_limits(conn, tenant_id)
    past = _past_usage(conn, tenant_id, seed_since(now, anchor_day))
    seeded = seed_periods(state, limits, past, now, anchor_day)
    conn.execute(
        "INSERT INTO quota_state (tenant_id, state, revision, reevaluate_at, updated_at)"
        " VALUES (%(t)s, %(s)s::jsonb, %(r)s, now(), clock_timestamp())"
        " ON CONFLICT (tenant_id) DO UPDATE SET state = EXCLUDED.state,"
        " revision = EXCLUDED.revision, reevaluate_at = now(), updated_at = clock_timestamp()",
        {"t": tenant_id, "s": state_to_json(seeded).decode(), "r": seeded.revision},
    )
    return seeded, limits


class _Hour(NamedTuple):
    """One row of ``usage_hourly``, as seeding reads it (a ``TokenCounts``)."""

    hour: datetime
    model: str
    service_tier: str
    long_context: bool
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cache_write_1h_tokens: int


def _past_usage(conn: psycopg.Connection, tenant_id: str, since: datetime) -> list[PastUsage]:
    """The tenant's hours since ``since``, each estimated like the stream estimates an event
    (list prices in effect at the hour's start; 0 where there is no price)."""
    book = load_price_book(conn)
    with conn.cursor(row_factory=class_row(_Hour)) as cur:
        rows = cur.execute(
            "SELECT hour, model, service_tier, long_context, input_tokens, cached_input_tokens,"
            " cache_write_tokens, output_tokens, reasoning_tokens, cache_write_1h_tokens"
            " FROM usage_hourly"
            " WHERE tenant_id = %s AND hour >= %s",
            (tenant_id, since),
        ).fetchall()
    return [
        PastUsage(
            row.hour,
            row.model,
            counted_tokens(row.input_tokens, row.output_tokens),
            estimate_at(
                book, row, row.model, row.service_tier, row.hour, long_context=row.long_context
            )
            or Decimal(0),
        )
        for row in rows
    ]


_LIMIT_COLUMNS = "limit_id, tenant_id, model, kind, amount, hard, thresholds"


def _limit(row: Sequence[object]) -> Limit:
    limit_id, tenant_id, model, kind, amount, hard, thresholds = row
    kind = LimitKind(kind)
    assert isinstance(amount, Decimal)
    return Limit(
        limit_id=str(limit_id),
        tenant_id=str(tenant_id),
        model=None if model is None else str(model),
        kind=kind,
        amount=amount if kind.is_spend else int(amount),
        hard=bool(hard),
        thresholds=tuple(thresholds),  # type: ignore[arg-type]
    )


# --- the worker ---------------------------------------------------------------------------


def estimated_spend(conn: psycopg.Connection, tenant_id: str, period_start: datetime) -> Decimal:
    """What the stream estimated the tenant spent in the period (all models); 0 if nothing."""
    row = conn.execute(
        "SELECT state::text FROM quota_state WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    if row is None:
        return Decimal(0)
    window = state_from_json(row[0]).periods.get(period_start)
    if window is None:
        return Decimal(0)
    return sum((usage.spend for usage in window.usage.values()), Decimal(0))


async def load_limits(
    conn: psycopg.AsyncConnection, tenants: Sequence[str] | None = None
) -> dict[str, tuple[Limit, ...]]:
    """Limits per tenant: of all tenants, or of ``tenants``."""
    cursor = await conn.execute(
        f"SELECT {_LIMIT_COLUMNS} FROM quota_limits"
        " WHERE %(t)s::text[] IS NULL OR tenant_id = ANY(%(t)s::text[])",
        {"t": None if tenants is None else list(tenants)},
    )
    by_tenant: dict[str, list[Limit]] = defaultdict(list)
    for row in await cursor.fetchall():
        limit = _limit(row)
        by_tenant[limit.tenant_id].append(limit)
    return {tenant: tuple(limits) for tenant, limits in by_tenant.items()}


async def apply(
    conn: psycopg.AsyncConnection,
    events: Sequence[UsageEvent],
    quota_usage: Callable[[UsageEvent], QuotaUsage],
    now: datetime,
) -> QuotaEffects:
    """Counts a batch's newly accepted events toward their tenants' limits, inside the
    batch's transaction, under the tenants' quota locks (see the module's docstring).
    ``quota_usage`` is only called for the events of tenants that have limits."""
    tenants = sorted({event.tenant_id for event in events})
    if not tenants:
        return QuotaEffects()
    await conn.execute(
        _HOLD_SHARED, {"space": _LOCK_SPACE, "tenants": tenants, "mask": QUOTA_LOCKS - 1}
    )
    limits = await load_limits(conn, tenants)
    if not limits:
        return QuotaEffects()
    by_tenant: dict[str, list[QuotaUsage]] = defaultdict(list)
    for event in events:
        if event.tenant_id in limits:
            by_tenant[event.tenant_id].append(quota_usage(event))
    states = await _lock_states(conn, sorted(by_tenant))
    effects = QuotaEffects()
    for tenant_id, tenant_usages in sorted(by_tenant.items()):
        before = states.get(tenant_id) or TenantQuotaState(tenant_id)
        period_of = billing_period_of(before.anchor_day)
        outcome = apply_usages(before, limits[tenant_id], tenant_usages, now, period_of)
        await _save(conn, outcome.state, outcome.signal, limits[tenant_id], now)
        effects.alerts.extend(await _insert_alerts(conn, outcome.alerts))
        if outcome.signal is not None:
            effects.signals.append(outcome.signal)
    return effects


async def reevaluate_due(
    conn: psycopg.AsyncConnection, now: datetime, batch: int = 200
) -> QuotaEffects:
    """Re-evaluates tenants whose window ended or whose limits changed; commits. Limits are
    read with the states they go with, so a limit set a moment ago is never missed."""
    effects = QuotaEffects()
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT tenant_id, state::text FROM quota_state WHERE reevaluate_at <= %s"
            " ORDER BY reevaluate_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, batch),
        )
        due = await cursor.fetchall()
        limits = await load_limits(conn, [tenant_id for tenant_id, _ in due]) if due else {}
        for tenant_id, document in due:
            state = state_from_json(document)
            tenant_limits = limits.get(tenant_id, ())
            period_of = billing_period_of(state.anchor_day)
            outcome = reevaluate(state, tenant_limits, now, period_of)
            await _save(conn, outcome.state, outcome.signal, tenant_limits, now)
            effects.alerts.extend(await _insert_alerts(conn, outcome.alerts))
            if outcome.signal is not None:
                effects.signals.append(outcome.signal)
    return effects


async def unpublished(conn: psycopg.AsyncConnection, older_than: datetime) -> QuotaEffects:
    """Effects committed but not confirmed published (the worker stopped in between)."""
    alerts = await conn.execute(
        "SELECT alert_id, tenant_id, limit_id, kind, model, hard, threshold, limit_amount, used,"
        " period_start, period_end, event_id, emitted_at FROM quota_alerts"
        " WHERE published_at IS NULL AND emitted_at < %s ORDER BY emitted_at LIMIT 1000",
        (older_than,),
    )
    signals = await conn.execute(
        "SELECT signal::text FROM quota_state"
        " WHERE NOT signal_published AND updated_at < %s LIMIT 1000",
        (older_than,),
    )
    return QuotaEffects(
        alerts=[_alert(row) for row in await alerts.fetchall()],
        signals=[signal_from_json(row[0]) for row in await signals.fetchall()],
    )


async def mark_published(conn: psycopg.AsyncConnection, effects: QuotaEffects) -> None:
    async with conn.transaction():
        if effects.alerts:
            await conn.execute(
                "UPDATE quota_alerts SET published_at = now() WHERE alert_id = ANY(%s)",
                ([a.alert_id for a in effects.alerts],),
            )
        for signal in effects.signals:
            await conn.execute(
                "UPDATE quota_state SET signal_published = true"
                " WHERE tenant_id = %s AND signal = %s::jsonb",
                (signal.tenant_id, signal_to_json(signal).decode()),
            )


# A state row is stamped when written but becomes visible when its batch commits, so a
# row can appear later than rows stamped after it; reading back this far catches it.
STATE_VISIBILITY_LAG = timedelta(seconds=30)


async def states_changed_since(
    conn: psycopg.AsyncConnection, since: datetime | None
) -> tuple[list[TenantQuotaState], datetime | None]:
    """States updated after ``since`` (less the visibility lag), and the newest update time
    seen, for the next call. The caller keeps the highest ``revision`` of each tenant."""
    cursor = await conn.execute(
        "SELECT state::text, updated_at FROM quota_state"
        " WHERE %(since)s::timestamptz IS NULL OR updated_at >= %(since)s::timestamptz - %(lag)s"
        " ORDER BY updated_at",
        {"since": since, "lag": STATE_VISIBILITY_LAG},
    )
    rows = await cursor.fetchall()
    newest = rows[-1][1] if rows else since
    return [state_from_json(row[0]) for row in rows], newest


async def _lock_states(
    conn: psycopg.AsyncConnection, tenants: list[str]
) -> dict[str, TenantQuotaState]:
    cursor = await conn.execute(
        "SELECT tenant_id, state::text FROM quota_state WHERE tenant_id = ANY(%s)"
        " ORDER BY tenant_id FOR UPDATE",
        (tenants,),
    )
    return {t: state_from_json(doc) for t, doc in await cursor.fetchall()}


async def _save(
    conn: psycopg.AsyncConnection,
    state: TenantQuotaState,
    signal: QuotaSignal | None,
    limits: Sequence[Limit],
    now: datetime,
) -> None:
    """Stores the state, the signal to publish, and when to look again without usage."""
    period_of = billing_period_of(state.anchor_day)
    resets = [s.resets_at for s in limit_statuses(state, limits, now, period_of) if s.used]
    await conn.execute(
        "INSERT INTO quota_state (tenant_id, state, revision, signal, signal_published,"
        " reevaluate_at, updated_at) VALUES (%(t)s, %(s)s::jsonb, %(r)s, %(sig)s::jsonb, %(pub)s,"
        " %(at)s,"
        " clock_timestamp())"
        " ON CONFLICT (tenant_id) DO UPDATE SET state = EXCLUDED.state,"
        " revision = EXCLUDED.revision,"
        " signal = coalesce(EXCLUDED.signal, quota_state.signal),"
        " signal_published = EXCLUDED.signal_published AND quota_state.signal_published,"
        " reevaluate_at = EXCLUDED.reevaluate_at, updated_at = clock_timestamp()",
        {
            "t": state.tenant_id,
            "s": state_to_json(state).decode(),
            "r": state.revision,
            "sig": None if signal is None else signal_to_json(signal).decode(),
            "pub": signal is None,
            "at": min(resets, default=None),
        },
    )


async def _insert_alerts(conn: psycopg.AsyncConnection, alerts: list[Alert]) -> list[Alert]:
    """Stores alerts; returns those not stored before (only they are published)."""
    new = []
    for alert in alerts:
        cursor = await conn.execute(
            "INSERT INTO quota_alerts (alert_id, tenant_id, limit_id, kind, model, hard,"
            " threshold, limit_amount, used, period_start, period_end, event_id, emitted_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id",
            (
                alert.alert_id,
                alert.tenant_id,
                alert.limit_id,
                alert.kind.value,
                alert.model,
                alert.hard,
                alert.threshold,
                alert.limit,
                alert.used,
                alert.period_start,
                alert.period_end,
                alert.event_id,
                alert.emitted_at,
            ),
        )
        if await cursor.fetchone():
            new.append(alert)
    return new


def _alert(row: Sequence[object]) -> Alert:
    (alert_id, tenant_id, limit_id, kind, model, hard, threshold, limit_amount, used,
     period_start, period_end, event_id, emitted_at) = row  # fmt: skip
    kind = LimitKind(kind)
    assert isinstance(limit_amount, Decimal) and isinstance(used, Decimal)
    return Alert(
        alert_id=alert_id,  # type: ignore[arg-type]
        tenant_id=str(tenant_id),
        limit_id=str(limit_id),
        kind=kind,
        model=None if model is None else str(model),
        hard=bool(hard),
        threshold=int(threshold),  # type: ignore[call-overload]
        limit=limit_amount if kind.is_spend else int(limit_amount),
        used=used if kind.is_spend else int(used),
        period_start=period_start,  # type: ignore[arg-type]
        period_end=period_end,  # type: ignore[arg-type]
        event_id=event_id,  # type: ignore[arg-type]
        emitted_at=emitted_at,  # type: ignore[arg-type]
    )
