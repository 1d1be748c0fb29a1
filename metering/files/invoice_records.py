"""Finalized invoices as records: the JSON document and CSV rows of an invoice, and the
summary of a period, as bytes.

Every byte comes from the stored invoice, issuer included: no clock, no random ids, no
setting read at export (the ``issuer`` the writers take is the settings' one, printed only on
invoices finalized before issuers were stored: ``FinalizedInvoice.issued_by``).
Amounts are written as decimal text, never through a float.

``invoice_document`` is the one JSON shape of an invoice: the export writes it, and
`metering invoices show --format json` prints it (docs/billing.md lists its keys).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

import orjson

from metering.billing.invoices import FinalizedInvoice, InvoiceLine, Issuer, LineKind
from metering.billing.utc import rfc3339
from metering.files.csv_cells import csv_cell

LINE_FIELDS: Final = (
    "line_no",
    "kind",
    "model",
    "token_class",
    "service_tier",
    "tier",
    "long_context",
    "quantity",
    "unit_price_per_million",
    "amount",
    "adjusts_period",
)

SUMMARY_FIELDS: Final = (
    "invoice_number",
    "tenant_id",
    "tenant_name",
    "period_label",
    "period_start",
    "period_end",
    "currency",
    "status",
    "finalized_at",
    "issued_on",
    "due_on",
    "payment_terms_days",
    "discount_percent",
    "lines",
    "line_count",
    "subtotal",
    "total",
    "amount_due",
)
"""The summary's columns. ``lines`` is the old name of ``line_count``, kept for readers of
earlier summaries; in an invoice document ``lines`` is the array of lines."""


def _text(value: Any) -> Any:
    """JSON and CSV cell values: decimals, times and dates as text, the rest as is."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


def line_record(line_no: int, line: InvoiceLine, *, as_text: bool = True) -> dict[str, Any]:
    """One line as a flat record; prices and amounts as decimal text unless ``as_text`` is
    false (then as ``Decimal``)."""
    convert = _text if as_text else (lambda value: value)
    return {
        "line_no": line_no,
        "kind": line.kind.value,
        "model": line.model,
        "token_class": line.token_class.value if line.token_class is not None else None,
        "service_tier": line.service_tier,
        "tier": line.tier,
        "long_context": line.long_context,
        "quantity": line.quantity,
        "unit_price_per_million": convert(line.unit_price_per_million),
        "amount": convert(line.amount),
        "adjusts_period": line.adjusts_period,
    }


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """This period's usage of one model on an invoice: tokens and amount, all classes."""

    model: str
    tokens: int
    amount: Decimal


def usage_by_model(lines: Iterable[InvoiceLine]) -> list[ModelUsage]:
    """This period's usage lines summed per model, by model name (adjustments excluded)."""
    sums: dict[str, tuple[int, Decimal]] = {}
    for line in lines:
        if line.kind is LineKind.USAGE and line.adjusts_period is None and line.model:
            tokens, amount = sums.get(line.model, (0, Decimal(0)))
            sums[line.model] = (tokens + line.quantity, amount + line.amount)
    return [ModelUsage(model, *sums[model]) for model in sorted(sums)]


def _header(invoice: FinalizedInvoice, issuer: Issuer) -> dict[str, Any]:
    """The keys an invoice document and a summary row share."""
    issuer = invoice.issued_by(issuer)
    return {
        "invoice_number": invoice.invoice_number,
        "tenant_id": invoice.tenant_id,
        "tenant_name": invoice.tenant_name,
        "period_label": invoice.period_label,
        "period": invoice.period_label,  # the key `invoices show` used before: kept
        "period_start": rfc3339(invoice.period.start),
        "period_end": rfc3339(invoice.period.end),
        "currency": invoice.currency,
        "status": invoice.status,
        "finalized_at": rfc3339(invoice.finalized_at),
        "issued_on": invoice.issued_on.isoformat(),
        "due_on": issuer.due_on(invoice).isoformat(),
        "payment_terms_days": issuer.payment_terms_days,
        "discount_percent": str(invoice.discount_percent),
        "subtotal": str(invoice.subtotal),
        "total": str(invoice.total),
        "amount_due": str(invoice.amount_due),
    }


