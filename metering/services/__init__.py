"""Provisioning of the local Kafka broker and PostgreSQL server, and what the tests and the
benchmarks run on them: a `metering worker` process (``worker``), scratch databases
(``scratch``) and the one wait, ``poll_until`` (``process``).

The machine this project targets has no Docker engine, so the project installs and
runs both itself, under ``METERING_STATE_DIR`` (default ``.local/``).
"""

from metering.config import Settings
from metering.services.kafka import KafkaBroker
from metering.services.postgres import PostgresServer
from metering.services.process import ServiceError, ServiceStatus

__all__ = [
    "KafkaBroker",
    "PostgresServer",
    "ServiceError",
    "ServiceStatus",
    "env_lines",
    "local_services",
]


def local_services(settings: Settings) -> tuple[PostgresServer, KafkaBroker]:
    """The services the pipeline needs, in the order they are started."""
    return PostgresServer(settings), KafkaBroker(settings)


def env_lines(settings: Settings) -> list[str]:
    """Shell lines that point a client at the local services."""
    return [
        f"export METERING_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}",
        f"export METERING_DATABASE_URL={settings.database_url}",
    ]
