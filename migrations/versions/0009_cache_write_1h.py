"""1-hour cache writes: a count of their own, a part of cache_write_tokens (Anthropic bills them
at 2x input, 5-minute writes at 1.25x).

- ``cache_write_1h_tokens`` on ``usage_ledger``, ``usage_hourly`` and ``billed_usage``,
  0 for every row stored before (no event before this revision carried it).
- Token class ``cache_write_1h`` allowed in ``price_entries`` and ``tenant_price_overrides``.
- ``reporting.usage_hourly``, ``reporting.usage_daily`` and ``reporting.unbilled_usage`` get
  the column at the end, so that no existing column moves or changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMN = "cache_write_1h_tokens"
COUNTED_TABLES = ("usage_ledger", "usage_hourly", "billed_usage")
PRICED_TABLES = ("price_entries", "tenant_price_overrides")
TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output", "reasoning")
VIEWS = ("usage_hourly", "usage_daily", "unbilled_usage")


def _sums(tokens: tuple[str, ...], prefix: str = "") -> str:
    return ",\n           ".join(f"sum({prefix}{c})::bigint AS {c}" for c in ("events", *tokens))


def _differences(tokens: tuple[str, ...]) -> str:
    return ",\n           ".join(f"u.{c} - coalesce(b.{c}, 0) AS {c}" for c in ("events", *tokens))


def _views(tokens: tuple[str, ...]) -> str:
    """The three views that sum token counts, as revisions 0002 and 0004 made them, with the
    counts ``tokens`` in that order."""
    return f"""
CREATE OR REPLACE VIEW reporting.usage_hourly WITH (security_invoker = true) AS
SELECT tenant_id, model, hour,
       {_sums(tokens)}
  FROM public.usage_hourly
 GROUP BY tenant_id, model, hour;

CREATE OR REPLACE VIEW reporting.usage_daily WITH (security_invoker = true) AS
SELECT tenant_id, model, service_tier, (hour AT TIME ZONE 'UTC')::date AS day,
       {_sums(tokens)}
  FROM public.usage_hourly
 GROUP BY tenant_id, model, service_tier, (hour AT TIME ZONE 'UTC')::date;

CREATE OR REPLACE VIEW reporting.unbilled_usage WITH (security_invoker = true) AS
WITH closed AS (
    SELECT p.tenant_id, p.period_label, p.period_start, p.period_end,
           u.model, u.service_tier, u.long_context,
           {_sums(tokens, "u.")}
      FROM public.period_billing p
      JOIN public.usage_hourly u
        ON u.tenant_id = p.tenant_id AND u.hour >= p.period_start AND u.hour < p.period_end
     GROUP BY 1, 2, 3, 4, 5, 6, 7
), late AS (
    SELECT u.tenant_id, u.model, u.service_tier, u.long_context, 'late'::text AS status,
           u.period_label, u.period_start, u.period_end,
           NULL::timestamptz AS first_hour, NULL::timestamptz AS last_hour,
           {_differences(tokens)}
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
       {_sums(tokens, "u.")}
  FROM public.usage_hourly u
 WHERE NOT EXISTS (
        SELECT 1 FROM public.period_billing p
         WHERE p.tenant_id = u.tenant_id AND u.hour >= p.period_start AND u.hour < p.period_end)
 GROUP BY u.tenant_id, u.model, u.service_tier, u.long_context
UNION ALL
SELECT * FROM late;
"""


def _allow_token_classes(classes: tuple[str, ...]) -> None:
    allowed = ", ".join(f"'{c}'" for c in classes)
    for table in PRICED_TABLES:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_token_class_check,"
            f" ADD CONSTRAINT {table}_token_class_check CHECK (token_class IN ({allowed}))"
        )


def upgrade() -> None:
    for table in COUNTED_TABLES:
        op.add_column(
            table, sa.Column(COLUMN, sa.BigInteger, nullable=False, server_default=sa.text("0"))
        )
    _allow_token_classes((*TOKEN_CLASSES, "cache_write_1h"))
    op.execute(_views((*TOKENS, COLUMN)))  # grants and comments stay with the views


def downgrade() -> None:
    # A view cannot lose a column in place: keep its grants and comment, drop, recreate.
    names = ", ".join(f"'{v}'" for v in VIEWS)
    op.execute(
        f"""
        CREATE TEMP TABLE saved_view_acl ON COMMIT DROP AS
        SELECT c.relname AS view, a.privilege_type,
               coalesce(quote_ident(r.rolname), 'PUBLIC') AS grantee
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL aclexplode(c.relacl) a
          LEFT JOIN pg_roles r ON r.oid = a.grantee
         WHERE n.nspname = 'reporting' AND c.relname IN ({names}) AND a.grantee <> c.relowner;
        CREATE TEMP TABLE saved_view_comment ON COMMIT DROP AS
        SELECT c.relname AS view, obj_description(c.oid, 'pg_class') AS comment
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'reporting' AND c.relname IN ({names});
        """
    )
    for view in VIEWS:
        op.execute(f"DROP VIEW reporting.{view}")
    op.execute(_views(TOKENS))
    op.execute(
        """
        DO $$
        DECLARE
            saved record;
        BEGIN
            FOR saved IN SELECT * FROM saved_view_acl LOOP
                EXECUTE format('GRANT %s ON reporting.%I TO %s',
                               saved.privilege_type, saved.view, saved.grantee);
            END LOOP;
            FOR saved IN SELECT * FROM saved_view_comment WHERE comment IS NOT NULL LOOP
                EXECUTE format('COMMENT ON VIEW reporting.%I IS %L', saved.view, saved.comment);
            END LOOP;
        END $$;
        """
    )
    op.execute("DELETE FROM price_entries WHERE token_class = 'cache_write_1h'")
    op.execute("DELETE FROM tenant_price_overrides WHERE token_class = 'cache_write_1h'")
    _allow_token_classes(TOKEN_CLASSES)
    for table in COUNTED_TABLES:
        op.drop_column(table, COLUMN)
