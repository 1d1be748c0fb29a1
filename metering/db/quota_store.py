"""Quota limits, per-tenant quota state and the alert outbox in PostgreSQL.

The state of a tenant is written in the same transaction as the ledger rows that changed
it, so a crash or a replay can neither lose nor double-count quota usage, and alerts are
inserted under their deterministic ``alert_id``: each is stored, and so published, once.
Publishing to Kafka happens after the commit; what was not yet published is swept up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from metering.quotas import (
    Alert,
    Limit,
    LimitKind,
    PeriodOf,
    QuotaSignal,
    QuotaUsage,
    TenantQuotaState,
    apply_usages,
    limit_statuses,
    reevaluate,
    signal_from_json,
    signal_to_json,
    state_from_json,
    state_to_json,
)

LimitsByTenant = Mapping[str, Sequence[Limit]]


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


def set_limit(conn: psycopg.Connection, limit: Limit) -> None:
    """Creates or replaces a limit; the tenant is re-evaluated at once (e.g. unblocked)."""
    conn.execute(
        "INSERT INTO quota_limits (limit_id, tenant_id, model, kind, amount, hard, thresholds)"
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
    _reevaluate_soon(conn, limit.tenant_id)


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
    conn.execute(
        "INSERT INTO quota_state (tenant_id, state, revision, reevaluate_at)"
        " VALUES (%s, %s::jsonb, 0, now())"
        " ON CONFLICT (tenant_id) DO UPDATE SET reevaluate_at = now()",
        (tenant_id, state_to_json(TenantQuotaState(tenant_id)).decode()),
    )


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


async def load_limits(conn: psycopg.AsyncConnection) -> dict[str, tuple[Limit, ...]]:
    cursor = await conn.execute(f"SELECT {_LIMIT_COLUMNS} FROM quota_limits")
    by_tenant: dict[str, list[Limit]] = defaultdict(list)
    for row in await cursor.fetchall():
        limit = _limit(row)
        by_tenant[limit.tenant_id].append(limit)
    return {tenant: tuple(limits) for tenant, limits in by_tenant.items()}


async def apply(
    conn: psycopg.AsyncConnection,
    limits: LimitsByTenant,
    usages: Iterable[QuotaUsage],
    now: datetime,
    period_of: PeriodOf,
) -> QuotaEffects:
    """Counts newly accepted usage toward its tenant's limits, inside the caller's transaction."""
    by_tenant: dict[str, list[QuotaUsage]] = defaultdict(list)
    for usage in usages:
        if usage.tenant_id in limits:
            by_tenant[usage.tenant_id].append(usage)
    if not by_tenant:
        return QuotaEffects()
    states = await _lock_states(conn, sorted(by_tenant))
    effects = QuotaEffects()
    for tenant_id, tenant_usages in sorted(by_tenant.items()):
        before = states.get(tenant_id) or TenantQuotaState(tenant_id)
        outcome = apply_usages(before, limits[tenant_id], tenant_usages, now, period_of)
        await _save(conn, outcome.state, outcome.signal, limits[tenant_id], now, period_of)
        effects.alerts.extend(await _insert_alerts(conn, outcome.alerts))
        if outcome.signal is not None:
            effects.signals.append(outcome.signal)
    return effects


async def reevaluate_due(
    conn: psycopg.AsyncConnection,
    limits: LimitsByTenant,
    now: datetime,
    period_of: PeriodOf,
    batch: int = 200,
) -> QuotaEffects:
    """Re-evaluates tenants whose window ended or whose limits changed; commits."""
    effects = QuotaEffects()
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT tenant_id, state::text FROM quota_state WHERE reevaluate_at <= %s"
            " ORDER BY reevaluate_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, batch),
        )
        for tenant_id, document in await cursor.fetchall():
            state = state_from_json(document)
            outcome = reevaluate(state, limits.get(tenant_id, ()), now, period_of)
            await _save(
                conn, outcome.state, outcome.signal, limits.get(tenant_id, ()), now, period_of
            )
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
    period_of: PeriodOf,
) -> None:
    """Stores the state, the signal to publish, and when to look again without usage."""
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
