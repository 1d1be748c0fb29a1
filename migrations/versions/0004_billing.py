"""Billing: price book, contracts, finalized invoices, what each closed period billed, reporting
views, and the reporting roles.

- ``price_entries``: the list prices (``metering prices import``), one row per ``PriceEntry``.
- ``contracts``: effective-dated contract versions per tenant; ``tenant_price_overrides``:
  a tenant's own prices, effective-dated on their own.
- ``invoices`` and ``invoice_lines``: finalized invoices only (drafts are computed on the fly).
  A trigger refuses UPDATE, DELETE and TRUNCATE of finalized invoices and of their lines, and
  lines added to an invoice after the transaction that finalized it.
- ``invoice_number_counters``: gap-free numbers, one counter row per series (``INV-2026``),
  incremented in the transaction that inserts the invoice.
- ``period_billing`` and ``billed_usage``: per tenant and closed period, when its usage was
  last compared with what was billed, and the token sums billed so far; late usage is the
  difference and becomes adjustment lines on the next invoice.
- Views in ``reporting`` (``security_invoker``): usage_daily, invoices, invoice_lines,
  revenue_by_model_daily, unbilled_usage; ``reporting.usage_hourly`` becomes security_invoker.
- Roles ``metering_reader`` and ``metering_tenant`` (cluster-wide, NOLOGIN, created if
  missing, never dropped): both read ``reporting`` only; row-level security on the tables
  under the views limits ``metering_tenant`` to the rows of ``metering.tenant_id``. Because
  the views run with the reader's privileges, the roles hold SELECT on those tables, and
  ``USAGE`` on schema ``public`` is revoked from PUBLIC in this database so that they cannot
  name them directly.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

READER = "metering_reader"
TENANT = "metering_tenant"
ROLES = (READER, TENANT)
TENANT_SETTING = "metering.tenant_id"

# Tables the reporting views read, and whether their rows belong to a tenant (RLS).
VIEW_TABLES = ("usage_hourly", "invoices", "invoice_lines", "period_billing", "billed_usage")

TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _price_columns() -> str:
    return """
        model text NOT NULL,
        token_class text NOT NULL
            CHECK (token_class IN ('input', 'cached_input', 'cache_write', 'output', 'reasoning')),
        service_tier text NOT NULL CHECK (service_tier IN ('standard', 'batch', 'priority')),
        currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        price_per_million numeric NOT NULL CHECK (price_per_million >= 0),
        effective_from timestamptz NOT NULL,
        effective_to timestamptz CHECK (effective_to > effective_from),
        tier_up_to bigint CHECK (tier_up_to > 0),
        long_context_above bigint CHECK (long_context_above > 0),
        CHECK (tier_up_to IS NULL OR long_context_above IS NULL),
        source text
    """


TABLES = f"""
CREATE TABLE price_entries (
    entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    {_price_columns()},
    imported_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT price_entries_key UNIQUE NULLS NOT DISTINCT
        (model, token_class, service_tier, currency, long_context_above, tier_up_to,
         effective_from)
);
COMMENT ON TABLE price_entries IS
    'List prices per 1M tokens (metering prices import); docs/billing.md';

CREATE TABLE contracts (
    contract_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
    anchor_day smallint NOT NULL DEFAULT 1 CHECK (anchor_day BETWEEN 1 AND 31),
    discount_percent numeric NOT NULL DEFAULT 0 CHECK (discount_percent BETWEEN 0 AND 100),
    minimum_commitment numeric CHECK (minimum_commitment >= 0),
    effective_from timestamptz NOT NULL,
    effective_to timestamptz CHECK (effective_to > effective_from),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contracts_version UNIQUE (tenant_id, effective_from)
);
COMMENT ON TABLE contracts IS
    'Contract versions per tenant; the one that took effect last during a period governs it';

CREATE FUNCTION contracts_keep_anchor_day() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    other smallint;
BEGIN
    SELECT anchor_day INTO other FROM contracts
     WHERE tenant_id = NEW.tenant_id AND contract_id <> NEW.contract_id
       AND anchor_day <> NEW.anchor_day
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'tenant % is billed from anchor day %, not %', NEW.tenant_id, other,
            NEW.anchor_day
            USING ERRCODE = 'check_violation',
                  HINT = 'changing the anchor day of a tenant is not supported';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER contracts_keep_anchor_day BEFORE INSERT OR UPDATE ON contracts
    FOR EACH ROW EXECUTE FUNCTION contracts_keep_anchor_day();

