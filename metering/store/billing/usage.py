"""Usage reads for billing: a tenant's period, every tenant's period in one pass, and
the sums a closed period is compared by."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg.rows import namedtuple_row

from metering.billing.periods import BillingPeriod
from metering.billing.usage_rows import USAGE_COUNTS, UsageKey
from metering.store.billing.context import BillingContext
from metering.store.hourly import HourlyUsage

_USAGE_QUERY: Final = """
WITH usage AS (
    SELECT model, service_tier, long_context, hour, events, input_tokens, cached_input_tokens,
           cache_write_tokens, output_tokens, reasoning_tokens, cache_write_1h_tokens
      FROM usage_hourly
     WHERE tenant_id = %(tenant)s AND hour >= %(start)s AND hour < %(end)s
), hour_by_hour AS (
    SELECT model FROM usage
     WHERE model = ANY(%(tiered)s)
     GROUP BY model
    HAVING count(DISTINCT (service_tier, long_context)) > 1
)
SELECT %(tenant)s::text AS tenant_id, model, service_tier, long_context,
       CASE WHEN model IN (SELECT model FROM hour_by_hour) THEN hour
            ELSE (%(cuts)s::timestamptz[])[width_bucket(hour, %(cuts)s::timestamptz[])]
       END AS hour,
       sum(events)::bigint AS events,
       sum(input_tokens)::bigint AS input_tokens,
       sum(cached_input_tokens)::bigint AS cached_input_tokens,
       sum(cache_write_tokens)::bigint AS cache_write_tokens,
       sum(output_tokens)::bigint AS output_tokens,
       sum(reasoning_tokens)::bigint AS reasoning_tokens,
       sum(cache_write_1h_tokens)::bigint AS cache_write_1h_tokens
  FROM usage
 GROUP BY 2, 3, 4, 5
"""


def period_usage(
    conn: psycopg.Connection, ctx: BillingContext, tenant_id: str, period: BillingPeriod
) -> list[Any]:
    """The tenant's usage in ``period``, ready for ``build_invoice``.

    Hours are summed in the database per stretch of time in which no price of the book or of
    the tenant's overrides changes, each sum dated at the start of its stretch: the sums
    ``rate`` makes itself, at a fraction of the rows to fetch. Except for a model with
    graduated bands used on several service tiers (or with long-context requests): band
    positions then depend on how the hours of those interleave, so it comes hour by hour.
    (With one service tier, the hours of a stretch are contiguous in the band volume, and
    their sum falls into the bands exactly as they would one by one.)"""
    entries = (*ctx.book.entries, *ctx.overrides.get(tenant_id, ()))
    changes = {
        moment
        for entry in entries
        for moment in (entry.effective_from, entry.effective_to)
        if moment is not None and period.start < moment < period.end
    }
    params = {
        "tenant": tenant_id,
        "start": period.start,
        "end": period.end,
        "cuts": sorted({period.start, *changes}),
        "tiered": sorted({e.model for e in entries if e.tier_up_to is not None}),
    }
    with conn.cursor(row_factory=namedtuple_row, binary=True) as cur:
        return cur.execute(_USAGE_QUERY, params).fetchall()


_SUMMED: Final = ("tenant_id", "model", "service_tier", "long_context", "hour", *USAGE_COUNTS)
_SUMS: Final = ", ".join(f"sum({c})::bigint" for c in USAGE_COUNTS)


def summed_usage(
    conn: psycopg.Connection, ctx: BillingContext, period: BillingPeriod
) -> dict[str, list[HourlyUsage]]:
    """Every tenant's usage in ``period``, summed in one pass over the table per model,
    service tier, long-context flag and stretch without a price change (of the book or of any
    tenant's overrides). What a bulk close reads instead of one query per tenant, whose rows
    ingest has scattered over the table.

    The stretches are told apart by grouping on ``hour >= change`` for each change inside the
    period (an estimate the planner gets right, so it hashes the groups), and each group is
    dated at the start of its stretch."""
    entries = (*ctx.book.entries, *(e for group in ctx.overrides.values() for e in group))
    changes = sorted(
        {
            moment
            for entry in entries
            for moment in (entry.effective_from, entry.effective_to)
            if moment is not None and period.start < moment < period.end
        }
    )
    starts = [period.start, *changes]
    flags = "".join(f", hour >= %(change{n})s" for n in range(len(changes)))
    params: dict[str, Any] = {"start": period.start, "end": period.end}
    params.update({f"change{n}": change for n, change in enumerate(changes)})
    query = (
        "SELECT tenant_id, model, service_tier, long_context, min(hour), "
        + _SUMS
        + " FROM usage_hourly WHERE hour >= %(start)s AND hour < %(end)s"
        " GROUP BY tenant_id, model, service_tier, long_context" + flags
    )
    result: dict[str, list[HourlyUsage]] = {}
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")  # compiling takes longer than the hashing
        for row in conn.execute(query, params):
            first_hour = row[4]
            stretch = starts[bisect.bisect_right(starts, first_hour) - 1]
            summed = dict(zip(_SUMMED, (*row[:4], stretch, *row[5:]), strict=True))
            result.setdefault(row[0], []).append(HourlyUsage(**summed))
    return result


def complete_usage(
    conn: psycopg.Connection,
    ctx: BillingContext,
    tenant_id: str,
    period: BillingPeriod,
    summed: Sequence[HourlyUsage],
) -> list[Any]:
    """The tenant's usage from a bulk read: summed rows, except for models with bands used on
    several service tiers (or with long-context requests), which are read again hour by hour
    (see ``period_usage``)."""
    entries = (*ctx.book.entries, *ctx.overrides.get(tenant_id, ()))
    tiered = {e.model for e in entries if e.tier_up_to is not None}
    streams: dict[str, set[tuple[str, bool]]] = {}
    for row in summed:
        if row.model in tiered:
            streams.setdefault(row.model, set()).add((row.service_tier, row.long_context))
    interleaved = sorted(model for model, seen in streams.items() if len(seen) > 1)
    rows: list[Any] = [row for row in summed if row.model not in interleaved]
    if interleaved:
        with conn.cursor(row_factory=namedtuple_row, binary=True) as cur:
            rows += cur.execute(
                "SELECT tenant_id, model, service_tier, long_context, hour, events,"
                " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,"
                " reasoning_tokens, cache_write_1h_tokens FROM usage_hourly"
                " WHERE tenant_id = %s AND hour >= %s AND hour < %s AND model = ANY(%s)",
                (tenant_id, period.start, period.end, interleaved),
            ).fetchall()
    return rows


def sums_now(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod
) -> dict[UsageKey, tuple[int, ...]]:
    sums = ", ".join(f"sum({c})::bigint" for c in USAGE_COUNTS)
    rows = conn.execute(
        f"SELECT model, service_tier, long_context, {sums} FROM usage_hourly"
        " WHERE tenant_id = %s AND hour >= %s AND hour < %s GROUP BY 1, 2, 3",
        (tenant_id, period.start, period.end),
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def sums_billed(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod
) -> dict[UsageKey, tuple[int, ...]]:
    rows = conn.execute(
        f"SELECT model, service_tier, long_context, {', '.join(USAGE_COUNTS)} FROM billed_usage"
        " WHERE tenant_id = %s AND period_start = %s",
        (tenant_id, period.start),
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}
