"""Tenant and model catalogs: what the worker accepts events for."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from metering.billing.events import Catalog
from metering.billing.price_book import PriceBook
from metering.store.billing.prices import BOOK_REVISION_QUERY, load_price_book_async
from metering.store.connection import Reconnecting


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant_id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class ModelRow:
    model_id: str
    provider: str
    display_name: str
    long_context_above: int | None = None  # input tokens; above it a request is long-context


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
        "INSERT INTO models (model_id, provider, display_name, long_context_above)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])"
        " ON CONFLICT DO NOTHING",
        (
            [m.model_id for m in models],
            [m.provider for m in models],
            [m.display_name for m in models],
            [m.long_context_above for m in models],
        ),
    )
    return cursor.rowcount


def list_tenants(conn: psycopg.Connection) -> list[TenantRow]:
    rows = conn.execute("SELECT tenant_id, display_name FROM tenants ORDER BY tenant_id")
    return [TenantRow(*row) for row in rows]


def list_models(conn: psycopg.Connection) -> list[ModelRow]:
    rows = conn.execute(
        "SELECT model_id, provider, display_name, long_context_above FROM models ORDER BY model_id"
    )
    return [ModelRow(*row) for row in rows]


async def read_thresholds(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """Each model's long-context threshold (input tokens), for the models that have one."""
    cursor = await conn.execute(
        "SELECT model_id, long_context_above FROM models WHERE long_context_above IS NOT NULL"
    )
    return dict(await cursor.fetchall())


class CatalogCache:
    """The worker's view of the catalogs and the price book.

    Loaded in full once; afterwards, a batch naming a tenant or model the cache does not
    know asks the database about just those ids, so an id added with `metering tenants
    add` or `metering models add` is known to the very next batch, and a flood of events
    for an unknown model costs one indexed lookup per batch, not one per event. Likewise a
    batch with usage that no cached price covers reloads the price book if an import
    changed it since, so prices imported before a `dlq replay` are seen by the replay.

    ``long_context_above`` (model -> input-token threshold, models that have one) is read
    again at every ``load``, one small query per batch: a price import that moves a
    threshold applies to the next batch, as when the ledger's SQL read it.
    """

    def __init__(self, dsn: str) -> None:
        self.catalog = Catalog(tenants=frozenset(), models=frozenset())
        self.prices = PriceBook(())
        self.long_context_above: dict[str, int] = {}
        self._prices_revision: int | None = None
        self._loaded = False
        self._db = Reconnecting(dsn)

    async def close(self) -> None:
        await self._db.close()

    async def load(self) -> None:
        """Loads the catalogs and prices the first time; the thresholds every time."""
        conn = await self._db.connection()
        self.long_context_above = await read_thresholds(conn)
        if self._loaded:
            return
        tenants = await (await conn.execute("SELECT tenant_id FROM tenants")).fetchall()
        models = await (await conn.execute("SELECT model_id FROM models")).fetchall()
        self.catalog = Catalog(
            tenants=frozenset(t for (t,) in tenants), models=frozenset(m for (m,) in models)
        )
        await self.learn_prices()
        self._loaded = True

    async def learn_prices(self) -> bool:
        """Reloads the price book if an import changed it; returns whether it did."""
        conn = await self._db.connection()
        # The revision is read before the book: a change in between only costs a reload.
        row = await (await conn.execute(BOOK_REVISION_QUERY)).fetchone()
        revision = int(row[0]) if row else 0
        if revision == self._prices_revision:
            return False
        self.prices = await load_price_book_async(conn)
        self._prices_revision = revision
        return True

    async def learn(self, tenants: set[str], models: set[str]) -> bool:
        """Looks up ids the cache does not know; returns whether any of them now exist."""
        conn = await self._db.connection()
        found_tenants = await (
            await conn.execute(
                "SELECT tenant_id FROM tenants WHERE tenant_id = ANY(%s)", (list(tenants),)
            )
        ).fetchall()
        found_models = await (
            await conn.execute(
                "SELECT model_id FROM models WHERE model_id = ANY(%s)", (list(models),)
            )
        ).fetchall()
        if not found_tenants and not found_models:
            return False
        if found_models:  # a model added since may come with a threshold
            self.long_context_above = await read_thresholds(conn)
        self.catalog = Catalog(
            tenants=self.catalog.tenants | {t for (t,) in found_tenants},
            models=self.catalog.models | {m for (m,) in found_models},
        )
        return True
