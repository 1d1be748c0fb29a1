"""The currencies we bill in, with their minor units: a table the CLI's help text reads
without loading the billing rules."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

CURRENCY_MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "CHF": 2,
        "CAD": 2,
        "AUD": 2,
        "SEK": 2,
        "NOK": 2,
        "DKK": 2,
        "INR": 2,
        "CNY": 2,
        "SGD": 2,
        "JPY": 0,
        "KRW": 0,
    }
)
"""Decimal places of each billing currency (ISO 4217). Add a currency here before billing
in it."""
