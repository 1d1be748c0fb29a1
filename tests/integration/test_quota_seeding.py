"""A limit set mid-period sees the usage already in the ledger, on the real pipeline: it
blocks at once, alerts each threshold once (also after more traffic and a restart), counts
per model and in money, follows the tenant's billing anchor day, and `quota set` refuses
what a limit cannot hold."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest

from metering.billing.periods import BillingPeriod, period_for
from metering.billing.utc import rfc3339
from metering.config import Settings
from metering.services.worker import WorkerProcess
from metering.wire.quota_messages import state_from_json
from tests.support.cli import metering
from tests.support.ingest import event, message, produce, seed_catalog, wait_until_processed
from tests.support.quota import ask_quota, read_topic
from tests.support.waiting import eventually

StartWorker = Callable[..., WorkerProcess]
TENANT = "hooli"
LIMIT_ID = f"{TENANT}:*:tokens_per_period"


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    seed_catalog(settings, tenants=[TENANT], models=["grok-3", "grok-3-mini"])
    imported = metering(settings, "prices", "import", "prices/list-prices.yaml")
    assert imported.returncode == 0, imported.stderr
    return settings


def usage(
    count: int, input_tokens: int, output_tokens: int, *, model: str = "grok-3", at: datetime
) -> list[Any]:
    return [
        message(
            event(
                tenant_id=TENANT,
                model=model,
                occurred_at=at + timedelta(milliseconds=i),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
            )
        )
        for i in range(count)
    ]


def this_period(anchor_day: int = 1) -> tuple[BillingPeriod, datetime]:
    """The current billing period and a moment in it a few seconds ago (never before it)."""
    now = datetime.now(UTC)
    period = period_for(now, anchor_day)
    return period, max(period.start, now - timedelta(seconds=30))


def quota(settings: Settings, *args: str) -> tuple[int, str, str]:
    done = metering(settings, "quota", *args)
    return done.returncode, done.stdout, done.stderr


def set_limit(settings: Settings, *args: str) -> str:
    code, out, err = quota(settings, "set", "--tenant", TENANT, *args)
    assert code == 0, err
    return out


def limit_answer(settings: Settings, limit_id: str, model: str | None = None) -> dict[str, Any]:
    """The endpoint's answer for one limit; empty until the worker knows the limit."""
    path = TENANT if model is None else f"{TENANT}?model={model}"
    status, answer = ask_quota(settings.worker_web_port, path)
    assert status == 200, answer
    return next((x for x in answer["limits"] if x["limit_id"] == limit_id), {})


def stored_alerts(settings: Settings) -> list[tuple[str, int, int]]:
    with psycopg.connect(settings.psycopg_dsn) as conn:
        rows = conn.execute(
            "SELECT limit_id, threshold, used FROM reporting.quota_alerts"
            " WHERE tenant_id = %s ORDER BY threshold",
            (TENANT,),
        ).fetchall()
    return [(limit_id, threshold, int(used)) for limit_id, threshold, used in rows]


def stored_period_tokens(settings: Settings, start: datetime) -> int:
    with psycopg.connect(settings.psycopg_dsn) as conn:
        [document] = conn.execute(
            "SELECT state::text FROM quota_state WHERE tenant_id = %s", (TENANT,)
        ).fetchone()
    window = state_from_json(document).periods[start]
    return sum(x.tokens for x in window.usage.values())


def latest_signal(settings: Settings) -> dict[str, Any]:
    signals = read_topic(settings, settings.topic_quota_state, 1)
    return next((s for s in reversed(signals) if s["tenant_id"] == TENANT), {})


