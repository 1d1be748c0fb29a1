"""What the cases share: a scratch database, fresh topics, and a real worker process."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from metering.config import PROJECT_ROOT, Settings
from metering.files.price_files import LIST_PRICES, load_price_file
from metering.services.process import free_port
from metering.store import catalog, migrate
from metering.store.billing.price_imports import import_prices
from metering.store.reconcile import read_progress
from metering.tools.traffic import DEMO_MODELS, demo_tenants

POLL_S = 0.05


def database_url(settings: Settings, name: str) -> str:
    """``settings.database_url`` pointing at database ``name`` instead."""
    return make_url(settings.database_url).set(database=name).render_as_string(False)


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def scratch_database(settings: Settings, tenants: int) -> Iterator[Settings]:
    """A fresh database at the head revision with the demo catalogs; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = dsn(database_url(settings, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        url = database_url(settings, name)
        migrate.upgrade(url)
        with psycopg.connect(dsn(url)) as conn:
            catalog.add_models(
                conn,
                [catalog.ModelRow(m.model_id, m.provider, m.display_name) for m in DEMO_MODELS],
            )
            catalog.add_tenants(conn, [catalog.TenantRow(t, t) for t in demo_tenants(tenants)])
            import_prices(conn, load_price_file(LIST_PRICES))
        yield settings.model_copy(update={"database_url": url})
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_topics(settings: Settings, label: str) -> Settings:
    """Settings with topics and a consumer group of their own (and a free web port)."""
    suffix = f"{label}.{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "topic_usage": f"bench.usage.{suffix}",
            "topic_dlq": f"bench.dlq.{suffix}",
            "topic_quota_state": f"bench.quota.state.{suffix}",
            "topic_quota_alerts": f"bench.quota.alerts.{suffix}",
            "group_id": f"bench-{suffix}",
            "worker_web_port": free_port(),
        }
    )


def processed(conn: psycopg.Connection, topic: str) -> int:
    """Records of ``topic`` the ledger has committed: accepted, duplicate, conflict or rejected."""
    return read_progress(conn, topic).processed


def metering(*args: str) -> list[str]:
    """The command line of `metering ARGS`, run by this interpreter."""
    return [sys.executable, "-m", "metering.cli", *args]


class Worker:
    """A real `metering worker` process, as an operator starts it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            metering("worker"),
            env=settings.child_env(),
            cwd=PROJECT_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory from /proc (``VmHWM`` for the peak so far)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise LookupError(f"no {field} for pid {self.pid}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_for_log(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log_path.read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in the worker log:\n{self.log_tail()}")
            time.sleep(POLL_S)

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@contextmanager
def running_worker(settings: Settings, log_path: Path) -> Iterator[Worker]:
    worker = Worker(settings, log_path)
    try:
        yield worker
    finally:
        worker.stop()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time a process has used so far; 0 if it is unknown or gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent not idle, all cores together."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS  # minus idle and iowait


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an ascending sequence, nearest rank."""
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
