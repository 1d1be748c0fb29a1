"""Exported invoices depend on the invoice and the issuer alone, read back exactly, and a
person can read the PDF as a finance team would send it: who sends it and to whom, its
number and dates, the amount due, a usage summary per model, every line and the totals."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from metering.billing.invoices import FinalizedInvoice, InvoiceLine, Issuer, LineKind
from metering.billing.periods import period_from_label
from metering.billing.tokens import TokenClass
from metering.files.invoice_export import ExportFormat, export_invoices
from metering.files.invoice_pdf import invoice_pdf, summary_pdf
from metering.files.invoice_records import (
    describe_line,
    invoice_csv,
    invoice_json,
    summary_csv,
    summary_json,
)

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
    discount_percent=Decimal("10"),
)

ISSUER = Issuer(
    name="Nimbus Inference AG",
    address=("Bahnhofstrasse 1", "8001 Zürich"),
    tax_id="CHE-123.456.789 MWST",
    payment_terms_days=14,
)


def pdf_pages(pdf: bytes) -> list[str]:
    """The text of each page, as a PDF reader (pypdf) extracts it. pypdf reads the Japanese
    fallback font's (CFF) two-byte codes as a NUL and a character; poppler reads them as
    they are: the NULs are pypdf's, not the file's."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return [page.extract_text().replace("\x00", "") for page in pages]


def pdf_text(pdf: bytes) -> str:
    return "\n".join(pdf_pages(pdf))


def test_every_export_of_an_invoice_is_byte_for_byte_the_same() -> None:
    japanese = replace(INVOICE, tenant_name="株式会社アクメ")
    for invoice in (INVOICE, japanese):
        for write in (invoice_json, invoice_csv, invoice_pdf):
            assert write(invoice, ISSUER) == write(replace(invoice), ISSUER), write.__name__
    for summary in (summary_json, summary_csv, summary_pdf):
        first = summary("2026-10", [INVOICE, japanese], ISSUER)
        assert first == summary("2026-10", [INVOICE, japanese], ISSUER), summary.__name__


def test_the_json_invoice_keeps_every_amount_exact() -> None:
    document = json.loads(invoice_json(INVOICE, ISSUER))
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


def test_the_json_invoice_carries_what_the_pdf_prints() -> None:
    document = json.loads(invoice_json(INVOICE, ISSUER))
    assert document["issuer"] == {
        "name": "Nimbus Inference AG",
        "address": ["Bahnhofstrasse 1", "8001 Zürich"],
        "tax_id": "CHE-123.456.789 MWST",
    }
    assert document["bill_to"] == {"tenant_id": "acme", "name": "Acme (Zürich) \\ Labs"}
    assert (document["issued_on"], document["due_on"], document["payment_terms_days"]) == (
        "2026-11-02",
        "2026-11-16",
        14,
    )
    assert (document["discount_percent"], document["amount_due"]) == ("10", "51.80")
    assert document["usage_by_model"] == [
        {"model": "claude-sonnet-4", "tokens": 100_000, "amount": "0.75"},
        {"model": "gpt-4.1", "tokens": 1_846_912, "amount": "3.39"},
    ]
    assert document["period"] == document["period_label"] == "2026-10"


def test_the_csv_invoice_has_one_row_per_line_naming_its_invoice() -> None:
    rows = list(csv.DictReader(io.StringIO(invoice_csv(INVOICE, ISSUER).decode())))
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


def test_csv_booleans_read_true_or_false_as_in_the_json() -> None:
    rows = list(csv.DictReader(io.StringIO(invoice_csv(INVOICE, ISSUER).decode())))
    assert [row["long_context"] for row in rows] == [
        "false",
        "false",
        "true",
        "false",
        "false",
        "false",
    ]


def test_a_person_reads_who_when_which_number_every_line_and_the_totals_in_the_pdf() -> None:
    pdf = invoice_pdf(INVOICE, ISSUER)
    [text] = pdf_pages(pdf)
    for expected in (
        "Invoice",
        "INV-2026-000042",
        "Acme (Zürich) \\ Labs",
        "Account: acme",
        "1 October 2026 to 31 October 2026 (2026-10)",
        "1,234,567",
        "gpt-4.1 input, standard, band 2",
        "claude-sonnet-4 cache write, standard, long context",
        "-0.41",
        "Minimum commitment shortfall",
        "Adjustment for 2026-09: gpt-4.1 output, standard",
        "Subtotal",
        "4.14",
        "Total",
        "51.80",
    ):
        assert expected in text, expected
    assert text.index("Subtotal") < text.index("Discount"), "the subtotal follows the usage"


def test_the_pdf_names_the_issuer_the_dates_the_discount_and_the_amount_due() -> None:
    text = pdf_text(invoice_pdf(INVOICE, ISSUER))
    for expected in (
        "Nimbus Inference AG",
        "Bahnhofstrasse 1",
        "8001 Zürich",
        "Tax ID: CHE-123.456.789 MWST",
        "Date of issue 2 November 2026",
        "Date due 16 November 2026",
        "Net 14 days",
        "Discount (10% of the subtotal)",
        "USD 51.80 due 16 November 2026",
        "Amount due 51.80",
    ):
        assert expected in text, expected


def test_the_pdf_summarises_usage_per_model_before_the_detail_lines() -> None:
    text = pdf_text(invoice_pdf(INVOICE, ISSUER))
    summary = text.index("Usage by model")
    assert summary < text.index("Details")
    assert "claude-sonnet-4 100,000 0.75" in text[summary:]
    assert "gpt-4.1 1,846,912 3.39" in text[summary:]


