"""Tenant isolation keyed on the login: ``tenant_logins``, policies on ``session_user``,
``reporting.quota_alerts`` under the same policies, no temporary objects for PUBLIC.

- ``tenant_logins``: which login role reads which tenant's rows (``metering tenants
  grant-login``). One tenant per login; a tenant may have several logins.
- The ``reporting_tenant`` policies (0004) compared ``tenant_id`` with the session setting
  ``metering.tenant_id``, which any login can set itself. They now compare it with the
  tenant mapped to ``session_user``: the role that logged in, which neither ``SET``,
  ``set_config``, ``SET ROLE``, ``RESET`` nor a function can change (only a superuser
  session can). ``current_user`` would follow ``SET ROLE`` to another tenant's login role
  whenever a login is a member of it. The setting is ignored from now on.
- ``reporting.quota_alerts`` becomes ``security_invoker``, its table gets the same two
  policies, and ``metering_tenant`` may read it.
- ``TEMPORARY`` on this database is revoked from PUBLIC (granted back to the migrating
  role, which the worker connects as, for its staging table): the reporting roles can
  create nothing at all, neither temporary tables nor functions in ``pg_temp``. Database
  privileges belong to the database, so ``CREATE DATABASE ... TEMPLATE`` does not copy
  this; run the REVOKE again in a copy (docs/reports.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

READER = "metering_reader"
TENANT = "metering_tenant"

# Tables under the reporting views whose rows belong to a tenant (row-level security).
POLICED_TABLES = ("usage_hourly", "invoices", "invoice_lines", "period_billing", "billed_usage")

OWN_TENANT = (
    "tenant_id = (SELECT l.tenant_id FROM public.tenant_logins l WHERE l.login_role = session_user)"
)
OLD_OWN_TENANT = "tenant_id = current_setting('metering.tenant_id', true)"


def _on_this_database(statement: str) -> str:
    """``statement`` with ``%I`` for the current database, run as dynamic SQL (a migration
    does not know which database it runs in)."""
    return f"DO $$ BEGIN EXECUTE format('{statement}', current_database()); END $$"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE tenant_logins (
            login_role text PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants,
            granted_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX tenant_logins_tenant ON tenant_logins (tenant_id);
        COMMENT ON TABLE tenant_logins IS
            'Login roles of tenants (metering tenants grant-login): the reporting policies show '
            'a session whose session_user is login_role the rows of tenant_id only';
        ALTER TABLE tenant_logins ENABLE ROW LEVEL SECURITY;
        CREATE POLICY own_login ON tenant_logins FOR SELECT TO {TENANT}
            USING (login_role = session_user);
        GRANT SELECT ON tenant_logins TO {TENANT};
        """
    )
    for table in POLICED_TABLES:
        op.execute(f"ALTER POLICY reporting_tenant ON public.{table} USING ({OWN_TENANT})")
    op.execute(
        f"""
        ALTER VIEW reporting.quota_alerts SET (security_invoker = true);
        ALTER TABLE public.quota_alerts ENABLE ROW LEVEL SECURITY;
        CREATE POLICY reporting_reader ON public.quota_alerts FOR SELECT TO {READER}
            USING (true);
        CREATE POLICY reporting_tenant ON public.quota_alerts FOR SELECT TO {TENANT}
            USING ({OWN_TENANT});
        GRANT SELECT ON public.quota_alerts TO {READER}, {TENANT};
        GRANT SELECT ON reporting.quota_alerts TO {READER}, {TENANT};
        """
    )
    op.execute(_on_this_database("GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER"))
    op.execute(_on_this_database("REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC"))
    op.execute(_on_this_database(f"REVOKE TEMPORARY ON DATABASE %I FROM {READER}, {TENANT}"))


def downgrade() -> None:
    op.execute(_on_this_database("GRANT TEMPORARY ON DATABASE %I TO PUBLIC"))
    op.execute(
        f"""
        REVOKE SELECT ON reporting.quota_alerts FROM {TENANT};
        REVOKE SELECT ON public.quota_alerts FROM {READER}, {TENANT};
        DROP POLICY reporting_tenant ON public.quota_alerts;
        DROP POLICY reporting_reader ON public.quota_alerts;
        ALTER TABLE public.quota_alerts DISABLE ROW LEVEL SECURITY;
        ALTER VIEW reporting.quota_alerts RESET (security_invoker);
        """
    )
    for table in POLICED_TABLES:
        op.execute(f"ALTER POLICY reporting_tenant ON public.{table} USING ({OLD_OWN_TENANT})")
    op.execute("DROP TABLE tenant_logins")
