"""What the cases share: a scratch database, fresh topics, and a real worker process."""

from __future__ import annotations

import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from metering.config import Settings
from metering.files.price_files import LIST_PRICES, load_price_file
from metering.services.process import free_port
from metering.services.scratch import scratch_database
from metering.services.worker import WorkerProcess
from metering.store import catalog
from metering.store.billing.price_imports import import_prices
from metering.store.reconcile import read_progress
from metering.tools.traffic import DEMO_MODELS, demo_tenants

POLL_S = 0.05


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def demo_database(settings: Settings, tenants: int) -> Iterator[Settings]:
    """A scratch database at the head revision with the demo catalogs and the list prices;
    settings pointing at it. Dropped afterwards."""
    with scratch_database(settings, prefix="bench") as url:
        with psycopg.connect(dsn(url)) as conn:
            catalog.add_models(
                conn,
                [catalog.ModelRow(m.model_id, m.provider, m.display_name) for m in DEMO_MODELS],
            )
            catalog.add_tenants(conn, [catalog.TenantRow(t, t) for t in demo_tenants(tenants)])
            import_prices(conn, load_price_file(LIST_PRICES))
        yield settings.model_copy(update={"database_url": url})


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


class Worker(WorkerProcess):
    """A real `metering worker` process, as an operator starts it, whose memory is watched."""

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory from /proc (``VmHWM`` for the peak so far)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise LookupError(f"no {field} for pid {self.pid}")


@contextmanager
def running_worker(settings: Settings, log_path: Path) -> Iterator[Worker]:
    """A worker for the block, stopped with SIGTERM after it; Faust's files in a temporary
    directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as data_dir:
        worker = Worker(settings.model_copy(update={"worker_data_dir": Path(data_dir)}), log_path)
        try:
            yield worker
        finally:
            worker.terminate(timeout_s=30)


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
