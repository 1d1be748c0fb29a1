"""Finalized invoices as files: JSON, CSV and PDF, one per invoice, plus a summary per period.

Exporting the same invoice again gives identical files, which is how a customer's copy is
checked against ours. The bytes come from ``metering.files.invoice_records`` (JSON, CSV) and
``metering.files.invoice_pdf`` (PDF), imported only when a format asks for them: the CLI
imports this module for ``ExportFormat`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metering.billing.invoices import FinalizedInvoice, Issuer


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"
    pdf = "pdf"


InvoiceWriter = Callable[["FinalizedInvoice", "Issuer"], bytes]
SummaryWriter = Callable[[str, Sequence["FinalizedInvoice"], "Issuer"], bytes]


def writers(fmt: ExportFormat) -> tuple[InvoiceWriter, SummaryWriter]:
    """The invoice and summary writers of ``fmt``; the PDF's (fpdf2) are imported only here."""
    if fmt is ExportFormat.pdf:
        from metering.files.invoice_pdf import invoice_pdf, summary_pdf

        return invoice_pdf, summary_pdf
    from metering.files.invoice_records import invoice_csv, invoice_json, summary_csv, summary_json

    if fmt is ExportFormat.csv:
        return invoice_csv, summary_csv
    return invoice_json, summary_json


def summary_name(label: str, fmt: ExportFormat, tenant_id: str | None = None) -> str:
    """``summary-LABEL.FMT`` for a period's export; ``summary-LABEL-TENANT.FMT`` for one
    tenant's, so that exporting one tenant into a directory that holds the period's export
    leaves the period's summary as it is."""
    scope = f"{label}-{tenant_id}" if tenant_id is not None else label
    return f"summary-{scope}.{fmt.value}"


def export_invoices(
    label: str,
    invoices: Sequence[FinalizedInvoice],
    fmt: ExportFormat,
    out_dir: Path,
    issuer: Issuer,
    progress: Callable[[int, int], None] | None = None,
    *,
    tenant_id: str | None = None,
) -> list[Path]:
    """Writes ``NUMBER.FMT`` per invoice and their summary (``summary_name``: of the period,
    or of ``tenant_id``'s invoices alone) into ``out_dir``; returns the paths, summary last.
    Files are replaced atomically, so a reader never sees half of one."""
    write_invoice, write_summary = writers(fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for done, invoice in enumerate(invoices, start=1):
        paths.append(
            _write(
                out_dir / f"{invoice.invoice_number}.{fmt.value}", write_invoice(invoice, issuer)
            )
        )
        if progress is not None:
            progress(done, len(invoices))
    summary = out_dir / summary_name(label, fmt, tenant_id)
    paths.append(_write(summary, write_summary(label, invoices, issuer)))
    return paths


def _write(path: Path, data: bytes) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return path
