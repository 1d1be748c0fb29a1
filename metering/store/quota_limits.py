"""Quota limits in PostgreSQL, as ``metering quota`` sets them: each new limit (and each new
anchor day) counts the usage already in the ledger into the tenant's quota state.

Why that count is exact while batches keep committing, and the quota locks it takes, is in
``metering.store.quota_store``'s docstring.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from psycopg.rows import class_row

from metering.billing.contracts import anchor_day_of
from metering.billing.quotas.limits import Limit
from metering.billing.quotas.state import (
    LimitStatus,
    PastUsage,
    TenantQuotaState,
    counted_tokens,
    limit_statuses,
    seed_periods,
    seed_since,
)
from metering.billing.rating import estimate_at
from metering.store.billing.contracts import contracts_of
from metering.store.billing.prices import load_price_book
from metering.store.hourly import HOURLY_COLUMNS, HourlyUsage
from metering.store.quota_store import HOLD, LIMIT_COLUMNS, LOCK_SPACE, QUOTA_LOCKS, limit_from_row
from metering.wire.quota_messages import (
    state_from_json,
    state_to_json,
)


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
        for s in limit_statuses(state, limits, now, state.period_of)
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
        f"SELECT {LIMIT_COLUMNS} FROM quota_limits"
        " WHERE %s::text IS NULL OR tenant_id = %s ORDER BY tenant_id, kind, model, limit_id",
        (tenant_id, tenant_id),
    ).fetchall()
    return [limit_from_row(row) for row in rows]


def _reevaluate_soon(conn: psycopg.Connection, tenant_id: str) -> None:
    conn.execute("UPDATE quota_state SET reevaluate_at = now() WHERE tenant_id = %s", (tenant_id,))


def _hold_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    """Waits for the batches in flight that carry the tenant's usage, and keeps new ones
    from counting it, until the transaction ends."""
    conn.execute(HOLD, {"space": LOCK_SPACE, "tenant": tenant_id, "mask": QUOTA_LOCKS - 1})


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


def _past_usage(conn: psycopg.Connection, tenant_id: str, since: datetime) -> list[PastUsage]:
    """The tenant's hours since ``since``, each estimated like the stream estimates an event
    (list prices in effect at the hour's start; 0 where there is no price)."""
    book = load_price_book(conn)
    with conn.cursor(row_factory=class_row(HourlyUsage)) as cur:
        rows = cur.execute(
            f"SELECT {', '.join(HOURLY_COLUMNS)} FROM usage_hourly"
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
