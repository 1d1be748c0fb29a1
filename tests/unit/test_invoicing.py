"""Invoices add up as printed, periods tile the calendar, and late usage is never lost."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from metering.billing.contracts import Contract, ContractError, anchor_day_of, contract_for_period
from metering.billing.invoice_errors import InvoiceError
from metering.billing.invoices import (
    InvoiceDraft,
    InvoiceLine,
    LineKind,
    adjustment_lines,
    build_invoice,
)
from metering.billing.money import round_money
from metering.billing.periods import BillingPeriod, billing_period_of, period_for, period_from_label
from metering.billing.price_book import PriceBook
from metering.billing.prices import CurrencyMismatchError, PriceEntry
from metering.billing.tokens import TokenClass
from metering.billing.usage_rows import UsageRow

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
OCT = period_from_label("2026-10")
NOV = period_from_label("2026-11")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def entry(
    token_class: str,
    amount: str,
    *,
    model: str = "gpt-4o",
    tier: str = "standard",
    currency: str = "USD",
    since: datetime = SINCE,
    until: datetime | None = None,
    up_to: int | None = None,
) -> PriceEntry:
    return PriceEntry(
        model, TokenClass(token_class), tier, currency, Decimal(amount), since, until, up_to
    )


BOOK = PriceBook(
    [
        entry("input", "2.50"),
        entry("cached_input", "1.25"),
        entry("output", "10"),
        entry("input", "1.25", tier="batch"),
        entry("cached_input", "0.625", tier="batch"),
        entry("output", "5", tier="batch"),
    ]
)


BASE_CONTRACT = Contract(tenant_id="acme", currency="USD", effective_from=SINCE)


def contract(**terms: Any) -> Contract:
    """The base contract with some terms changed; validated like a new one."""
    return replace(BASE_CONTRACT, **terms)


def usage(
    hour: datetime,
    input_tokens: int = 0,
    output_tokens: int = 0,
    *,
    cached: int = 0,
    model: str = "gpt-4o",
    tier: str = "standard",
    tenant: str = "acme",
) -> UsageRow:
    return UsageRow(tenant, model, tier, hour, input_tokens, cached, 0, output_tokens, 0)


def invoice(
    rows: list[UsageRow],
    *,
    period: BillingPeriod = NOV,
    terms: Contract | None = None,
    book: PriceBook = BOOK,
    adjustments: tuple[InvoiceLine, ...] = (),
) -> InvoiceDraft:
    return build_invoice("acme", period, terms or contract(), book, rows, adjustments)


def amounts(draft: InvoiceDraft) -> list[tuple[str, str | None, int, str]]:
    return [
        (
            line.kind.value,
            line.token_class and line.token_class.value,
            line.quantity,
            str(line.amount),
        )
        for line in draft.lines
    ]


# --- billing periods -------------------------------------------------------------------------


def test_calendar_month_periods_are_labelled_by_the_month_they_start_in() -> None:
    period = period_for(utc(2026, 11, 25, 10))
    assert period == BillingPeriod(utc(2026, 11, 1), utc(2026, 12, 1))
    assert period.label == "2026-11"


def test_the_first_instant_of_a_period_belongs_to_it_and_the_one_before_does_not() -> None:
    assert period_for(utc(2026, 12, 1)).label == "2026-12"
    assert period_for(utc(2026, 12, 1) - timedelta(microseconds=1)).label == "2026-11"


def test_december_rolls_over_into_january_of_the_next_year() -> None:
    assert period_for(utc(2026, 12, 31, 23)) == BillingPeriod(utc(2026, 12, 1), utc(2027, 1, 1))
    assert period_for(utc(2027, 1, 10), anchor_day=15) == BillingPeriod(
        utc(2026, 12, 15), utc(2027, 1, 15)
    )


def test_an_anchor_day_starts_periods_on_that_day_of_each_month() -> None:
    assert period_for(utc(2026, 11, 20), anchor_day=15) == BillingPeriod(
        utc(2026, 11, 15), utc(2026, 12, 15)
    )
    assert period_for(utc(2026, 11, 10), anchor_day=15).label == "2026-10"


def test_anchor_day_31_clamps_to_the_last_day_of_short_months() -> None:
    assert period_for(utc(2026, 2, 10), anchor_day=31) == BillingPeriod(
        utc(2026, 1, 31), utc(2026, 2, 28)
    )
    assert period_for(utc(2026, 3, 1), anchor_day=31) == BillingPeriod(
        utc(2026, 2, 28), utc(2026, 3, 31)
    )
    assert period_for(utc(2026, 4, 30), anchor_day=31) == BillingPeriod(
        utc(2026, 4, 30), utc(2026, 5, 31)
    )


def test_a_tenants_periods_follow_its_contracts_anchor_day_and_calendar_months_without() -> None:
    contract = Contract("acme", "USD", SINCE, anchor_day=15)
    assert (anchor_day_of([]), anchor_day_of([contract])) == (1, 15)
    moment = utc(2026, 11, 25, 10)
    assert billing_period_of(anchor_day_of([contract]))(moment) == (
        utc(2026, 11, 15),
        utc(2026, 12, 15),
    )


def test_in_a_leap_year_february_periods_start_on_the_29th() -> None:
    assert period_for(utc(2028, 3, 5), anchor_day=30) == BillingPeriod(
        utc(2028, 2, 29), utc(2028, 3, 30)
    )
    assert period_for(utc(2028, 2, 29), anchor_day=29).start == utc(2028, 2, 29)
    assert period_for(utc(2027, 3, 1), anchor_day=29) == BillingPeriod(
        utc(2027, 2, 28), utc(2027, 3, 29)
    )


def test_a_moment_with_an_offset_is_placed_by_its_utc_instant() -> None:
    from datetime import timezone

    berlin_new_year = datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert period_for(berlin_new_year).label == "2026-12"


@pytest.mark.parametrize("anchor_day", range(1, 32))
def test_periods_of_every_anchor_day_tile_the_calendar_without_gaps(anchor_day: int) -> None:
    period = period_for(utc(2023, 12, 31), anchor_day)
    for _ in range(60):  # five years, through the 2024 and 2028 leap days
        following = period_for(period.end, anchor_day)
        assert following.start == period.end
        assert period_from_label(following.label, anchor_day) == following
        period = following


def test_bad_anchor_days_naive_moments_and_bad_labels_are_refused() -> None:
    with pytest.raises(InvoiceError, match="anchor day"):
        period_for(utc(2026, 1, 1), anchor_day=0)
    with pytest.raises(InvoiceError, match="anchor day"):
        period_for(utc(2026, 1, 1), anchor_day=32)
    with pytest.raises(InvoiceError, match="timezone-aware"):
        period_for(datetime(2026, 1, 1))
    with pytest.raises(InvoiceError, match="like 2026-11"):
        period_from_label("2026-13")


# --- rounding --------------------------------------------------------------------------------


def test_each_line_is_rounded_half_even_to_the_cent() -> None:
    draft = invoice([usage(utc(2026, 11, 2), input_tokens=2_000, output_tokens=1_500)])
    # input 2,000 x 2.50 / 1M = 0.005 -> 0.00; output 1,500 x 10 / 1M = 0.015 -> 0.02
    assert amounts(draft) == [("usage", "input", 2_000, "0.00"), ("usage", "output", 1_500, "0.02")]
    assert round_money(Decimal("0.025"), "USD") == Decimal("0.02")


def test_tiny_usage_keeps_its_line_even_when_it_rounds_to_nothing() -> None:
    draft = invoice([usage(utc(2026, 11, 2), input_tokens=1)])
    assert amounts(draft) == [("usage", "input", 1, "0.00")]
    assert draft.total == Decimal("0.00")


def test_the_total_is_the_sum_of_the_rounded_lines_not_the_rounded_sum() -> None:
    # Three lines of exactly 0.004 each: 0.012 in all, but each line prints as 0.00.
    draft = invoice([usage(utc(2026, 11, 2), 1_600 + 3_200, 400, cached=3_200)])
    assert [line.amount for line in draft.lines] == [Decimal("0.00")] * 3
    assert draft.subtotal == draft.total == Decimal("0.00")


def test_yen_have_no_minor_unit() -> None:
    book = PriceBook(
        [entry("input", "374.5", currency="JPY"), entry("output", "1500", currency="JPY")]
    )
    terms = contract(currency="JPY")
    draft = invoice([usage(utc(2026, 11, 2), 1_000_000, 1)], terms=terms, book=book)
    assert [str(line.amount) for line in draft.lines] == ["374", "0"]  # 374.5 -> 374, 0.0015 -> 0
    assert str(draft.total) == "374"


def test_huge_usage_is_computed_exactly_before_rounding() -> None:
    book = PriceBook([entry("input", "0.075"), entry("output", "15")])
    draft = invoice([usage(utc(2026, 11, 2), 123_456_789_012_345, 10**15)], book=book)
    # 123,456,789,012,345 x 0.075 / 1M = 9,259,259.175925875 -> 9,259,259.18
    assert amounts(draft) == [
        ("usage", "input", 123_456_789_012_345, "9259259.18"),
        ("usage", "output", 10**15, "15000000000.00"),
    ]
    assert draft.total == Decimal("15009259259.18")


# --- what lands on the invoice ---------------------------------------------------------------


def test_a_band_boundary_inside_one_hour_gives_two_lines() -> None:
    book = PriceBook(
        [entry("input", "3", up_to=1_000_000), entry("input", "2"), entry("output", "15")]
    )
    rows = [usage(utc(2026, 11, 2, 9), 900_000), usage(utc(2026, 11, 2, 10), 300_000)]
    draft = invoice(rows, book=book)
    assert [(line.tier, line.quantity, str(line.amount)) for line in draft.lines] == [
        (0, 1_000_000, "3.00"),
        (1, 200_000, "0.40"),
    ]


def test_a_price_change_mid_period_gives_a_line_per_price() -> None:
    change = utc(2026, 11, 15)
    book = PriceBook(
        [
            entry("input", "2.50", until=change),
            entry("input", "2.00", since=change),
            entry("output", "10"),
        ]
    )
    rows = [usage(utc(2026, 11, 14, 23), 1_000_000), usage(change, 1_000_000)]
    draft = invoice(rows, book=book)
    assert [(str(line.unit_price_per_million), str(line.amount)) for line in draft.lines] == [
        ("2.50", "2.50"),
        ("2.00", "2.00"),
    ]


def test_batch_usage_is_billed_at_batch_prices_on_its_own_lines() -> None:
    rows = [usage(utc(2026, 11, 3), 1_000_000), usage(utc(2026, 11, 3), 1_000_000, tier="batch")]
    draft = invoice(rows)
    assert [(line.service_tier, str(line.amount)) for line in draft.lines] == [
        ("standard", "2.50"),
        ("batch", "1.25"),
    ]


def test_contract_price_overrides_replace_list_prices_for_that_tenant() -> None:
    terms = contract(price_overrides=(entry("input", "2.00"),))
    draft = invoice([usage(utc(2026, 11, 3), 1_000_000, 1_000_000)], terms=terms)
    assert amounts(draft) == [
        ("usage", "input", 1_000_000, "2.00"),
        ("usage", "output", 1_000_000, "10.00"),
    ]


def test_a_discount_is_one_negative_line_rounded_half_even() -> None:
    # 10.00 of input and 113.45 of output; 10% of 123.45 = 12.345 -> 12.34
    terms = contract(discount_percent=Decimal("10"))
    draft = invoice([usage(utc(2026, 11, 3), 4_000_000, 11_345_000)], terms=terms)
    assert draft.subtotal == Decimal("123.45")
    assert amounts(draft)[-1] == ("discount", None, 0, "-12.34")
    assert draft.total == Decimal("111.11")


def test_a_commitment_shortfall_is_billed_after_the_discount() -> None:
    terms = contract(discount_percent=Decimal("10"), minimum_commitment=Decimal("100.00"))
    draft = invoice([usage(utc(2026, 11, 3), 0, 4_000_000)], terms=terms)  # 40.00 of usage
    assert amounts(draft)[1:] == [("discount", None, 0, "-4.00"), ("commitment", None, 0, "64.00")]
    assert draft.subtotal == Decimal("40.00")
    assert draft.total == Decimal("100.00")


def test_usage_above_the_commitment_has_no_shortfall_line() -> None:
    terms = contract(minimum_commitment=Decimal("10.00"))
    draft = invoice([usage(utc(2026, 11, 3), 0, 2_000_000)], terms=terms)
    assert [line.kind for line in draft.lines] == [LineKind.USAGE]


def test_a_period_without_usage_bills_only_the_commitment() -> None:
    draft = invoice([], terms=contract(minimum_commitment=Decimal("500")))
    assert amounts(draft) == [("commitment", None, 0, "500.00")]
    assert draft.subtotal == Decimal("0.00")


# --- late usage ------------------------------------------------------------------------------


def test_late_usage_of_a_closed_period_becomes_adjustment_lines_on_the_next_invoice() -> None:
    on_time = [usage(utc(2026, 10, 5), 1_000_000)]
    closed = invoice(on_time, period=OCT)
    late = usage(utc(2026, 10, 31, 23), 2_000_000, 1_000_000)
    fixes = adjustment_lines(OCT, contract(), BOOK, [*on_time, late], closed.lines)
    assert [(line.kind, line.token_class, line.quantity, str(line.amount)) for line in fixes] == [
        (LineKind.ADJUSTMENT, TokenClass.INPUT, 2_000_000, "5.00"),
        (LineKind.ADJUSTMENT, TokenClass.OUTPUT, 1_000_000, "10.00"),
    ]
    assert {line.adjusts_period for line in fixes} == {"2026-10"}

    november = invoice([usage(utc(2026, 11, 2), 1_000_000)], adjustments=fixes)
    assert november.subtotal == Decimal("2.50")  # this period's usage only
    assert november.total == Decimal("17.50")


def test_a_period_with_no_late_usage_needs_no_adjustment() -> None:
    rows = [usage(utc(2026, 10, 5), 1_000_000, 5)]
    closed = invoice(rows, period=OCT)
    assert adjustment_lines(OCT, contract(), BOOK, rows, closed.lines) == ()


def test_late_usage_is_placed_after_the_volume_already_billed_in_its_bands() -> None:
    book = PriceBook(
        [entry("input", "3", up_to=1_000_000), entry("input", "2"), entry("output", "15")]
    )
    on_time = [usage(utc(2026, 10, 5), 900_000)]
    closed = invoice(on_time, period=OCT, book=book)
    late = usage(utc(2026, 10, 20), 300_000)
    fixes = adjustment_lines(OCT, contract(), book, [*on_time, late], closed.lines)
    assert [(line.tier, line.quantity, str(line.amount)) for line in fixes] == [
        (0, 100_000, "0.30"),
        (1, 200_000, "0.40"),
    ]


def test_late_usage_that_fills_a_commitment_credits_the_shortfall_billed_for_it() -> None:
    terms = contract(minimum_commitment=Decimal("100.00"))
    on_time = [usage(utc(2026, 10, 5), 0, 4_000_000)]
    closed = invoice(on_time, period=OCT, terms=terms)
    assert closed.total == Decimal("100.00")
    late = usage(utc(2026, 10, 6), 0, 3_000_000)
    fixes = adjustment_lines(OCT, terms, BOOK, [*on_time, late], closed.lines)
    assert [(line.kind, str(line.amount)) for line in fixes] == [
        (LineKind.ADJUSTMENT, "30.00"),
        (LineKind.COMMITMENT, "-30.00"),
    ]


def test_a_second_late_arrival_is_compared_with_the_invoice_and_the_earlier_adjustments() -> None:
    terms = contract(discount_percent=Decimal("10"))
    rows = [usage(utc(2026, 10, 5), 1_000_000)]
    billed = list(invoice(rows, period=OCT, terms=terms).lines)
    for late_tokens in (1_000_000, 2_000_000):
        rows.append(usage(utc(2026, 10, 9), late_tokens))
        fixes = adjustment_lines(OCT, terms, BOOK, rows, billed)
        assert [(line.kind, line.quantity, str(line.amount)) for line in fixes] == [
            (LineKind.ADJUSTMENT, late_tokens, str(Decimal("2.50") * late_tokens / 1_000_000)),
            (LineKind.DISCOUNT, 0, str(Decimal("-0.25") * late_tokens / 1_000_000)),
        ]
        billed.extend(fixes)
    everything_on_time = invoice(rows, period=OCT, terms=terms)
    assert sum(line.amount for line in billed) == everything_on_time.total


def test_over_all_invoices_a_period_adds_up_to_what_an_on_time_invoice_would_say() -> None:
    # Each arrival alone rounds to 0.00 (2,000 x 2.50 / 1M = 0.005), together they make 0.01.
    first = [usage(utc(2026, 10, 5), 2_000)]
    closed = invoice(first, period=OCT)
    everything = [*first, usage(utc(2026, 10, 6), 2_000)]
    fixes = adjustment_lines(OCT, contract(), BOOK, everything, closed.lines)
    assert [(line.quantity, str(line.amount)) for line in fixes] == [(2_000, "0.01")]
    billed = sum(line.amount for line in (*closed.lines, *fixes))
    assert billed == invoice(everything, period=OCT).total == Decimal("0.01")


def test_adjustments_the_closed_invoice_made_to_even_older_periods_are_left_alone() -> None:
    rows = [usage(utc(2026, 10, 5), 1_000_000)]
    september_fix = InvoiceLine(
        LineKind.ADJUSTMENT, "gpt-4o", TokenClass.INPUT, "standard", 0, 7, Decimal("2.50"),
        Decimal("0.01"), adjusts_period="2026-09",
    )  # fmt: skip
    closed = invoice(rows, period=OCT, adjustments=(september_fix,))
    assert adjustment_lines(OCT, contract(), BOOK, rows, closed.lines) == ()


def test_an_invoice_takes_only_adjustments_of_earlier_periods() -> None:
    current = InvoiceLine(
        LineKind.ADJUSTMENT, None, None, None, None, 0, None, Decimal(1), "2026-11"
    )
    with pytest.raises(InvoiceError, match="adjust a period before 2026-11"):
        invoice([], adjustments=(current,))


# --- inputs that cannot make an invoice ------------------------------------------------------


def test_a_tenant_billed_in_euros_cannot_be_billed_from_dollar_prices() -> None:
    with pytest.raises(CurrencyMismatchError, match="no FX conversion"):
        invoice([usage(utc(2026, 11, 2), 1)], terms=contract(currency="EUR"))


def test_usage_of_another_tenant_or_outside_the_period_is_refused() -> None:
    with pytest.raises(InvoiceError, match="not 'acme''s usage in period 2026-11"):
        invoice([usage(utc(2026, 11, 2), 1, tenant="globex")])
    with pytest.raises(InvoiceError, match="not 'acme''s usage in period 2026-11"):
        invoice([usage(utc(2026, 12, 1), 1)])


def test_the_contract_must_be_the_tenants_and_in_effect_during_the_period() -> None:
    with pytest.raises(InvoiceError, match="'globex''s, not 'acme''s"):
        invoice([], terms=contract(tenant_id="globex"))
    with pytest.raises(InvoiceError, match="not in effect during period 2026-11"):
        invoice([], terms=contract(effective_from=utc(2026, 12, 1)))


def test_usage_rows_with_cached_tokens_outside_the_input_are_refused() -> None:
    with pytest.raises(InvoiceError, match="cached_input \\+ cache_write <= input"):
        usage(utc(2026, 11, 2), 100, cached=101)


# --- contracts -------------------------------------------------------------------------------


def test_the_contract_that_took_effect_last_during_a_period_governs_it() -> None:
    old = contract(effective_to=utc(2026, 11, 15))
    new = contract(effective_from=utc(2026, 11, 15), discount_percent=Decimal(5))
    assert contract_for_period([new, old], NOV) is new
    assert contract_for_period([new, old], OCT) is old


def test_a_tenant_who_signs_mid_period_is_billed_for_that_period() -> None:
    signed = contract(effective_from=utc(2026, 11, 20))
    assert contract_for_period([signed], NOV) is signed


def test_a_contract_that_ended_mid_period_still_governs_its_last_period() -> None:
    ended = contract(effective_to=utc(2026, 11, 10))
    assert contract_for_period([ended], NOV) is ended


def test_overlapping_or_missing_contracts_are_reported() -> None:
    with pytest.raises(ContractError, match="overlap"):
        contract_for_period([contract(), contract(effective_from=utc(2026, 6, 1))], NOV)
    with pytest.raises(
        ContractError, match="no contract of 'acme' is in effect during period 2026-11"
    ):
        contract_for_period([contract(effective_to=utc(2026, 10, 1))], NOV)


@pytest.mark.parametrize(
    ("terms", "problem"),
    [
        ({"currency": "XYZ"}, "not in CURRENCY_MINOR_UNITS"),
        ({"discount_percent": Decimal(101)}, "from 0 to 100"),
        ({"discount_percent": 10.0}, "must be a Decimal"),
        ({"minimum_commitment": Decimal("10.001")}, "more decimal places than USD"),
        ({"price_overrides": (entry("input", "2", currency="EUR"),)}, "in EUR, but the contract"),
        ({"anchor_day": 32}, "anchor day"),
    ],
)
def test_contracts_that_cannot_be_billed_are_refused(
    terms: dict[str, object], problem: str
) -> None:
    with pytest.raises(ContractError, match=problem):
        contract(**terms)


# --- scale -----------------------------------------------------------------------------------


def test_a_month_of_hourly_usage_of_ten_models_adds_up_to_the_exact_total() -> None:
    models = [f"model-{i}" for i in range(10)]
    book = PriceBook(
        [entry(c, p, model=m) for m in models for c, p in (("input", "2.5"), ("output", "10"))]
    )
    hours = [NOV.start + timedelta(hours=h) for h in range(24 * 30)]
    rows = [usage(hour, 1_000, 100, model=m) for m in models for hour in hours]
    draft = invoice(rows, book=book)
    assert draft.total == Decimal("10") * (Decimal("0.0025") + Decimal("0.001")) * 720
