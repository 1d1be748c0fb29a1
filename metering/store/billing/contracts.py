"""Tenants' contract versions: reading them and adding one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import psycopg

from metering.billing.close_policy import check_not_closed
from metering.billing.contracts import Contract, contract_history
from metering.store.billing.errors import BillingError, OverrideCurrencyError
from metering.store.billing.guards import closed_until, lock_tenant, require_tenant, show_moment
from metering.store.billing.prices import overrides_of

_CONTRACT_COLUMNS: Final = (
    "tenant_id, currency, anchor_day, discount_percent, minimum_commitment, effective_from,"
    " effective_to"
)


class _Keep:
    """Leave this term as the previous contract version has it."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


def _contract(row: Sequence[Any]) -> Contract:
    tenant_id, currency, anchor_day, discount, minimum, start, end = row
    return Contract(
        tenant_id,
        currency,
        start,
        effective_to=end,
        anchor_day=anchor_day,
        discount_percent=discount,
        minimum_commitment=minimum,
    )


def contracts_of(conn: psycopg.Connection, tenant_id: str) -> list[Contract]:
    """A tenant's contract versions, oldest first (without the default terms)."""
    rows = conn.execute(
        f"SELECT {_CONTRACT_COLUMNS} FROM contracts WHERE tenant_id = %s ORDER BY effective_from",
        (tenant_id,),
    )
    return [_contract(row) for row in rows]


def all_contracts(conn: psycopg.Connection) -> dict[str, list[Contract]]:
    result: dict[str, list[Contract]] = {}
    rows = conn.execute(
        f"SELECT {_CONTRACT_COLUMNS} FROM contracts ORDER BY tenant_id, effective_from"
    )
    for row in rows:
        result.setdefault(row[0], []).append(_contract(row))
    return result


def refuse_before_closed(
    conn: psycopg.Connection, tenant_id: str, moment: datetime, what: str
) -> None:
    """``check_not_closed`` against what the tenant has closed."""
    check_not_closed(what, tenant_id, moment, closed_until(conn, tenant_id))


def set_contract(
    conn: psycopg.Connection,
    tenant_id: str,
    effective_from: datetime,
    *,
    currency: str | _Keep = KEEP,
    anchor_day: int | _Keep = KEEP,
    discount_percent: Decimal | _Keep = KEEP,
    minimum_commitment: Decimal | _Keep | None = KEEP,
) -> tuple[Contract, bool]:
    """Adds a contract version from ``effective_from`` with the given terms, the others
    carried over from the version it follows (or the defaults). The version in effect then
    ends there; a later version, if any, ends the new one. Returns the version and whether
    anything changed (the same terms at the same moment are a no-op)."""
    with conn.transaction():
        lock_tenant(conn, tenant_id)
        require_tenant(conn, tenant_id)
        refuse_before_closed(conn, tenant_id, effective_from, "a contract change")
        history = contracts_of(conn, tenant_id)
        before = [c for c in history if c.effective_from <= effective_from]
        after = [c for c in history if c.effective_from > effective_from]
        base = before[-1] if before else contract_history(tenant_id, [])[0]
        new = Contract(
            tenant_id,
            base.currency if isinstance(currency, _Keep) else currency,
            effective_from,
            effective_to=after[0].effective_from if after else None,
            anchor_day=base.anchor_day if isinstance(anchor_day, _Keep) else anchor_day,
            discount_percent=(
                base.discount_percent if isinstance(discount_percent, _Keep) else discount_percent
            ),
            minimum_commitment=(
                base.minimum_commitment
                if isinstance(minimum_commitment, _Keep)
                else minimum_commitment
            ),
        )
        _check_anchor_day(conn, tenant_id, history, new.anchor_day)
        _check_override_currency(conn, tenant_id, new)
        changed = _store_version(conn, new, before[-1] if before else None)
    return new, changed


def _store_version(conn: psycopg.Connection, new: Contract, previous: Contract | None) -> bool:
    """Writes ``new`` after ``previous`` (the version in effect when it starts): in its place
    if it took effect at the same moment (nothing to write if the terms are the same), else
    ending it where ``new`` starts. Returns whether anything changed."""
    tenant_id, effective_from = new.tenant_id, new.effective_from
    if previous is not None and previous.effective_from == effective_from:
        if previous == new:
            return False
        conn.execute(
            "UPDATE contracts SET currency = %s, anchor_day = %s, discount_percent = %s,"
            " minimum_commitment = %s WHERE tenant_id = %s AND effective_from = %s",
            (
                new.currency,
                new.anchor_day,
                new.discount_percent,
                new.minimum_commitment,
                tenant_id,
                effective_from,
            ),
        )
        return True
    if previous is not None:
        conn.execute(
            "UPDATE contracts SET effective_to = %s WHERE tenant_id = %s AND effective_from = %s",
            (effective_from, tenant_id, previous.effective_from),
        )
    conn.execute(
        f"INSERT INTO contracts ({_CONTRACT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            tenant_id,
            new.currency,
            new.anchor_day,
            new.discount_percent,
            new.minimum_commitment,
            new.effective_from,
            new.effective_to,
        ),
    )
    return True


def _check_anchor_day(
    conn: psycopg.Connection, tenant_id: str, history: Sequence[Contract], anchor_day: int
) -> None:
    current = history[0].anchor_day if history else None
    if current is None:
        row = conn.execute(
            "SELECT period_start FROM period_billing WHERE tenant_id = %s LIMIT 1", (tenant_id,)
        ).fetchone()
        current = 1 if row is not None else None  # closed on the default terms' calendar months
    if current is not None and current != anchor_day:
        raise BillingError(
            f"{tenant_id} is billed from anchor day {current}; changing the anchor day is not"
            " supported (the period in which it changes would be irregular)"
        )


def _check_override_currency(conn: psycopg.Connection, tenant_id: str, contract: Contract) -> None:
    for entry in overrides_of(conn, tenant_id).get(tenant_id, []):
        starts_before_end = contract.effective_to is None or entry.effective_from < (
            contract.effective_to
        )
        ends_after_start = entry.effective_to is None or entry.effective_to > (
            contract.effective_from
        )
        if entry.currency != contract.currency and starts_before_end and ends_after_start:
            raise OverrideCurrencyError(
                f"{tenant_id} has a price override {entry.describe()} in {entry.currency} from"
                f" {show_moment(entry.effective_from)}; a contract in {contract.currency} cannot"
                " apply while it does: end it first"
            )
