"""The Docker image runs as an unprivileged user and carries no dev tools: its final stage
installs only the runtime pins that scripts/runtime-lock keeps from requirements.lock."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from metering.config import PROJECT_ROOT

LOCK = PROJECT_ROOT / "requirements.lock"


def final_stage() -> list[tuple[str, str]]:
    """The Dockerfile's last stage as (instruction, arguments), continuation lines joined."""
    text = (PROJECT_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = [
        tuple(line.split(maxsplit=1))
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return [(keyword.upper(), args) for keyword, args in instructions[last_from:]]


def runtime_lock() -> str:
    return subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / "runtime-lock", LOCK],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def pinned_names(lock: str) -> set[str]:
    return {
        canonicalize_name(line.split("==")[0])
        for line in lock.splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
    }


def test_the_image_runs_as_an_unprivileged_user_who_owns_the_state_dir() -> None:
    """The worker writes Faust's data dir under METERING_STATE_DIR."""
    stage = final_stage()
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    [state_dir] = [
        args.split("=", 1)[1]
        for keyword, args in stage
        if keyword == "ENV" and args.startswith("METERING_STATE_DIR=")
    ]
    runs = " ".join(args for keyword, args in stage if keyword == "RUN")
    assert f"useradd --system --uid {users[-1]} --home-dir {state_dir} --create-home" in runs


def test_the_image_installs_only_the_runtime_pins_and_the_wheel() -> None:
    runs = " ".join(args for keyword, args in final_stage() if keyword == "RUN")
    assert "--require-hashes --no-deps -r /tmp/dist/runtime.lock" in runs
    assert "requirements.lock" not in runs
    assert "[dev]" not in runs
    assert "pip check" in runs


def test_the_runtime_pins_leave_out_every_dev_tool() -> None:
    dev = {
        canonicalize_name(Requirement(line).name)
        for line in distribution("metering").requires or []
        if "extra ==" in line and '"dev"' in line
    }
    assert {"pytest", "mypy", "ruff", "testcontainers"} <= dev
    assert pinned_names(runtime_lock()) & dev == set()


def test_the_runtime_pins_are_the_lock_s_own_lines_with_their_hashes() -> None:
    kept = runtime_lock()
    runtime = {
        canonicalize_name(Requirement(line).name)
        for line in distribution("metering").requires or []
        if "extra ==" not in line
    }
    assert runtime <= pinned_names(kept)
    lock_lines = set(LOCK.read_text().splitlines())
    body = [line for line in kept.splitlines() if not line.startswith("#")]
    assert set(body) <= lock_lines
    assert sum("--hash=sha256:" in line for line in body) >= len(pinned_names(kept))