def _summary_record(invoice: FinalizedInvoice, issuer: Issuer) -> dict[str, Any]:
    return {
        **_header(invoice, issuer),
        "lines": len(invoice.lines),
        "line_count": len(invoice.lines),
    }


def _json(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def invoice_document(invoice: FinalizedInvoice, issuer: Issuer) -> dict[str, Any]:
    """The invoice as one JSON-ready document: amounts and prices as decimal strings, times
    as UTC ``...Z``, dates as ``YYYY-MM-DD``, ``lines`` as the array of lines."""
    issued_by = invoice.issued_by(issuer)
    return {
        **_header(invoice, issuer),
        "issuer": {
            "name": issued_by.name,
            "address": list(issued_by.address),
            "tax_id": issued_by.tax_id or None,
        },
        "bill_to": {"tenant_id": invoice.tenant_id, "name": invoice.tenant_name},
        "usage_by_model": [
            {"model": m.model, "tokens": m.tokens, "amount": str(m.amount)}
            for m in usage_by_model(invoice.lines)
        ],
        "lines": [line_record(n, line) for n, line in enumerate(invoice.lines, start=1)],
    }


def invoice_json(invoice: FinalizedInvoice, issuer: Issuer) -> bytes:
    """``invoice_document`` as JSON text."""
    return _json(invoice_document(invoice, issuer))


def _csv(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(row[c]) for c in header])
    return out.getvalue().encode()


INVOICE_CSV_FIELDS: Final = (
    "invoice_number",
    "tenant_id",
    "period_label",
    "currency",
    *LINE_FIELDS,
)


def invoice_csv(invoice: FinalizedInvoice, issuer: Issuer) -> bytes:
    """One row per line, each naming its invoice; the totals are in the summary file."""
    head = {
        "invoice_number": invoice.invoice_number,
        "tenant_id": invoice.tenant_id,
        "period_label": invoice.period_label,
        "currency": invoice.currency,
    }
    return _csv(
        INVOICE_CSV_FIELDS,
        ({**head, **line_record(n, line)} for n, line in enumerate(invoice.lines, start=1)),
    )


def summary_json(label: str, invoices: Sequence[FinalizedInvoice], issuer: Issuer) -> bytes:
    return _json(
        {
            "period_label": label,
            "invoices": [_summary_record(invoice, issuer) for invoice in invoices],
            "totals": [
                {"currency": currency, "invoices": count, "total": str(total)}
                for currency, count, total in currency_totals(invoices)
            ],
        }
    )


def summary_csv(label: str, invoices: Sequence[FinalizedInvoice], issuer: Issuer) -> bytes:
    return _csv(SUMMARY_FIELDS, (_summary_record(invoice, issuer) for invoice in invoices))


def currency_totals(invoices: Sequence[FinalizedInvoice]) -> list[tuple[str, int, Decimal]]:
    totals: dict[str, tuple[int, Decimal]] = {}
    for invoice in invoices:
        count, total = totals.get(invoice.currency, (0, Decimal(0)))
        totals[invoice.currency] = (count + 1, total + invoice.total)
    return [(currency, *totals[currency]) for currency in sorted(totals)]


def describe_line(line: InvoiceLine) -> str:
    """What a person reads for a line, e.g. ``gpt-4.1 input, standard, band 2``."""
    if line.kind is LineKind.DISCOUNT:
        text = "Discount"
    elif line.kind is LineKind.COMMITMENT:
        text = "Minimum commitment shortfall"
    else:
        token_class = line.token_class.value.replace("_", " ") if line.token_class else ""
        parts = [f"{line.model} {token_class}".strip()]
        parts.append(line.service_tier or "")
        if line.long_context:
            parts.append("long context")
        if line.tier:
            parts.append(f"band {line.tier + 1}")
        text = ", ".join(p for p in parts if p)
    if line.adjusts_period is not None:
        text = f"Adjustment for {line.adjusts_period}: {text}"
    return text
