"""The floor: real Kafka, real PostgreSQL, migrations, and a worker that joins its group."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from metering.config import PROJECT_ROOT, Settings
from metering.db import migrate
from metering.services import KafkaBroker


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


def test_the_worker_joins_its_consumer_group(settings: Settings, start_worker) -> None:
    worker = start_worker()

    async def group_members() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            for _ in range(120):
                try:
                    [response] = await admin.describe_consumer_groups([settings.group_id])
                    [group] = response.to_object()["groups"]
                except GroupCoordinatorNotAvailableError:  # the group does not exist yet
                    group = {}
                if group.get("state") == "Stable" and group["members"]:
                    return len(group["members"])
                await asyncio.sleep(0.5)
            return 0
        finally:
            await admin.close()

    assert asyncio.run(group_members()) == 1
    assert worker.terminate() == 0


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="no `docker compose` client on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
