"""docker-compose.yml offers the same services and settings as the local provisioning."""

from __future__ import annotations

import yaml

from metering.config import PROJECT_ROOT, Settings


def test_compose_runs_kafka_postgres_migrations_and_the_worker() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"kafka", "postgres", "migrate", "worker"}
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_compose_configures_the_worker_with_metering_variables_that_exist() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["worker"]["environment"]
    known = {f"METERING_{name.upper()}" for name in Settings.model_fields}
    assert {"METERING_KAFKA_BOOTSTRAP", "METERING_DATABASE_URL"} <= set(env)
    assert set(env) <= known
