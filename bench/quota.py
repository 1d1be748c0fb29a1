"""Quota cases: how soon a hard limit blocks, and how fast the quota endpoint answers.

*Block delay*: while the load generator runs at a fixed rate over the demo tenants, each
trial tenant with a hard limit of ``LIMIT`` tokens is sent one event just under it and
then the crossing event; the delay is from just before the crossing event is produced to
the moment ``blocked`` for that tenant is read from ``quota.state``.
*Endpoint*: ``GET /v1/quota/{tenant}`` fired at a fixed request rate by an asyncio
aiohttp client (open loop: a slow answer does not slow the schedule), p50 and p99.
Baselines, in the same run: the block delay of the idle pipeline; for the endpoint, the
HTTP floor: a bare aiohttp server in a process of its own answering a constant JSON body,
fired at by the same client at the same rate.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness import (
    demo_database,
    dsn,
    fresh_topics,
    percentile,
    running_worker,
)
from bench.report import Case, Figure, Target
from metering.billing.quotas.limits import Limit, LimitKind
from metering.config import Settings
from metering.produce.producer import produce
from metering.services.process import free_port, port_is_busy
from metering.store import catalog, quota_limits
from metering.tools.traffic import TrafficPlan, TrafficSpec
from metering.wire.kafka_admin import delete_topics, ensure_topics, worker_topics
from streams.ingest.service import FETCH_MAX_WAIT_MS

LIMIT = 10_000
Say = Callable[[str], None]


async def _block_delays(settings: Settings, trials: list[str]) -> list[float]:
    states = AIOKafkaConsumer(
        settings.topic_quota_state,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # as docs/quotas.md tells the platform's readers
    )
    await states.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    delays = []
    try:
        await states.getmany(timeout_ms=500)  # joined: positions set at the end
        for tenant in trials:
            await _send(producer, settings, tenant, LIMIT - 1000)
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            await _send(producer, settings, tenant, 2000)
            while True:
                batch = await states.getmany(timeout_ms=5000)
                seen = [orjson.loads(r.value) for records in batch.values() for r in records]
                if any(s["tenant_id"] == tenant and s["state"] == "blocked" for s in seen):
                    delays.append(time.perf_counter() - started)
                    break
                if not batch:
                    raise TimeoutError(f"{tenant} was not blocked within 5 s")
    finally:
        await producer.stop()
        await states.stop()
    return delays


async def _send(producer: AIOKafkaProducer, settings: Settings, tenant: str, tokens: int) -> None:
    event = {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "model": "grok-3",
        "occurred_at": datetime.now(UTC).isoformat(),
        "usage": {"input_tokens": tokens - 100, "output_tokens": 100},
    }
    await producer.send_and_wait(settings.topic_usage, orjson.dumps(event), key=tenant.encode())


async def _latencies(url: str, rps: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def one() -> None:
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)

        start = time.perf_counter()
        pending = []
        for i in range(int(rps * seconds)):
            delay = start + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(one()))
        await asyncio.gather(*pending)
    return sorted(latencies)


_HTTP_FLOOR = """
import sys
from aiohttp import web
async def answer(request):
    return web.json_response({"allowed": True, "state": "ok", "limits": []})
app = web.Application()
app.router.add_get("/v1/quota/{tenant}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _http_floor(rps: int, seconds: float) -> list[float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _HTTP_FLOOR, str(port)])
    try:
        deadline = time.monotonic() + 10
        while not port_is_busy(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return asyncio.run(_latencies(f"http://127.0.0.1:{port}/v1/quota/x", rps, seconds))
    finally:
        server.terminate()
        server.wait(10)


def run_quota_case(
    settings: Settings, rate: float, trials: int, rps: int, seconds: float, logs: Path, say: Say
) -> Case:
    case = Case("quota")
    trial_tenants = [f"quota-trial-{i:03d}" for i in range(trials * 2)]
    with demo_database(settings, tenants=50) as db:
        run = fresh_topics(db, "quota")
        with psycopg.connect(dsn(run.database_url)) as conn:
            catalog.add_tenants(conn, [catalog.TenantRow(t, t) for t in trial_tenants])
            for tenant in trial_tenants:
                quota_limits.set_limit(
                    conn,
                    Limit(
                        f"{tenant}:*:tokens",
                        tenant,
                        None,
                        LimitKind.TOKENS_PER_PERIOD,
                        LIMIT,
                        hard=True,
                    ),
                )
        asyncio.run(ensure_topics(run))
        try:
            with running_worker(run, logs / "quota-worker.log") as worker:
                worker.wait_for_log("Worker]: Ready")
                say("quota: block delay, idle pipeline")
                idle = sorted(asyncio.run(_block_delays(run, trial_tenants[:trials])))
                say(f"quota: block delay under {rate:,.0f} events/s of background load")
                loaded = sorted(asyncio.run(_under_load(run, rate, trial_tenants[trials:])))
                say(f"quota: endpoint at {rps} requests/s for {seconds:.0f} s")
                url = f"http://127.0.0.1:{run.worker_web_port}/v1/quota/{trial_tenants[0]}"
                answers = asyncio.run(_latencies(url, rps, seconds))
        finally:
            asyncio.run(delete_topics(run, worker_topics(run)))
    say("quota: the HTTP floor at the same rate")
    floor = _http_floor(rps, seconds)
    ms = 1000.0
    case.figures += [
        Figure("block delay p50 (loaded)", percentile(loaded, 0.5) * ms, "ms",
               "idle p50", percentile(idle, 0.5) * ms),
        Figure("block delay p99 (loaded)", percentile(loaded, 0.99) * ms, "ms",
               "idle p99", percentile(idle, 0.99) * ms, (Target("<=", 1000),)),
        Figure("endpoint p50", percentile(answers, 0.5) * ms, "ms",
               "HTTP floor p50", percentile(floor, 0.5) * ms),
        Figure("endpoint p99", percentile(answers, 0.99) * ms, "ms",
               "HTTP floor p99", percentile(floor, 0.99) * ms),
        Figure("endpoint answered", len(answers) / seconds, "req/s", "", None,
               (Target(">=", rps * 0.99),)),
    ]  # fmt: skip
    case.details = {
        "background_rate": rate,
        "trials": trials,
        "block_delays_loaded_ms": [d * ms for d in loaded],
        "block_delays_idle_ms": [d * ms for d in idle],
        "endpoint_requests": int(rps * seconds),
        "endpoint_ok": len(answers),
    }
    return case


async def _under_load(settings: Settings, rate: float, trials: list[str]) -> list[float]:
    events = int(rate * (len(trials) * 0.6 + 10))
    spec = TrafficSpec(events, 50, 10, 0.02, 0.005, 0.0, seed=7, now=datetime.now(UTC))
    load = asyncio.ensure_future(
        produce(
            TrafficPlan(spec).messages(),
            bootstrap_servers=settings.kafka_bootstrap,
            topic=settings.topic_usage,
            rate=rate,
        )
    )
    await asyncio.sleep(3)  # the load reaches its rate
    try:
        return await _block_delays(settings, trials)
    finally:
        load.cancel()
