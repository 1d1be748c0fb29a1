"""Tenant logins: the database roles that read one tenant's rows in schema ``reporting``.

Pure: which role names may become a tenant login and what a role's attributes mean for
it. The database side (``metering.store.logins``) looks the role up and stores the mapping
that the row-level security policies read through ``session_user``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

READER_ROLE: Final = "metering_reader"
TENANT_ROLE: Final = "metering_tenant"

# Plain names a connection string can carry unquoted; PostgreSQL's limit is 63 bytes.
_ROLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True, slots=True)
class RoleFacts:
    """What the database says about an existing role."""

    can_login: bool
    superuser: bool
    bypasses_rls: bool
    member_of_reader: bool  # may SET ROLE metering_reader, which reads every tenant
    member_of_owner: bool  # may act as the owner of the tables, which RLS does not limit


def role_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a tenant login, or None."""
    if not _ROLE_NAME.fullmatch(name):
        return (
            f"role name {name!r} is not 1-63 characters of A-Za-z0-9._- starting with a letter or _"
        )
    if name.lower().startswith("pg_"):
        return f"role name {name!r} is reserved: names starting with pg_ belong to PostgreSQL"
    if name in (READER_ROLE, TENANT_ROLE):
        return f"{name} is a group role of the metering database, not a login: choose another"
    return None


def role_problem(name: str, facts: RoleFacts) -> str | None:
    """Why the existing role ``name`` cannot be a tenant login, or None.

    Isolation is keyed on the role that logs in (``session_user``), so a NOLOGIN group
    role would give its members nothing; a role that can read every tenant's rows anyway
    would make the mapping a lie.
    """
    if not facts.can_login:
        return (
            f"role {name} cannot log in (NOLOGIN): isolation follows the role a session logs"
            f" in as, not its groups; ALTER ROLE {name} LOGIN, or name the login itself"
        )
    everything = [
        reason
        for reason, applies in (
            ("a superuser", facts.superuser),
            ("BYPASSRLS", facts.bypasses_rls),
            (f"a member of {READER_ROLE}", facts.member_of_reader),
            ("a member of the tables' owner", facts.member_of_owner),
        )
        if applies
    ]
    if everything:
        return (
            f"role {name} reads every tenant's rows ({', '.join(everything)}): a tenant login"
            " must be a role of its own"
        )
    return None
