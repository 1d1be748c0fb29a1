"""Finalized invoices as files: JSON, CSV and PDF, one per invoice, plus a summary per period.

Every byte comes from the stored invoice: no clock, no random ids, no environment. Exporting
the same invoice again gives identical files, which is how a customer's copy is checked
against ours. Amounts are written as decimal text, never through a float.

The PDF is written by hand (PDF 1.4, uncompressed text, the standard Helvetica and Courier
fonts, which every reader has): a person can read it, and a test can read its text back. Its
only date is the invoice's ``finalized_at``.
"""

from __future__ import annotations

import csv
import io
import os
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson

from metering.invoicing import FinalizedInvoice, InvoiceLine, LineKind, minor_unit


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"
    pdf = "pdf"


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
    "lines",
    "subtotal",
    "total",
)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(value: Any) -> Any:
    """JSON and CSV cell values: decimals and times as text, the rest as is."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _time(value)
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


def _summary_record(invoice: FinalizedInvoice) -> dict[str, Any]:
    return {
        "invoice_number": invoice.invoice_number,
        "tenant_id": invoice.tenant_id,
        "tenant_name": invoice.tenant_name,
        "period_label": invoice.period_label,
        "period_start": _time(invoice.period.start),
        "period_end": _time(invoice.period.end),
        "currency": invoice.currency,
        "status": invoice.status,
        "finalized_at": _time(invoice.finalized_at),
        "lines": len(invoice.lines),
        "subtotal": str(invoice.subtotal),
        "total": str(invoice.total),
    }


def _json(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def invoice_json(invoice: FinalizedInvoice) -> bytes:
    """The invoice as one JSON document; amounts and prices are decimal strings."""
    record = _summary_record(invoice)
    del record["lines"]
    record["lines"] = [line_record(n, line) for n, line in enumerate(invoice.lines, start=1)]
    return _json(record)


def _csv(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in header])
    return out.getvalue().encode()


INVOICE_CSV_FIELDS: Final = (
    "invoice_number",
    "tenant_id",
    "period_label",
    "currency",
    *LINE_FIELDS,
)


def invoice_csv(invoice: FinalizedInvoice) -> bytes:
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


def summary_json(label: str, invoices: Sequence[FinalizedInvoice]) -> bytes:
    return _json(
        {
            "period_label": label,
            "invoices": [_summary_record(invoice) for invoice in invoices],
            "totals": [
                {"currency": currency, "invoices": count, "total": str(total)}
                for currency, count, total in _totals(invoices)
            ],
        }
    )


def summary_csv(label: str, invoices: Sequence[FinalizedInvoice]) -> bytes:
    return _csv(SUMMARY_FIELDS, (_summary_record(invoice) for invoice in invoices))


def _totals(invoices: Sequence[FinalizedInvoice]) -> list[tuple[str, int, Decimal]]:
    totals: dict[str, tuple[int, Decimal]] = {}
    for invoice in invoices:
        count, total = totals.get(invoice.currency, (0, Decimal(0)))
        totals[invoice.currency] = (count + 1, total + invoice.total)
    return [(currency, *totals[currency]) for currency in sorted(totals)]


# --- PDF ------------------------------------------------------------------------------------

PAGE_WIDTH: Final = 595  # A4 in points
PAGE_HEIGHT: Final = 842
MARGIN: Final = 42
TABLE_SIZE: Final = 8  # Courier: every character is 0.6 em wide, so columns line up
TABLE_CHARS: Final = int((PAGE_WIDTH - 2 * MARGIN) / (TABLE_SIZE * 0.6))
LEADING: Final = 11
BOTTOM: Final = 64

_FONTS: Final = {
    "F1": "Helvetica",
    "F2": "Helvetica-Bold",
    "F3": "Courier",
    "F4": "Courier-Bold",
}


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


@dataclass(slots=True)
class _Page:
    ops: list[bytes]

    def text(self, x: float, y: float, font: str, size: float, text: str) -> None:
        self.ops.append(
            b"BT /%s %s Tf %s %s Td %s Tj ET"
            % (font.encode(), _num(size), _num(x), _num(y), _pdf_string(text))
        )

    def rule(self, y: float) -> None:
        self.ops.append(
            b"0.5 w %s %s m %s %s l S" % (_num(MARGIN), _num(y), _num(PAGE_WIDTH - MARGIN), _num(y))
        )


def _num(value: float) -> bytes:
    return (f"{value:.2f}".rstrip("0").rstrip(".")).encode()


class _Document:
    """Pages of text, laid out top to bottom; ``pdf()`` serializes them."""

    def __init__(self, title: str, heading: Callable[[_Page, int], float]) -> None:
        self.title = title
        self.heading = heading  # draws a page's heading, returns where the body starts
        self.pages: list[_Page] = []
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        page = _Page([])
        self.pages.append(page)
        self.y = self.heading(page, len(self.pages))

    @property
    def page(self) -> _Page:
        return self.pages[-1]

    def row(self, text: str, *, bold: bool = False, keep: int = 1) -> None:
        """One line of the fixed-width table; ``keep`` rows stay on one page together."""
        if self.y - LEADING * keep < BOTTOM:
            self.new_page()
        self.page.text(MARGIN, self.y, "F4" if bold else "F3", TABLE_SIZE, text)
        self.y -= LEADING

    def gap(self, points: float = LEADING / 2) -> None:
        self.y -= points

    def rule(self) -> None:
        self.page.rule(self.y + LEADING - 3)

    def pdf(self, created: datetime | None) -> bytes:
        count = len(self.pages)
        for number, page in enumerate(self.pages, start=1):
            page.text(MARGIN, 30, "F1", 8, f"{self.title}  -  page {number} of {count}")
        objects: list[bytes] = []
        font_ids = {}
        objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
        objects.append(b"")  # the page tree, once the pages have numbers
        for name, base in _FONTS.items():
            objects.append(
                b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>"
                % base.encode()
            )
            font_ids[name] = len(objects)
        fonts = b" ".join(b"/%s %d 0 R" % (n.encode(), i) for n, i in font_ids.items())
        kids = []
        for page in self.pages:
            content = b"\n".join(page.ops)
            objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
            objects.append(
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d]"
                b" /Resources << /Font << %s >> >> /Contents %d 0 R >>"
                % (PAGE_WIDTH, PAGE_HEIGHT, fonts, len(objects))
            )
            kids.append(len(objects))
        objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
            b" ".join(b"%d 0 R" % k for k in kids),
            len(kids),
        )
        info = b"/Title %s /Producer (metering)" % _pdf_string(self.title)
        if created is not None:
            stamp = created.astimezone(UTC).strftime("D:%Y%m%d%H%M%SZ")
            info += b" /CreationDate (%s) /ModDate (%s)" % (stamp.encode(), stamp.encode())
        objects.append(b"<< %s >>" % info)
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        for offset in offsets:
            out += b"%010d 00000 n \n" % offset
        out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            len(objects) + 1,
            len(objects),
            xref,
        )
        return bytes(out)


def _money(amount: Decimal, currency: str) -> str:
    places = -minor_unit(currency).as_tuple().exponent  # type: ignore[operator]
    return f"{amount:,.{places}f}"


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


_DESCRIPTION: Final = TABLE_CHARS - 3 * 2 - 15 - 14 - 16
_COLUMNS: Final = (_DESCRIPTION, 15, 14, 16)


def _table_row(cells: Sequence[str]) -> str:
    first, *rest = cells
    return "  ".join(
        [first.ljust(_COLUMNS[0]), *(c.rjust(w) for c, w in zip(rest, _COLUMNS[1:], strict=True))]
    ).rstrip()


def invoice_pdf(invoice: FinalizedInvoice) -> bytes:
    """The invoice as a PDF a person can read: who, which period, its number, every line,
    subtotal and total. Created at ``finalized_at``; nothing else varies."""
    currency = invoice.currency
    last_day = (invoice.period.end - timedelta(days=1)).date()
    facts = [
        ("Invoice number", invoice.invoice_number),
        ("Tenant", f"{invoice.tenant_name} ({invoice.tenant_id})"),
        (
            "Billing period",
            f"{invoice.period_label}: {invoice.period.start.date()} to {last_day} (UTC)",
        ),
        ("Issued", invoice.finalized_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Currency", currency),
        ("Status", invoice.status),
    ]

    def heading(page: _Page, number: int) -> float:
        y = PAGE_HEIGHT - MARGIN - 18
        page.text(MARGIN, y, "F2", 18, "Invoice" if number == 1 else "Invoice (continued)")
        y -= 26
        for name, value in facts if number == 1 else facts[:2]:
            page.text(MARGIN, y, "F2", 10, f"{name}:")
            page.text(MARGIN + 95, y, "F1", 10, value)
            y -= 14
        y -= 12
        header = _table_row(["Description", "Quantity", "Price per 1M", f"Amount ({currency})"])
        page.text(MARGIN, y, "F4", TABLE_SIZE, header)
        page.rule(y - 3)
        return y - LEADING - 2

    doc = _Document(f"Invoice {invoice.invoice_number}", heading)

    def subtotal() -> None:
        doc.rule()
        doc.row(_table_row(["Subtotal", "", "", _money(invoice.subtotal, currency)]), bold=True)
        doc.gap(4)

    usage = [line.kind is LineKind.USAGE and line.adjusts_period is None for line in invoice.lines]
    last_usage = max((n for n, is_usage in enumerate(usage) if is_usage), default=-1)
    if last_usage < 0:
        subtotal()
    for index, line in enumerate(invoice.lines):
        wrapped = textwrap.wrap(describe_line(line), _DESCRIPTION) or [""]
        priced = line.unit_price_per_million is not None
        doc.row(
            _table_row(
                [
                    wrapped[0],
                    f"{line.quantity:,}" if priced else "",
                    str(line.unit_price_per_million) if priced else "",
                    _money(line.amount, currency),
                ]
            ),
            keep=len(wrapped),
        )
        for more in wrapped[1:]:
            doc.row("  " + more)
        if index == last_usage:
            subtotal()
    doc.gap(4)
    doc.rule()
    doc.row(_table_row(["Total", "", "", _money(invoice.total, currency)]), bold=True)
    return doc.pdf(invoice.finalized_at)


def summary_pdf(label: str, invoices: Sequence[FinalizedInvoice]) -> bytes:
    """A list of the period's invoices and their totals per currency."""
    columns = (18, TABLE_CHARS - 18 - 8 - 18 - 18 - 4 * 2, 8, 18, 18)

    def row(cells: Sequence[str]) -> str:
        number, tenant, currency, subtotal, total = cells
        return "  ".join(
            [
                number.ljust(columns[0]),
                tenant[: columns[1]].ljust(columns[1]),
                currency.ljust(columns[2]),
                subtotal.rjust(columns[3]),
                total.rjust(columns[4]),
            ]
        ).rstrip()

    def heading(page: _Page, number: int) -> float:
        y = PAGE_HEIGHT - MARGIN - 18
        page.text(MARGIN, y, "F2", 18, f"Invoices for {label}")
        y -= 22
        page.text(MARGIN, y, "F1", 10, f"{len(invoices)} finalized invoices")
        y -= 24
        page.text(
            MARGIN, y, "F4", TABLE_SIZE, row(["Number", "Tenant", "Currency", "Subtotal", "Total"])
        )
        page.rule(y - 3)
        return y - LEADING - 2

    doc = _Document(f"Invoices for {label}", heading)
    for invoice in invoices:
        doc.row(
            row(
                [
                    invoice.invoice_number,
                    invoice.tenant_id,
                    invoice.currency,
                    _money(invoice.subtotal, invoice.currency),
                    _money(invoice.total, invoice.currency),
                ]
            )
        )
    doc.gap(4)
    for currency, count, total in _totals(invoices):
        doc.row(
            row([f"Total {currency}", f"{count} invoices", currency, "", _money(total, currency)]),
            bold=True,
        )
    created = max((invoice.finalized_at for invoice in invoices), default=None)
    return doc.pdf(created)


_WRITERS: Final = {
    ExportFormat.json: (invoice_json, summary_json),
    ExportFormat.csv: (invoice_csv, summary_csv),
    ExportFormat.pdf: (invoice_pdf, summary_pdf),
}


def summary_name(label: str, fmt: ExportFormat) -> str:
    return f"summary-{label}.{fmt.value}"


def export_invoices(
    label: str,
    invoices: Sequence[FinalizedInvoice],
    fmt: ExportFormat,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Writes ``NUMBER.FMT`` per invoice and ``summary-LABEL.FMT`` into ``out_dir``; returns
    the paths, summary last. Files are replaced atomically, so a reader never sees half of
    one."""
    write_invoice, write_summary = _WRITERS[fmt]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for done, invoice in enumerate(invoices, start=1):
        paths.append(
            _write(out_dir / f"{invoice.invoice_number}.{fmt.value}", write_invoice(invoice))
        )
        if progress is not None:
            progress(done, len(invoices))
    paths.append(_write(out_dir / summary_name(label, fmt), write_summary(label, invoices)))
    return paths


def _write(path: Path, data: bytes) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return path
