"""Every mistake a user can make on the command line is answered in one line, never a traceback.

Each test runs `metering` as a process, as a user would, and checks the exit code (2 for a
mistake in the command, 1 for a failure of what it needs), that stderr is exactly one line and
that it says what to do.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from metering.config import PROJECT_ROOT
from metering.services.process import free_port
from tests.support import cli

CLOSED_DATABASE = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/metering"
CLOSED_KAFKA = f"127.0.0.1:{free_port()}"


def metering(
    *args: str, database_url: str | None = None, cwd: Path = PROJECT_ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """Runs `metering ARGS` in ``cwd`` against ``database_url`` (and the environment's Kafka)."""
    if database_url is not None:
        env["METERING_DATABASE_URL"] = database_url
    return cli.metering(None, *args, env=env, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    """The single stderr line of a refused command."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def catalog_db(database: str) -> str:
    """A migrated database with tenant acme-corp and model grok-3."""
    for args in (("tenants", "add", "acme-corp"), ("models", "add", "grok-3", "--provider", "xai")):
        assert metering(*args, database_url=database).returncode == 0
    return database


@pytest.mark.parametrize("args", [["db", "current"], ["tenants", "list"], ["invoices", "list"]])
def test_a_database_that_is_down_is_named_with_what_to_do(args: list[str]) -> None:
    line = one_line_error(metering(*args, database_url=CLOSED_DATABASE), 1)
    host_port = CLOSED_DATABASE.split("@")[1].split("/")[0]
    assert f"the database at {host_port} is not reachable" in line
    assert "metering services up" in line and "METERING_DATABASE_URL" in line


def test_a_kafka_that_is_down_is_named_with_what_to_do() -> None:
    result = metering("produce", "--events", "1", METERING_KAFKA_BOOTSTRAP=CLOSED_KAFKA)
    line = one_line_error(result, 1)
    assert f"Kafka at {CLOSED_KAFKA} is not reachable" in line
    assert "METERING_KAFKA_BOOTSTRAP" in line


def test_a_setting_that_does_not_parse_is_named_with_its_variable() -> None:
    line = one_line_error(metering("tenants", "list", METERING_WORKER_WEB_PORT="sixty"), 2)
    assert "METERING_WORKER_WEB_PORT='sixty'" in line
    assert "valid integer" in line


EXPORT_OCTOBER = ["invoices", "export", "--period", "2026-10", "--format", "json"]


def test_an_export_into_a_file_or_an_uncreatable_directory_is_refused(
    catalog_db: str, tmp_path: Path
) -> None:
    a_file = tmp_path / "summary.json"
    a_file.write_text("{}")
    for out, says in ((a_file, "is a file"), (a_file / "sub", "cannot be created")):
        result = metering(*EXPORT_OCTOBER, "--out", str(out), database_url=catalog_db)
        assert says in one_line_error(result, 2)


PERIOD_COMMANDS = [
    ["invoices", "close"],
    ["invoices", "list"],
    ["invoices", "preview", "--tenant", "acme-corp"],
    ["invoices", "export", "--format", "json", "--out", "unused"],
    ["quota", "spend"],
    ["produce", "--events", "1"],
]


@pytest.mark.parametrize("command", PERIOD_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("period", "says"), [("9999-12", "beyond the supported range"), ("2026-13", "not a month")]
)
def test_a_period_that_is_no_month_or_out_of_range_is_refused(
    catalog_db: str, command: list[str], period: str, says: str
) -> None:
    result = metering(*command, "--period", period, database_url=catalog_db)
    assert says in one_line_error(result, 2)


TENANT_COMMANDS = [
    ["usage", "--tenant", "acme-crop"],
    ["invoices", "preview", "--tenant", "acme-crop"],
    ["invoices", "close", "--period", "2026-10", "--tenant", "acme-crop"],
    ["invoices", "list", "--tenant", "acme-crop"],
    [*EXPORT_OCTOBER, "--out", "x", "--tenant", "acme-crop"],
    ["quota", "set", "--tenant", "acme-crop", "--kind", "tokens_per_period", "--limit", "10"],
    ["quota", "list", "--tenant", "acme-crop"],
    ["quota", "remove", "--tenant", "acme-crop", "--kind", "tokens_per_period"],
    ["quota", "alerts", "--tenant", "acme-crop"],
    ["tenants", "set", "acme-crop", "--discount-percent", "5"],
    ["tenants", "contract", "acme-crop"],
    [
        "tenants",
        "override",
        "acme-crop",
        "--model",
        "grok-3",
        "--token-class",
        "input",
        "--tier",
        "standard",
        "--price",
        "1.00",
    ],
    ["tenants", "grant-login", "--tenant", "acme-crop", "--role", "nobody_role"],
    ["tenants", "revoke-login", "--tenant", "acme-crop", "--role", "nobody_role"],
    ["tenants", "logins", "--tenant", "acme-crop"],
]


@pytest.mark.parametrize("command", TENANT_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unknown_tenant_is_an_error_with_the_closest_one(
    catalog_db: str, command: list[str], tmp_path: Path
) -> None:
    result = metering(*command, database_url=catalog_db, cwd=tmp_path)  # --out x: in tmp_path
    line = one_line_error(result, 2)
    assert "unknown tenant 'acme-crop' (did you mean 'acme-corp'?)" in line
    assert "metering tenants list" in line


MODEL_COMMANDS = [
    ["usage", "--model", "grok-33"],
    ["prices", "list", "--model", "grok-33"],
    [
        "quota",
        "set",
        "--tenant",
        "acme-corp",
        "--model",
        "grok-33",
        "--kind",
        "tokens_per_period",
        "--limit",
        "10",
    ],
    [
        "quota",
        "remove",
        "--tenant",
        "acme-corp",
        "--model",
        "grok-33",
        "--kind",
        "tokens_per_period",
    ],
    [
        "tenants",
        "override",
        "acme-corp",
        "--model",
        "grok-33",
        "--token-class",
        "input",
        "--tier",
        "standard",
        "--price",
        "1.00",
    ],
]


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unknown_model_is_an_error_with_the_closest_one(
    catalog_db: str, command: list[str]
) -> None:
    line = one_line_error(metering(*command, database_url=catalog_db), 2)
    assert "unknown model 'grok-33' (did you mean 'grok-3'?)" in line


def test_a_window_whose_start_is_not_before_its_end_is_refused(catalog_db: str) -> None:
    result = metering(
        "usage", "--from", "2026-10-05", "--to", "2026-10-01", database_url=catalog_db
    )
    assert "--from 2026-10-05 is not before --to 2026-10-01" in one_line_error(result, 2)


def test_a_percentage_out_of_range_is_said_in_the_users_words(catalog_db: str) -> None:
    result = metering(
        "tenants", "set", "acme-corp", "--discount-percent", "150", database_url=catalog_db
    )
    line = one_line_error(result, 2)
    assert "--discount-percent 150 must be from 0 to 100" in line
    assert "Decimal(" not in line


PRICE_BLOCK = """\
currency: {currency}
prices:
  - model: {model}
    effective_from: 2026-01-01
    standard: {{input: {input}, output: 2.00}}
"""


def prices_listed(database_url: str) -> str:
    listed = metering(
        "prices", "list", "--at", "2026-06-01", "--format", "csv", database_url=database_url
    )
    return listed.stdout


@pytest.mark.parametrize(
    ("currency", "price", "says"),
    [
        ("UDS", "1.50", "currency 'UDS' must be an ISO 4217 code"),
        ("USD", "-150", "-150 must not be negative"),
    ],
)
def test_a_price_file_with_an_unknown_currency_or_a_negative_price_imports_nothing(
    catalog_db: str, tmp_path: Path, currency: str, price: str, says: str
) -> None:
    file = tmp_path / "prices.yaml"
    file.write_text(PRICE_BLOCK.format(currency=currency, model="grok-3", input=price))
    line = one_line_error(metering("prices", "import", str(file), database_url=catalog_db), 2)
    assert says in line
    assert "grok-3" not in prices_listed(catalog_db)


def test_prices_of_a_model_missing_from_the_catalog_are_imported_with_a_warning(
    catalog_db: str, tmp_path: Path
) -> None:
    file = tmp_path / "prices.yaml"
    file.write_text(PRICE_BLOCK.format(currency="USD", model="grok-33", input="1.50"))
    result = metering("prices", "import", str(file), database_url=catalog_db)
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()
    assert "models not in the catalog: grok-33 (did you mean grok-3?)" in warning
    assert "grok-33" in prices_listed(catalog_db)


def test_a_usage_mistake_is_one_line_naming_the_help(catalog_db: str) -> None:
    result = metering("usage", "--bogus", database_url=catalog_db)
    line = one_line_error(result, 2)
    assert "--bogus" in line and "metering usage --help" in line
