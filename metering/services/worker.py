"""A real `metering worker` process, started and stopped from outside as an operator does.

The tests and the benchmarks drive the worker through this one runner, the way it runs in
production: its own process, its settings in its environment, its output in a log file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from metering.config import PROJECT_ROOT, Settings
from metering.services.process import poll_until

T = TypeVar("T")


def metering_command(*args: str) -> list[str]:
    """The command line of `metering ARGS`, run by this interpreter (whose virtualenv's
    `metering` script need not be on PATH)."""
    return [sys.executable, "-m", "metering.cli", *args]


class WorkerExited(RuntimeError):
    """The worker process ended while something waited for it."""


class WorkerProcess:
    """A `metering worker` process: stopped gently (SIGTERM) or killed like a crash.

    Faust keeps its files in the settings' ``faust_data_dir``; give the settings a
    ``worker_data_dir`` of their own to keep a run's files out of the shared state dir.
    """

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        cwd: Path = PROJECT_ROOT,
        args: Sequence[str] = (),
    ) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            metering_command("worker", *args),
            env=settings.child_env(),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def check_alive(self) -> None:
        """Raises ``WorkerExited`` (with the log's tail) if the process has ended."""
        if self.proc.poll() is not None:
            raise WorkerExited(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")

    def wait_until(
        self,
        probe: Callable[[], T | None],
        what: str,
        timeout_s: float = 60,
        interval_s: float = 0.1,
    ) -> T:
        """``poll_until`` that gives up as soon as the worker dies, and shows its log."""

        def alive_and_probed() -> T | None:
            self.check_alive()
            return probe()

        return poll_until(
            alive_and_probed, what, timeout_s=timeout_s, interval_s=interval_s, detail=self.log_tail
        )

    def wait_for_log(self, text: str, timeout_s: float = 60) -> None:
        self.wait_until(lambda: text in self.log(), f"{text!r} in the worker log", timeout_s)

    def terminate(self, timeout_s: float = 60) -> int:
        """Stops the worker with SIGTERM, as an operator does; its exit code. One that has not
        exited within ``timeout_s`` is killed (its code is then -9, never 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no shutdown, no offset commit, as a crash."""
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()
