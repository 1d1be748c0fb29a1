"""Reading finalized invoices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import psycopg

from metering.billing.contracts import Contract, contract_for_period, contract_history
from metering.billing.invoices import FinalizedInvoice, InvoiceLine, Issuer, LineKind
from metering.billing.periods import BillingPeriod
from metering.billing.tokens import TokenClass
from metering.store.billing.contracts import all_contracts

LINE_COLUMNS: Final = (
    "kind, model, token_class, service_tier, tier, quantity, unit_price_per_million, amount,"
    " adjusts_period, long_context"
)


def invoice_line(row: Sequence[Any]) -> InvoiceLine:
    kind, model, token_class, tier_name, tier, quantity, price, amount, adjusts, long_ctx = row
    return InvoiceLine(
        LineKind(kind),
        model,
        TokenClass(token_class) if token_class is not None else None,
        tier_name,
        tier,
        quantity,
        price,
        amount,
        adjusts,
        long_ctx,
    )


def finalized_invoices(
    conn: psycopg.Connection,
    *,
    period_label: str | None = None,
    tenant_id: str | None = None,
    invoice_number: str | None = None,
) -> list[FinalizedInvoice]:
    """Finalized invoices, by number, with their lines, the discount percentage of the
    contract that governed their period, and the issuer they were finalized with."""
    headers = conn.execute(
        "SELECT invoice_id, invoice_number, tenant_id, tenant_name, period_label, period_start,"
        " period_end, currency, status, finalized_at, subtotal, total, issuer_name,"
        " issuer_address, issuer_tax_id, payment_terms_days FROM invoices"
        " WHERE (%(p)s::text IS NULL OR period_label = %(p)s)"
        "   AND (%(t)s::text IS NULL OR tenant_id = %(t)s)"
        "   AND (%(n)s::text IS NULL OR invoice_number = %(n)s)"
        " ORDER BY invoice_number",
        {"p": period_label, "t": tenant_id, "n": invoice_number},
    ).fetchall()
    lines: dict[int, list[InvoiceLine]] = {}
    contracts: dict[str, list[Contract]] = {}
    if headers:
        contracts = all_contracts(conn)
        rows = conn.execute(
            f"SELECT invoice_id, {LINE_COLUMNS} FROM invoice_lines"
            " WHERE invoice_id = ANY(%s) ORDER BY invoice_id, line_no",
            ([h[0] for h in headers],),
        )
        for row in rows:
            lines.setdefault(row[0], []).append(invoice_line(row[1:]))
    return [
        FinalizedInvoice(
            invoice_number=number,
            tenant_id=tenant,
            tenant_name=name,
            period=BillingPeriod(start, end),
            period_label=label,
            currency=currency,
            status=status,
            finalized_at=finalized_at,
            lines=tuple(lines.get(invoice_id, ())),
            subtotal=subtotal,
            total=total,
            discount_percent=contract_for_period(
                contract_history(tenant, contracts.get(tenant, ())), BillingPeriod(start, end)
            ).discount_percent,
            issuer=_issuer(issuer_name, address, tax_id, terms),
        )
        for (
            invoice_id,
            number,
            tenant,
            name,
            label,
            start,
            end,
            currency,
            status,
            finalized_at,
            subtotal,
            total,
            issuer_name,
            address,
            tax_id,
            terms,
        ) in headers
    ]


def _issuer(
    name: str | None, address: list[str] | None, tax_id: str | None, terms: int | None
) -> Issuer | None:
    """The issuer stored with an invoice; ``None`` for one finalized before it was stored."""
    if name is None or address is None or terms is None:
        return None
    return Issuer(name, tuple(address), tax_id or "", terms)


def closed_invoice_for(
    conn: psycopg.Connection, tenant_id: str, period: BillingPeriod
) -> tuple[bool, FinalizedInvoice | None]:
    """Whether the tenant's period is closed, and its invoice if it got one."""
    row = conn.execute(
        "SELECT i.invoice_number FROM period_billing p LEFT JOIN invoices i USING (invoice_id)"
        " WHERE p.tenant_id = %s AND p.period_start = %s",
        (tenant_id, period.start),
    ).fetchone()
    if row is None:
        return False, None
    if row[0] is None:
        return True, None
    (invoice,) = finalized_invoices(conn, invoice_number=row[0])
    return True, invoice
