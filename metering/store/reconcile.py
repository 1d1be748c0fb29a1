"""Nothing disappears silently: produced = processed, ledger = counters = aggregates.

Every figure is computed two independent ways; `metering reconcile` prints them side by
side and fails when any pair differs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg

from metering.config import Settings
from metering.wire.kafka_admin import PartitionOffsets, topic_offsets


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    expected: int
    actual: int
    how: str  # where the two figures come from

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass(frozen=True, slots=True)
class Progress:
    """What the ledger has processed of a topic, per partition (next offset to read)."""

    next_offsets: dict[int, int]
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int

    @property
    def processed(self) -> int:
        return self.accepted + self.duplicates + self.conflicts + self.rejected


def read_progress(conn: psycopg.Connection, topic: str) -> Progress:
    rows = conn.execute(
        "SELECT partition, next_offset, accepted, duplicates, conflicts, rejected"
        " FROM ingest_progress WHERE topic = %s",
        (topic,),
    ).fetchall()
    return Progress(
        next_offsets={row[0]: row[1] for row in rows},
        accepted=sum(row[2] for row in rows),
        duplicates=sum(row[3] for row in rows),
        conflicts=sum(row[4] for row in rows),
        rejected=sum(row[5] for row in rows),
    )


def unprocessed(offsets: list[PartitionOffsets], progress: Progress) -> int:
    return sum(
        max(0, p.end - max(p.start, progress.next_offsets.get(p.partition, 0))) for p in offsets
    )


async def lag(settings: Settings) -> int:
    """Records in the usage topic that the ledger has not processed yet."""
    offsets = await topic_offsets(settings, settings.topic_usage, settings.group_id)
    with psycopg.connect(settings.psycopg_dsn) as conn:
        progress = read_progress(conn, settings.topic_usage)
    return unprocessed(offsets, progress)


def _count(conn: psycopg.Connection, query: str, *params: object) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


_AGGREGATE_MISMATCHES = """
WITH ledger AS (
    SELECT tenant_id, model, service_tier, long_context,
           date_trunc('hour', occurred_at, 'UTC') AS hour,
           count(*) AS events, sum(input_tokens) AS input_tokens,
           sum(cached_input_tokens) AS cached_input_tokens,
           sum(cache_write_tokens) AS cache_write_tokens,
           sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
           sum(cache_write_1h_tokens) AS cache_write_1h_tokens
      FROM usage_ledger GROUP BY 1, 2, 3, 4, 5
)
SELECT count(*)
  FROM ledger l FULL OUTER JOIN usage_hourly a
       USING (tenant_id, model, service_tier, long_context, hour)
 WHERE (l.events, l.input_tokens, l.cached_input_tokens, l.cache_write_tokens,
        l.output_tokens, l.reasoning_tokens, l.cache_write_1h_tokens)
       IS DISTINCT FROM
       (a.events, a.input_tokens, a.cached_input_tokens, a.cache_write_tokens,
        a.output_tokens, a.reasoning_tokens, a.cache_write_1h_tokens)
"""


def reconcile(settings: Settings) -> list[Check]:
    topic = settings.topic_usage
    offsets = asyncio.run(topic_offsets(settings, topic, settings.group_id))
    produced = sum(p.end - p.start for p in offsets)
    with psycopg.connect(settings.psycopg_dsn) as conn:
        progress = read_progress(conn, topic)
        ledger_rows = _count(conn, "SELECT count(*) FROM usage_ledger")
        # The ledger holds what every topic ingested into this database contributed.
        accepted_all_topics = _count(conn, "SELECT coalesce(sum(accepted), 0) FROM ingest_progress")
        rejections = _count(conn, "SELECT count(*) FROM rejections WHERE topic = %s", topic)
        conflicts = _count(conn, "SELECT count(*) FROM ledger_conflicts WHERE topic = %s", topic)
        mismatches = _count(conn, _AGGREGATE_MISMATCHES)
    return [
        Check(
            "produced = accepted + duplicates + conflicts + rejected",
            produced,
            progress.processed,
            f"topic offsets of {topic} vs the ledger's counters "
            f"({progress.accepted} + {progress.duplicates} + {progress.conflicts} "
            f"+ {progress.rejected})",
        ),
        Check(
            "not yet processed (lag)",
            0,
            unprocessed(offsets, progress),
            "topic end offsets vs ledger progress",
        ),
        Check(
            "ledger rows = accepted",
            accepted_all_topics,
            ledger_rows,
            "accepted counters of all topics vs usage_ledger rows",
        ),
        Check("dead letters = rejected", progress.rejected, rejections, "rejections rows"),
        Check("conflicts recorded", progress.conflicts, conflicts, "ledger_conflicts rows"),
        Check(
            "ledger = hourly aggregates",
            0,
            mismatches,
            "(tenant, model, tier, long context, hour) groups whose sums differ",
        ),
    ]
