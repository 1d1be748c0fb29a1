"""The price book in the database: list prices, tenants' overrides, the book's revision."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import psycopg

from metering.billing.events import SERVICE_TIERS
from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceEntry
from metering.billing.tokens import TokenClass

PRICE_COLUMNS: Final = (
    "model, token_class, service_tier, currency, price_per_million, effective_from,"
    " effective_to, tier_up_to, long_context_above, source"
)


def price_entry(row: Sequence[Any]) -> PriceEntry:
    model, token_class, tier, currency, price, start, end, up_to, above, source = row
    return PriceEntry(
        model, TokenClass(token_class), tier, currency, price, start, end, up_to, above, source
    )


def price_entry_values(entry: PriceEntry) -> tuple[Any, ...]:
    return (
        entry.model,
        entry.token_class.value,
        entry.service_tier,
        entry.currency,
        entry.price_per_million,
        entry.effective_from,
        entry.effective_to,
        entry.tier_up_to,
        entry.long_context_above,
        entry.source,
    )


PRICE_ENTRIES_QUERY: Final = f"SELECT {PRICE_COLUMNS} FROM price_entries ORDER BY entry_id"
BOOK_REVISION_QUERY: Final = "SELECT coalesce(max(import_id), 0) FROM price_imports"
"""The price book's revision: the latest import that changed it (0: none yet)."""


def load_price_entries(conn: psycopg.Connection) -> list[PriceEntry]:
    return [price_entry(row) for row in conn.execute(PRICE_ENTRIES_QUERY)]


def load_price_book(conn: psycopg.Connection) -> PriceBook:
    return PriceBook(load_price_entries(conn))


async def load_price_book_async(conn: psycopg.AsyncConnection) -> PriceBook:
    """``load_price_book`` for the worker's connections."""
    cursor = await conn.execute(PRICE_ENTRIES_QUERY)
    return PriceBook([price_entry(row) for row in await cursor.fetchall()])


def has_price(conn: psycopg.Connection, model: str, moment: datetime) -> bool:
    """Whether ``model`` has list prices in effect at ``moment`` on any service tier."""
    book = load_price_book(conn)
    return any(book.find(model, tier, moment) is not None for tier in SERVICE_TIERS)


def overrides_of(
    conn: psycopg.Connection, tenant_id: str | None = None
) -> dict[str, list[PriceEntry]]:
    """Price overrides per tenant (of one tenant, or of all)."""
    result: dict[str, list[PriceEntry]] = {}
    rows = conn.execute(
        f"SELECT tenant_id, {PRICE_COLUMNS} FROM tenant_price_overrides"
        " WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, override_id",
        {"t": tenant_id},
    )
    for row in rows:
        result.setdefault(row[0], []).append(price_entry(row[1:]))
    return result


def book_revision(conn: psycopg.Connection) -> int:
    """The latest import that changed the price book (0: none yet). Imports are serialized
    (``import_prices`` locks), so a higher revision is a later book."""
    row = conn.execute(BOOK_REVISION_QUERY).fetchone()
    return int(row[0]) if row else 0
