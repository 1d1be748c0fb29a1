"""The idempotent, transactional sink: one PostgreSQL transaction per micro-batch.

Exactly once in effect comes from here, not from Kafka transactions. Within one
transaction a batch
  1. locks the progress rows of its partitions and skips records already processed
     (a replay after a crash or a rebalance changes nothing),
  2. inserts ledger rows, deduplicated on ``event_id``,
  3. adds only the rows really inserted to the hourly aggregates,
  4. records rejections, duplicate and conflict counts and the next offset per partition.
Kafka offsets are acknowledged only after the commit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from uuid import UUID

import orjson
import psycopg

from metering.events import Rejection, UsageEvent


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record, as the sink needs to know it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class BatchOutcome:
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    skipped: int = 0  # already processed before (replayed by Kafka)


@dataclass(slots=True)
class _PartitionTally:
    next_offset: int = 0
    counts: Counter[str] = field(default_factory=Counter)


_INSERT_LEDGER = """
WITH incoming AS (
    SELECT * FROM unnest(
        %(event_id)s::uuid[], %(tenant_id)s::text[], %(model)s::text[], %(service_tier)s::text[],
        %(occurred_at)s::timestamptz[],
        %(input_tokens)s::bigint[], %(cached_input_tokens)s::bigint[],
        %(cache_write_tokens)s::bigint[], %(output_tokens)s::bigint[],
        %(reasoning_tokens)s::bigint[],
        %(request_id)s::text[], %(deployment)s::text[], %(region)s::text[],
        %(attributes)s::jsonb[], %(fingerprint)s::bytea[],
        %(source_partition)s::int[], %(source_offset)s::bigint[]
    ) AS t(event_id, tenant_id, model, service_tier, occurred_at,
           input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
           request_id, deployment, region, attributes, fingerprint,
           source_partition, source_offset)
), inserted AS (
    INSERT INTO usage_ledger (
        event_id, tenant_id, model, service_tier, occurred_at,
        input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
        request_id, deployment, region, attributes, fingerprint, source_partition, source_offset)
    SELECT * FROM incoming
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, tenant_id, model, service_tier, occurred_at,
              input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
              reasoning_tokens
), aggregated AS (
    INSERT INTO usage_hourly AS h (
        tenant_id, model, service_tier, hour, events,
        input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens)
    SELECT tenant_id, model, service_tier, date_trunc('hour', occurred_at, 'UTC'), count(*),
           sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),
           sum(output_tokens), sum(reasoning_tokens)
      FROM inserted
     GROUP BY 1, 2, 3, 4
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, model, service_tier, hour) DO UPDATE SET
        events = h.events + EXCLUDED.events,
        input_tokens = h.input_tokens + EXCLUDED.input_tokens,
        cached_input_tokens = h.cached_input_tokens + EXCLUDED.cached_input_tokens,
        cache_write_tokens = h.cache_write_tokens + EXCLUDED.cache_write_tokens,
        output_tokens = h.output_tokens + EXCLUDED.output_tokens,
        reasoning_tokens = h.reasoning_tokens + EXCLUDED.reasoning_tokens,
        updated_at = now()
)
SELECT event_id FROM inserted
"""

_INSERT_REJECTIONS = """
INSERT INTO rejections (topic, partition, "offset", reason, detail, event_id, tenant_id, key, raw)
SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::text[], %s::text[],
                     %s::text[], %s::text[], %s::bytea[], %s::bytea[])
ON CONFLICT ON CONSTRAINT rejections_source DO NOTHING
"""

_INSERT_CONFLICTS = """
INSERT INTO ledger_conflicts (event_id, tenant_id, topic, partition, "offset", fingerprint, raw)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int[], %s::bigint[],
                     %s::bytea[], %s::bytea[])
