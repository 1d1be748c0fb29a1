"""Tenant logins on the real database: a login granted to one tenant sees that tenant's rows
in every view of schema ``reporting`` and none of another's, whatever it runs.

Each test gets a database migrated from empty (not cloned from the template), because the
migration's database privileges (no TEMPORARY for PUBLIC) are not copied by
``CREATE DATABASE ... TEMPLATE``. Sessions log in as real roles over TCP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from metering.billing.event_decoder import parse_event
from metering.billing.events import Catalog, UsageEvent
from metering.billing.invoices import Issuer
from metering.config import Settings
from metering.files.price_files import load_price_file
from metering.services import PostgresServer
from metering.services.scratch import admin_dsn, database_url, drop_database
from metering.store import catalog, migrate
from metering.store.billing.close import close_period
from metering.store.billing.price_imports import import_prices
from metering.store.ledger import Ledger
from tests.support.cli import metering
from tests.support.ingest import fetched
from tests.support.logins import Logins
from tests.support.usage import add_usage

TENANTS = ("acme", "globex")
# Every view a tenant login may read; each has a tenant_id column but revenue_by_model_daily.
TENANT_VIEWS = (
    "usage_hourly",
    "usage_daily",
    "invoices",
    "invoice_lines",
    "revenue_by_model_daily",
    "unbilled_usage",
    "quota_alerts",
)
TENANT_ID_VIEWS = tuple(v for v in TENANT_VIEWS if v != "revenue_by_model_daily")
PRICES = """\
currency: USD
prices:
  - model: m1
    effective_from: 2026-01-01
    standard: {input: 2.00, output: 8.00}
"""


def at(day: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, 9, tzinfo=UTC)


pytestmark = pytest.mark.upgraded_from_empty


@pytest.fixture
def admin(settings: Settings) -> Iterator[psycopg.Connection]:
    """The application's connection: the owner of the tables, not limited by the policies."""
    with psycopg.connect(settings.psycopg_dsn, autocommit=True) as connection:
        yield connection


