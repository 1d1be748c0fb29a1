"""Fixtures on real services: the local Kafka broker and PostgreSQL server.

A session brings the services up (or reuses running ones); each test gets a fresh
database cloned from a migrated template, and its own topics and consumer group.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from metering.config import PROJECT_ROOT, Settings
from metering.services import KafkaBroker, PostgresServer
from metering.services.process import free_port
from metering.store import logins, migrate
from metering.wire.kafka_admin import delete_topics, worker_topics

TEMPLATE_DB = "metering_test_template"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def postgres(base_settings: Settings) -> Iterator[PostgresServer]:
    server = PostgresServer(base_settings)
    was_running = server.status().running
    server.up()
    yield server
    if not was_running:
        server.down()


@pytest.fixture(scope="session")
def kafka(base_settings: Settings) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(base_settings)
    was_running = broker.status().running
    broker.up()
    yield broker
    if not was_running:
        broker.down()


def admin_dsn(settings: Settings) -> str:
    return f"host=127.0.0.1 port={settings.pg_port} user={settings.pg_user} dbname=postgres"


def database_url(settings: Settings, name: str) -> str:
    return f"postgresql+psycopg://{settings.pg_user}@127.0.0.1:{settings.pg_port}/{name}"


@pytest.fixture(scope="session")
def migrated_template(postgres: PostgresServer, base_settings: Settings) -> str:
    with psycopg.connect(admin_dsn(base_settings), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    migrate.upgrade(database_url(base_settings, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def empty_database(postgres: PostgresServer, base_settings: Settings) -> Iterator[str]:
    """A fresh, empty database's URL (no schema)."""
    yield from scratch_database(base_settings, template="template0")


@pytest.fixture
def database(migrated_template: str, base_settings: Settings) -> Iterator[str]:
    """A fresh database at the head revision; its URL."""
    yield from scratch_database(base_settings, template=migrated_template)


def scratch_database(settings: Settings, template: str) -> Iterator[str]:
    """Creates a database from ``template``, yields its URL, then drops it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn(settings), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield database_url(settings, name)
    with psycopg.connect(admin_dsn(settings), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def isolated_settings(base_settings: Settings, database_url: str) -> Settings:
    """Settings with their own database, topics, consumer group and web port."""
    suffix = uuid.uuid4().hex[:10]
    return base_settings.model_copy(
        update={
            "database_url": database_url,
            "topic_usage": f"usage.events.{suffix}",
            "topic_dlq": f"usage.events.dlq.{suffix}",
            "topic_quota_state": f"quota.state.{suffix}",
            "topic_quota_alerts": f"quota.alerts.{suffix}",
            "group_id": f"metering-test-{suffix}",
            "worker_web_port": free_port(),
            "batch_window_s": 0.2,
        }
    )


@pytest.fixture
def settings(base_settings: Settings, database: str, kafka: KafkaBroker) -> Iterator[Settings]:
    """Settings for one test: its own database, topics and consumer group (topics deleted
    afterwards, so that a long-lived local broker does not collect them)."""
    isolated = isolated_settings(base_settings, database)
    yield isolated
    asyncio.run(delete_topics(isolated, worker_topics(isolated)))


class WorkerProcess:
    """A real `metering worker` process, stopped gently or killed like a crash."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        cwd: Path = PROJECT_ROOT,
        *,
        args: Sequence[str] = (),
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metering.cli", "worker", *args],
            env=settings.child_env(),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the worker log:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def terminate(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator:
    workers: list[WorkerProcess] = []

    def start(worker_settings: Settings | None = None, cwd: Path = PROJECT_ROOT) -> WorkerProcess:
        """Starts a worker in ``cwd``; the first one serves HTTP on the settings' port,
        later ones on ports of their own (unless the port is left for them to choose)."""
        chosen = worker_settings or settings
        if workers and chosen.worker_web_port:
            chosen = chosen.model_copy(update={"worker_web_port": free_port()})
        worker = WorkerProcess(chosen, tmp_path / f"worker-{len(workers)}.log", cwd)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.kill()


@dataclass
class Logins:
    """Real login roles for one test, and connections that log in as them. Roles are shared
    by every database of the server, so their names are unique and they are dropped after
    the test (with the privileges the test granted them in its database)."""

    settings: Settings
    roles: list[str] = field(default_factory=list)
    connections: list[psycopg.Connection] = field(default_factory=list)

    def new_role(self, prefix: str = "login") -> str:
        """A fresh role name; ``grant`` (or the test) creates the role."""
        role = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.roles.append(role)
        return role

    def grant(self, tenant_id: str, role: str | None = None) -> str:
        """Makes ``role`` (a new one by default) a login of ``tenant_id``; its name."""
        role = role or self.new_role(tenant_id)
        with psycopg.connect(self.settings.psycopg_dsn) as admin:
            logins.grant_login(admin, tenant_id, role)
        return role

    def connect(self, role: str) -> psycopg.Connection:
        """A session that logged in as ``role`` (the local server trusts 127.0.0.1)."""
        connection = psycopg.connect(
            make_conninfo(self.settings.psycopg_dsn, user=role), autocommit=True
        )
        self.connections.append(connection)
        return connection

    def drop_all(self) -> None:
        for connection in self.connections:
            connection.close()
        with psycopg.connect(self.settings.psycopg_dsn, autocommit=True) as admin:
            for role in self.roles:
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def login_roles(settings: Settings) -> Iterator[Logins]:
    """Login roles in the test's database (see ``Logins``)."""
    roles = Logins(settings)
    yield roles
    roles.drop_all()