ON CONFLICT ON CONSTRAINT ledger_conflicts_source DO NOTHING
"""

_UPDATE_PROGRESS = """
UPDATE ingest_progress AS p SET
    next_offset = v.next_offset,
    accepted = p.accepted + v.accepted,
    duplicates = p.duplicates + v.duplicates,
    conflicts = p.conflicts + v.conflicts,
    rejected = p.rejected + v.rejected,
    updated_at = now()
FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
     AS v(partition, next_offset, accepted, duplicates, conflicts, rejected)
WHERE p.topic = %s AND p.partition = v.partition
"""


class LedgerBatch:
    """One micro-batch's transaction. Use ``async with ledger.batch(records) as batch``."""

    def __init__(self, conn: psycopg.AsyncConnection, records: Sequence[SourceRecord]) -> None:
        self._conn = conn
        self._records = records
        self._tally: dict[tuple[str, int], _PartitionTally] = {}
        self.fresh: list[SourceRecord] = []
        self.outcome = BatchOutcome()

    async def __aenter__(self) -> LedgerBatch:
        await self._conn.execute("BEGIN")
        by_topic: dict[str, set[int]] = defaultdict(set)
        for record in self._records:
            by_topic[record.topic].add(record.partition)
        for topic, partitions in sorted(by_topic.items()):
            ordered = sorted(partitions)
            await self._conn.execute(
                "INSERT INTO ingest_progress (topic, partition) SELECT %s, unnest(%s::int[])"
                " ON CONFLICT DO NOTHING",
                (topic, ordered),
            )
            cursor = await self._conn.execute(
                "SELECT partition, next_offset FROM ingest_progress"
                " WHERE topic = %s AND partition = ANY(%s) ORDER BY partition FOR UPDATE",
                (topic, ordered),
            )
            for partition, next_offset in await cursor.fetchall():
                self._tally[(topic, partition)] = _PartitionTally(next_offset)
        for record in self._records:
            tally = self._tally[(record.topic, record.partition)]
            if record.offset < tally.next_offset:
                self.outcome.skipped += 1
                continue
            self.fresh.append(record)
            tally.next_offset = record.offset + 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self._save_progress()
            await self._conn.execute("COMMIT")
        elif not self._conn.closed:
            await self._conn.execute("ROLLBACK")

    async def write(
        self,
        accepted: Sequence[tuple[SourceRecord, UsageEvent]],
        rejected: Sequence[tuple[SourceRecord, Rejection]],
    ) -> BatchOutcome:
        """Writes the fresh records' fate; each fresh record must be in exactly one list."""
        if accepted:
            await self._write_events(accepted)
        if rejected:
            await self._write_rejections(rejected)
        return self.outcome

    async def _write_events(self, accepted: Sequence[tuple[SourceRecord, UsageEvent]]) -> None:
        first: dict[UUID, tuple[SourceRecord, UsageEvent]] = {}
        repeats: list[tuple[SourceRecord, UsageEvent]] = []
        for item in accepted:
            if item[1].event_id in first:
                repeats.append(item)
            else:
                first[item[1].event_id] = item
        cursor = await self._conn.execute(_INSERT_LEDGER, _ledger_columns(first.values()))
        inserted = {row[0] for row in await cursor.fetchall()}
        for event_id, item in first.items():
            if event_id in inserted:
                self._count(item[0], "accepted")
            else:
                repeats.append(item)
        if repeats:
            await self._classify_repeats(repeats)

    async def _classify_repeats(self, repeats: list[tuple[SourceRecord, UsageEvent]]) -> None:
        """A repeat with the stored fingerprint is a duplicate; otherwise a recorded conflict."""
        cursor = await self._conn.execute(
            "SELECT event_id, fingerprint FROM usage_ledger WHERE event_id = ANY(%s)",
            ([event.event_id for _, event in repeats],),
        )
        stored = {event_id: bytes(fp) for event_id, fp in await cursor.fetchall()}
        conflicts = []
        for record, event in repeats:
            if stored[event.event_id] == event.fingerprint:
                self._count(record, "duplicates")
            else:
                self._count(record, "conflicts")
                conflicts.append((record, event))
        if conflicts:
            await self._conn.execute(
                _INSERT_CONFLICTS,
                (
                    [e.event_id for _, e in conflicts],
                    [e.tenant_id for _, e in conflicts],
                    [r.topic for r, _ in conflicts],
                    [r.partition for r, _ in conflicts],
                    [r.offset for r, _ in conflicts],
                    [e.fingerprint for _, e in conflicts],
                    [r.value for r, _ in conflicts],
                ),
            )

    async def _write_rejections(self, rejected: Sequence[tuple[SourceRecord, Rejection]]) -> None:
        for record, _ in rejected:
            self._count(record, "rejected")
        await self._conn.execute(
            _INSERT_REJECTIONS,
            (
                [r.topic for r, _ in rejected],
                [r.partition for r, _ in rejected],
                [r.offset for r, _ in rejected],
                [j.reason for _, j in rejected],
                [j.detail for _, j in rejected],
                [j.event_id for _, j in rejected],
                [j.tenant_id for _, j in rejected],
                [r.key for r, _ in rejected],
                [r.value for r, _ in rejected],
            ),
        )

    def _count(self, record: SourceRecord, what: str) -> None:
        self._tally[(record.topic, record.partition)].counts[what] += 1
        setattr(self.outcome, what, getattr(self.outcome, what) + 1)

    async def _save_progress(self) -> None:
        by_topic: dict[str, list[tuple[int, _PartitionTally]]] = defaultdict(list)
        for (topic, partition), tally in self._tally.items():
            by_topic[topic].append((partition, tally))
        for topic, rows in by_topic.items():
            await self._conn.execute(
                _UPDATE_PROGRESS,
                (
                    [p for p, _ in rows],
                    [t.next_offset for _, t in rows],
                    *(
                        [t.counts[what] for _, t in rows]
                        for what in ("accepted", "duplicates", "conflicts", "rejected")
                    ),
                    topic,
                ),
            )


