"""Finalized invoices as PDF pages a finance team would send, laid out with fpdf2.

One page layout, like a Stripe or Lago invoice: the issuer's letterhead, the invoice's
number and dates, who it is billed to, the amount due, a usage summary per model, then every
line with the subtotal, discount, commitment shortfall, adjustments, total and amount due.
Usage lines that round to zero are grouped into one row rather than listed one by one.

Byte-stable: the only date in the file is the invoice's ``finalized_at`` (as its creation
date), and fpdf2's file id is a hash of the content; so a re-export is identical. Text is set
in DejaVu Sans (shipped in ``metering/fonts``); when a name has characters DejaVu lacks
(Japanese, Chinese, Korean), Noto Sans JP from ``pylopdf-fonts-jp`` is added as a fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Final

from fontTools.ttLib import TTFont
from fpdf import FPDF, FontFace

from metering.billing.invoices import FinalizedInvoice, InvoiceLine, Issuer, LineKind
from metering.billing.money import minor_unit
from metering.files.invoice_records import currency_totals, describe_line, usage_by_model

FONT: Final = "sans"
FALLBACK: Final = "sans-cjk"
MARGIN: Final = 18.0  # mm, on A4
INK: Final = (33, 37, 41)
MUTED: Final = (108, 117, 125)
RULE: Final = (206, 212, 218)
SHADE: Final = (241, 243, 245)
BOLD: Final = FontFace(emphasis="BOLD")
HEADINGS: Final = FontFace(emphasis="BOLD", color=MUTED, fill_color=SHADE)

_FONTS: Final = files("metering.files.fonts")


def _fallback_file() -> Path:
    import pylopdf_fonts_jp  # imported only for an invoice that needs it: 4.5 MB of glyphs

    return Path(pylopdf_fonts_jp.__file__).parent / "NotoSansJP-Regular.otf"


@lru_cache(maxsize=1)
def _covered() -> frozenset[int]:
    """The code points DejaVu Sans can draw."""
    with TTFont(str(_FONTS / "DejaVuSans.ttf"), lazy=True) as font:
        return frozenset(font.getBestCmap())


class _Invoice(FPDF):
    def __init__(self, title: str, texts: Iterable[str]) -> None:
        super().__init__(format="A4", unit="mm")
        self.title_text = title
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=MARGIN + 4)
        self.set_producer("metering")
        self.set_title(title)
        self.add_font(FONT, "", str(_FONTS / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(_FONTS / "DejaVuSans-Bold.ttf"))
        covered = _covered()
        if any(ord(c) not in covered for text in texts for c in text if not c.isspace()):
            self.add_font(FALLBACK, "", str(_fallback_file()))
            self.set_fallback_fonts([FALLBACK], exact_match=False)
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)

    def footer(self) -> None:
        self.set_y(-MARGIN)
        self.font(7.5, color=MUTED)
        self.cell(0, 4, f"{self.title_text}  ·  page {self.page_no()} of {{nb}}", align="C")

    def font(self, size: float, *, bold: bool = False, color: tuple[int, int, int] = INK) -> None:
        self.set_font(FONT, "B" if bold else "", size)
        self.set_text_color(*color)

    def lines_at(self, x: float, y: float, width: float, rows: Sequence[tuple[str, bool]]) -> float:
        """Rows of text (``(text, bold)``) from ``(x, y)``; returns the y below them."""
        for text, bold in rows:
            self.set_xy(x, y)
            self.font(9, bold=bold, color=INK if bold else MUTED)
            self.multi_cell(width, 4.6, text, align="L")
            y = self.get_y()
        return y

    def heading(self, text: str) -> None:
        self.ln(4)
        self.font(10.5, bold=True)
        self.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")


def _money(amount: Decimal, currency: str) -> str:
    places = -minor_unit(currency).as_tuple().exponent  # type: ignore[operator]
    return f"{amount:,.{places}f}"


def _day(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _letterhead(pdf: _Invoice, invoice: FinalizedInvoice, issuer: Issuer) -> None:
    """Title and invoice facts on the left, the issuer on the right, then who is billed."""
    top = pdf.get_y()
    pdf.font(22, bold=True)
    pdf.cell(90, 10, "Invoice", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    last_day = (invoice.period.end - timedelta(days=1)).date()
    facts = (
        ("Invoice number", invoice.invoice_number),
        ("Date of issue", _day(invoice.issued_on)),
        ("Date due", _day(issuer.due_on(invoice))),
        ("Payment terms", f"Net {issuer.payment_terms_days} days"),
        (
            "Billing period",
            f"{_day(invoice.period.start.date())} to {_day(last_day)} ({invoice.period_label})",
        ),
    )
    for name, value in facts:
        pdf.font(9, color=MUTED)
        pdf.cell(32, 5, name)
        pdf.font(9, bold=name == "Invoice number")
        pdf.cell(80, 5, value, new_x="LMARGIN", new_y="NEXT")
    below_facts = pdf.get_y()
    right = pdf.w - MARGIN - 70
    issuer_rows = [(issuer.name, True), *((line, False) for line in issuer.address)]
    if issuer.tax_id:
        issuer_rows.append((f"Tax ID: {issuer.tax_id}", False))
    below_issuer = pdf.lines_at(right, top + 1, 70, issuer_rows)
    y = max(below_facts, below_issuer) + 7
    pdf.lines_at(MARGIN, y, 80, [("Bill to", True)])
    after = pdf.lines_at(
        MARGIN,
        y + 5,
        80,
        [(invoice.tenant_name, True), (f"Account: {invoice.tenant_id}", False)],
    )
    pdf.set_xy(MARGIN, after + 6)
    pdf.font(15, bold=True)
    due = f"{invoice.currency} {_money(invoice.amount_due, invoice.currency)}"
    pdf.cell(0, 8, f"{due} due {_day(issuer.due_on(invoice))}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_draw_color(*RULE)
    pdf.line(MARGIN, pdf.get_y() + 2, pdf.w - MARGIN, pdf.get_y() + 2)
    pdf.ln(3)


def _summary_table(pdf: _Invoice, invoice: FinalizedInvoice) -> None:
    summary = usage_by_model(invoice.lines)
    if not summary:
        return
    pdf.heading("Usage by model")
    pdf.font(8.5)
    with pdf.table(
        col_widths=(100, 40, 34),
        text_align=("LEFT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        headings_style=HEADINGS,
        line_height=4.6,
        padding=(0.9, 1.5),
    ) as table:
        table.row(["Model", "Tokens", f"Amount ({invoice.currency})"])
        for model in summary:
            table.row([model.model, f"{model.tokens:,}", _money(model.amount, invoice.currency)])


def _discount_text(line: InvoiceLine, invoice: FinalizedInvoice) -> str:
    if line.kind is LineKind.DISCOUNT and line.adjusts_period is None and invoice.discount_percent:
        return f"Discount ({invoice.discount_percent.normalize():f}% of the subtotal)"
    return describe_line(line)


def _detail_table(pdf: _Invoice, invoice: FinalizedInvoice) -> None:
    currency = invoice.currency
    zero = minor_unit(currency)
    this_period = [
        line
        for line in invoice.lines
        if line.kind is LineKind.USAGE and line.adjusts_period is None
    ]
    listed = [line for line in this_period if line.amount]
    tiny = [line for line in this_period if not line.amount]
    others = [line for line in invoice.lines if line not in this_period]
    pdf.heading("Details")
    pdf.font(8.5)
    with pdf.table(
        col_widths=(86, 30, 28, 30),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        headings_style=HEADINGS,
        line_height=4.6,
        padding=(0.9, 1.5),
    ) as table:
        table.row(["Description", "Quantity", "Price per 1M", f"Amount ({currency})"])

        def priced(line: InvoiceLine, text: str) -> None:
            has_price = line.unit_price_per_million is not None
            table.row(
                [
                    text,
                    f"{line.quantity:,}" if has_price else "",
                    str(line.unit_price_per_million) if has_price else "",
                    _money(line.amount, currency),
                ]
            )

        def total(name: str, amount: Decimal) -> None:
            row = table.row()
            row.cell(name, style=BOLD, colspan=3)
            row.cell(_money(amount, currency), style=BOLD)

        for line in listed:
            priced(line, describe_line(line))
        if tiny:
            tokens = sum(line.quantity for line in tiny)
            table.row(
                [
                    f"{len(tiny)} usage lines under {zero} each, rounded to"
                    f" {_money(Decimal(0), currency)}",
                    f"{tokens:,}",
                    "",
                    _money(sum((line.amount for line in tiny), Decimal(0)), currency),
                ]
            )
        total("Subtotal", invoice.subtotal)
        for line in others:
            priced(line, _discount_text(line, invoice))
        total("Total", invoice.total)
        total("Amount due", invoice.amount_due)


def invoice_pdf(invoice: FinalizedInvoice, issuer: Issuer) -> bytes:
    """The invoice as a PDF: letterhead, bill-to, dates, amount due, usage per model, every
    line and the totals. Created at ``finalized_at``; nothing else varies."""
    issuer = invoice.issued_by(issuer)
    texts = [invoice.tenant_name, issuer.name, issuer.tax_id, *issuer.address]
    texts += [line.model or "" for line in invoice.lines]
    pdf = _Invoice(f"Invoice {invoice.invoice_number}", texts)
    pdf.set_creation_date(invoice.finalized_at)
    pdf.set_subject(f"{invoice.tenant_name}, {invoice.period_label}")
    pdf.add_page()
    _letterhead(pdf, invoice, issuer)
    _summary_table(pdf, invoice)
    _detail_table(pdf, invoice)
    return bytes(pdf.output())


def summary_pdf(label: str, invoices: Sequence[FinalizedInvoice], issuer: Issuer) -> bytes:
    """A list of the period's invoices and their totals per currency, under the name of the
    issuer that issued them (``issuer``, the settings' one, if they name several)."""
    names = {invoice.issued_by(issuer).name for invoice in invoices}
    issuer_name = names.pop() if len(names) == 1 else issuer.name
    texts = [issuer_name, *(invoice.tenant_name for invoice in invoices)]
    pdf = _Invoice(f"Invoices for {label}", texts)
    created = max((invoice.finalized_at for invoice in invoices), default=None)
    if created is not None:
        pdf.set_creation_date(created)
    pdf.add_page()
    pdf.font(18, bold=True)
    pdf.cell(0, 10, f"Invoices for {label}", new_x="LMARGIN", new_y="NEXT")
    pdf.font(9, color=MUTED)
    pdf.cell(
        0, 6, f"{issuer_name}: {len(invoices)} finalized invoices", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.ln(3)
    pdf.font(8.5)
    with pdf.table(
        col_widths=(34, 58, 22, 28, 32),
        text_align=("LEFT", "LEFT", "LEFT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        headings_style=HEADINGS,
        line_height=4.6,
        padding=(0.9, 1.5),
    ) as table:
        table.row(["Number", "Tenant", "Currency", "Subtotal", "Total"])
        for invoice in invoices:
            table.row(
                [
                    invoice.invoice_number,
                    f"{invoice.tenant_name} ({invoice.tenant_id})",
                    invoice.currency,
                    _money(invoice.subtotal, invoice.currency),
                    _money(invoice.total, invoice.currency),
                ]
            )
        for currency, count, total in currency_totals(invoices):
            row = table.row()
            row.cell(f"Total {currency}", style=BOLD)
            row.cell(f"{count} invoices", style=BOLD)
            row.cell(currency, style=BOLD)
            row.cell("")
            row.cell(_money(total, currency), style=BOLD)
    return bytes(pdf.output())
