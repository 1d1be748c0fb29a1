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

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Protocol
from uuid import UUID

import psycopg
from psycopg import adapt, pq
from psycopg._copy_base import BinaryFormatter
from psycopg.types.json import Jsonb

from metering.billing.events import Rejection, UsageEvent
from metering.billing.long_context import is_long_context
from metering.billing.tokens import TOKEN_COUNTS, counts_of
from metering.store.catalog import read_thresholds
from metering.store.connection import Reconnecting


class SourceRecord(Protocol):
    """One Kafka record, as the sink needs to know it: aiokafka's ``ConsumerRecord`` is one,
    taken as fetched (no copy per record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None:
        """None for a tombstone."""


RECORD_ERRORS: Final = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
)
"""Errors a batch raises because of what a record holds (a value out of range, text the
encoding cannot hold, a violated constraint, an oversized index entry) rather than because
the database is away: retrying the same batch cannot help."""


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


FINGERPRINT_BYTES: Final = 16
"""The ledger keeps the first 16 bytes of an event's SHA-256 fingerprint, half the digest:
a changed payload under a known ``event_id`` passes for a retry with a chance of 2^-128,
since it is compared with the one stored value, not searched for among many."""

# In the ledger's own column order (migration 0010): 8-byte columns first, so that no
# alignment padding sits between them, then the 4-, 1-byte and variable-length ones.
LEDGER_COLUMNS = (
    ("event_id", "uuid"),
    ("occurred_at", "timestamptz"),
    ("source_offset", "int8"),
    *((count, "int8") for count in TOKEN_COUNTS),
    ("source_partition", "int4"),
    ("long_context", "bool"),
    ("fingerprint", "bytea"),
    ("tenant_id", "text"),
    ("model", "text"),
    ("service_tier", "text"),
    ("request_id", "text"),
    ("deployment", "text"),
    ("region", "text"),
    ("attributes", "jsonb"),
)
_COLUMN_NAMES = ", ".join(name for name, _ in LEDGER_COLUMNS)
_COLUMN_OIDS = [psycopg.adapters.types.get_oid(type_) for _, type_ in LEDGER_COLUMNS]
STAGE_CHUNK: Final = 200
"""Rows formatted in one go (a few ms of the thread) before the event loop is handed back:
staging runs while the previous batch is written, whose statements share the thread."""

Item = tuple[SourceRecord, UsageEvent]


@dataclass(frozen=True, slots=True)
class StagedEvents:
    """A batch's accepted events as the ledger stages them: the first record of each
    ``event_id`` as binary COPY data, in the batch's order, and the repeats within the batch.
    Made before the batch's transaction (``Ledger.stage``), so that the thread formats rows
    while the database writes the batch before."""

    first: dict[UUID, Item]
    repeats: list[Item]
    copy_data: bytes


async def stage_events(accepted: Iterable[Item], thresholds: Mapping[str, int]) -> StagedEvents:
    first: dict[UUID, Item] = {}
    repeats: list[Item] = []
    for item in accepted:
        if item[1].event_id in first:
            repeats.append(item)
        else:
            first[item[1].event_id] = item
    transformer = adapt.Transformer()
    transformer.set_dumper_types(_COLUMN_OIDS, pq.Format.BINARY)
    formatter = BinaryFormatter(transformer)
    format_row = formatter.write_row
    data = bytearray()
    items = list(first.values())
    for start in range(0, len(items), STAGE_CHUNK):
        if start:
            await asyncio.sleep(0)
        for record, event in items[start : start + STAGE_CHUNK]:
            data += format_row(_ledger_row(record, event, thresholds))
    data += formatter.end()
    return StagedEvents(first, repeats, bytes(data))


# A batch is COPYed (binary) into this per-connection staging table, then moved into the
# ledger in one statement; far cheaper than binding arrays of parameters.
_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming_events ("
    + ", ".join(f"{name} {type_}" for name, type_ in LEDGER_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_COPY_STAGING = "COPY incoming_events FROM STDIN (FORMAT BINARY)"

# The rows inserted feed the aggregates; what comes back is only the staged ids that were
# NOT inserted (already in the ledger: rare), so that the common batch returns nothing.
_INSERT_LEDGER = f"""
WITH inserted AS (
    INSERT INTO usage_ledger ({_COLUMN_NAMES})
    SELECT {_COLUMN_NAMES} FROM incoming_events
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, tenant_id, model, service_tier, long_context, occurred_at,
              input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
              reasoning_tokens, cache_write_1h_tokens
), aggregated AS (
    INSERT INTO usage_hourly AS h (
        tenant_id, model, service_tier, long_context, hour, events,
        input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
        cache_write_1h_tokens)
    SELECT tenant_id, model, service_tier, long_context, date_trunc('hour', occurred_at, 'UTC'),
           count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),
           sum(output_tokens), sum(reasoning_tokens), sum(cache_write_1h_tokens)
      FROM inserted
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (tenant_id, model, service_tier, long_context, hour) DO UPDATE SET
        events = h.events + EXCLUDED.events,
        input_tokens = h.input_tokens + EXCLUDED.input_tokens,
        cached_input_tokens = h.cached_input_tokens + EXCLUDED.cached_input_tokens,
        cache_write_tokens = h.cache_write_tokens + EXCLUDED.cache_write_tokens,
        output_tokens = h.output_tokens + EXCLUDED.output_tokens,
        reasoning_tokens = h.reasoning_tokens + EXCLUDED.reasoning_tokens,
        cache_write_1h_tokens = h.cache_write_1h_tokens + EXCLUDED.cache_write_1h_tokens,
        updated_at = now()
)
SELECT s.event_id FROM incoming_events s
 WHERE NOT EXISTS (SELECT FROM inserted i WHERE i.event_id = s.event_id)
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

