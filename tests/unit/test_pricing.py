"""The price book knows what each token costs, when, and refuses prices that contradict."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metering.billing.events import Rejection, UsageEvent
from metering.billing.price_book import PriceBook
from metering.billing.prices import (
    Band,
    CurrencyMismatchError,
    NoPriceError,
    PriceBookError,
    PriceEntry,
)
from metering.billing.rating import Charge, check_priced, estimate_cost, rate, split_into_bands
from metering.billing.tokens import TOKEN_COUNTS, TokenClass, Usage
from metering.cli.support import explain

JAN = datetime(2026, 1, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 10, 12, tzinfo=UTC)


def price(
    token_class: str,
    amount: str,
    *,
    model: str = "gpt-4o",
    tier: str = "standard",
    currency: str = "USD",
    since: datetime = JAN,
    until: datetime | None = None,
    up_to: int | None = None,
    long_context_above: int | None = None,
    source: str | None = None,
) -> PriceEntry:
    return PriceEntry(
        model=model,
        token_class=TokenClass(token_class),
        service_tier=tier,
        currency=currency,
        price_per_million=Decimal(amount),
        effective_from=since,
        effective_to=until,
        tier_up_to=up_to,
        long_context_above=long_context_above,
        source=source,
    )


def flat(model: str = "gpt-4o", tier: str = "standard", **prices: str) -> list[PriceEntry]:
    return [price(cls, amount, model=model, tier=tier) for cls, amount in prices.items()]


@dataclass(frozen=True)
class Row:
    model: str
    hour: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    service_tier: str = "standard"
    long_context: bool = False
    cache_write_1h_tokens: int = 0


def lines(charges: tuple[Charge, ...]) -> list[tuple[object, ...]]:
    return [
        (
            c.token_class.value,
            c.service_tier,
            c.tier,
            c.long_context,
            str(c.unit_price_per_million),
            c.quantity,
        )
        for c in charges
    ]


# --- what is billed as what ------------------------------------------------------------------


def test_uncached_input_is_input_minus_cached_reads_and_cache_writes() -> None:
    book = PriceBook(flat(input="3", cached_input="0.30", cache_write="3.75", output="15"))
    prices = book.at("gpt-4o", "standard", NOV)
    usage = Usage(
        input_tokens=1000, output_tokens=50, cached_input_tokens=600, cache_write_tokens=300
    )
    assert prices.quantities(usage) == {
        TokenClass.INPUT: 100,
        TokenClass.CACHED_INPUT: 600,
        TokenClass.CACHE_WRITE: 300,
        TokenClass.OUTPUT: 50,
    }


def test_a_class_without_a_price_of_its_own_is_billed_as_the_class_it_is_part_of() -> None:
    book = PriceBook(flat(input="2", output="8"))
    prices = book.at("gpt-4o", "standard", NOV)
    usage = Usage(1000, 500, cached_input_tokens=600, cache_write_tokens=100, reasoning_tokens=400)
    assert prices.quantities(usage) == {TokenClass.INPUT: 1000, TokenClass.OUTPUT: 500}
    assert prices.base_price(TokenClass.REASONING) == Decimal("8")
    assert prices.billed_as(TokenClass.CACHED_INPUT) is TokenClass.INPUT


ONE_HOUR_WRITES = Usage(1000, 50, cached_input_tokens=100, cache_write_tokens=800,
                        cache_write_1h_tokens=300)  # fmt: skip


def test_one_hour_cache_writes_with_a_price_leave_cache_write_the_five_minute_rest() -> None:
    book = PriceBook(
        flat(input="3", cached_input="0.30", cache_write="3.75", cache_write_1h="6", output="15")
    )
    prices = book.at("gpt-4o", "standard", NOV)
    assert prices.quantities(ONE_HOUR_WRITES) == {
        TokenClass.INPUT: 100,
        TokenClass.CACHED_INPUT: 100,
        TokenClass.CACHE_WRITE: 500,
        TokenClass.CACHE_WRITE_1H: 300,
        TokenClass.OUTPUT: 50,
    }
    # 100 x 3 + 100 x 0.30 + 500 x 3.75 + 300 x 6 + 50 x 15, per 1M tokens
    assert estimate_cost(ONE_HOUR_WRITES, prices) == Decimal("0.004755")


def test_one_hour_cache_writes_without_a_price_are_billed_as_cache_writes() -> None:
    book = PriceBook(flat(input="3", cache_write="3.75", output="15"))
    prices = book.at("gpt-4o", "standard", NOV)
    assert prices.quantities(ONE_HOUR_WRITES) == {
        TokenClass.INPUT: 200,
        TokenClass.CACHE_WRITE: 800,
        TokenClass.OUTPUT: 50,
    }
    assert prices.billed_as(TokenClass.CACHE_WRITE_1H) is TokenClass.CACHE_WRITE


def test_one_hour_cache_writes_are_input_when_no_cache_write_class_has_a_price() -> None:
    prices = PriceBook(flat(input="3", output="15")).at("gpt-4o", "standard", NOV)
    assert prices.quantities(ONE_HOUR_WRITES) == {TokenClass.INPUT: 1000, TokenClass.OUTPUT: 50}
    assert prices.base_price(TokenClass.CACHE_WRITE_1H) == Decimal("3")


def test_with_only_a_one_hour_price_the_five_minute_writes_are_billed_as_input() -> None:
    prices = PriceBook(flat(input="3", cache_write_1h="6", output="15")).at(
        "gpt-4o", "standard", NOV
    )
    assert prices.quantities(ONE_HOUR_WRITES) == {
        TokenClass.INPUT: 700,
        TokenClass.CACHE_WRITE_1H: 300,
        TokenClass.OUTPUT: 50,
    }


def test_one_hour_cache_writes_are_rated_as_lines_of_their_own() -> None:
    book = PriceBook(
        [
            *flat(input="3", cache_write="3.75", cache_write_1h="6", output="15"),
            price("input", "6", long_context_above=200_000),
            price("cache_write_1h", "12", long_context_above=200_000),
            price("output", "22.50", long_context_above=200_000),
        ]
    )
    rows = [
        Row("gpt-4o", NOV, 1_000, 10, cache_write_tokens=900, cache_write_1h_tokens=600),
        Row("gpt-4o", NOV, 300_000, 10, cache_write_tokens=100_000, cache_write_1h_tokens=100_000,
            long_context=True),
    ]  # fmt: skip
    assert lines(rate(book, rows, "USD")) == [
        ("input", "standard", 0, False, "3", 100),
        ("input", "standard", 0, True, "6", 200_000),
        ("cache_write", "standard", 0, False, "3.75", 300),
        ("cache_write_1h", "standard", 0, False, "6", 600),
        ("cache_write_1h", "standard", 0, True, "12", 100_000),
        ("output", "standard", 0, False, "15", 10),
        ("output", "standard", 0, True, "22.50", 10),
    ]


def test_reasoning_is_taken_out_of_output_only_when_it_has_its_own_price() -> None:
    book = PriceBook(flat(input="2", output="8", reasoning="6"))
    usage = Usage(10, 500, reasoning_tokens=400)
    assert book.at("gpt-4o", "standard", NOV).quantities(usage) == {
        TokenClass.INPUT: 10,
        TokenClass.OUTPUT: 100,
        TokenClass.REASONING: 400,
    }


# --- effective dates -------------------------------------------------------------------------


def test_a_price_applies_from_effective_from_up_to_but_not_including_effective_to() -> None:
    book = PriceBook(
        [
            price("input", "2.50", until=MAR),
            price("output", "10", until=MAR),
            price("input", "2.00", since=MAR),
            price("output", "8", since=MAR),
        ]
    )
    before = datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert book.at("gpt-4o", "standard", before).base_price(TokenClass.INPUT) == Decimal("2.50")
    assert book.at("gpt-4o", "standard", MAR).base_price(TokenClass.INPUT) == Decimal("2.00")
    assert book.at("gpt-4o", "standard", MAR).valid_from == MAR


def test_no_price_before_the_first_entry_or_for_an_unknown_model_or_tier() -> None:
    book = PriceBook(flat(input="2", output="8"))
    with pytest.raises(NoPriceError, match=r"no standard price for gpt-4o at 2025-12-31T23:00"):
        book.at("gpt-4o", "standard", datetime(2025, 12, 31, 23, tzinfo=UTC))
    with pytest.raises(NoPriceError, match="batch"):
        book.at("gpt-4o", "batch", NOV)
    assert book.find("gpt-5", "standard", NOV) is None


def usage_event(model: str, tier: str, moment: datetime) -> UsageEvent:
    return UsageEvent(uuid.uuid4(), "acme", model, moment, Usage(1000, 200), service_tier=tier)


def test_an_event_is_billable_only_when_a_price_covers_its_model_tier_and_moment() -> None:
    book = PriceBook([price("input", "2", until=MAR), price("output", "8", until=MAR)])
    priced = usage_event("gpt-4o", "standard", JAN)
    assert check_priced(book, priced) is priced
    for model, tier, moment in (("gpt-4o", "standard", NOV), ("gpt-4o", "batch", JAN)):
        event = usage_event(model, tier, moment)
        rejection = check_priced(book, event)
        assert isinstance(rejection, Rejection)
        assert (rejection.reason, rejection.event_id, rejection.model) == (
            "unpriced",
            str(event.event_id),
            model,
        )
        assert f"no {tier} price for gpt-4o" in rejection.detail
        assert "metering dlq replay --reason unpriced" in rejection.detail


def test_a_price_ended_without_a_successor_leaves_a_gap() -> None:
    book = PriceBook([price("input", "2", until=MAR), price("output", "8", until=MAR)])
    with pytest.raises(NoPriceError):
        book.at("gpt-4o", "standard", MAR)


def test_prices_list_at_a_date_shows_the_entries_in_effect_then() -> None:
    old, new = price("input", "2.50", until=MAR), price("input", "2.00", since=MAR)
    book = PriceBook([old, new, price("output", "10")])
    assert [e.price_per_million for e in book.in_effect(NOV)] == [Decimal("2.00"), Decimal("10")]
    assert old in book.in_effect(JAN)


# --- validation ------------------------------------------------------------------------------


def test_two_prices_for_the_same_class_at_the_same_time_are_an_overlap_naming_both() -> None:
    entries = [
        price("input", "2.50", source="a.yaml:3"),
        price("input", "2.00", since=MAR, source="a.yaml:9"),
        price("output", "10"),
    ]
    with pytest.raises(
        PriceBookError, match=r"a\.yaml:9: gpt-4o input standard overlaps a\.yaml:3"
    ):
        PriceBook(entries)


def test_bands_must_end_with_one_without_an_upper_bound() -> None:
    entries = [price("input", "3", up_to=1_000_000_000, source="p.yaml:4"), price("output", "15")]
    with pytest.raises(
        PriceBookError, match=r"p\.yaml:4: .*up to 1,000,000,000 tokens .* add a band"
    ):
        PriceBook(entries)


def test_two_bands_with_the_same_bound_overlap() -> None:
    entries = [
        price("input", "3", up_to=1000),
        price("input", "2", up_to=1000),
        price("input", "1"),
        price("output", "15"),
    ]
    with pytest.raises(PriceBookError, match="overlaps"):
        PriceBook(entries)


def test_a_priced_model_needs_input_and_output_prices() -> None:
    with pytest.raises(PriceBookError, match="no output price"):
        PriceBook(flat(input="2", cached_input="1"))


def test_a_long_context_price_cannot_have_bands() -> None:
    with pytest.raises(PriceBookError, match="cannot be tiered"):
        price("input", "6", long_context_above=200_000, up_to=10)


def test_one_model_and_tier_have_one_long_context_threshold_at_a_time() -> None:
    entries = [
        *flat(input="3", output="15"),
        price("input", "6", long_context_above=200_000),
        price("output", "22.50", long_context_above=128_000),
    ]
    with pytest.raises(PriceBookError, match=r"thresholds 128,000 .* and 200,000"):
        PriceBook(entries)


def test_one_model_and_tier_are_priced_in_one_currency_at_a_time() -> None:
    entries = [price("input", "2"), price("output", "8", currency="EUR")]
    with pytest.raises(PriceBookError, match=r"both EUR .* and USD"):
        PriceBook(entries)


def test_a_price_must_be_a_decimal_and_never_a_float() -> None:
    with pytest.raises(PriceBookError, match="must be a Decimal, never a float"):
        PriceEntry("gpt-4o", TokenClass.INPUT, "standard", "USD", 2.5, JAN)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("since", "problem"),
    [
        (datetime(2026, 1, 1), "timezone-aware"),
        (datetime(2026, 1, 1, 10, 30, tzinfo=UTC), r"whole hour.*use 2026-01-01T10:00:00Z"),
    ],
)
def test_effective_times_are_aware_and_on_whole_hours(since: datetime, problem: str) -> None:
    with pytest.raises(PriceBookError, match=problem):
        price("input", "2", since=since)


def test_unknown_token_classes_and_service_tiers_are_refused() -> None:
    with pytest.raises(PriceBookError, match="not one of input, cached_input"):
        PriceEntry("m", "prompt", "standard", "USD", Decimal(1), JAN)  # type: ignore[arg-type]
    with pytest.raises(PriceBookError, match="not one of standard, batch, priority"):
        PriceEntry("m", TokenClass.INPUT, "flex", "USD", Decimal(1), JAN)


# --- overrides -------------------------------------------------------------------------------


def test_an_override_replaces_its_class_and_keeps_the_others_at_list_price() -> None:
    book = PriceBook(flat(input="2.50", cached_input="1.25", output="10"))
    custom = book.with_overrides([price("input", "2.00")])
    prices = custom.at("gpt-4o", "standard", NOV)
    assert prices.base_price(TokenClass.INPUT) == Decimal("2.00")
    assert prices.base_price(TokenClass.OUTPUT) == Decimal("10")
    assert prices.base_price(TokenClass.CACHED_INPUT) == Decimal("1.25")
    assert book.at("gpt-4o", "standard", NOV).base_price(TokenClass.INPUT) == Decimal("2.50")


def test_an_override_applies_only_while_it_is_in_effect() -> None:
    book = PriceBook(flat(input="2.50", output="10"))
    custom = book.with_overrides(
        [price("input", "2.00", since=MAR, until=NOV.replace(day=1, hour=0))]
    )
    assert custom.at("gpt-4o", "standard", JAN).base_price(TokenClass.INPUT) == Decimal("2.50")
    assert custom.at("gpt-4o", "standard", MAR).base_price(TokenClass.INPUT) == Decimal("2.00")
    assert custom.at("gpt-4o", "standard", NOV).base_price(TokenClass.INPUT) == Decimal("2.50")


def test_overriding_one_band_replaces_the_whole_schedule_of_that_class() -> None:
    book = PriceBook([price("input", "3", up_to=1000), price("input", "2"), price("output", "15")])
    custom = book.with_overrides([price("input", "1")])
    assert custom.at("gpt-4o", "standard", NOV).schedules[TokenClass.INPUT] == (
        Band(None, Decimal("1")),
    )


# --- rating ----------------------------------------------------------------------------------


def test_a_band_boundary_inside_one_hour_splits_that_hours_tokens() -> None:
    book = PriceBook([price("input", "3", up_to=1_000), price("input", "2"), price("output", "15")])
    hours = [NOV.replace(hour=h) for h in (1, 2, 3)]
    rows = [Row("gpt-4o", hours[0], 600), Row("gpt-4o", hours[1], 600), Row("gpt-4o", hours[2], 50)]
    assert lines(rate(book, rows, "USD")) == [
        ("input", "standard", 0, False, "3", 1000),
        ("input", "standard", 1, False, "2", 250),
    ]


def test_the_band_volume_follows_hour_order_whatever_the_row_order() -> None:
    book = PriceBook([price("input", "3", up_to=1_000), price("input", "2"), price("output", "15")])
    early = Row("gpt-4o", NOV.replace(hour=1), 900, cached_input_tokens=0)
    late = Row("gpt-4o", NOV.replace(hour=5), 900)
    assert rate(book, [late, early], "USD") == rate(book, [early, late], "USD")


def test_band_volume_counts_every_service_tier_standard_first_within_an_hour() -> None:
    entries = [
        price("input", "3", up_to=1_000),
        price("input", "2"),
        price("output", "15"),
        price("input", "1.50", tier="batch", up_to=1_000),
        price("input", "1", tier="batch"),
        price("output", "7.5", tier="batch"),
    ]
    book = PriceBook(entries)
    hour = NOV
    rows = [Row("gpt-4o", hour, 800, service_tier="batch"), Row("gpt-4o", hour, 800)]
    assert lines(rate(book, rows, "USD")) == [
        ("input", "standard", 0, False, "3", 800),
        ("input", "batch", 0, False, "1.50", 200),
        ("input", "batch", 1, False, "1", 600),
    ]


def test_split_into_bands_walks_any_number_of_boundaries() -> None:
    bands = [Band(10, Decimal(3)), Band(20, Decimal(2)), Band(None, Decimal(1))]
    assert split_into_bands(bands, 5, 30) == [
        (0, 5, Decimal(3)),
        (1, 10, Decimal(2)),
        (2, 15, Decimal(1)),
    ]
    assert split_into_bands(bands, 20, 1) == [(2, 1, Decimal(1))]
    assert split_into_bands(bands, 0, 10) == [(0, 10, Decimal(3))]


def test_a_price_change_mid_period_bills_each_hour_at_its_own_price() -> None:
    book = PriceBook(
        [
            price("input", "2.50", until=MAR),
            price("input", "2.00", since=MAR),
            price("output", "10"),
        ]
    )
    rows = [
        Row("gpt-4o", datetime(2026, 2, 28, 23, tzinfo=UTC), 100),
        Row("gpt-4o", MAR, 300),
        Row("gpt-4o", datetime(2026, 2, 1, tzinfo=UTC), 50),
    ]
    assert lines(rate(book, rows, "USD")) == [
        ("input", "standard", 0, False, "2.50", 150),
        ("input", "standard", 0, False, "2.00", 300),
    ]


def test_long_context_rows_use_long_context_prices_and_fall_back_for_unpriced_classes() -> None:
    entries = [
        *flat(input="3", cached_input="0.30", output="15"),
        price("input", "6", long_context_above=200_000),
        price("output", "22.50", long_context_above=200_000),
    ]
    book = PriceBook(entries)
    rows = [
        Row("gpt-4o", NOV, 250_000, 1_000, cached_input_tokens=50_000, long_context=True),
        Row("gpt-4o", NOV, 1_000, 100),
    ]
    assert lines(rate(book, rows, "USD")) == [
        ("input", "standard", 0, False, "3", 1_000),
        ("input", "standard", 0, True, "6", 200_000),
        ("cached_input", "standard", 0, False, "0.30", 50_000),
        ("output", "standard", 0, False, "15", 100),
        ("output", "standard", 0, True, "22.50", 1_000),
    ]


def test_a_request_is_long_context_only_strictly_above_the_threshold() -> None:
    book = PriceBook(
        [*flat(input="3", output="15"), price("input", "6", long_context_above=200_000)]
    )
    assert not book.is_long_context("gpt-4o", "standard", NOV, 200_000)
    assert book.is_long_context("gpt-4o", "standard", NOV, 200_001)
    assert not book.is_long_context("unpriced-model", "standard", NOV, 10**9)


def test_usage_priced_in_another_currency_than_the_bill_is_refused() -> None:
    book = PriceBook(flat(input="2", output="8"))
    with pytest.raises(
        CurrencyMismatchError, match=r"priced in USD .* bill is in EUR; there is no FX"
    ):
        rate(book, [Row("gpt-4o", NOV, 10)], "EUR")


def test_usage_without_a_price_names_the_model_tier_and_hour() -> None:
    book = PriceBook(flat(input="2", output="8"))
    with pytest.raises(NoPriceError, match="no priority price for gpt-4o at 2026-11-10T12:00:00Z"):
        rate(book, [Row("gpt-4o", NOV, 10, service_tier="priority")], "USD")


def test_a_missing_price_says_what_is_missing_and_only_the_cli_says_which_command_fixes_it():
    book = PriceBook(flat(input="2", output="8"))
    with pytest.raises(NoPriceError) as missing:
        book.at("gpt-4o", "priority", NOV)
    assert "metering" not in str(missing.value)
    assert explain(missing.value) == (
        f"{missing.value}: import a price file that covers it (`metering prices import FILE`),"
        " or check the model",
        2,
    )


def test_the_token_counts_are_listed_once_and_usage_has_each_of_them() -> None:
    assert TOKEN_COUNTS == (
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cache_write_1h_tokens",
    )
    assert sorted(Usage.__struct_fields__) == sorted(TOKEN_COUNTS)


# --- estimates -------------------------------------------------------------------------------


def test_an_estimate_prices_one_request_at_first_band_prices_without_rounding() -> None:
    book = PriceBook(
        [
            price("input", "3", up_to=1_000),
            price("input", "2"),
            price("cached_input", "0.30"),
            price("output", "15"),
        ]
    )
    usage = Usage(input_tokens=1_500, output_tokens=7, cached_input_tokens=500)
    estimate = estimate_cost(usage, book.at("gpt-4o", "standard", NOV))
    # 1,000 uncached at 3 (no band discount) + 500 cached at 0.30 + 7 output at 15, per 1M.
    assert estimate == Decimal("0.003255")


def test_an_estimate_of_a_long_request_uses_long_context_prices() -> None:
    book = PriceBook(
        [*flat(input="3", output="15"), price("input", "6", long_context_above=200_000)]
    )
    prices = book.at("gpt-4o", "standard", NOV)
    assert estimate_cost(Usage(300_000, 0), prices) == Decimal("1.8")
    assert estimate_cost(Usage(300_000, 0), prices, long_context=False) == Decimal("0.9")
