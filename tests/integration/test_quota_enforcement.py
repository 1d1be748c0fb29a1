"""Quotas on the real pipeline: alerts once per threshold, a block signal within the
batch that crosses a hard limit, unblocking when the limit is raised, several workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest

from metering.config import Settings
from metering.services.worker import WorkerProcess
from tests.support.cli import metering
from tests.support.ingest import event, message, produce, seed_catalog, wait_until_processed
from tests.support.quota import ask_quota, read_topic
from tests.support.waiting import eventually

StartWorker = Callable[..., WorkerProcess]
TENANT = "acme"


def events(count: int, tokens_each: int, tenant: str = TENANT) -> list[Any]:
    """Events of ``tokens_each`` tokens (input + output) in the last few minutes."""
    start = datetime.now(UTC) - timedelta(minutes=3)
    return [
        message(
            event(
                tenant_id=tenant,
                model="grok-3",
                occurred_at=start + timedelta(milliseconds=i),
                input_tokens=tokens_each - 100,
                output_tokens=100,
            )
        )
        for i in range(count)
    ]


def set_limit(
    settings: Settings, limit: int | str, *, hard: bool, kind: str = "tokens_per_period"
) -> None:
    done = metering(
        settings, "quota", "set", "--tenant", TENANT, "--kind", kind,
        "--limit", str(limit), "--hard" if hard else "--soft",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def stored_alerts(settings: Settings) -> list[tuple[str, int]]:
    with psycopg.connect(settings.psycopg_dsn) as conn:
        rows = conn.execute(
            "SELECT limit_id, threshold FROM reporting.quota_alerts ORDER BY threshold"
        ).fetchall()
    return [(limit_id, threshold) for limit_id, threshold in rows]


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    seed_catalog(settings, tenants=[TENANT, "globex"], models=["grok-3"])
    return settings


def test_crossing_80_percent_alerts_once_even_when_the_worker_is_killed_and_restarted(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    set_limit(settings, 100_000, hard=False)
    produce(settings, events(70, 1000))  # 70%: the 50% alert
    worker = start_worker()
    wait_until_processed(settings, worker, 70)
    worker.kill()  # a crash after the 50% alert
    produce(settings, events(30, 1000))  # to 100%: 80% and 100% cross after the restart
    worker = start_worker()
    wait_until_processed(settings, worker, 100)

    assert stored_alerts(settings) == [
        (f"{TENANT}:*:tokens_per_period", 50),
        (f"{TENANT}:*:tokens_per_period", 80),
        (f"{TENANT}:*:tokens_per_period", 100),
    ]
    # Delivery is at least once (a kill between the publish and its record sends the alert
    # again); consumers dedup on alert_id, and then see each threshold once.
    published = {
        a["alert_id"]: a["threshold"] for a in read_topic(settings, settings.topic_quota_alerts)
    }
    assert sorted(published.values()) == [50, 80, 100]


def test_a_hard_limit_blocks_on_the_crossing_event_and_raising_it_unblocks(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    set_limit(settings, 50_000, hard=True)
    worker = start_worker()
    worker.wait_for_log("Worker]: Ready")
    produce(settings, events(60, 1000))
    wait_until_processed(settings, worker, 60)

    assert eventually(lambda: ask_quota(settings.worker_web_port, TENANT)[1]["allowed"] is False)
    status, answer = ask_quota(settings.worker_web_port, TENANT)
    assert status == 200 and answer["state"] == "blocked"
    [limit] = answer["limits"]
    assert (limit["limit"], limit["used"], limit["remaining"]) == (50_000, 60_000, 0)
    latest = read_topic(settings, settings.topic_quota_state)[-1]
    assert (latest["tenant_id"], latest["state"]) == (TENANT, "blocked")

    set_limit(settings, 1_000_000, hard=True)
    assert eventually(
        lambda: ask_quota(settings.worker_web_port, TENANT)[1]["allowed"] is True, timeout_s=3
    )
    assert eventually(
        lambda: read_topic(settings, settings.topic_quota_state, 1)[-1]["state"] == "ok"
    )


def test_the_quota_endpoint_says_404_for_an_unknown_tenant_and_needs_its_token(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded.model_copy(update={"quota_api_token": "s3cret"})
    worker = start_worker(settings)
    worker.wait_for_log("Worker]: Ready")

    assert ask_quota(settings.worker_web_port, TENANT)[0] == 401
    for wrong in ("s3cre", "s3cretX", "S3CRET", "s3cr\u00e9t"):  # short, long, case, non-ASCII
        status, answer = ask_quota(settings.worker_web_port, TENANT, token=wrong)
        assert (status, answer["error"]) == (401, "unauthorized"), wrong
    status, answer = ask_quota(settings.worker_web_port, "nobody", token="s3cret")
    assert (status, answer["error"]) == (404, "unknown_tenant")
    status, answer = ask_quota(settings.worker_web_port, "globex", token="s3cret")
    assert (status, answer["allowed"], answer["limits"]) == (200, True, [])


def test_two_workers_sharing_the_load_alert_exactly_as_one_does(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    set_limit(settings, 200_000, hard=False)
    for tenant in ("globex",):
        done = metering(
            settings, "quota", "set", "--tenant", tenant, "--kind", "tokens_per_period",
            "--limit", "100000",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    first, second = start_worker(), start_worker()
    first.wait_for_log("Worker]: Ready")
    second.wait_for_log("Worker]: Ready")
    produce(settings, [*events(250, 1000), *events(150, 1000, tenant="globex")])
    wait_until_processed(settings, first, 400)

    with psycopg.connect(settings.psycopg_dsn) as conn:
        alerts = conn.execute(
            "SELECT tenant_id, threshold FROM reporting.quota_alerts ORDER BY 1, 2"
        ).fetchall()
    assert alerts == [
        (TENANT, 50), (TENANT, 80), (TENANT, 100),
        ("globex", 50), ("globex", 80), ("globex", 100),
    ]  # fmt: skip


def test_a_spend_limit_blocks_on_list_prices_estimated_in_the_stream(
    seeded: Settings, start_worker: StartWorker
) -> None:
    settings = seeded
    imported = metering(settings, "prices", "import", "prices/list-prices.yaml")
    assert imported.returncode == 0, imported.stderr
    set_limit(settings, "0.10", hard=True, kind="spend_per_period")
    worker = start_worker()
    worker.wait_for_log("Worker]: Ready")
    produce(settings, events(30, 1000))  # grok-3: 900 in at $3/M + 100 out at $15/M = $0.0042
    wait_until_processed(settings, worker, 30)

    assert eventually(lambda: ask_quota(settings.worker_web_port, TENANT)[1]["allowed"] is False)
    [limit] = ask_quota(settings.worker_web_port, TENANT)[1]["limits"]
    assert (limit["kind"], Decimal(limit["used"]), limit["remaining"]) == (
        "spend_per_period",
        Decimal("0.1260"),
        "0",
    )
    # The invoice rounds each line half-even: 27,000 input tokens at $3/M = $0.081 -> 0.08,
    # 3,000 output tokens at $15/M = $0.045 -> 0.04; the stream's estimate is unrounded.
    report = metering(settings, "quota", "spend", "--format", "json")
    assert report.returncode == 0, report.stderr
    [row] = orjson.loads(report.stdout)
    assert (row["tenant_id"], row["estimated"], row["invoiced_usage"], row["difference"]) == (
        TENANT,
        "0.1260",
        "0.12",
        "0.0060",
    )
