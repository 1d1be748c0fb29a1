"""What goes wrong in billing that a person has to fix."""

from __future__ import annotations


class BillingError(ValueError):
    """Something about billing a person has to fix; the message says what is wrong (the CLI
    adds which of its commands or flags would help)."""


class UnknownTenantError(BillingError):
    """A tenant the catalog does not have."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}: it is not in the catalog")


class PricesChangedError(BillingError):
    """A price file changes the price or end of entries already stored."""


class PricesReachInvoicedError(BillingError):
    """A price file changes prices inside periods already invoiced."""


class OverrideCurrencyError(BillingError):
    """A contract's currency differs from that of a price override in effect with it."""


class BookChangedError(BillingError):
    """The price book changed after a close read it; that close must read it again."""

    def __init__(self) -> None:
        super().__init__("the price book changed while the period was being closed: close it again")