CREATE TABLE tenant_price_overrides (
    override_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants,
    {_price_columns()},
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_price_overrides_key UNIQUE NULLS NOT DISTINCT
        (tenant_id, model, token_class, service_tier, long_context_above, tier_up_to,
         effective_from)
);
COMMENT ON TABLE tenant_price_overrides IS
    'A tenant''s own prices; while in effect they replace the list schedule of their class';

CREATE TABLE invoice_number_counters (
    series text PRIMARY KEY,
    last_number bigint NOT NULL CHECK (last_number > 0)
);
COMMENT ON TABLE invoice_number_counters IS
    'Gap-free invoice numbers: incremented in the transaction that inserts the invoice';

CREATE TABLE invoices (
    invoice_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_number text NOT NULL UNIQUE,
    tenant_id text NOT NULL REFERENCES tenants,
    tenant_name text NOT NULL,
    period_label text NOT NULL CHECK (period_label ~ '^[0-9]{{4}}-[0-9]{{2}}$'),
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL CHECK (period_end > period_start),
    status text NOT NULL DEFAULT 'finalized' CHECK (status IN ('finalized')),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
    minor_unit numeric NOT NULL CHECK (minor_unit > 0),
    subtotal numeric NOT NULL,
    total numeric NOT NULL,
    finalized_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoices_one_per_period UNIQUE (tenant_id, period_start)
);
CREATE INDEX invoices_period_label ON invoices (period_label, invoice_number);
COMMENT ON TABLE invoices IS 'Finalized invoices; never changed (trigger invoices_immutable)';

CREATE TABLE invoice_lines (
    invoice_id bigint NOT NULL REFERENCES invoices,
    line_no integer NOT NULL CHECK (line_no > 0),
    tenant_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('usage', 'adjustment', 'discount', 'commitment')),
    model text,
    token_class text,
    service_tier text,
    tier integer,
    long_context boolean NOT NULL DEFAULT false,
    quantity bigint NOT NULL,
    unit_price_per_million numeric,
    amount numeric NOT NULL,
    adjusts_period text,
    adjusts_period_start timestamptz,
    adjusts_period_end timestamptz,
    PRIMARY KEY (invoice_id, line_no),
    CHECK ((adjusts_period IS NULL) = (adjusts_period_start IS NULL)),
    CHECK (kind <> 'adjustment' OR adjusts_period IS NOT NULL)
);
CREATE INDEX invoice_lines_adjusts ON invoice_lines (tenant_id, adjusts_period)
    WHERE adjusts_period IS NOT NULL;

CREATE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    number text;
    mine boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'finalized invoices cannot be truncated (table %)', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_TABLE_NAME = 'invoices' THEN
        IF OLD.status = 'finalized' THEN
            RAISE EXCEPTION 'invoice % is finalized and cannot be changed (%)',
                OLD.invoice_number, TG_OP
                USING ERRCODE = 'integrity_constraint_violation',
                      HINT = 'late usage and corrections go on the next invoice as adjustments';
        END IF;
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    -- invoice_lines
    IF TG_OP = 'INSERT' THEN
        SELECT invoice_number, xmin = pg_current_xact_id()::xid INTO number, mine
          FROM invoices WHERE invoice_id = NEW.invoice_id;
        IF NOT mine THEN
            RAISE EXCEPTION 'invoice % is finalized: no lines can be added to it', number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    SELECT invoice_number INTO number FROM invoices
     WHERE invoice_id = OLD.invoice_id AND status = 'finalized';
    IF FOUND THEN
        RAISE EXCEPTION 'line % of invoice % is finalized and cannot be changed (%)',
            OLD.line_no, number, TG_OP
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'late usage and corrections go on the next invoice as adjustments';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER invoice_lines_immutable BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_immutable();

CREATE TABLE period_billing (
    tenant_id text NOT NULL REFERENCES tenants,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL CHECK (period_end > period_start),
    period_label text NOT NULL,
    invoice_id bigint REFERENCES invoices,
    closed_at timestamptz NOT NULL DEFAULT now(),
    checked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, period_start)
);
COMMENT ON TABLE period_billing IS
    'Closed periods per tenant (with or without an invoice) and when late usage was last checked';

CREATE TABLE billed_usage (
    tenant_id text NOT NULL,
    period_start timestamptz NOT NULL,
    model text NOT NULL,
    service_tier text NOT NULL,
    long_context boolean NOT NULL,
    events bigint NOT NULL,
    {", ".join(f"{c} bigint NOT NULL" for c in TOKENS)},
    PRIMARY KEY (tenant_id, period_start, model, service_tier, long_context),
    FOREIGN KEY (tenant_id, period_start) REFERENCES period_billing
);
COMMENT ON TABLE billed_usage IS
    'Usage of a closed period billed so far (its invoice plus adjustments); late usage is the rest';

