"""`metering bench` on tiny sizes: every case runs, next to its baseline, and is written down.

The figures of so small a run mean nothing; what is checked is that the quick mode's code
path works on the real services and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
from aiokafka.admin import AIOKafkaAdminClient

from bench.run import CASES, BenchConfig, run_bench
from metering.config import Settings
from metering.services import KafkaBroker, PostgresServer
from metering.services.scratch import admin_dsn

TINY = BenchConfig(
    events=3_000,
    ledger_rows=20_000,
    processes=2,
    latency_s=3.0,
    latency_rate=500.0,
    invoice_tenants=3,
    invoice_models=2,
    quota_trials=2,
    quota_rps=50,
    quota_seconds=1.0,
)


def bench_databases(settings: Settings) -> set[str]:
    with psycopg.connect(admin_dsn(settings)) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
        return {name for (name,) in rows}


def bench_topics(settings: Settings) -> set[str]:
    async def names() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    ours = ("bench.", "bench-drain.", "bench-latency.", "bench-quota.")
    return {name for name in asyncio.run(names()) if name.startswith(ours)}


def test_every_case_reports_numbers_next_to_its_baseline(
    base_settings: Settings, postgres: PostgresServer, kafka: KafkaBroker, tmp_path: Path
) -> None:
    settings = base_settings.model_copy(update={"batch_size": 500, "batch_window_s": 0.2})
    databases, topics = bench_databases(settings), bench_topics(settings)

    result = run_bench(settings, TINY, results_dir=tmp_path)

    document = json.loads(result.path.read_text())
    assert result.path.parent == tmp_path
    assert document["machine"]["cpu_count"] >= 1
    assert document["machine"]["postgresql"] and document["machine"]["kafka"]
    assert list(document["cases"]) == list(CASES)
    for name, case in document["cases"].items():
        values = [figure["value"] for figure in case["figures"]]
        assert values and all(isinstance(v, int | float) for v in values), (name, case)
        assert case["status"] == "ok", (name, case["status"])
        ratios = [figure["ratio"] for figure in case["figures"] if figure["baseline"]]
        assert ratios and all(isinstance(r, float) and r > 0 for r in ratios), (name, case)
    drain = {f["name"]: f for f in document["cases"]["drain"]["figures"]}
    assert drain["events/s, worker start to zero lag"]["target"]
    assert drain["COPY ceiling: binary COPY, ledger's key and indexes"]["baseline"] == (
        "bare COPY, no key or index"
    )
    growth = document["cases"]["growth"]
    assert growth["details"]["ledger_rows"] == TINY.ledger_rows
    assert growth["figures"][0]["baseline"] == "empty ledger"
    assert document["cases"]["processes"]["details"]["processes"] == 2
    assert bench_databases(settings) <= databases  # the scratch database is gone
    cases = ("drain", "latency", "growth", "procs")
    assert not {t for t in bench_topics(settings) - topics if any(c in t for c in cases)}