_LOCK_PROGRESS = (
    "SELECT partition, next_offset FROM ingest_progress"
    " WHERE topic = %s AND partition = ANY(%s) ORDER BY partition FOR UPDATE"
)
_ADD_PROGRESS = (
    "INSERT INTO ingest_progress (topic, partition) SELECT %s, unnest(%s::int[])"
    " ON CONFLICT DO NOTHING"
)

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


class Thresholds(Protocol):
    """Where the ledger reads each model's long-context threshold (the worker's catalog)."""

    @property
    def long_context_above(self) -> Mapping[str, int]: ...


class LedgerBatch:
    """One micro-batch's transaction. Use ``async with ledger.batch(records) as batch``.

    A *trial* batch is always rolled back: it tells whether the writes would succeed."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection,
        records: Sequence[SourceRecord],
        thresholds: Mapping[str, int],
        *,
        trial: bool,
    ) -> None:
        self._conn = conn
        self._records = records
        self._thresholds = thresholds
        self._trial = trial
        self._tally: dict[tuple[str, int], _PartitionTally] = {}
        self.fresh: list[SourceRecord] = []
        self.inserted_events: list[UsageEvent] = []  # new to the ledger, in this batch
        self.outcome = BatchOutcome()

    @property
    def connection(self) -> psycopg.AsyncConnection:
        """The batch's connection, for writes that must commit or fail with it."""
        return self._conn

    async def __aenter__(self) -> LedgerBatch:
        by_topic: dict[str, set[int]] = defaultdict(set)
        for record in self._records:
            by_topic[record.topic].add(record.partition)
        locks = sorted((topic, sorted(partitions)) for topic, partitions in by_topic.items())
        # One round trip in the common case: every partition has had its row since its
        # first batch, so BEGIN and the locks go together.
        async with self._conn.pipeline():
            await self._conn.execute("BEGIN")
            cursors = [await self._conn.execute(_LOCK_PROGRESS, lock) for lock in locks]
        for (topic, partitions), cursor in zip(locks, cursors, strict=True):
            rows = await cursor.fetchall()
            if len(rows) < len(partitions):  # a partition's first batch: its row, then its lock
                await self._conn.execute(_ADD_PROGRESS, (topic, partitions))
                cursor = await self._conn.execute(_LOCK_PROGRESS, (topic, partitions))
                rows = await cursor.fetchall()
            for partition, next_offset in rows:
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
        try:
            if exc_type is None and not self._trial:
                async with self._conn.pipeline():  # one round trip
                    await self._save_progress()
                    await self._conn.execute("COMMIT")
                return
        except BaseException:
            await self._roll_back()
            raise
        await self._roll_back()

    async def _roll_back(self) -> None:
        if not self._conn.closed and not self._conn.broken:
            await self._conn.execute("ROLLBACK")

    async def write(
        self,
        accepted: Sequence[Item],
        rejected: Sequence[tuple[SourceRecord, Rejection]],
        *,
        staged: StagedEvents | None = None,
    ) -> BatchOutcome:
        """Writes the fresh records' fate; each fresh record must be in exactly one list.
        ``staged``, if given, is ``accepted`` staged beforehand (``Ledger.stage``)."""
        if accepted:
            if staged is None:
                staged = await stage_events(accepted, self._thresholds)
            await self._write_events(staged)
        if rejected:
            await self._write_rejections(rejected)
        return self.outcome

    async def _write_events(self, staged: StagedEvents) -> None:
        first, repeats = staged.first, list(staged.repeats)
        async with self._conn.cursor().copy(_COPY_STAGING) as copy:
            await copy.write(staged.copy_data)
        cursor = await self._conn.execute(_INSERT_LEDGER)
        not_inserted = {row[0] for row in await cursor.fetchall()}
        if not_inserted:  # already in the ledger: repeats, in the batch's order
            inserted: list[Item] = []
            for event_id, item in first.items():
                (repeats if event_id in not_inserted else inserted).append(item)
        else:
            inserted = list(first.values())
        self.inserted_events = [event for _, event in inserted]
        self._count("accepted", (record for record, _ in inserted))
        if repeats:
            await self._classify_repeats(repeats)

    async def _classify_repeats(self, repeats: list[tuple[SourceRecord, UsageEvent]]) -> None:
        """A repeat with the stored fingerprint is a duplicate; otherwise a recorded conflict."""
        cursor = await self._conn.execute(
            "SELECT event_id, fingerprint FROM usage_ledger WHERE event_id = ANY(%s)",
            ([event.event_id for _, event in repeats],),
        )
        stored = {event_id: bytes(fp) for event_id, fp in await cursor.fetchall()}
        duplicates, conflicts = [], []
        for record, event in repeats:
            if stored[event.event_id] == event.fingerprint[:FINGERPRINT_BYTES]:
                duplicates.append(record)
            else:
                conflicts.append((record, event))
        self._count("duplicates", duplicates)
        if conflicts:
            self._count("conflicts", (record for record, _ in conflicts))
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
        self._count("rejected", (record for record, _ in rejected))
        await self._conn.execute(
            _INSERT_REJECTIONS,
            (
                [r.topic for r, _ in rejected],
                [r.partition for r, _ in rejected],
                [r.offset for r, _ in rejected],
                [j.reason for _, j in rejected],
                [_storable(j.detail) for _, j in rejected],
                [_storable(j.event_id) for _, j in rejected],
                [_storable(j.tenant_id) for _, j in rejected],
                [r.key for r, _ in rejected],
                [r.value for r, _ in rejected],
            ),
        )

    def _count(self, what: str, records: Iterable[SourceRecord]) -> None:
        """Adds ``records`` to counter ``what`` of their partitions and of the outcome."""
        per_partition = Counter((record.topic, record.partition) for record in records)
        for key, count in per_partition.items():
            self._tally[key].counts[what] += count
        setattr(self.outcome, what, getattr(self.outcome, what) + per_partition.total())

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


