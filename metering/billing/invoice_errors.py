"""The error of every invoice rule: inputs that cannot make an invoice."""

from __future__ import annotations


class InvoiceError(ValueError):
    """Inputs that cannot make an invoice; the message says what to fix."""