def test_a_tenant_named_in_japanese_or_with_accents_prints_as_named() -> None:
    for name in ("株式会社アクメ", "Société Générale Ærø"):
        invoice = replace(INVOICE, tenant_name=name)
        text = pdf_text(invoice_pdf(invoice, ISSUER))
        assert name in text, name
        assert "?" not in text


def test_usage_lines_that_round_to_zero_are_grouped_into_one_row() -> None:
    tiny = tuple(usage(f"nano-{n}", "cached_input", 1000 + n, "0.025", "0.00") for n in range(5))
    invoice = replace(INVOICE, lines=(*INVOICE.lines[:3], *tiny, *INVOICE.lines[3:]))
    text = pdf_text(invoice_pdf(invoice, ISSUER))
    assert "5 usage lines under 0.01 each, rounded to 0.00 5,010" in text
    assert "nano-0 cached input" not in text
    json_lines = json.loads(invoice_json(invoice, ISSUER))["lines"]
    assert len(json_lines) == len(invoice.lines), "the files for machines keep every line"


def test_a_long_invoice_continues_on_numbered_pages() -> None:
    lines = tuple(
        usage(f"model-{n:03d}", "output", 1000 * n, "8.00", str(Decimal(8 * n) / 1000))
        for n in range(1, 201)
    )
    long = replace(INVOICE, lines=lines, subtotal=Decimal("160.80"), total=Decimal("160.80"))
    pages = pdf_pages(invoice_pdf(long, ISSUER))
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert f"Invoice INV-2026-000042  ·  page {number} of {len(pages)}" in page
        assert "Description" in page or "Model Tokens" in page, "headings repeat on each page"
    assert all(f"model-{n:03d} output, standard" in "\n".join(pages) for n in (1, 100, 200))


def test_a_very_long_model_name_wraps_instead_of_running_into_the_numbers() -> None:
    line = usage("a-model-with-a-very-long-name-" * 4, "input", 1, "1.00", "0.01")
    text = pdf_text(invoice_pdf(replace(INVOICE, lines=(line,)), ISSUER))
    rows = [row for row in text.splitlines() if "a-model" in row]
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
    text = pdf_text(invoice_pdf(yen, ISSUER))
    assert "3,000" in text and "3,000.00" not in text
    assert "Amount (JPY)" in text


def test_the_summary_totals_each_currency(tmp_path: Path) -> None:
    euro = replace(INVOICE, invoice_number="INV-2026-000043", tenant_id="globex", currency="EUR")
    summary = json.loads(summary_json("2026-10", [INVOICE, euro], ISSUER))
    assert summary["totals"] == [
        {"currency": "EUR", "invoices": 1, "total": "51.80"},
        {"currency": "USD", "invoices": 1, "total": "51.80"},
    ]
    assert summary["invoices"][0]["line_count"] == summary["invoices"][0]["lines"] == 6
    rows = list(
        csv.DictReader(io.StringIO(summary_csv("2026-10", [INVOICE, euro], ISSUER).decode()))
    )
    assert [row["invoice_number"] for row in rows] == ["INV-2026-000042", "INV-2026-000043"]
    text = pdf_text(summary_pdf("2026-10", [INVOICE, euro], ISSUER))
    assert "Invoices for 2026-10" in text and "Total EUR" in text and "Total USD" in text


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_export_writes_each_invoice_and_the_summary_and_again_the_same(
    tmp_path: Path, fmt: ExportFormat
) -> None:
    done: list[tuple[int, int]] = []
    paths = export_invoices(
        "2026-10", [INVOICE], fmt, tmp_path, ISSUER, lambda d, t: done.append((d, t))
    )
    assert [p.name for p in paths] == [f"INV-2026-000042.{fmt}", f"summary-2026-10.{fmt}"]
    first = {p.name: p.read_bytes() for p in paths}
    export_invoices("2026-10", [INVOICE], fmt, tmp_path, ISSUER)
    assert {p.name: p.read_bytes() for p in paths} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(first), "no temporary files left"
    assert done == [(1, 1)]


def test_an_invoice_prints_the_issuer_it_was_finalized_with_not_todays_settings() -> None:
    issued = replace(INVOICE, issuer=ISSUER)
    today = Issuer(name="Renamed Ltd", address=("Elsewhere 9",), payment_terms_days=60)
    for write in (invoice_json, invoice_csv, invoice_pdf):
        assert write(issued, today) == write(INVOICE, ISSUER), write.__name__
    document = json.loads(invoice_json(issued, today))
    assert (document["issuer"]["name"], document["payment_terms_days"]) == (
        "Nimbus Inference AG",
        14,
    )
    assert summary_json("2026-10", [issued], today) == summary_json("2026-10", [INVOICE], ISSUER)
    assert summary_pdf("2026-10", [issued], today) == summary_pdf("2026-10", [INVOICE], ISSUER)


def test_an_invoice_finalized_before_issuers_were_stored_prints_the_settings_issuer() -> None:
    document = json.loads(invoice_json(INVOICE, ISSUER))
    assert document["issuer"]["name"] == "Nimbus Inference AG"
    assert "Renamed Ltd" in pdf_text(invoice_pdf(INVOICE, replace(ISSUER, name="Renamed Ltd")))
