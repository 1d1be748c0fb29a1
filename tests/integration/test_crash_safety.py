"""Exactly once in effect: crashes and restarts of the worker, PostgreSQL and Kafka
in the middle of a large run never change a total."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import psycopg
import pytest

from metering.config import Settings
from metering.files.price_files import LIST_PRICES, load_price_file
from metering.produce.producer import produce
from metering.services import KafkaBroker, PostgresServer
from metering.services.process import poll_until
from metering.store import catalog
from metering.store.billing.price_imports import import_prices
from metering.store.reconcile import read_progress, reconcile
from metering.tools.traffic import DEMO_MODELS, TrafficPlan, TrafficSpec, demo_tenants
from metering.wire.kafka_admin import ensure_topics
from tests.support.workers import StartWorker

pytestmark = pytest.mark.slow

EVENTS = 30_000


def seed_and_produce(settings: Settings) -> TrafficPlan:
    spec = TrafficSpec(
        events=EVENTS,
        tenants=12,
        models=8,
        duplicates=0.03,
        invalid=0.01,
        late=0.02,
        seed=7,
        now=datetime.now(UTC),
    )
    with psycopg.connect(settings.psycopg_dsn) as conn:
        catalog.add_tenants(conn, [catalog.TenantRow(t, t) for t in demo_tenants(spec.tenants)])
        catalog.add_models(
            conn, [catalog.ModelRow(m.model_id, m.provider, m.display_name) for m in DEMO_MODELS]
        )
        import_prices(conn, load_price_file(LIST_PRICES))
    plan = TrafficPlan(spec)
    asyncio.run(ensure_topics(settings))
    asyncio.run(
        produce(
            plan.messages(), bootstrap_servers=settings.kafka_bootstrap, topic=settings.topic_usage
        )
    )
    return plan


def processed(settings: Settings) -> int:
    """Records the ledger has committed; 0 while the database is unreachable."""
    try:
        with psycopg.connect(settings.psycopg_dsn, connect_timeout=2) as conn:
            return read_progress(conn, settings.topic_usage).processed
    except psycopg.OperationalError:
        return 0


def wait_until_processed_over(settings: Settings, records: int, what: str) -> None:
    """Waits (whichever worker is running, if any) until the ledger has committed more than
    ``records`` records."""
    poll_until(lambda: processed(settings) > records, what, timeout_s=120, interval_s=0.2)


def billed_usage(settings: Settings) -> dict[tuple[str, str], tuple[int, ...]]:
    with psycopg.connect(settings.psycopg_dsn) as conn:
        rows = conn.execute(
            "SELECT tenant_id, model, sum(events), sum(input_tokens), sum(output_tokens),"
            " sum(cached_input_tokens), sum(cache_write_tokens), sum(reasoning_tokens)"
            " FROM reporting.usage_hourly GROUP BY 1, 2"
        ).fetchall()
    return {(r[0], r[1]): tuple(int(x) for x in r[2:]) for r in rows}


def assert_totals_exact(settings: Settings, plan: TrafficPlan) -> None:
    poll_until(
        lambda: processed(settings) == EVENTS,
        "the worker processing every record",
        timeout_s=180,
        interval_s=0.2,
    )
    expected = {
        key: (
            t.events,
            t.input_tokens,
            t.output_tokens,
            t.cached_input_tokens,
            t.cache_write_tokens,
            t.reasoning_tokens,
        )
        for key, t in plan.expected.usage.items()
    }
    assert billed_usage(settings) == expected
    failed = [c for c in reconcile(settings) if not c.ok]
    assert failed == []


def test_a_worker_killed_mid_run_resumes_without_losing_or_doubling_usage(
    settings: Settings, start_worker: StartWorker
) -> None:
    plan = seed_and_produce(settings)
    worker = start_worker()
    wait_until_processed_over(settings, EVENTS // 4, "a quarter of the run")
    worker.kill()  # SIGKILL: no shutdown, no offset commit
    assert processed(settings) < EVENTS, "the run finished before the kill; make it larger"
    start_worker()
    assert_totals_exact(settings, plan)


def test_two_workers_killed_and_restarted_in_turn_keep_totals_exact(
    settings: Settings, start_worker: StartWorker
) -> None:
    plan = seed_and_produce(settings)
    first, second = start_worker(), start_worker()
    wait_until_processed_over(settings, EVENTS // 4, "a quarter of the run")
    first.kill()  # the survivor takes over the partitions: a rebalance mid-run
    wait_until_processed_over(settings, EVENTS // 2, "half of the run")
    second.kill()
    start_worker()
    assert_totals_exact(settings, plan)


@pytest.mark.parametrize("service", ["postgres", "kafka"])
def test_a_service_crashing_and_restarting_mid_run_changes_no_total(
    settings: Settings, start_worker: StartWorker, service: str, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL (its in-flight transactions are lost) or the broker is killed, stays down
    a while (the worker retries meanwhile) and comes back."""
    crashing: PostgresServer | KafkaBroker = request.getfixturevalue(service)
    plan = seed_and_produce(settings)
    start_worker()
    wait_until_processed_over(settings, EVENTS // 4, "a quarter of the run")
    crashing.kill()
    time.sleep(2)  # the outage
    crashing.up()
    assert_totals_exact(settings, plan)
