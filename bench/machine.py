"""The facts a benchmark figure means nothing without: machine, versions, commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg

from metering.config import PROJECT_ROOT, Settings


def _proc_field(path: str, name: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def machine_facts(settings: Settings) -> dict[str, Any]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    with psycopg.connect(settings.psycopg_dsn, connect_timeout=5) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "memory_gb": round(int(mem_kb.split()[0]) / 1024**2, 1) if mem_kb else None,
        "load_average_at_start": os.getloadavg(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": settings.kafka_version,
        "postgresql": pg_version,
        "libraries": {name: version(name) for name in ("aiokafka", "psycopg", "faust-streaming")},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }
