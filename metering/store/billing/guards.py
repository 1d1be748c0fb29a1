"""What every billing write takes first: the tenant's lock, the prices lock, and the
checks that the tenant exists and what is already closed."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import psycopg

from metering.billing.utc import rfc3339
from metering.store.billing.errors import UnknownTenantError

PRICES_LOCK: Final = "hashtextextended('metering.billing:prices', 0)"
"""An advisory lock key: an import holds it exclusively, each tenant's close shared, so that a
close never bills with a book that an import is changing (see ``_close_tenant``)."""


def lock_tenant(conn: psycopg.Connection, tenant_id: str, *, prices: bool = False) -> None:
    """Serializes contract changes and closes of one tenant (until the transaction ends);
    ``prices`` also holds off price imports (a shared hold on ``PRICES_LOCK``)."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('metering.billing:' || %s, 0))"
        + (f", pg_advisory_xact_lock_shared({PRICES_LOCK})" if prices else ""),
        (tenant_id,),
    )


def show_moment(moment: datetime | None) -> str:
    if moment is None:
        return "(open)"
    return rfc3339(moment, to_seconds=True)


def closed_until(conn: psycopg.Connection, tenant_id: str | None = None) -> datetime | None:
    """The end of the latest closed period (of one tenant, or of any): what is billed before
    it must not change any more."""
    row = conn.execute(
        "SELECT max(period_end) FROM period_billing WHERE %(t)s::text IS NULL OR tenant_id = %(t)s",
        {"t": tenant_id},
    ).fetchone()
    return row[0] if row else None


def require_tenant(conn: psycopg.Connection, tenant_id: str) -> str:
    row = conn.execute("SELECT display_name FROM tenants WHERE tenant_id = %s", (tenant_id,))
    found = row.fetchone()
    if found is None:
        raise UnknownTenantError(tenant_id)
    return str(found[0])
