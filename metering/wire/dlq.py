"""Replaying dead letters once their cause is fixed (e.g. the model was added).

The originals are sent back to the usage topic byte for byte and go through ingest
again; the ledger's dedup on ``event_id`` keeps a replay from billing anything twice,
even if a replay is interrupted and repeated.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from metering.produce.producer import UsageProducer

REPLAY_CHUNK = 1000


async def replay(
    dsn: str,
    bootstrap_servers: str,
    topic: str,
    reason: str,
    *,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-produces rejected originals with ``reason`` not yet replayed; returns how many.

    Only dead letters that exist when the replay starts are replayed: an original that is
    rejected again (its cause was not fixed after all) waits for the next replay instead
    of looping.
    """
    replayed = 0
    async with UsageProducer(bootstrap_servers, topic) as producer:
        with psycopg.connect(dsn) as conn:
            newest = conn.execute("SELECT coalesce(max(rejection_id), 0) FROM rejections")
            last_id = newest.fetchone()[0]  # type: ignore[index]
            while limit is None or replayed < limit:
                chunk = REPLAY_CHUNK if limit is None else min(REPLAY_CHUNK, limit - replayed)
                rows = conn.execute(
                    "SELECT rejection_id, key, raw FROM rejections"
                    " WHERE reason = %s AND replayed_at IS NULL AND rejection_id <= %s"
                    " ORDER BY rejection_id LIMIT %s",
                    (reason, last_id, chunk),
                ).fetchall()
                if not rows:
                    break
                for _, key, raw in rows:
                    await producer.send_raw(key, raw)
                conn.execute(
                    "UPDATE rejections SET replayed_at = now() WHERE rejection_id = ANY(%s)",
                    ([row[0] for row in rows],),
                )
                conn.commit()
                replayed += len(rows)
                if progress:
                    progress(replayed)
    return replayed
