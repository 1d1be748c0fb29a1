"""Tenant logins in PostgreSQL: roles, their membership in ``metering_tenant`` and the
``tenant_logins`` mapping the reporting policies read (migration 0006, docs/reports.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from metering.billing.logins import (
    READER_ROLE,
    TENANT_ROLE,
    RoleFacts,
    role_name_problem,
    role_problem,
)
from metering.store.billing.guards import require_tenant


class LoginError(ValueError):
    """Something about a tenant login a person has to fix; the message says what and how."""


@dataclass(frozen=True, slots=True)
class Granted:
    role: str
    tenant_id: str
    created: bool  # the role did not exist and was created (LOGIN)
    already: bool  # the role was a login of this tenant before


@dataclass(frozen=True, slots=True)
class TenantLogin:
    role: str
    tenant_id: str
    granted_at: datetime
    role_exists: bool


def _role_facts(conn: psycopg.Connection, role: str) -> RoleFacts | None:
    row = conn.execute(
        "SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls,"
        " pg_has_role(r.oid, %s, 'MEMBER'),"
        " pg_has_role(r.oid, (SELECT relowner FROM pg_class"
        "                      WHERE oid = 'public.tenant_logins'::regclass), 'MEMBER')"
        " FROM pg_roles r WHERE r.rolname = %s",
        (READER_ROLE, role),
    ).fetchone()
    return None if row is None else RoleFacts(*row)


def _mapped_tenant(conn: psycopg.Connection, role: str) -> str | None:
    row = conn.execute(
        "SELECT tenant_id FROM tenant_logins WHERE login_role = %s", (role,)
    ).fetchone()
    return None if row is None else str(row[0])


def grant_login(
    conn: psycopg.Connection, tenant_id: str, role: str, password: str | None = None
) -> Granted:
    """Makes ``role`` a login of ``tenant_id``: creates it (LOGIN) if it does not exist,
    grants it ``metering_tenant`` and maps it to the tenant, in one transaction. A
    ``password`` is sent as a SCRAM verifier computed here, never in clear text."""
    if problem := role_name_problem(role):
        raise LoginError(problem)
    try:
        with conn.transaction():
            require_tenant(conn, tenant_id)
            facts = _role_facts(conn, role)
            if facts is not None and (problem := role_problem(role, facts)):
                raise LoginError(problem)
            mapped = _mapped_tenant(conn, role)
            if mapped is not None and mapped != tenant_id:
                raise LoginError(
                    f"role {role} is the login of tenant {mapped}: revoke it first"
                    f" (`metering tenants revoke-login --tenant {mapped} --role {role}`)"
                )
            name = sql.Identifier(role)
            if facts is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
            if password is not None:
                verifier = conn.pgconn.encrypt_password(password.encode(), role.encode())
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        name, sql.Literal(verifier.decode())
                    )
                )
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(TENANT_ROLE), name))
            conn.execute(
                "INSERT INTO tenant_logins (login_role, tenant_id) VALUES (%s, %s)"
                " ON CONFLICT (login_role) DO NOTHING",
                (role, tenant_id),
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise LoginError(
            f"the database user may not create or grant roles ({exc.diag.message_primary}):"
            f" run this as a user with CREATEROLE, or create role {role} and grant it"
            f" {TENANT_ROLE} yourself first"
        ) from None
    except psycopg.errors.DuplicateObject:
        raise LoginError(f"role {role} was created meanwhile: run the command again") from None
    return Granted(role, tenant_id, created=facts is None, already=mapped == tenant_id)


def revoke_login(conn: psycopg.Connection, tenant_id: str, role: str) -> None:
    """Removes ``role`` from ``tenant_id``'s logins: from the next statement on, sessions
    of that role see no tenant's rows. The role and its membership in ``metering_tenant``
    stay: roles are shared by every database of the server."""
    with conn.transaction():
        require_tenant(conn, tenant_id)
        deleted = conn.execute(
            "DELETE FROM tenant_logins WHERE login_role = %s AND tenant_id = %s",
            (role, tenant_id),
        ).rowcount
        if deleted:
            return
        mapped = _mapped_tenant(conn, role)
    whose = f"it is the login of tenant {mapped}" if mapped else "it is no tenant's login"
    raise LoginError(
        f"role {role} is not a login of tenant {tenant_id} ({whose}); see `metering tenants logins`"
    )


def list_logins(conn: psycopg.Connection, tenant_id: str | None = None) -> list[TenantLogin]:
    rows = conn.execute(
        "SELECT l.login_role, l.tenant_id, l.granted_at, r.oid IS NOT NULL"
        " FROM tenant_logins l LEFT JOIN pg_roles r ON r.rolname = l.login_role"
        " WHERE %(tenant)s::text IS NULL OR l.tenant_id = %(tenant)s"
        " ORDER BY l.tenant_id, l.login_role",
        {"tenant": tenant_id},
    )
    return [TenantLogin(*row) for row in rows]
