"""Starting, finding and stopping the daemons the project owns, by pid file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A service could not be provisioned; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    version: str
    log: Path


def port_is_busy(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_free_port(port: int, what: str, env_var: str) -> None:
    if port_is_busy(port):
        raise ServiceError(
            f"port {port} on 127.0.0.1, wanted for {what}, is already in use by another process. "
            f"Stop that process or choose another port, e.g. `export {env_var}={port + 100}`."
        )


def poll_until(
    probe: Callable[[], T | None],
    what: str,
    *,
    timeout_s: float = 30,
    interval_s: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> T:
    """Calls ``probe`` every ``interval_s`` until it returns a truthy value; returns that value.

    The one wait of the project's tooling (service start-up, tests, benchmarks). ``probe`` may
    raise to give up early, say when the process it waits for has died. After ``timeout_s``
    it raises ``TimeoutError`` naming ``what`` was awaited, with ``detail()`` (a log's tail).
    """
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        if time.monotonic() >= deadline:
            more = f":\n{detail()}" if detail is not None else ""
            raise TimeoutError(f"{what}: not within {timeout_s:g}s{more}")
        time.sleep(interval_s)
    return found


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    try:
        poll_until(check, what, timeout_s=timeout_s, interval_s=0.2)
    except TimeoutError:
        raise ServiceError(
            f"{what} did not become ready within {timeout_s:.0f}s; see {log}"
        ) from None


class PidFile:
    """A pid file naming a process we started, checked against its command line."""

    def __init__(self, path: Path, cmdline_marker: str) -> None:
        self.path = path
        self.marker = cmdline_marker

    def running_pid(self) -> int | None:
        try:
            pid = int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        if "State:\tZ" in status or self.marker not in cmdline:
            return None
        return pid

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
        """Stops the process if it is ours and alive; returns whether it was running."""
        pid = self.running_pid()
        if pid is None:
            self.path.unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while self.running_pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.1)
        self.path.unlink(missing_ok=True)
        return True


def spawn(
    argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Starts a daemon in its own session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            user=user,
        )
    return proc
