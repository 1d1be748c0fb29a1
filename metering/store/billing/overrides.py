"""A tenant's own prices: one flat price or graduated bands, from a moment on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg

from metering.billing.contracts import contract_history
from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceBookError, PriceEntry
from metering.billing.tokens import TokenClass
from metering.store.billing.contracts import contracts_of, refuse_before_closed
from metering.store.billing.errors import BillingError
from metering.store.billing.guards import lock_tenant, require_tenant
from metering.store.billing.prices import (
    PRICE_COLUMNS,
    load_price_entries,
    overrides_of,
    price_entry_values,
)


@dataclass(frozen=True, slots=True)
class Bands:
    """An override's price: one flat price, or graduated bands ``((up_to, price), ...)`` with
    ``None`` as the top band's bound."""

    bands: tuple[tuple[int | None, Decimal], ...]

    @classmethod
    def parse(cls, text: str) -> Bands:
        """``2.50`` or ``1000000:2.00,1.50`` (the first million tokens at 2.00, then 1.50)."""
        bands: list[tuple[int | None, Decimal]] = []
        parts = [p.strip() for p in text.split(",")]
        for index, part in enumerate(parts):
            bound, _, price = part.rpartition(":")
            try:
                amount = Decimal(price.strip())
                up_to = int(bound.replace("_", "")) if bound else None
            except ArithmeticError:
                raise BillingError(f"price {part!r} is not a decimal amount such as 2.50") from None
            except ValueError:
                raise BillingError(
                    f"band bound {bound!r} is not a whole number of tokens"
                ) from None
            if not amount.is_finite() or amount < 0:
                raise BillingError(f"price {price!r} must be a finite amount of zero or more")
            last = index == len(parts) - 1
            if (up_to is None) != last:
                raise BillingError(
                    f"bands are written UP_TO:PRICE,...,PRICE: every band but the last needs a"
                    f" bound, and the last has none (got {text!r})"
                )
            bands.append((up_to, amount))
        return cls(tuple(bands))


def set_override(
    conn: psycopg.Connection,
    tenant_id: str,
    *,
    model: str,
    token_class: TokenClass,
    service_tier: str,
    price: Bands | None,
    effective_from: datetime,
    effective_to: datetime | None = None,
    long_context_above: int | None = None,
) -> list[PriceEntry]:
    """Gives a tenant its own price for one model, token class and service tier (optionally
    its long-context price) from ``effective_from``: the override in effect then ends there.
    ``price=None`` just ends it (back to list price). Returns the overrides written."""
    with conn.transaction():
        lock_tenant(conn, tenant_id)
        require_tenant(conn, tenant_id)
        refuse_before_closed(conn, tenant_id, effective_from, "a price override")
        history = contract_history(tenant_id, contracts_of(conn, tenant_id))
        currency = next(c for c in reversed(history) if c.effective_from <= effective_from).currency
        long_context = "IS NOT NULL" if long_context_above is not None else "IS NULL"
        conn.execute(
            "UPDATE tenant_price_overrides SET effective_to = %(at)s"
            " WHERE tenant_id = %(t)s AND model = %(m)s AND token_class = %(c)s"
            f" AND service_tier = %(s)s AND long_context_above {long_context}"
            " AND effective_from < %(at)s AND (effective_to IS NULL OR effective_to > %(at)s)",
            {
                "at": effective_from,
                "t": tenant_id,
                "m": model,
                "c": token_class.value,
                "s": service_tier,
            },
        )
        written: list[PriceEntry] = []
        for up_to, amount in price.bands if price is not None else ():
            entry = PriceEntry(
                model,
                token_class,
                service_tier,
                currency,
                amount,
                effective_from,
                effective_to,
                tier_up_to=up_to,
                long_context_above=long_context_above,
                source=f"override of {tenant_id}",
            )
            conn.execute(
                f"INSERT INTO tenant_price_overrides (tenant_id, {PRICE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT ON CONSTRAINT tenant_price_overrides_key DO UPDATE"
                " SET price_per_million = EXCLUDED.price_per_million,"
                " effective_to = EXCLUDED.effective_to, currency = EXCLUDED.currency",
                (tenant_id, *price_entry_values(entry)),
            )
            written.append(entry)
        try:
            PriceBook(load_price_entries(conn), overrides_of(conn, tenant_id).get(tenant_id, []))
        except PriceBookError as exc:
            raise BillingError(f"the override does not fit the price book: {exc}") from None
    return written