def add_usage_of(conn: psycopg.Connection, tenant: str, at: datetime, tokens: int) -> None:
    """One event of model m1: ``tokens`` in, a tenth of that out."""
    add_usage(conn, tenant, "m1", at, input_tokens=tokens, output_tokens=tokens // 10)


def add_alert(conn: psycopg.Connection, tenant: str, threshold: int) -> None:
    conn.execute(
        "INSERT INTO quota_alerts (alert_id, tenant_id, limit_id, kind, hard, threshold,"
        " limit_amount, used, period_start, period_end, emitted_at)"
        " VALUES (%s, %s, %s, 'tokens_per_period', true, %s, 1000, %s, %s, %s, now())",
        (
            uuid.uuid4(),
            tenant,
            f"{tenant}:*:tokens_per_period",
            threshold,
            threshold * 10,
            at(1, 11),
            at(1, 12),
        ),
    )


@pytest.fixture
def world(admin: psycopg.Connection, tmp_path: Path) -> psycopg.Connection:
    """acme and globex, each with rows in every tenant view: an invoiced October, usage that
    arrived after it was closed (late), November's usage (not invoiced) and quota alerts."""
    catalog.add_tenants(admin, [catalog.TenantRow(t, t.title()) for t in TENANTS])
    catalog.add_models(admin, [catalog.ModelRow("m1", "meta", "M1")])
    (tmp_path / "prices.yaml").write_text(PRICES)
    import_prices(admin, load_price_file(tmp_path / "prices.yaml"))
    for n, tenant in enumerate(TENANTS, start=1):
        add_usage_of(admin, tenant, at(3), 1_000_000 * n)
        add_usage_of(admin, tenant, at(12), 300_000 * n)
    close_period(
        admin,
        "2026-10",
        now=datetime.now(UTC),
        grace=timedelta(hours=24),
        late_window=timedelta(days=36_500),
        issuer=Issuer("LLM Hosting Platform"),
    )
    for n, tenant in enumerate(TENANTS, start=1):
        add_usage_of(admin, tenant, at(20), 5_000 * n)  # late for the closed October
        add_usage_of(admin, tenant, at(2, 11), 7_000 * n)
        add_alert(admin, tenant, 50)
        add_alert(admin, tenant, 80)
    return admin


def seen(
    conn: psycopg.Connection, views: tuple[str, ...] = TENANT_VIEWS
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the views, as ``conn`` sees them."""
    return {
        view: sorted(conn.execute(f"SELECT * FROM reporting.{view}").fetchall(), key=repr)
        for view in views
    }


def own_rows(admin: psycopg.Connection, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a login of ``tenant`` must see of the views with a tenant_id: its rows, as the
    owner of the tables reads them."""
    return {
        view: sorted(
            admin.execute(
                f"SELECT * FROM reporting.{view} WHERE tenant_id = %s", (tenant,)
            ).fetchall(),
            key=repr,
        )
        for view in TENANT_ID_VIEWS
    }


def billed(conn: psycopg.Connection, tenant: str | None = None) -> Decimal:
    """What the usage and adjustment lines of finalized invoices add up to."""
    row = conn.execute(
        "SELECT sum(amount) FROM reporting.invoice_lines WHERE kind IN ('usage', 'adjustment')"
        " AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)",
        {"tenant": tenant},
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


def revenue(conn: psycopg.Connection) -> Decimal:
    row = conn.execute("SELECT sum(amount) FROM reporting.revenue_by_model_daily").fetchone()
    assert row is not None
    return Decimal(row[0] or 0)


def refused(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


# --- what a tenant login sees ----------------------------------------------------------------


def test_each_tenant_login_sees_all_its_rows_in_every_tenant_view_and_none_of_the_other(
    world: psycopg.Connection, login_roles: Logins
) -> None:
    granted = {
        name
        for (name,) in world.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'reporting' AND c.relkind = 'v'"
            " AND has_table_privilege('metering_tenant', c.oid, 'SELECT')"
        )
    }
    assert granted == set(TENANT_VIEWS)
    for tenant in TENANTS:
        assert all(rows for rows in own_rows(world, tenant).values()), f"{tenant} has no rows"
    assert {s for (s,) in world.execute("SELECT status FROM reporting.unbilled_usage")} == {
        "late",
        "not_invoiced",
    }

    for tenant in TENANTS:
        login = login_roles.connect(login_roles.grant(tenant))
        assert seen(login, TENANT_ID_VIEWS) == own_rows(world, tenant), tenant
        assert revenue(login) == billed(world, tenant) < billed(world), tenant


def test_nothing_a_tenant_login_runs_changes_which_rows_it_sees(
    world: psycopg.Connection, login_roles: Logins
) -> None:
    globex = login_roles.grant("globex")
    acme_role = login_roles.grant("acme")
    # A mistake an operator could make: acme's login is a member of globex's.
    world.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(globex), sql.Identifier(acme_role))
    )
    acme = login_roles.connect(acme_role)
    mine = seen(acme)
    assert mine["invoices"] and all(row[2] == "acme" for row in mine["invoices"])

    for statement in (
        "SELECT set_config('metering.tenant_id', 'globex', false)",  # the old key
        "SET metering.tenant_id = 'globex'",
        "DO $$ BEGIN PERFORM set_config('metering.tenant_id', 'globex', false); END $$",
        "SET ROLE metering_tenant",
        f"SET ROLE {globex}",  # a member may, but isolation follows who logged in
        "RESET ROLE",
        "RESET ALL",
        "SET search_path = reporting, public",
        f"ALTER ROLE {acme_role} SET search_path = reporting, public",
        f"ALTER ROLE {acme_role} SET ROLE = {globex}",  # its next sessions start as globex's
        "RESET ALL",
    ):
        acme.execute(statement)
        assert seen(acme) == mine, statement

    for statement in (
        "SET ROLE metering_reader",
        f"SET SESSION AUTHORIZATION {globex}",
        f"ALTER ROLE {acme_role} SET metering.tenant_id = 'globex'",
    ):
        refused(acme, statement)
        assert seen(acme) == mine, statement
    acme.execute("SET row_security = off")  # then a query that RLS would filter is an error
    refused(acme, "SELECT * FROM reporting.invoices")
    acme.execute("RESET row_security")

    again = login_roles.connect(acme_role)
    assert again.execute("SELECT current_user").fetchone() == (globex,)
    assert seen(again) == mine


def test_a_tenant_login_can_create_nothing_and_read_no_table_directly(
    world: psycopg.Connection, login_roles: Logins
) -> None:
    acme_role = login_roles.grant("acme")
    login_roles.grant("globex")
    acme = login_roles.connect(acme_role)
    function = "FUNCTION {}.f() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'"
    for statement in (
        "CREATE TEMP TABLE mine (x int)",
        "CREATE " + function.format("pg_temp"),
        "CREATE " + function.format("reporting"),
        "CREATE " + function.format("public"),
        "CREATE VIEW reporting.mine AS SELECT 1",
        "CREATE SCHEMA mine",
        "SELECT * FROM public.tenant_logins",
        "SELECT * FROM public.usage_hourly",
        "INSERT INTO public.tenant_logins VALUES ('x', 'globex')",
    ):
        refused(acme, statement)
    # No function that runs with its owner's rights is there for a tenant to call.
    assert acme.execute(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.prosecdef AND has_function_privilege(p.oid, 'EXECUTE')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchone() == (0,)
    # Column statistics would show other tenants' values: hidden under row-level security.
    world.execute("ANALYZE")
    assert acme.execute(
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'public'"
        " AND tablename IN ('usage_hourly', 'invoices', 'invoice_lines', 'quota_alerts',"
        " 'tenant_logins')"
    ).fetchone() == (0,)

    # Even given the schema of the tables, the policies hold: the mapping shows its own row.
    world.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(acme_role)))
    assert acme.execute("SELECT login_role, tenant_id FROM public.tenant_logins").fetchall() == [
        (acme_role, "acme")
    ]
    tenants = acme.execute("SELECT DISTINCT tenant_id FROM public.usage_hourly").fetchall()
    assert tenants == [("acme",)]
    for statement in (
        "INSERT INTO public.tenant_logins VALUES ('x', 'globex')",
        f"UPDATE public.tenant_logins SET tenant_id = 'globex' WHERE login_role = '{acme_role}'",
        "DELETE FROM public.tenant_logins",
    ):
        refused(acme, statement)


