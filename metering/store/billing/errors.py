"""What goes wrong in billing that a person has to fix."""

from __future__ import annotations


class BillingError(ValueError):
    """Something about billing a person has to fix; the message says what and how."""


class BookChangedError(BillingError):
    """The price book changed after a close read it; that close must read it again."""

    def __init__(self) -> None:
        super().__init__("the price book changed while the period was being closed: close it again")