CREATE INDEX usage_hourly_tenant_hour ON usage_hourly (tenant_id, hour);
"""


def _sums(prefix: str = "") -> str:
    return ",\n           ".join(f"sum({prefix}{c})::bigint AS {c}" for c in ("events", *TOKENS))


def _differences() -> str:
    return ",\n           ".join(f"u.{c} - coalesce(b.{c}, 0) AS {c}" for c in ("events", *TOKENS))


VIEWS = f"""
ALTER VIEW reporting.usage_hourly SET (security_invoker = true);

CREATE VIEW reporting.usage_daily WITH (security_invoker = true) AS
SELECT tenant_id, model, service_tier, (hour AT TIME ZONE 'UTC')::date AS day,
       {_sums()}
  FROM public.usage_hourly
 GROUP BY tenant_id, model, service_tier, (hour AT TIME ZONE 'UTC')::date;
COMMENT ON VIEW reporting.usage_daily IS
    'Tokens per tenant, model, service tier and UTC day; docs/reports.md';

CREATE VIEW reporting.invoices WITH (security_invoker = true) AS
SELECT invoice_id, invoice_number, tenant_id, period_start, period_end, status, currency,
       subtotal, total, finalized_at, period_label, tenant_name
  FROM public.invoices;
COMMENT ON VIEW reporting.invoices IS 'Finalized invoices; docs/reports.md';

CREATE VIEW reporting.invoice_lines WITH (security_invoker = true) AS
SELECT invoice_id, tenant_id, model, token_class, service_tier, tier, quantity,
       unit_price_per_million, amount, kind, line_no, long_context, adjusts_period
  FROM public.invoice_lines;
COMMENT ON VIEW reporting.invoice_lines IS
    'Lines of finalized invoices: usage, adjustment, discount, commitment; docs/reports.md';

CREATE VIEW reporting.revenue_by_model_daily WITH (security_invoker = true) AS
WITH billed AS (
    SELECT l.invoice_id, l.line_no, l.tenant_id, l.model, l.service_tier, l.long_context,
           i.currency, i.minor_unit, l.amount / i.minor_unit AS units,
           coalesce(l.adjusts_period_start, i.period_start) AS period_start,
           coalesce(l.adjusts_period_end, i.period_end) AS period_end
      FROM public.invoice_lines l JOIN public.invoices i USING (invoice_id)
     WHERE l.kind IN ('usage', 'adjustment') AND l.amount <> 0
), weights AS (
    SELECT b.invoice_id, b.line_no, b.model, b.currency, b.minor_unit, b.units,
           (u.hour AT TIME ZONE 'UTC')::date AS day,
           sum(u.input_tokens + u.output_tokens)::numeric AS weight
      FROM billed b
      JOIN public.usage_hourly u
        ON u.tenant_id = b.tenant_id AND u.model = b.model
       AND u.service_tier = b.service_tier AND u.long_context = b.long_context
       AND u.hour >= b.period_start AND u.hour < b.period_end
     GROUP BY 1, 2, 3, 4, 5, 6, 7
), shares AS (
    SELECT *, units * weight / nullif(sum(weight) OVER line, 0) AS exact_units
      FROM weights
    WINDOW line AS (PARTITION BY invoice_id, line_no)
), floored AS (
    SELECT *, floor(coalesce(exact_units, 0)) AS whole FROM shares
), ranked AS (
    SELECT *,
           units - sum(whole) OVER line AS remainder,
           row_number() OVER (PARTITION BY invoice_id, line_no
                              ORDER BY coalesce(exact_units, 0) - whole DESC, day) AS rank
      FROM floored
    WINDOW line AS (PARTITION BY invoice_id, line_no)
)
SELECT day, model, currency,
       sum((whole + CASE WHEN rank <= remainder THEN 1 ELSE 0 END) * minor_unit) AS amount
  FROM ranked
 GROUP BY day, model, currency;
COMMENT ON VIEW reporting.revenue_by_model_daily IS
    'Usage and adjustment lines of finalized invoices spread over the days of their usage; '
    'docs/reports.md';

