"""Case 4, storage: PostgreSQL bytes per accepted event after case 1.

Counted: the ledger and the hourly aggregates, with their indexes and TOAST
(``pg_total_relation_size``), as they stand right after the drain (dead row versions
left by the aggregates' upserts included: autovacuum reuses that space, it does not return
it). The baseline is the event's own JSON in Kafka.
"""

from __future__ import annotations

import psycopg

from bench.drain import Produced
from bench.harness import dsn
from bench.report import Case, Figure, Target
from metering.config import Settings

TARGET_BYTES = 300

_SIZES = """
SELECT pg_table_size('usage_ledger'), pg_indexes_size('usage_ledger'),
       pg_total_relation_size('usage_hourly'),
       (SELECT count(*) FROM usage_ledger), (SELECT count(*) FROM usage_hourly)
"""


def storage_case(settings: Settings, produced: Produced) -> Case:
    with psycopg.connect(dsn(settings.database_url)) as conn:
        ledger, ledger_indexes, hourly, rows, hourly_rows = conn.execute(_SIZES).fetchone()  # type: ignore[misc]
    json_bytes = produced.billable_bytes / produced.billable
    return Case(
        "storage",
        [
            Figure(
                "PostgreSQL bytes per accepted event",
                (ledger + ledger_indexes + hourly) / rows,
                "B/event",
                "JSON bytes per event",
                json_bytes,
                (Target("<=", TARGET_BYTES),),
            ),
            Figure("ledger table (heap + TOAST)", ledger / rows, "B/event"),
            Figure("ledger indexes", ledger_indexes / rows, "B/event"),
            Figure("hourly aggregates with indexes", hourly / rows, "B/event"),
        ],
        details={
            "ledger_rows": rows,
            "hourly_rows": hourly_rows,
            "bytes": {"ledger": ledger, "ledger_indexes": ledger_indexes, "hourly": hourly},
        },
    )
