"""Exported invoices depend on the invoice alone, read back exactly, and a person can read
the PDF: who, which period, which number, every line and the totals."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from metering.invoice_export import (
    ExportFormat,
    describe_line,
    export_invoices,
    invoice_csv,
    invoice_json,
    invoice_pdf,
    summary_csv,
    summary_json,
    summary_pdf,
)
from metering.invoicing import FinalizedInvoice, InvoiceLine, LineKind, period_from_label
from metering.pricing import TokenClass

FINALIZED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def usage(
    model: str, token_class: str, quantity: int, price: str, amount: str, **kw: object
) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind(str(kw.pop("kind", "usage"))),
        model=model,
        token_class=TokenClass(token_class),
        service_tier=str(kw.pop("tier_name", "standard")),
        tier=int(kw.pop("tier", 0)),  # type: ignore[call-overload]
        quantity=quantity,
        unit_price_per_million=Decimal(price),
        amount=Decimal(amount),
        adjusts_period=kw.pop("adjusts", None),  # type: ignore[arg-type]
        long_context=bool(kw.pop("long_context", False)),
    )


def money_line(kind: str, amount: str) -> InvoiceLine:
    return InvoiceLine(LineKind(kind), None, None, None, None, 0, None, Decimal(amount))


INVOICE = FinalizedInvoice(
    invoice_number="INV-2026-000042",
    tenant_id="acme",
    tenant_name="Acme (Zürich) \\ Labs",
    period=period_from_label("2026-10"),
    period_label="2026-10",
    currency="USD",
    status="finalized",
    finalized_at=FINALIZED,
    lines=(
        usage("gpt-4.1", "input", 1_234_567, "2.00", "2.47"),
        usage("gpt-4.1", "input", 612_345, "1.50", "0.92", tier=1),
        usage("claude-sonnet-4", "cache_write", 100_000, "7.50", "0.75", long_context=True),
        money_line("discount", "-0.41"),
        money_line("commitment", "47.27"),
        usage("gpt-4.1", "output", 100_000, "8.00", "0.80", kind="adjustment", adjusts="2026-09"),
    ),
    subtotal=Decimal("4.14"),
    total=Decimal("51.80"),
)


def pdf_text(pdf: bytes) -> list[str]:
    """The strings a PDF viewer would draw, in order (our PDFs are uncompressed)."""
    strings = re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", pdf)
    return [re.sub(rb"\\(.)", rb"\1", s).decode("cp1252") for s in strings]


def check_structure(pdf: bytes) -> int:
    """Every object sits where the cross-reference table says; returns the page count."""
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.endswith(b"%%EOF\n")
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", pdf)[1])  # type: ignore[index]
    assert pdf[startxref:].startswith(b"xref\n")
    count = int(re.match(rb"xref\n0 (\d+)\n", pdf[startxref:])[1])  # type: ignore[index]
    table = pdf[startxref:].split(b"\n")[2 : 2 + count]
    for number, entry in enumerate(table[1:], start=1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(b"%d 0 obj\n" % number), number
    for match in re.finditer(rb"<< /Length (\d+) >>\nstream\n", pdf):
        end = match.end() + int(match[1])
        assert pdf[end:].startswith(b"\nendstream"), "stream lengths are exact"
    return int(re.search(rb"/Type /Pages /Kids \[[^\]]*\] /Count (\d+)", pdf)[1])  # type: ignore[index]


def test_every_export_of_an_invoice_is_byte_for_byte_the_same() -> None:
    for write in (invoice_json, invoice_csv, invoice_pdf):
        assert write(INVOICE) == write(replace(INVOICE)), write.__name__
    for summary in (summary_json, summary_csv, summary_pdf):
        assert summary("2026-10", [INVOICE]) == summary("2026-10", [INVOICE]), summary.__name__


def test_the_json_invoice_keeps_every_amount_exact() -> None:
    document = json.loads(invoice_json(INVOICE))
    assert document["invoice_number"] == "INV-2026-000042"
    assert (document["period_start"], document["period_end"]) == (
        "2026-10-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
    )
    assert document["finalized_at"] == "2026-11-02T09:30:00Z"
    assert (document["subtotal"], document["total"]) == ("4.14", "51.80")
    amounts = [Decimal(line["amount"]) for line in document["lines"]]
    assert sum(amounts) == Decimal(document["total"])
    first = document["lines"][0]
    assert first == {
        "line_no": 1,
        "kind": "usage",
        "model": "gpt-4.1",
        "token_class": "input",
        "service_tier": "standard",
        "tier": 0,
        "long_context": False,
        "quantity": 1_234_567,
        "unit_price_per_million": "2.00",
        "amount": "2.47",
        "adjusts_period": None,
    }
    assert document["lines"][-1]["adjusts_period"] == "2026-09"


def test_the_csv_invoice_has_one_row_per_line_naming_its_invoice() -> None:
    rows = list(csv.DictReader(io.StringIO(invoice_csv(INVOICE).decode())))
    assert len(rows) == len(INVOICE.lines)
    assert {row["invoice_number"] for row in rows} == {"INV-2026-000042"}
    assert [row["kind"] for row in rows] == [
        "usage",
        "usage",
        "usage",
        "discount",
        "commitment",
        "adjustment",
    ]
    assert sum(Decimal(row["amount"]) for row in rows) == INVOICE.total
    assert rows[3]["model"] == "" and rows[3]["unit_price_per_million"] == ""


def test_a_person_reads_who_when_which_number_every_line_and_the_totals_in_the_pdf() -> None:
    pdf = invoice_pdf(INVOICE)
    assert check_structure(pdf) == 1
    text = "\n".join(pdf_text(pdf))
    for expected in (
        "Invoice",
        "INV-2026-000042",
        "Acme (Zürich) \\ Labs (acme)",
        "2026-10: 2026-10-01 to 2026-10-31 (UTC)",
        "2026-11-02 09:30 UTC",
        "1,234,567",
        "gpt-4.1 input, standard, band 2",
        "claude-sonnet-4 cache write, standard, long context",
        "Discount",
        "-0.41",
        "Minimum commitment shortfall",
        "Adjustment for 2026-09: gpt-4.1 output, standard",
        "Subtotal",
        "4.14",
        "Total",
        "51.80",
    ):
        assert expected in text, expected
    rows = pdf_text(pdf)
    subtotal = next(i for i, row in enumerate(rows) if row.startswith("Subtotal"))
    discount = next(i for i, row in enumerate(rows) if row.startswith("Discount"))
    assert subtotal < discount, "the subtotal follows this period's usage"


def test_the_pdf_is_dated_when_the_invoice_was_finalized_and_carries_no_other_time() -> None:
    pdf = invoice_pdf(INVOICE)
    assert b"/CreationDate (D:20261102093000Z)" in pdf
    assert b"/ModDate (D:20261102093000Z)" in pdf
    later = replace(INVOICE, finalized_at=datetime(2026, 11, 3, tzinfo=UTC))
    assert invoice_pdf(later) != pdf
    assert b"/ID" not in pdf


def test_a_long_invoice_continues_on_numbered_pages() -> None:
    lines = tuple(
        usage(f"model-{n:03d}", "output", 1000 * n, "8.00", str(Decimal(8 * n) / 1000))
        for n in range(1, 201)
    )
    long = replace(INVOICE, lines=lines, subtotal=Decimal("160.80"), total=Decimal("160.80"))
    pdf = invoice_pdf(long)
    pages = check_structure(pdf)
    assert pages >= 3
    text = pdf_text(pdf)
    for page in range(1, pages + 1):
        assert f"Invoice INV-2026-000042  -  page {page} of {pages}" in text
    assert text.count("Invoice (continued)") == pages - 1
    assert all(f"model-{n:03d} output, standard" in "\n".join(text) for n in (1, 100, 200))


def test_a_very_long_model_name_wraps_instead_of_running_into_the_numbers() -> None:
    line = usage("a-model-with-a-very-long-name-" * 4, "input", 1, "1.00", "0.00")
    pdf = invoice_pdf(replace(INVOICE, lines=(line,)))
    rows = [row for row in pdf_text(pdf) if "a-model" in row or row.startswith("  ")]
    assert len(rows) >= 2
    assert describe_line(line).startswith("a-model-with-a-very-long-name-")


def test_amounts_follow_the_currency_minor_unit() -> None:
    yen = replace(
        INVOICE,
        currency="JPY",
        lines=(usage("gpt-4.1", "input", 10_000_000, "300", "3000"),),
        subtotal=Decimal("3000"),
        total=Decimal("3000"),
    )
    text = "\n".join(pdf_text(invoice_pdf(yen)))
    assert "3,000" in text and "3,000.00" not in text
    assert "Amount (JPY)" in text


def test_the_summary_totals_each_currency(tmp_path: Path) -> None:
    euro = replace(INVOICE, invoice_number="INV-2026-000043", tenant_id="globex", currency="EUR")
    summary = json.loads(summary_json("2026-10", [INVOICE, euro]))
    assert summary["totals"] == [
        {"currency": "EUR", "invoices": 1, "total": "51.80"},
        {"currency": "USD", "invoices": 1, "total": "51.80"},
    ]
    rows = list(csv.DictReader(io.StringIO(summary_csv("2026-10", [INVOICE, euro]).decode())))
    assert [row["invoice_number"] for row in rows] == ["INV-2026-000042", "INV-2026-000043"]
    text = "\n".join(pdf_text(summary_pdf("2026-10", [INVOICE, euro])))
    assert "Invoices for 2026-10" in text and "Total EUR" in text and "Total USD" in text


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_export_writes_each_invoice_and_the_summary_and_again_the_same(
    tmp_path: Path, fmt: ExportFormat
) -> None:
    done: list[tuple[int, int]] = []
    paths = export_invoices("2026-10", [INVOICE], fmt, tmp_path, lambda d, t: done.append((d, t)))
    assert [p.name for p in paths] == [f"INV-2026-000042.{fmt}", f"summary-2026-10.{fmt}"]
    first = {p.name: p.read_bytes() for p in paths}
    export_invoices("2026-10", [INVOICE], fmt, tmp_path)
    assert {p.name: p.read_bytes() for p in paths} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(first), "no temporary files left"
    assert done == [(1, 1)]
