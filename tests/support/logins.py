"""Real PostgreSQL login roles for a test, and sessions that log in as them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from metering.config import Settings
from metering.store import logins


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
