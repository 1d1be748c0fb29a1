"""Running `metering` as a process, the way a user or an operator does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from metering.config import PROJECT_ROOT, Settings
from metering.services.worker import metering_command


def metering(
    settings: Settings | None,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str = "",
    cwd: Path = PROJECT_ROOT,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Runs ``metering ARGS`` with exactly ``settings`` (their variables in its environment;
    ``None``: this process's environment), plus ``env``, given ``stdin`` as its standard
    input (empty by default: a user who typed nothing), in ``cwd`` (the checkout, where the
    tests' relative paths start); what it printed and its exit code."""
    base = settings.child_env() if settings is not None else dict(os.environ)
    return subprocess.run(
        metering_command(*args),
        env={**base, **(env or {})},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have exited 0 (else its output, to see why)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout
