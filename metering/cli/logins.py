"""`metering tenants grant-login | revoke-login | logins`: the database logins that read one
tenant's rows in schema ``reporting``. ``register(tenants_app)`` adds them."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer

from metering.cli import arguments as cli_input
from metering.cli.output import Format, render
from metering.cli.support import FormatOption, database, fail


def tenants_grant_login(
    tenant: Annotated[str, typer.Option(help="The tenant whose rows the login reads.")],
    role: Annotated[
        str, typer.Option(help="The login role; created (LOGIN, no password) if it is absent.")
    ],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Set the role's password to the first line of standard input.",
        ),
    ] = False,
) -> None:
    """Let a database login read one tenant's rows in schema reporting, and nothing else.

    The role is created if it does not exist (LOGIN; give it a password with
    --password-stdin, or your own ALTER ROLE), granted metering_tenant and mapped to the
    tenant. What it sees follows the role it logged in as: SET, set_config, SET ROLE and
    RESET change nothing. One tenant per login; a tenant may have several.
    """
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise fail("--password-stdin: standard input has no password on its first line")
    from metering.billing.logins import TENANT_ROLE
    from metering.store import logins

    with database() as conn:
        cli_input.known_tenant(conn, tenant)
        granted = logins.grant_login(conn, tenant, role, password)
    if granted.already:
        what = "was already a login of"
    elif granted.created:
        what = "created (LOGIN) and made a login of"
    else:
        what = "is now a login of"
    suffix = "; password set" if password is not None else ""
    typer.echo(f"role {role} {what} tenant {tenant} (member of {TENANT_ROLE}){suffix}")


def tenants_revoke_login(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    role: Annotated[str, typer.Option(help="A login role of that tenant.")],
) -> None:
    """Stop a login from reading a tenant's rows; it sees no tenant's rows from then on.

    The role itself and its membership in metering_tenant are kept (roles are shared by
    every database of the server); DROP ROLE it yourself when nothing else uses it.
    """
    from metering.store import logins

    with database() as conn:
        cli_input.known_tenant(conn, tenant)
        logins.revoke_login(conn, tenant, role)
    typer.echo(f"role {role} no longer reads tenant {tenant}'s rows")


def tenants_logins(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's logins.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the login roles of tenants (role_exists is false for a role dropped since)."""
    from metering.store import logins

    with database() as conn:
        cli_input.known(conn, tenant=tenant)
        rows = [asdict(login) for login in logins.list_logins(conn, tenant)]
    typer.echo(render(rows, ["role", "tenant_id", "granted_at", "role_exists"], fmt))


def register(tenants_app: typer.Typer) -> None:
    tenants_app.command("grant-login")(tenants_grant_login)
    tenants_app.command("revoke-login")(tenants_revoke_login)
    tenants_app.command("logins")(tenants_logins)
