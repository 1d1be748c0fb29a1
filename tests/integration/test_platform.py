"""The floor: real Kafka, real PostgreSQL, migrations, and a worker that joins its group."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from metering.config import Settings
from metering.services import KafkaBroker
from metering.services.worker import WorkerProcess
from metering.store import migrate
from tests.support.cli import metering
from tests.support.quota import ask_quota
from tests.support.workers import StartWorker


def test_a_message_produced_to_the_broker_can_be_read_back(kafka: KafkaBroker) -> None:
    topic = f"roundtrip.{uuid.uuid4().hex[:8]}"

    async def roundtrip() -> tuple[bytes | None, bytes | None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.address, enable_idempotence=True, acks="all"
        )
        await producer.start()
        await producer.send_and_wait(topic, b"hello, kafka", key=b"acme")
        await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka.address, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
        return record.key, record.value

    assert asyncio.run(roundtrip()) == (b"acme", b"hello, kafka")


def test_a_row_round_trips_through_postgres_with_sqlalchemy(database: str) -> None:
    engine = sa.create_engine(database)
    tenants = sa.Table("tenants", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(tenants).values(tenant_id="acme", display_name="Acme Corp"))
    with engine.connect() as conn:
        row = conn.execute(sa.select(tenants.c.display_name).where(tenants.c.tenant_id == "acme"))
        assert row.scalar_one() == "Acme Corp"
    engine.dispose()


def test_migrations_upgrade_downgrade_and_upgrade_again(empty_database: str) -> None:
    def tables() -> set[str]:
        engine = sa.create_engine(empty_database)
        names = set(sa.inspect(engine).get_table_names())
        views = set(sa.inspect(engine).get_view_names(schema="reporting"))
        engine.dispose()
        return names | {f"reporting.{v}" for v in views}

    migrate.upgrade(empty_database)
    at_head = tables()
    assert {"tenants", "models", "usage_ledger", "reporting.usage_hourly"} <= at_head
    migrate.downgrade(empty_database, "base")
    assert tables() == {"alembic_version"}
    migrate.upgrade(empty_database)
    assert tables() == at_head


def stable_group_members(settings: Settings) -> int:
    """Members of the settings' consumer group once it is stable; 0 before."""

    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([settings.group_id])
            [group] = response.to_object()["groups"]
        except GroupCoordinatorNotAvailableError:  # the group does not exist yet
            return 0
        finally:
            await admin.close()
        return len(group["members"]) if group.get("state") == "Stable" else 0

    return asyncio.run(describe())


def test_the_worker_joins_its_consumer_group(settings: Settings, start_worker: StartWorker) -> None:
    worker = start_worker()
    members = worker.wait_until(
        lambda: stable_group_members(settings), "a stable group", timeout_s=60, interval_s=0.5
    )
    assert members == 1
    assert worker.terminate() == 0


QUOTA_API_LOG = re.compile(r"quota API on http://127\.0\.0\.1:(\d+)")


def quota_api_port(worker: WorkerProcess) -> int:
    [port] = QUOTA_API_LOG.findall(worker.log())
    return int(port)


def test_two_workers_on_one_host_each_serve_the_quota_api_on_a_port_of_their_own(
    settings: Settings, start_worker: StartWorker
) -> None:
    unset = settings.model_copy(update={"worker_web_port": None})  # METERING_WORKER_WEB_PORT
    first = start_worker(unset)
    first.wait_for_log("Worker]: Ready")
    second = start_worker(unset)
    second.wait_for_log("Worker]: Ready")

    ports = {quota_api_port(first), quota_api_port(second)}
    assert len(ports) == 2
    assert "set METERING_WORKER_WEB_PORT" in second.log()  # it says why it took another
    for port in ports:
        assert ask_quota(port, "nobody") == (
            404,
            {"error": "unknown_tenant", "detail": "no tenant 'nobody'"},
        )
    assert first.terminate() == 0
    assert second.terminate() == 0


def test_a_worker_given_a_port_that_is_taken_says_in_one_line_which_variable_to_set(
    settings: Settings,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = settings.model_copy(update={"worker_web_port": taken.getsockname()[1]})
        result = metering(busy, "worker", timeout_s=60)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: port {busy.worker_web_port} on 127.0.0.1")
    assert "set METERING_WORKER_WEB_PORT to a free port" in line


def test_the_worker_keeps_its_files_under_the_state_dir_not_in_the_working_directory(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """As in the Docker image, where the working directory is not the worker's to write."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    state = settings.model_copy(update={"state_dir": tmp_path / "state", "worker_data_dir": None})
    worker = start_worker(state, cwd=cwd)
    worker.wait_for_log("Worker]: Ready")
    assert worker.terminate() == 0
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "state" / "worker" / settings.faust_app_id).is_dir()
