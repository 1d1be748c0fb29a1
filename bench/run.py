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
from rich.console import Console
from rich.status import Status

from bench import ceilings, drain, growth, invoice_close, latency, memory, quota, storage
from bench.harness import demo_database, fresh_topics
from bench.machine import machine_facts
from bench.report import Case
from metering.config import PROJECT_ROOT, Settings
from metering.wire.kafka_admin import delete_topics, worker_topics

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
QUOTA_FALLBACK_RATE = 2_500  # background load for the quota case if the drain failed
CASES = ("drain", "growth", "processes", "latency", "memory", "storage", "invoice_close", "quota")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    events: int = 1_000_000  # drained in case 1, and again in the growth and processes cases
    ledger_rows: int = 10_000_000  # rows already in the ledger for the growth case
    processes: int = 2  # worker processes sharing the partitions in the processes case
    latency_s: float = 60.0
    latency_rate: float | None = None  # default: half case 1's rate, first to last commit
    invoice_tenants: int = 1_000
    invoice_models: int = 10
    memory_checkpoint: int = 100_000
    quota_trials: int = 50  # tenants made to cross a hard limit, idle and under load
    quota_rps: int = 1_000  # requests/s fired at GET /v1/quota
    quota_seconds: float = 10.0
    random_ids: bool = False  # event ids as random UUID4s rather than the producer's UUID7s

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            events=300_000,  # enough for a steady rate: start-up is 1.7-2.1 s of it
            ledger_rows=1_000_000,
            latency_s=20.0,
            invoice_tenants=100,
            quota_trials=10,
            quota_seconds=5,
        )


@dataclass(frozen=True, slots=True)
class BenchResult:
    cases: list[Case]
    document: dict[str, Any]
    path: Path


class Progress:
    """Phase headings as lines of their own; progress within a phase through rich.

    On a terminal, the progress is one live status line that each update replaces; in a
    log (not a terminal) it is a plain line at most every ``LOG_EVERY_S`` seconds, so the
    log holds no carriage returns or control codes. Without a console, nothing is shown."""

    LOG_EVERY_S = 10.0

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self._status: Status | None = None
        self._phase = ""
        self._last = 0.0

    def phase(self, text: str) -> None:
        if self.console is None:
            return
        self.done()
        self._phase = text
        self.console.print(f"== {text}", highlight=False, soft_wrap=True)
        if self.console.is_terminal:
            self._status = self.console.status(text)
            self._status.start()

    def say(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"{self._phase}: {text}")
        elif self.console is not None and time.monotonic() - self._last >= self.LOG_EVERY_S:
            self.console.print(f"   {text}", highlight=False, soft_wrap=True)
            self._last = time.monotonic()

    def done(self) -> None:
        """Ends the live status line, if there is one."""
        if self._status is not None:
            self._status.stop()
            self._status = None


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
    show = progress or Progress()
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
        on_growth, on_processes = fresh_topics(bench_db, "growth"), fresh_topics(bench_db, "procs")
        topics = [on_drain, on_latency, on_growth, on_processes]
        drain_rate: float | None = None
        try:
            single = _drain(on_drain, config, logs, show, results)
            drain_rate = (single.rate_steady or single.rate_end_to_end) if single else None
            _processes(on_processes, config, single, logs, show, results)
            _latency(on_latency, config, drain_rate, logs, show, results)
            _growth(on_growth, config, single, logs, show, results)  # last: it fills the ledger
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
            show.done()
            asyncio.run(delete_topics(settings, [t for s in topics for t in worker_topics(s)]))
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
    show.done()
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
) -> drain.Drain | None:
    """Cases 1, 3 and 4 (drain, memory, storage); returns the drain, if measured."""
    needs_drain = ("drain", "growth", "processes", "memory", "storage")
    show.phase(f"drain: producing {config.events:,} events")
    spec = drain.traffic(config.events, random_ids=config.random_ids)
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
    show.phase("drain ceilings: a bare consumer, a binary COPY with and without the ledger's key")
    measured = results.attempt(
        ("drain",),
        lambda: (
            asyncio.run(ceilings.consume_ceiling(settings, config.events)),
            ceilings.copy_ceilings(settings, config.events, random_ids=config.random_ids),
        ),
    )
    if measured is not None:
        results.add(drain.drain_case(run, produced, *measured))
    return run


def _drain_again(
    settings: Settings,
    config: BenchConfig,
    name: str,
    log: Path,
    show: Progress,
    results: Results,
    *,
    seed: int,
    processes: int = 1,
) -> drain.Drain | None:
    """Another drain of ``config.events`` new events (``seed``: other ids) on its own topics."""
    show.phase(f"{name}: producing {config.events:,} new events")
    spec = drain.traffic(config.events, seed=seed, random_ids=config.random_ids)
    sent = results.attempt(
        (name,), lambda: asyncio.run(drain.send_traffic(settings, spec, say=show.say))
    )
    if sent is None:
        return None
    show.phase(f"{name}: {processes} worker(s) from start to zero lag")
    return results.attempt(
        (name,),
        lambda: drain.drain(settings, config.events, log, say=show.say, processes=processes),
    )


def _processes(
    settings: Settings,
    config: BenchConfig,
    single: drain.Drain | None,
    logs: Path,
    show: Progress,
    results: Results,
) -> None:
    """Several worker processes in one group, next to the one-worker drain."""
    if single is None:
        return
    run = _drain_again(
        settings,
        config,
        "processes",
        logs / "processes.log",
        show,
        results,
        seed=43,
        processes=config.processes,
    )
    if run is not None:
        results.add(drain.processes_case(run, single))


def _growth(
    settings: Settings,
    config: BenchConfig,
    empty: drain.Drain | None,
    logs: Path,
    show: Progress,
    results: Results,
) -> None:
    """The drain into a ledger pre-filled with ``config.ledger_rows`` rows, next to case 1."""
    if empty is None:
        return
    show.phase(f"growth: pre-filling the ledger with {config.ledger_rows:,} rows")
    prefill_s = results.attempt(
        ("growth",),
        lambda: growth.prefill_ledger(settings, config.ledger_rows, random_ids=config.random_ids),
    )
    if prefill_s is None:
        return
    run = _drain_again(settings, config, "growth", logs / "growth.log", show, results, seed=44)
    if run is not None:
        results.add(growth.growth_case(run, empty, config.ledger_rows, prefill_s))


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
