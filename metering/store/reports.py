"""Queries behind `metering usage` and `metering dlq list`, on the `reporting` views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg is loaded by the query, not by `metering --help` (UsageGrouping)
    import psycopg

from metering.billing.tokens import TOKEN_COUNTS


class UsageGrouping(StrEnum):
    hour = "hour"
    day = "day"
    model = "model"
    tenant = "tenant"


_GROUP_EXPRESSIONS = {
    UsageGrouping.hour: ("hour", "hour"),
    UsageGrouping.day: ("date_trunc('day', hour, 'UTC')", "day"),
    UsageGrouping.model: ("model", "model"),
    UsageGrouping.tenant: ("tenant_id", "tenant_id"),
}


@dataclass(frozen=True, slots=True)
class UsageFilter:
    tenant_id: str | None = None
    model: str | None = None
    start: datetime | None = None  # inclusive, compared with the UTC hour
    end: datetime | None = None  # exclusive


def usage(
    conn: psycopg.Connection, by: UsageGrouping, where: UsageFilter
) -> tuple[list[str], list[dict[str, Any]]]:
    """Token totals from ``reporting.usage_hourly``, grouped one way; returns columns, rows."""
    expression, label = _GROUP_EXPRESSIONS[by]
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in TOKEN_COUNTS)
    query = f"""
        SELECT {expression} AS {label}, sum(events)::bigint AS events, {sums}
          FROM reporting.usage_hourly
         WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
           AND (%(model)s::text IS NULL OR model = %(model)s)
           AND (%(start)s::timestamptz IS NULL OR hour >= %(start)s)
           AND (%(end)s::timestamptz IS NULL OR hour < %(end)s)
         GROUP BY 1 ORDER BY 1
    """
    params = {
        "tenant": where.tenant_id,
        "model": where.model,
        "start": where.start,
        "end": where.end,
    }
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [label, "events", *TOKEN_COUNTS], rows


def dead_letter_summary(conn: psycopg.Connection) -> tuple[list[str], list[dict[str, Any]]]:
    query = """
        SELECT reason,
               count(*) AS events,
               count(*) FILTER (WHERE replayed_at IS NULL) AS awaiting_replay,
               max(rejected_at) AS last_seen,
               (array_agg(detail ORDER BY rejection_id DESC))[1] AS latest_detail
          FROM rejections
         GROUP BY reason
         ORDER BY count(*) DESC, reason
    """
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query).fetchall()
    return ["reason", "events", "awaiting_replay", "last_seen", "latest_detail"], rows


def conflicts(conn: psycopg.Connection, limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Re-sent event ids whose payload differed from the billed one (never billed)."""
    query = """
        SELECT c.received_at, c.event_id, c.tenant_id, c.topic, c.partition, c."offset",
               l.source_partition AS billed_partition, l.source_offset AS billed_offset
          FROM ledger_conflicts c JOIN usage_ledger l USING (event_id)
         ORDER BY c.conflict_id DESC LIMIT %s
    """
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, (limit,)).fetchall()
    columns = ["received_at", "event_id", "tenant_id", "topic", "partition", "offset",
               "billed_partition", "billed_offset"]  # fmt: skip
    return columns, rows