# --- granting and revoking, as an operator does ----------------------------------------------


def test_grant_login_creates_the_role_and_revoke_login_takes_the_rows_away(
    world: psycopg.Connection, settings: Settings, login_roles: Logins
) -> None:
    role = login_roles.new_role("portal")
    grant = ["tenants", "grant-login", "--tenant", "acme", "--role", role, "--password-stdin"]
    result = metering(settings, *grant, stdin="correct horse\n")
    assert result.returncode == 0, result.stderr
    assert f"role {role} created (LOGIN)" in result.stdout
    can_login, verifier = world.execute(
        "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s", (role,)
    ).fetchone() or (None, None)
    assert can_login and verifier.startswith("SCRAM-SHA-256$")
    listed = metering(settings, "tenants", "logins", "--format", "json")
    assert f'"role": "{role}"' in listed.stdout and '"tenant_id": "acme"' in listed.stdout

    portal = login_roles.connect(role)
    assert seen(portal, TENANT_ID_VIEWS) == own_rows(world, "acme")
    again = metering(settings, "tenants", "grant-login", "--tenant", "acme", "--role", role)
    assert again.returncode == 0 and "already a login of tenant acme" in again.stdout

    result = metering(settings, "tenants", "revoke-login", "--tenant", "acme", "--role", role)
    assert result.returncode == 0, result.stderr
    assert seen(portal) == {view: [] for view in TENANT_VIEWS}, "the open session too"

    # An existing role can be granted to another tenant once revoked from the first.
    result = metering(settings, "tenants", "grant-login", "--tenant", "globex", "--role", role)
    assert result.returncode == 0 and "is now a login of tenant globex" in result.stdout
    assert {row[2] for row in seen(portal)["invoices"]} == {"globex"}