CREATE VIEW reporting.unbilled_usage WITH (security_invoker = true) AS
WITH closed AS (
    SELECT p.tenant_id, p.period_label, p.period_start, p.period_end,
           u.model, u.service_tier, u.long_context,
           {_sums("u.")}
      FROM public.period_billing p
      JOIN public.usage_hourly u
        ON u.tenant_id = p.tenant_id AND u.hour >= p.period_start AND u.hour < p.period_end
     GROUP BY 1, 2, 3, 4, 5, 6, 7
), late AS (
    SELECT u.tenant_id, u.model, u.service_tier, u.long_context, 'late'::text AS status,
           u.period_label, u.period_start, u.period_end,
           NULL::timestamptz AS first_hour, NULL::timestamptz AS last_hour,
           {_differences()}
      FROM closed u
      LEFT JOIN public.billed_usage b
        ON b.tenant_id = u.tenant_id AND b.period_start = u.period_start
       AND b.model = u.model AND b.service_tier = u.service_tier
       AND b.long_context = u.long_context
     WHERE u.events <> coalesce(b.events, 0)
)
SELECT u.tenant_id, u.model, u.service_tier, u.long_context, 'not_invoiced'::text AS status,
       NULL::text AS period_label, NULL::timestamptz AS period_start,
       NULL::timestamptz AS period_end,
       min(u.hour) AS first_hour, max(u.hour) AS last_hour,
       {_sums("u.")}
  FROM public.usage_hourly u
 WHERE NOT EXISTS (
        SELECT 1 FROM public.period_billing p
         WHERE p.tenant_id = u.tenant_id AND u.hour >= p.period_start AND u.hour < p.period_end)
 GROUP BY u.tenant_id, u.model, u.service_tier, u.long_context
UNION ALL
SELECT * FROM late;
COMMENT ON VIEW reporting.unbilled_usage IS
    'Usage no invoice has billed yet: in periods not closed, and late usage of closed periods '
    'not adjusted yet; docs/reports.md';
"""

REPORTING_VIEWS = (
    "usage_hourly",
    "usage_daily",
    "invoices",
    "invoice_lines",
    "revenue_by_model_daily",
    "unbilled_usage",
)


def _create_roles() -> str:
    statements = []
    for role in ROLES:
        statements.append(
            f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} NOLOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by another database's migration
            END $$;
            """
        )
    return "\n".join(statements)


def _grants() -> str:
    roles = ", ".join(ROLES)
    views = ", ".join(f"reporting.{v}" for v in REPORTING_VIEWS)
    tables = ", ".join(f"public.{t}" for t in VIEW_TABLES)
    policies = []
    for table in VIEW_TABLES:
        policies.append(
            f"""
            ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY;
            CREATE POLICY reporting_reader ON public.{table} FOR SELECT TO {READER}
                USING (true);
            CREATE POLICY reporting_tenant ON public.{table} FOR SELECT TO {TENANT}
                USING (tenant_id = current_setting('{TENANT_SETTING}', true));
            """
        )
    return f"""
        GRANT USAGE ON SCHEMA public TO CURRENT_USER;
        REVOKE USAGE ON SCHEMA public FROM PUBLIC;
        GRANT USAGE ON SCHEMA reporting TO {roles};
        GRANT SELECT ON {views} TO {roles};
        GRANT SELECT ON {tables} TO {roles};
        -- the reader reads every view in reporting, also those added later; the tenant role
        -- only the views above, whose tables have its row-level security
        GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO {READER};
        ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO {READER};
        {"".join(policies)}
    """


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(VIEWS)
    op.execute(_create_roles())
    op.execute(_grants())


def downgrade() -> None:
    roles = ", ".join(ROLES)
    for table in VIEW_TABLES:
        op.execute(f"DROP POLICY IF EXISTS reporting_reader ON public.{table}")
        op.execute(f"DROP POLICY IF EXISTS reporting_tenant ON public.{table}")
        op.execute(f"ALTER TABLE public.{table} DISABLE ROW LEVEL SECURITY")
    # Roles are cluster-wide and other databases may use them: revoke here, never drop.
    op.execute(f"REVOKE ALL ON public.usage_hourly FROM {roles}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA reporting REVOKE SELECT ON TABLES FROM {READER}"
    )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA reporting FROM {roles}")
    op.execute(f"REVOKE ALL ON SCHEMA reporting FROM {roles}")
    op.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
    op.execute(
        """
        DROP VIEW reporting.unbilled_usage;
        DROP VIEW reporting.revenue_by_model_daily;
        DROP VIEW reporting.invoice_lines;
        DROP VIEW reporting.invoices;
        DROP VIEW reporting.usage_daily;
        ALTER VIEW reporting.usage_hourly RESET (security_invoker);
        DROP INDEX usage_hourly_tenant_hour;
        DROP TABLE billed_usage;
        DROP TABLE period_billing;
        DROP TABLE invoice_lines;
        DROP TABLE invoices;
        DROP FUNCTION invoices_immutable();
        DROP TABLE invoice_number_counters;
        DROP TABLE tenant_price_overrides;
        DROP TABLE contracts;
        DROP FUNCTION contracts_keep_anchor_day();
        DROP TABLE price_entries;
        """
    )
