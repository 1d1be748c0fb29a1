"""Money on invoices: each currency's minor unit, rounding to it, and exact sums.

Rounding, once and in one place: each line is computed exactly, then rounded half-even to
the currency's minor unit; subtotal and total are sums of rounded lines, so an invoice always
adds up as printed.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from typing import Final

from metering.billing.currencies import CURRENCY_MINOR_UNITS
from metering.billing.invoice_errors import InvoiceError
from metering.billing.rating import EXACT

MONEY: Final = Context(
    prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Rounding to a minor unit: like ``EXACT``, but rounding is the point, so not trapped."""


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency``: ``Decimal('0.01')`` for USD, ``Decimal('1')`` for
    JPY."""
    try:
        places = CURRENCY_MINOR_UNITS[currency]
    except KeyError:
        raise InvoiceError(
            f"currency {currency!r} is not in CURRENCY_MINOR_UNITS ("
            f"{', '.join(sorted(CURRENCY_MINOR_UNITS))}): add it with its number of decimal"
            " places"
        ) from None
    return Decimal(1).scaleb(-places)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-even (banker's rounding) to the currency's minor unit."""
    return MONEY.quantize(amount, minor_unit(currency))


def exact_sum(amounts: Iterable[Decimal]) -> Decimal:
    """The sum of amounts in ``EXACT``: never rounded, an error rather than inexact."""
    total = Decimal(0)
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total