def test_grant_login_and_revoke_login_refuse_mistakes_in_one_line(
    world: psycopg.Connection, settings: Settings, login_roles: Logins
) -> None:
    acme_role = login_roles.grant("acme")
    group = login_roles.new_role("group")
    world.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
    finance = login_roles.new_role("finance")
    world.execute(
        sql.SQL("CREATE ROLE {} LOGIN IN ROLE metering_reader").format(sql.Identifier(finance))
    )
    cases = [
        (["grant-login", "--tenant", "nobody", "--role", acme_role], "unknown tenant 'nobody'"),
        (["grant-login", "--tenant", "globex", "--role", acme_role], "is the login of tenant acme"),
        (["grant-login", "--tenant", "globex", "--role", group], "cannot log in (NOLOGIN)"),
        (["grant-login", "--tenant", "globex", "--role", finance], "member of metering_reader"),
        (["grant-login", "--tenant", "globex", "--role", settings.pg_user], "a superuser"),
        (["grant-login", "--tenant", "globex", "--role", "metering_tenant"], "group role"),
        (["grant-login", "--tenant", "globex", "--role", "pg_monitor"], "reserved"),
        (["grant-login", "--tenant", "globex", "--role", 'x"; DROP'], "is not 1-63 characters"),
        (["revoke-login", "--tenant", "globex", "--role", acme_role], "login of tenant acme"),
        (["revoke-login", "--tenant", "nobody", "--role", acme_role], "unknown tenant"),
        (["grant-login", "--tenant", "globex", "--role", "x", "--password-stdin"], "no password"),
    ]
    for args, message in cases:
        result = metering(settings, "tenants", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert world.execute(
        "SELECT login_role, tenant_id FROM tenant_logins ORDER BY 1"
    ).fetchall() == [(acme_role, "acme")]


# --- the reader --------------------------------------------------------------------------------


def test_the_reader_reads_every_tenants_alerts_and_cannot_create_temporary_objects(
    world: psycopg.Connection, login_roles: Logins
) -> None:
    role = login_roles.new_role("finance")
    world.execute(
        sql.SQL("CREATE ROLE {} LOGIN IN ROLE metering_reader").format(sql.Identifier(role))
    )
    finance = login_roles.connect(role)
    alerts = finance.execute("SELECT tenant_id, count(*) FROM reporting.quota_alerts GROUP BY 1")
    assert sorted(alerts.fetchall()) == [("acme", 2), ("globex", 2)]
    refused(finance, "CREATE TEMP TABLE mine (x int)")
    refused(finance, "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")


def test_a_database_migrated_by_its_own_unprivileged_owner_still_stages_ingest_in_a_temp_table(
    postgres: PostgresServer, base_settings: Settings, login_roles: Logins
) -> None:
    """In production the application is the database's owner, not a superuser: revoking
    TEMPORARY from PUBLIC must leave it the staging table the worker COPYs batches into."""
    owner = login_roles.new_role("owner")
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn(base_settings), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
    try:
        url = database_url(base_settings, name).replace(f"{base_settings.pg_user}@", f"{owner}@", 1)
        migrate.upgrade(url)
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute(
                "SELECT has_database_privilege('public', current_database(), 'TEMPORARY'),"
                " has_database_privilege('metering_reader', current_database(), 'TEMPORARY')"
            ).fetchone() == (False, False)
            catalog.add_tenants(conn, [catalog.TenantRow("acme", "Acme")])
            catalog.add_models(conn, [catalog.ModelRow("m1", "meta", "M1")])
        assert asyncio.run(ingest_one_event(dsn)) == 1
    finally:
        drop_database(base_settings, name)


async def ingest_one_event(dsn: str) -> int:
    """One event through the worker's sink, connected as ``dsn``'s user; accepted count."""
    now = datetime.now(UTC)
    raw = orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "tenant_id": "acme",
            "model": "m1",
            "occurred_at": now.isoformat(),
            "usage": {"input_tokens": 10, "output_tokens": 2},
        }
    )
    event = parse_event(raw, catalog=Catalog(frozenset({"acme"}), frozenset({"m1"})), now=now)
    assert isinstance(event, UsageEvent), event
    record = fetched("usage.events", 0, 0, b"acme", raw)
    ledger = Ledger(dsn)
    try:
        async with await ledger.batch([record]) as batch:
            outcome = await batch.write([(record, event)], [])
    finally:
        await ledger.close()
    return outcome.accepted
