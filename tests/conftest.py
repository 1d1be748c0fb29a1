"""Fixtures on real services: the local Kafka broker and PostgreSQL server.

A session brings the services up (or reuses running ones); each test gets a fresh
database cloned from a migrated template, and its own topics and consumer group. The
fixtures are a thin layer over ``metering.services`` (worker process, scratch databases),
which the benchmarks share; the helpers tests call are in ``tests.support``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from metering.config import PROJECT_ROOT, Settings
from metering.services import KafkaBroker, PostgresServer
from metering.services.process import free_port
from metering.services.scratch import create_database, scratch_database
from metering.services.worker import WorkerProcess
from metering.store import migrate
from metering.wire.kafka_admin import delete_topics, worker_topics
from tests.support.logins import Logins
from tests.support.settings import isolated_settings
from tests.support.workers import StartWorker

TEMPLATE_DB = "metering_test_template"
UPGRADED_FROM_EMPTY = "upgraded_from_empty"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{UPGRADED_FROM_EMPTY}: the test's database is migrated from empty, as `metering db"
        " upgrade` does it, not cloned from the migrated template (a clone does not carry the"
        " database's own privileges)",
    )


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


Service = TypeVar("Service", PostgresServer, KafkaBroker)


def running(service: Service) -> Iterator[Service]:
    """The service, started unless it runs already; stopped afterwards if it was started."""
    was_running = service.status().running
    service.up()
    yield service
    if not was_running:
        service.down()


@pytest.fixture(scope="session")
def postgres(base_settings: Settings) -> Iterator[PostgresServer]:
    yield from running(PostgresServer(base_settings))


@pytest.fixture(scope="session")
def kafka(base_settings: Settings) -> Iterator[KafkaBroker]:
    yield from running(KafkaBroker(base_settings))


@pytest.fixture(scope="session")
def migrated_template(postgres: PostgresServer, base_settings: Settings) -> str:
    migrate.upgrade(create_database(base_settings, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def empty_database(postgres: PostgresServer, base_settings: Settings) -> Iterator[str]:
    """A fresh, empty database's URL (no schema)."""
    with scratch_database(base_settings, prefix="test", migrated=False) as url:
        yield url


@pytest.fixture
def database(
    request: pytest.FixtureRequest, postgres: PostgresServer, base_settings: Settings
) -> Iterator[str]:
    """A fresh database at the head revision; its URL. Cloned from the migrated template,
    or, for a test marked ``upgraded_from_empty``, migrated from empty."""
    if request.node.get_closest_marker(UPGRADED_FROM_EMPTY):
        with scratch_database(base_settings, prefix="test") as url:
            yield url
        return
    template = request.getfixturevalue("migrated_template")
    with scratch_database(base_settings, prefix="test", template=template) as url:
        yield url


@pytest.fixture
def settings(
    base_settings: Settings, database: str, kafka: KafkaBroker, tmp_path: Path
) -> Iterator[Settings]:
    """Settings for one test: its own database, topics, consumer group and worker files
    (topics deleted afterwards, so that a long-lived local broker does not collect them)."""
    isolated = isolated_settings(base_settings, database, tmp_path)
    yield isolated
    asyncio.run(delete_topics(isolated, worker_topics(isolated)))


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[StartWorker]:
    workers: list[WorkerProcess] = []

    def start(worker_settings: Settings | None = None, cwd: Path = PROJECT_ROOT) -> WorkerProcess:
        """Starts a worker in ``cwd``; the first one serves HTTP on the settings' port,
        later ones on ports of their own (unless the port is left for them to choose)."""
        chosen = worker_settings or settings
        if workers and chosen.worker_web_port:
            chosen = chosen.model_copy(update={"worker_web_port": free_port()})
        worker = WorkerProcess(chosen, tmp_path / f"worker-{len(workers)}.log", cwd=cwd)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.kill()


@pytest.fixture
def login_roles(settings: Settings) -> Iterator[Logins]:
    """Login roles in the test's database (see ``Logins``)."""
    roles = Logins(settings)
    yield roles
    roles.drop_all()