def _ledger_columns(items: Iterable[tuple[SourceRecord, UsageEvent]]) -> dict[str, list[object]]:
    rows = list(items)
    events = [e for _, e in rows]
    return {
        "event_id": [e.event_id for e in events],
        "tenant_id": [e.tenant_id for e in events],
        "model": [e.model for e in events],
        "service_tier": [e.service_tier for e in events],
        "occurred_at": [e.occurred_at for e in events],
        "input_tokens": [e.usage.input_tokens for e in events],
        "cached_input_tokens": [e.usage.cached_input_tokens for e in events],
        "cache_write_tokens": [e.usage.cache_write_tokens for e in events],
        "output_tokens": [e.usage.output_tokens for e in events],
        "reasoning_tokens": [e.usage.reasoning_tokens for e in events],
        "request_id": [e.request_id for e in events],
        "deployment": [e.deployment for e in events],
        "region": [e.region for e in events],
        "attributes": [
            orjson.dumps(dict(e.attributes)).decode() if e.attributes else None for e in events
        ],
        "fingerprint": [e.fingerprint for e in events],
        "source_partition": [r.partition for r, _ in rows],
        "source_offset": [r.offset for r, _ in rows],
    }


class Ledger:
    """The sink's connection; reconnects after PostgreSQL restarts (the caller retries)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection | None = None

    async def connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        return self._conn

    async def next_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Where processing of each partition resumes, for partitions seen before."""
        conn = await self.connection()
        cursor = await conn.execute(
            "SELECT partition, next_offset FROM ingest_progress"
            " WHERE topic = %s AND partition = ANY(%s)",
            (topic, list(partitions)),
        )
        return dict(await cursor.fetchall())

    async def batch(self, records: Sequence[SourceRecord]) -> LedgerBatch:
        return LedgerBatch(await self.connection(), records)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
