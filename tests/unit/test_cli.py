"""The command line explains itself and says what to do when something is wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metering.cli.app import app
from metering.config import Settings
from metering.services import ServiceError
from metering.services.postgres import PostgresServer

runner = CliRunner()


def command_paths() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command, path: list[str]) -> None:  # type: ignore[no-untyped-def]
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(group, [])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "metering")
def test_every_command_explains_itself_in_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    help_text = result.output.split("Usage:", 1)[1]
    assert len(help_text.strip().splitlines()) >= 3


def test_a_busy_port_is_named_with_the_variable_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(state_dir=tmp_path, pg_port=port)
        with pytest.raises(ServiceError) as error:
            PostgresServer(settings).up()
    assert f"port {port}" in str(error.value)
    assert "METERING_PG_PORT" in str(error.value)


def test_services_env_prints_lines_a_shell_can_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERING_KAFKA_PORT", "29092")
    from metering.config import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["services", "env"])
    get_settings.cache_clear()
    assert "export METERING_KAFKA_BOOTSTRAP=127.0.0.1:29092" in result.output
    assert "export METERING_DATABASE_URL=postgresql+psycopg://" in result.output


HEAVY = ("sqlalchemy", "psycopg", "alembic", "faust", "aiokafka", "fpdf")
"""What no `--help` may load: the database and Kafka clients, the stream framework, the PDF
writer. A command loads what it needs when it runs, so that `metering` starts quickly."""

HELP_THEN_LIST_MODULES = f"""
import sys
from metering.cli.app import app
try:
    app(sys.argv[1:])
finally:
    print(*(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "command", [[], ["usage"], ["invoices", "export"], ["quota", "set"], ["worker"]], ids=" ".join
)
def test_help_loads_no_database_kafka_stream_or_pdf_library(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HELP_THEN_LIST_MODULES, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert result.stderr.split() == []