def _storable(text: str | None) -> str | None:
    """Text as PostgreSQL can hold it: NUL characters spelt out."""
    return text.replace("\x00", "\\u0000") if text is not None else None


def _ledger_row(
    record: SourceRecord, event: UsageEvent, thresholds: Mapping[str, int]
) -> tuple[object, ...]:
    """The event's ledger row, in ``LEDGER_COLUMNS`` order; the long-context flag decided
    by the domain's rule with the model's threshold."""
    usage = event.usage
    return (
        event.event_id,
        event.occurred_at,
        record.offset,
        *counts_of(usage),  # in LEDGER_COLUMNS order (a C-level getter)
        record.partition,
        is_long_context(usage.input_tokens, thresholds.get(event.model)),
        event.fingerprint[:FINGERPRINT_BYTES],
        event.tenant_id,
        event.model,
        event.service_tier,
        event.request_id,
        event.deployment,
        event.region,
        Jsonb(dict(event.attributes)) if event.attributes else None,
    )


class Ledger(Reconnecting):
    """The sink's connection; reconnects after PostgreSQL restarts (the caller retries).

    ``thresholds`` gives each model's long-context threshold at the time of a batch: the
    worker passes its catalog cache, which reads them again for every batch it classifies.
    Without it, each batch reads them from the catalog itself (one more query)."""

    def __init__(self, dsn: str, thresholds: Thresholds | None = None) -> None:
        super().__init__(dsn)
        self._thresholds = thresholds

    async def on_connect(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(_CREATE_STAGING)

    async def next_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Where processing of each partition resumes, for partitions seen before: what is
        committed. Asked on a connection of its own, because a rebalance asks while a batch
        may be in the middle of its statements on the ledger's connection."""
        async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT partition, next_offset FROM ingest_progress"
                " WHERE topic = %s AND partition = ANY(%s)",
                (topic, list(partitions)),
            )
            return dict(await cursor.fetchall())

    async def batch(self, records: Sequence[SourceRecord], *, trial: bool = False) -> LedgerBatch:
        conn = await self.idle_connection()
        return LedgerBatch(conn, records, await self._thresholds_now(), trial=trial)

    async def stage(self, accepted: Sequence[Item]) -> StagedEvents:
        """``accepted`` formatted for ``LedgerBatch.write``, before the batch's transaction."""
        return await stage_events(accepted, await self._thresholds_now())

    async def _thresholds_now(self) -> Mapping[str, int]:
        if self._thresholds is None:
            return await read_thresholds(await self.connection())
        return self._thresholds.long_context_above
