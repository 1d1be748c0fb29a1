"""Billing in the database: the price book, contracts and overrides, closing periods into
numbered, immutable invoices, and reading them back.

Thin on purpose: prices, contracts, invoices and adjustments are computed by the pure core
(``metering.billing``); these modules read its inputs and store its outputs. The rules in
prose are in ``docs/billing.md``.

Closing a period for a tenant is one transaction (``close``): an advisory lock on the
tenant, the usage of the period, the adjustments of earlier closed periods that got late
usage, the invoice with a number taken from a counter row (so a rolled-back close leaves no
gap), its lines, and the record of what the period billed (``period_billing``,
``billed_usage``).
"""
