"""Tenant and model catalogs: what the worker accepts events for."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from metering.events import Catalog


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant_id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class ModelRow:
    model_id: str
    provider: str
    display_name: str


def add_tenants(conn: psycopg.Connection, tenants: list[TenantRow]) -> int:
    """Adds tenants, leaving existing ones as they are; returns how many were new."""
    cursor = conn.execute(
        "INSERT INTO tenants (tenant_id, display_name)"
        " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
        ([t.tenant_id for t in tenants], [t.display_name for t in tenants]),
    )
    return cursor.rowcount


def add_models(conn: psycopg.Connection, models: list[ModelRow]) -> int:
    """Adds models, leaving existing ones as they are; returns how many were new."""
    cursor = conn.execute(
        "INSERT INTO models (model_id, provider, display_name)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
        (
            [m.model_id for m in models],
            [m.provider for m in models],
            [m.display_name for m in models],
        ),
    )
    return cursor.rowcount


def list_tenants(conn: psycopg.Connection) -> list[TenantRow]:
    rows = conn.execute("SELECT tenant_id, display_name FROM tenants ORDER BY tenant_id")
    return [TenantRow(*row) for row in rows]


def list_models(conn: psycopg.Connection) -> list[ModelRow]:
    rows = conn.execute("SELECT model_id, provider, display_name FROM models ORDER BY model_id")
    return [ModelRow(*row) for row in rows]


class CatalogCache:
    """The worker's view of the catalogs, reloaded when an event names something unknown.

    Reloads are rate-limited so that a flood of events for an unknown model costs one
    query a second, not one per event; a model added with `metering models add` is seen
    within that second.
    """

    def __init__(self, min_reload_interval_s: float = 1.0) -> None:
        self.catalog = Catalog(tenants=frozenset(), models=frozenset())
        self._loaded_at = float("-inf")
        self._interval = min_reload_interval_s

    def knows(self, tenant_id: str | None, model: str | None) -> bool:
        return tenant_id in self.catalog.tenants and model in self.catalog.models

    async def reload_if_due(self, conn: psycopg.AsyncConnection) -> bool:
        """Reloads unless it did so less than the interval ago; returns whether it did."""
        if time.monotonic() - self._loaded_at < self._interval:
            return False
        tenants = await (await conn.execute("SELECT tenant_id FROM tenants")).fetchall()
        models = await (await conn.execute("SELECT model_id FROM models")).fetchall()
        self.catalog = Catalog(
            tenants=frozenset(t for (t,) in tenants), models=frozenset(m for (m,) in models)
        )
        self._loaded_at = time.monotonic()
        return True
