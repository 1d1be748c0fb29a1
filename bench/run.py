"""Runs every case against a scratch database and fresh topics; writes the results JSON."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench import drain, invoice_close, latency, memory, quota, storage
from bench.harness import demo_database, fresh_topics
from bench.machine import machine_facts
from bench.report import Case
from metering.config import PROJECT_ROOT, Settings
from metering.wire.kafka_admin import delete_topics, worker_topics

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
QUOTA_FALLBACK_RATE = 2_500  # background load for the quota case if the drain failed
CASES = ("drain", "latency", "memory", "storage", "invoice_close", "quota")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    events: int = 1_000_000  # drained in case 1
    latency_s: float = 60.0
    latency_rate: float | None = None  # default: half case 1's rate, first to last commit
    invoice_tenants: int = 1_000
    invoice_models: int = 10
    memory_checkpoint: int = 100_000
    quota_trials: int = 50  # tenants made to cross a hard limit, idle and under load
    quota_rps: int = 1_000  # requests/s fired at GET /v1/quota
    quota_seconds: float = 10.0

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            events=100_000, latency_s=20.0, invoice_tenants=100, quota_trials=10, quota_seconds=5
        )


@dataclass(frozen=True, slots=True)
class BenchResult:
    cases: list[Case]
    document: dict[str, Any]
    path: Path


class Progress:
    """Phase headings on their own lines; progress within a phase overwrites one line."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._last = 0.0

    def phase(self, text: str) -> None:
        self.write(f"\n== {text}\n")

    def say(self, text: str) -> None:
        if time.monotonic() - self._last >= 0.5:
            self.write(f"\r   {text:<60}")
            self._last = time.monotonic()


class Results:
    """The cases done so far; a step that fails marks the cases that needed it as failed."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def add(self, case: Case) -> None:
        self.cases[case.name] = case

    def attempt(self, names: tuple[str, ...], step: Callable[[], _T]) -> _T | None:
        try:
            return step()
        except Exception as exc:  # one failed case must not lose the others' figures
            for name in names:
                self.cases.setdefault(
                    name, Case(name, status=f"failed: {type(exc).__name__}: {exc}")
                )
            return None

    def in_order(self) -> list[Case]:
        return [self.cases[name] for name in CASES if name in self.cases]


def run_bench(
    settings: Settings,
    config: BenchConfig,
    *,
    results_dir: Path = RESULTS_DIR,
    progress: Progress | None = None,
) -> BenchResult:
    """Runs the cases and writes the results document to ``results_dir``."""
    show = progress or Progress(lambda _: None)
    started = datetime.now(UTC)
    stamp = f"{started:%Y%m%dT%H%M%SZ}"
    logs = results_dir / f"{stamp}-logs"
    document: dict[str, Any] = {
        "started_at": started.isoformat(),
        "config": asdict(config),
        "machine": machine_facts(settings),
        "worker": {
            "batch_size": settings.batch_size,
            "batch_window_s": settings.batch_window_s,
            "partitions": settings.topic_partitions,
        },
        "worker_logs": str(logs),
    }
    results = Results()
    with demo_database(settings, tenants=max(50, config.invoice_tenants)) as bench_db:
        on_drain, on_latency = fresh_topics(bench_db, "drain"), fresh_topics(bench_db, "latency")
        drain_rate: float | None = None
        try:
            drain_rate = _drain(on_drain, config, logs, show, results)
            _latency(on_latency, config, drain_rate, logs, show, results)
            show.phase(
                f"invoice close: {config.invoice_tenants:,} tenants x {config.invoice_models}"
                " models, a month of hourly aggregates"
            )
            results.attempt(
                ("invoice_close",),
                lambda: results.add(
                    invoice_close.invoice_close_case(
                        bench_db, config.invoice_tenants, config.invoice_models
                    )
                ),
            )
        finally:
            asyncio.run(
                delete_topics(settings, worker_topics(on_drain) + worker_topics(on_latency))
            )
    load = (drain_rate or QUOTA_FALLBACK_RATE * 2) / 2
    show.phase(f"quota: block delay under {load:,.0f} events/s, endpoint at {config.quota_rps}/s")
    results.attempt(
        ("quota",),
        lambda: results.add(
            quota.run_quota_case(
                settings, load, config.quota_trials, config.quota_rps, config.quota_seconds,
                logs, show.say,
            )
        ),
    )  # fmt: skip
    cases = results.in_order()
    document["finished_at"] = datetime.now(UTC).isoformat()
    document["load_average_at_end"] = os.getloadavg()
    document["cases"] = {case.name: case.as_dict() for case in cases}
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp}.json"
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return BenchResult(cases, document, path)


def _drain(
    settings: Settings, config: BenchConfig, logs: Path, show: Progress, results: Results
) -> float | None:
    """Cases 1, 3 and 4 (drain, memory, storage); returns the drain rate, if measured."""
    needs_drain = ("drain", "memory", "storage")
    show.phase(f"drain: producing {config.events:,} events")
    spec = drain.traffic(config.events)
    produced = results.attempt(
        needs_drain, lambda: asyncio.run(drain.send_traffic(settings, spec, say=show.say))
    )
    if produced is None:
        return None
    show.phase("drain: a worker from start to zero lag")
    run = results.attempt(
        needs_drain, lambda: drain.drain(settings, config.events, logs / "drain.log", say=show.say)
    )
    if run is None:
        return None
    results.add(memory.memory_case(run, config.memory_checkpoint))
    show.phase("storage")
    results.attempt(("storage",), lambda: results.add(storage.storage_case(settings, produced)))
    show.phase("drain ceilings: a bare consumer, a binary COPY")
    ceilings = results.attempt(
        ("drain",),
        lambda: (
            asyncio.run(drain.consume_ceiling(settings, config.events)),
            drain.copy_ceiling(settings, config.events),
        ),
    )
    if ceilings is not None:
        results.add(drain.drain_case(run, produced, *ceilings))
    return run.rate_steady or run.rate_end_to_end


def _latency(
    settings: Settings,
    config: BenchConfig,
    drain_rate: float | None,
    logs: Path,
    show: Progress,
    results: Results,
) -> None:
    """Case 2 at the configured rate, or at half the drain rate."""
    rate = config.latency_rate or (drain_rate / 2 if drain_rate else None)
    if rate is None:
        results.add(Case("latency", status="skipped: no drain rate to take half of"))
        return
    show.phase(f"latency: {rate:,.0f} events/s for {config.latency_s:.0f}s")
    results.attempt(
        ("latency",),
        lambda: results.add(
            latency.latency_case(
                settings, rate, config.latency_s, drain_rate, logs / "latency.log", say=show.say
            )
        ),
    )
