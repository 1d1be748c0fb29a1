"""What scripts/demo does, and the README's next steps after it: usage generated for last
month is accepted now, last month closes without --force, and this month stays open for a
contract change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from metering.billing.periods import period_for
from metering.config import PROJECT_ROOT, Settings
from tests.support.cli import metering, succeeded
from tests.support.ingest import progress, wait_until_processed
from tests.support.workers import StartWorker

EVENTS = 2_000


def ok(*args: str, settings: Settings, env: dict[str, str] | None = None) -> str:
    """``metering ARGS`` as a user would run it; its output."""
    return succeeded(metering(settings, *args, env=env))


def test_last_months_usage_is_accepted_and_closed_while_this_month_stays_open(
    settings: Settings, start_worker: StartWorker
) -> None:
    this_month = period_for(datetime.now(UTC))
    last_month = period_for(this_month.start - timedelta(microseconds=1))
    ok("seed-demo", "--tenants", "5", settings=settings)
    ok("prices", "import", str(PROJECT_ROOT / "prices" / "list-prices.yaml"), settings=settings)
    worker = start_worker()
    worker.wait_for_log("Worker]: Ready")

    ok(
        "produce", "--events", str(EVENTS), "--tenants", "5", "--period", last_month.label,
        "--duplicates", "0", "--invalid", "0", "--late", "0.1",
        settings=settings,
    )  # fmt: skip
    wait_until_processed(settings, worker, EVENTS)
    assert progress(settings).accepted == EVENTS  # none too old for the backdating window
    with psycopg.connect(settings.psycopg_dsn) as conn:
        earliest, latest = conn.execute(
            "SELECT min(occurred_at), max(occurred_at) FROM usage_ledger"
        ).fetchone()
    assert last_month.start <= earliest and latest < last_month.end
    assert latest - earliest > timedelta(days=1)  # spread over the month, not its last hour

    # As the demo does: it saw all its usage processed, so it need not wait for late usage.
    closed = ok(
        "invoices", "close", "--period", last_month.label, "--format", "json",
        settings=settings, env={"METERING_INVOICE_GRACE_HOURS": "0"},
    )  # fmt: skip
    assert [row["outcome"] for row in json.loads(closed)] == ["invoiced"] * 5
    ok(
        "tenants", "set", "acme-corp", "--currency", "USD", "--discount-percent", "5",
        "--minimum-commitment", "1000",
        settings=settings,
    )  # fmt: skip
    preview = ok("invoices", "preview", "--tenant", "acme-corp", settings=settings)
    assert f"period: {this_month.label}" in preview
    assert "status: draft" in preview
    assert worker.terminate() == 0