def test_a_limit_below_the_usage_already_in_the_period_blocks_at_once_and_alerts_once(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    period, at = this_period()
    worker = start_worker()
    produce(settings, usage(41, 90_000, 10_000, at=at))  # 4.1M tokens before any limit
    wait_until_processed(settings, worker, 41)

    said = set_limit(settings, "--kind", "tokens_per_period", "--limit", "1000000", "--hard")
    assert eventually(
        lambda: ask_quota(settings.worker_web_port, TENANT)[1]["allowed"] is False, timeout_s=3
    )
    limit = limit_answer(settings, LIMIT_ID)
    assert (limit["state"], limit["used"], limit["remaining"]) == ("blocked", 4_100_000, 0)
    assert "4100000 used this billing period" in said and "blocked" in said
    assert eventually(lambda: latest_signal(settings).get("state") == "blocked")
    assert latest_signal(settings)["used"] == 4_100_000
    once = [(LIMIT_ID, 50, 4_100_000), (LIMIT_ID, 80, 4_100_000), (LIMIT_ID, 100, 4_100_000)]
    assert eventually(lambda: stored_alerts(settings) == once)

    produce(settings, usage(5, 90_000, 10_000, at=at))  # more traffic: nothing crosses again
    wait_until_processed(settings, worker, 46)
    assert eventually(lambda: limit_answer(settings, LIMIT_ID).get("used") == 4_600_000)
    assert worker.terminate() == 0
    produce(settings, usage(5, 90_000, 10_000, at=at))
    worker = start_worker()  # a restart: reads the state, replays nothing twice
    wait_until_processed(settings, worker, 51)
    assert eventually(lambda: stored_period_tokens(settings, period.start) == 5_100_000)

    assert stored_alerts(settings) == once
    published = {
        a["alert_id"]: a["threshold"] for a in read_topic(settings, settings.topic_quota_alerts)
    }
    assert sorted(published.values()) == [50, 80, 100]


def test_a_limit_set_while_events_stream_in_counts_each_of_them_exactly_once(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    _, at = this_period()
    worker = start_worker()
    worker.wait_for_log("Worker]: Ready")
    rounds = [usage(25, 900, 100, at=at + timedelta(seconds=i)) for i in range(24)]

    def stream() -> None:
        for messages in rounds:
            produce(settings, messages)

    producer = threading.Thread(target=stream)
    producer.start()
    assert eventually(lambda: _accepted(settings) >= 100, timeout_s=60)
    set_limit(settings, "--kind", "tokens_per_period", "--limit", "100000000")  # mid-stream
    producer.join()
    wait_until_processed(settings, worker, 600)

    assert eventually(lambda: limit_answer(settings, LIMIT_ID).get("used") == 600_000)


def _accepted(settings: Settings) -> int:
    with psycopg.connect(settings.psycopg_dsn) as conn:
        return conn.execute("SELECT count(*) FROM usage_ledger").fetchone()[0]  # type: ignore[index]


def test_a_per_model_limit_and_a_spend_limit_are_seeded_with_what_they_count(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    _, at = this_period()
    worker = start_worker()
    produce(settings, usage(30, 900, 100, at=at))  # grok-3: $3/M in, $15/M out: $0.0042 each
    produce(settings, usage(20, 900, 100, model="grok-3-mini", at=at))  # $0.30, $0.50: $0.00032
    wait_until_processed(settings, worker, 50)

    set_limit(settings, "--model", "grok-3-mini", "--kind", "tokens_per_period", "--limit", "30000")
    set_limit(settings, "--kind", "spend_per_period", "--limit", "1")

    mini = f"{TENANT}:grok-3-mini:tokens_per_period"
    spend = f"{TENANT}:*:spend_per_period"
    assert eventually(lambda: limit_answer(settings, spend, model="grok-3-mini") != {})
    assert limit_answer(settings, mini, model="grok-3-mini")["used"] == 20_000
    used = limit_answer(settings, spend, model="grok-3-mini")["used"]
    assert Decimal(used) == Decimal("0.1324")  # 30 x 0.0042 + 20 x 0.00032


UNHOLDABLE = [
    ("tokens_per_period", "1e23"),
    ("tokens_per_period", "9223372036854775808"),  # 2^63: past the ledger's bigint
    ("tokens_per_minute", "-5"),
    ("tokens_per_period", "0"),
    ("tokens_per_period", "lots"),
    ("spend_per_period", "1e15"),
    ("spend_per_period", "NaN"),
]


def test_limits_a_quota_cannot_hold_are_refused_in_one_line_and_the_endpoint_keeps_answering(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    worker = start_worker()
    for kind, limit in UNHOLDABLE:
        code, _, err = quota(settings, "set", "--tenant", TENANT, "--kind", kind, "--limit", limit)
        assert (code, err.count("\n"), err.startswith("error: --limit"), limit in err) == (
            2,
            1,
            True,
            True,
        )

    code, out, _ = quota(settings, "list", "--format", "json")
    assert (code, orjson.loads(out)) == (0, [])
    worker.wait_for_log("Worker]: Ready")
    status, answer = ask_quota(settings.worker_web_port, TENANT)
    assert (status, answer["allowed"], answer["limits"]) == (200, True, [])


def test_hard_and_soft_together_are_refused(seeded: Settings) -> None:
    code, _, err = quota(
        seeded, "set", "--tenant", TENANT, "--kind", "tokens_per_period", "--limit", "10",
        "--hard", "--soft",
    )  # fmt: skip

    assert (code, err.count("\n"), "--hard and --soft" in err) == (2, 1, True)
    assert orjson.loads(quota(seeded, "list", "--format", "json")[1]) == []


def anchored_usage(period: BillingPeriod) -> list[Any]:
    """100k input + 10k output tokens at the period's start ($0.45 of grok-3), and 200k more
    just before it, in the previous period."""
    return [
        *usage(1, 100_000, 10_000, at=period.start + timedelta(seconds=1)),
        *usage(1, 190_000, 10_000, at=period.start - timedelta(hours=1)),
    ]


def test_quota_periods_are_the_billing_periods_of_the_tenants_anchor_day(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    anchored = metering(
        settings, "tenants", "set", TENANT, "--anchor-day", "15", "--effective-from", "2025-01-01"
    )
    assert anchored.returncode == 0, anchored.stderr
    period, _ = this_period(anchor_day=15)
    worker = start_worker()
    produce(settings, anchored_usage(period))
    wait_until_processed(settings, worker, 2)
    set_limit(settings, "--kind", "tokens_per_period", "--limit", "1000000")
    set_limit(settings, "--kind", "spend_per_period", "--limit", "10")

    assert eventually(lambda: limit_answer(settings, LIMIT_ID).get("used") == 110_000)
    limit = limit_answer(settings, LIMIT_ID)
    assert limit["resets_at"] == rfc3339(period.end)
    report = metering(settings, "quota", "spend", "--format", "json")
    assert report.returncode == 0, report.stderr
    [row] = orjson.loads(report.stdout)
    assert (row["period"], row["estimated"], row["invoiced_usage"], row["difference"]) == (
        period.label,
        "0.4500",
        "0.45",
        "0.0000",
    )


def test_a_new_anchor_day_moves_the_quota_periods_of_a_tenant_with_limits(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    period, _ = this_period(anchor_day=15)
    worker = start_worker()
    produce(settings, anchored_usage(period))
    wait_until_processed(settings, worker, 2)
    set_limit(settings, "--kind", "tokens_per_period", "--limit", "1000000")  # calendar months

    anchored = metering(settings, "tenants", "set", TENANT, "--anchor-day", "15")
    assert anchored.returncode == 0, anchored.stderr

    end = rfc3339(period.end)
    assert eventually(lambda: limit_answer(settings, LIMIT_ID).get("resets_at") == end)
    assert limit_answer(settings, LIMIT_ID)["used"] == 110_000
