"""The growth case: the same drain on a ledger pre-filled with N rows, against the empty
ledger's rate in the same run."""

from __future__ import annotations

import time

import psycopg

from bench.ceilings import (
    _with_new_ids,
    ledger_columns,
)
from bench.drain import Drain, cpu_note, figures_against
from bench.harness import (
    dsn,
)
from bench.report import Case, Target
from metering.config import Settings

EACH_COPY = "copy * interval '1 hour'"  # how much further back each copy is


def prefill_ledger(settings: Settings, rows: int, *, random_ids: bool = False) -> float:
    """Adds ``rows`` ledger rows shaped like the drained ones, in SQL with
    ``generate_series``; returns the seconds it took.

    The rows are history: copy k of the drained rows is moved k hours back, with new ids of
    the traffic's kind (version 7 stamped with the moved ``occurred_at``, or random). A
    ledger of 50M rows has taken them over days, before the events now arriving.

    The primary key is dropped while the rows go in and built again afterwards (a sort, far
    quicker than ten million random inserts), then a checkpoint: the drain that follows
    starts as a long-running ledger does after one, paying for full-page images."""
    started = time.perf_counter()
    with psycopg.connect(dsn(settings.database_url), autocommit=True) as conn:
        columns = ledger_columns(conn)
        have = conn.execute("SELECT count(*) FROM usage_ledger").fetchone()[0]  # type: ignore[index]
        copies = -(-rows // max(have, 1))
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pkey")
        conn.execute(
            f"INSERT INTO usage_ledger ({', '.join(columns)})"
            f" SELECT {_with_new_ids(columns, 'l', random_ids=random_ids, earlier_by=EACH_COPY)}"
            f" FROM generate_series(1, {copies}) AS copy CROSS JOIN usage_ledger AS l"
            f" LIMIT {rows}"
        )
        conn.execute(
            "ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_pkey PRIMARY KEY (event_id)"
        )
        conn.execute("VACUUM (ANALYZE) usage_ledger")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


GROWTH_SHARE = 0.8  # of the drain rate on the empty ledger


def growth_case(filled: Drain, empty: Drain, ledger_rows: int, prefill_s: float) -> Case:
    """The same drain into a ledger already holding ``ledger_rows`` rows, against the empty one."""
    return Case(
        "growth",
        figures_against(
            "empty ledger", filled, empty, (Target(">=", GROWTH_SHARE, of_ratio=True),)
        ),
        notes=[
            f"{filled.events:,} new events drained into a ledger pre-filled with"
            f" {ledger_rows:,} rows (history: copy k of the drained rows k hours back, with"
            f" new ids; {prefill_s:.0f}s in SQL, then a checkpoint); baseline: the drain case"
            " on the empty ledger",
            cpu_note(filled),
        ],
        details={"ledger_rows": ledger_rows, "prefill_s": prefill_s, "batches": filled.batches},
    )
