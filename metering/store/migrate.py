"""Brings a database to a schema revision with Alembic; the only way the schema changes."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from metering.config import RESOURCE_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(RESOURCE_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(RESOURCE_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=False)
