"""Scratch databases: made for one test or benchmark run on the server of
``settings.database_url``, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from metering.config import Settings
from metering.store import migrate


def database_url(settings: Settings, name: str) -> str:
    """``settings.database_url`` pointing at database ``name`` instead."""
    return make_url(settings.database_url).set(database=name).render_as_string(False)


def admin_dsn(settings: Settings) -> str:
    """A psycopg DSN of the server's ``postgres`` database, where databases are made."""
    url = make_url(settings.database_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(False)


def create_database(settings: Settings, name: str, *, template: str | None = None) -> str:
    """Creates database ``name`` (a copy of ``template`` if given, which must have no other
    sessions; else empty), replacing one left over by an earlier run; its URL."""
    with psycopg.connect(admin_dsn(settings), autocommit=True) as conn:
        drop_if_exists(conn, name)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)
    return database_url(settings, name)


def drop_database(settings: Settings, name: str) -> None:
    """Drops database ``name`` if it exists, ending its sessions."""
    with psycopg.connect(admin_dsn(settings), autocommit=True) as conn:
        drop_if_exists(conn, name)


def drop_if_exists(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(
    settings: Settings,
    *,
    prefix: str = "scratch",
    template: str | None = None,
    migrated: bool = True,
) -> Iterator[str]:
    """A new database named ``<prefix>_<random>`` while the block runs; its URL.

    A copy of ``template`` when one is given (cloning a migrated template is much faster than
    migrating); otherwise empty and brought to the head revision by the project's
    migrations, as `metering db upgrade` does it, unless ``migrated`` is false.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = create_database(settings, name, template=template)
    try:
        if template is None and migrated:
            migrate.upgrade(url)
        yield url
    finally:
        drop_database(settings, name)
