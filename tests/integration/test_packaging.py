"""The built wheel works outside a checkout: it carries the migrations, alembic.ini and the
example prices, and an install of only the runtime pins (as the Docker image does it)
migrates a database from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from metering.config import PROJECT_ROOT
from metering.store import migrate

DEV_TOOLS = ("pytest", "mypy", "ruff", "testcontainers", "compose")


def pip(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--quiet", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from what `docker build` is sent: the checkout less
    .dockerignore (whose entries are all plain names)."""
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    context = tmp_path_factory.mktemp("context") / "src"
    shutil.copytree(PROJECT_ROOT, context, ignore=shutil.ignore_patterns(*ignored))
    out = tmp_path_factory.mktemp("dist")
    pip("wheel", "--no-deps", "--wheel-dir", out, context)
    [built] = out.glob("metering-*.whl")
    return built


@pytest.fixture(scope="module")
def runtime_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the runtime pins of requirements.lock and the wheel, installed
    the way the Dockerfile's final stage does; its bin/ folder."""
    work = tmp_path_factory.mktemp("runtime")
    lock = work / "runtime.lock"
    with lock.open("w") as out:
        subprocess.run(
            [sys.executable, PROJECT_ROOT / "scripts" / "runtime-lock", "requirements.lock"],
            cwd=PROJECT_ROOT,
            stdout=out,
            check=True,
        )
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = ("--python", venv / "bin" / "python")
    pip(*python, "install", "--no-compile", "--require-hashes", "--no-deps", "-r", lock)
    pip(*python, "install", "--no-compile", "--no-deps", wheel)
    pip(*python, "check")
    yield venv / "bin"
    shutil.rmtree(work)


def test_the_wheel_carries_the_migrations_alembic_ini_and_the_example_prices(wheel: Path) -> None:
    migrations, prices = PROJECT_ROOT / "migrations", PROJECT_ROOT / "prices"
    files = [
        PROJECT_ROOT / "alembic.ini",
        *migrations.rglob("*.py"),
        *migrations.glob("*.mako"),
        *(path for path in prices.iterdir() if path.is_file()),
    ]
    shipped = {f"metering/_bundled/{path.relative_to(PROJECT_ROOT)}" for path in files}
    bundled = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("metering/_bundled/")}
    assert "metering/_bundled/prices/list-prices.yaml" in shipped
    assert bundled == shipped  # all of them, and nothing else from the top of the checkout


def test_the_installed_wheel_upgrades_a_database_to_head_from_outside_a_checkout(
    runtime_venv: Path, empty_database: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METERING_", "PYTHON"))}
    env["METERING_DATABASE_URL"] = empty_database
    subprocess.run([runtime_venv / "metering", "db", "upgrade"], cwd=tmp_path, env=env, check=True)

    head = ScriptDirectory.from_config(migrate.alembic_config(empty_database)).get_current_head()
    engine = sa.create_engine(empty_database)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


def test_the_runtime_install_carries_no_dev_tools(runtime_venv: Path) -> None:
    found = subprocess.run(
        [
            runtime_venv / "python",
            "-c",
            "import importlib.util, sys;"
            "print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])",
            *DEV_TOOLS,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split() == []
