"""Price files load the same way every time, and every mistake is named with its line."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from metering.billing.events import SERVICE_TIERS
from metering.billing.price_book import PriceBook
from metering.billing.price_changes import plan_import, repricings
from metering.billing.prices import PriceEntry
from metering.billing.tokens import TokenClass
from metering.config import PROJECT_ROOT
from metering.files.price_fields import PriceFileError
from metering.files.price_files import load_price_file, parse_price_csv
from metering.files.price_yaml import parse_price_yaml
from metering.tools.traffic import DEMO_MODELS

LIST_PRICES = PROJECT_ROOT / "prices" / "list-prices.yaml"
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems_of(
    text: str, parse: Callable[[str, str], list[PriceEntry]] = parse_price_yaml
) -> list[str]:
    with pytest.raises(PriceFileError) as error:
        parse(yaml_text(text), "p.yaml")
    return error.value.problems


GOOD = """
    currency: USD
    prices:
      - model: gpt-4.1
        effective_from: 2026-01-01
        standard: {input: 2.00, cached_input: 0.50, output: 8.00}
        batch:
          input:
            - {up_to: 1_000_000_000, price: 1.00}
            - {price: 0.90}
          output: 4.00
        long_context:
          above: 200_000
          standard: {input: 4.00, output: 16.00}
"""


# --- the shipped list prices -----------------------------------------------------------------


def test_the_shipped_list_prices_price_every_demo_model_on_every_service_tier() -> None:
    book = PriceBook(load_price_file(LIST_PRICES))
    for model in DEMO_MODELS:
        for tier in SERVICE_TIERS:
            prices = book.at(model.model_id, tier, NOW)
            assert prices.currency == "USD"
            assert prices.base_price(TokenClass.INPUT) > 0


@pytest.mark.parametrize(
    ("model", "batch_share"),
    [
        ("gpt-4.1", Decimal("0.5")),
        ("gpt-4o", Decimal("0.5")),
        ("o3-mini", Decimal("0.5")),
        ("claude-sonnet-4", Decimal("0.5")),
        ("Llama-3.1-8B", Decimal("0.5")),
        ("grok-4", Decimal("1")),  # no batch discount published
        ("DeepSeek-V3", Decimal("1")),  # no batch tier
    ],
)
def test_batch_is_half_price_where_the_provider_offers_a_batch_discount(
    model: str, batch_share: Decimal
) -> None:
    book = PriceBook(load_price_file(LIST_PRICES))
    standard, batch = book.at(model, "standard", NOW), book.at(model, "batch", NOW)
    for token_class in standard.schedules:
        assert batch.base_price(token_class) == standard.base_price(token_class) * batch_share


def test_the_shipped_list_prices_have_long_context_rules_and_a_graduated_band() -> None:
    book = PriceBook(load_price_file(LIST_PRICES))
    assert book.at("claude-sonnet-4", "standard", NOW).long_context_above == 200_000
    assert book.at("grok-4", "batch", NOW).long_context_above == 128_000
    llama = book.at("Llama-3.3-70B", "standard", NOW).schedules[TokenClass.INPUT]
    assert [band.up_to for band in llama] == [1_000_000_000, None]


def test_the_shipped_list_prices_say_where_each_providers_numbers_come_from() -> None:
    text = LIST_PRICES.read_text()
    for page in ("docs.x.ai", "openai.com", "api-docs.deepseek.com", "together.ai", "anthropic"):
        assert page in text
    assert text.count("as published on") >= 5
    assert text.count("retrieved from memory of") >= 5


# --- idempotent imports ----------------------------------------------------------------------


def test_importing_the_same_file_twice_changes_nothing() -> None:
    first, second = load_price_file(LIST_PRICES), load_price_file(LIST_PRICES)
    assert first == second
    plan = plan_import(stored=first, incoming=second)
    assert plan.is_noop
    assert len(plan.unchanged) == len(first)


def test_an_import_plan_tells_new_entries_from_changed_ones() -> None:
    stored = parse_price_yaml(yaml_text(GOOD), "old.yaml")
    changed = (
        yaml_text(GOOD)
        .replace("output: 8.00", "output: 7.00")
        .replace("{input: 4.00, output: 16.00}", "{input: 4.00, output: 16.00, cached_input: 1.00}")
    )
    plan = plan_import(stored, parse_price_yaml(changed, "new.yaml"))
    assert [e.describe() for e in plan.added] == [
        "gpt-4.1 cached_input standard (requests above 200,000 input tokens)"
    ]
    assert [(old.price_per_million, new.price_per_million) for old, new in plan.changed] == [
        (Decimal("8.00"), Decimal("7.00"))
    ]
    assert not plan.is_noop


def price(
    model: str, token_class: str, amount: str, start: int, end: int | None = None
) -> PriceEntry:
    """A standard-tier USD price from month ``start`` of 2026 (until month ``end``)."""
    return PriceEntry(
        model,
        TokenClass(token_class),
        "standard",
        "USD",
        Decimal(amount),
        datetime(2026, start, 1, tzinfo=UTC),
        datetime(2026, end, 1, tzinfo=UTC) if end else None,
    )


def spans(
    stored: list[PriceEntry], incoming: list[PriceEntry]
) -> list[tuple[str, int, int | None]]:
    """What an import reprices, as (entry, first month, month it ends or None)."""
    return [
        (r.entry.describe(), r.since.month, r.until.month if r.until else None)
        for r in repricings(stored, plan_import(stored, incoming))
    ]


def test_a_new_price_for_a_priced_model_reprices_its_own_span_and_a_new_model_nothing() -> None:
    stored = [price("m", "input", "2.00", 1), price("m", "output", "8.00", 1)]
    incoming = [
        *stored,
        price("m", "cached_input", "0.50", 10, 12),  # m was billed: its cached reads change
        price("new", "input", "1.00", 1),  # nothing can have billed a model without prices
        price("new", "output", "2.00", 1),
    ]
    assert spans(stored, incoming) == [("m cached_input standard", 10, 12)]


def test_a_changed_price_reprices_from_its_start_and_a_changed_end_between_the_ends() -> None:
    stored = [price("m", "input", "2.00", 1), price("m", "output", "8.00", 1, 11)]
    incoming = [price("m", "input", "1.80", 1, 10), price("m", "output", "8.00", 1, 9)]
    assert spans(stored, incoming) == [
        ("m input standard", 1, None),  # other price from January, and gone after October
        ("m output standard", 9, 11),  # the same price, ending two months earlier
    ]


def test_importing_the_stored_prices_again_reprices_nothing() -> None:
    stored = [price("m", "input", "2.00", 1), price("m", "output", "8.00", 1)]
    assert spans(stored, list(stored)) == []


def test_a_yaml_file_and_a_csv_file_of_the_same_prices_load_equal_entries(tmp_path: Path) -> None:
    csv_file = tmp_path / "prices.csv"
    csv_file.write_text(
        "# gpt-4.1, as in the YAML\n"
        "model,token_class,service_tier,currency,price_per_million,effective_from,effective_to,"
        "tier_up_to,long_context_above\n"
        "gpt-4.1,input,standard,USD,2.00,2026-01-01,,,\n"
        "gpt-4.1,cached_input,standard,USD,0.50,2026-01-01T00:00:00Z,,,\n"
        "gpt-4.1,output,standard,USD,8.00,2026-01-01,,,\n"
        "gpt-4.1,input,batch,USD,1.00,2026-01-01,,1000000000,\n"
        "gpt-4.1,input,batch,USD,0.90,2026-01-01,,,\n"
        "gpt-4.1,output,batch,USD,4.00,2026-01-01,,,\n"
        "gpt-4.1,input,standard,USD,4.00,2026-01-01,,,200000\n"
        "gpt-4.1,output,standard,USD,16.00,2026-01-01,,,200000\n"
    )
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text(yaml_text(GOOD))
    assert sorted(load_price_file(csv_file), key=str) == sorted(load_price_file(yaml_file), key=str)
    assert load_price_file(csv_file)[0].source == f"{csv_file}:3"


# --- mistakes, with their lines --------------------------------------------------------------


def test_an_unknown_token_class_is_named_with_its_line_and_the_known_ones() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4.1
            effective_from: 2026-01-01
            standard:
              input: 2.00
              prompt: 2.00
              output: 8.00
        """
    )
    assert problems == [
        "p.yaml:7: unknown key 'prompt' in 'standard': expected input, cached_input,"
        " cache_write, cache_write_1h, output, reasoning"
    ]


@pytest.mark.parametrize("written", ["2,50", "$2.50", "2.5e0", ".5", "-1", "[2.5]"])
def test_a_price_must_be_a_plain_decimal(written: str) -> None:
    problems = problems_of(
        f"""
        currency: USD
        prices:
          - model: gpt-4.1
            effective_from: 2026-01-01
            standard:
              input: 2.00
              output: {written}
        """
    )
    assert len(problems) == 1
    assert problems[0].startswith("p.yaml:7: ")


def test_every_independent_problem_is_reported_at_once_in_file_order() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4.1
            effective_from: 2026-01-01
            currency: usd
            standard: {input: 2.00, output: 8.00}
          - model: gpt-4o
            effective_from: 2026-02-30
            standard: {input: 2.50, output: 10.00}
          - model: o3-mini
            flex: {input: 1.10}
            effective_from: 2026-01-01
        """
    )
    assert [p.split(": ")[0] for p in problems] == [
        "p.yaml:5",
        "p.yaml:8",
        "p.yaml:10",
        "p.yaml:11",
    ]
    assert "currency 'usd' must be an ISO 4217 code" in problems[0]
    assert "effective_from '2026-02-30' is not a real date" in problems[1]
    assert "o3-mini prices no service tier" in problems[2]
    assert "unknown key 'flex'" in problems[3]


def test_prices_that_overlap_across_blocks_name_both_lines() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4o
            effective_from: 2026-01-01
            standard: {input: 2.50, output: 10.00}
          - model: gpt-4o
            effective_from: 2026-06-01
            standard: {input: 2.00, output: 8.00}
        """
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "p.yaml:8: gpt-4o input standard overlaps p.yaml:5 from 2026-06-01"
    )
    assert "end the earlier price with effective_to" in problems[0]


def test_a_price_change_is_a_new_block_that_starts_where_the_old_one_ends() -> None:
    entries = parse_price_yaml(
        yaml_text(
            """
            currency: USD
            prices:
              - model: gpt-4o
                effective_from: 2026-01-01
                effective_to: 2026-06-01
                standard: {input: 2.50, output: 10.00}
              - model: gpt-4o
                effective_from: 2026-06-01
                standard: {input: 2.00, output: 8.00}
            """
        ),
        "p.yaml",
    )
    book = PriceBook(entries)
    assert book.at("gpt-4o", "standard", NOW).base_price(TokenClass.INPUT) == Decimal("2.00")


def test_bands_without_a_top_band_are_reported_with_the_highest_bands_line() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4o
            effective_from: 2026-01-01
            standard:
              input:
                - {up_to: 1000, price: 3}
                - {up_to: 5000, price: 2}
              output: 10
        """
    )
    assert problems[0].startswith("p.yaml:8: gpt-4o input standard has bands up to 5,000 tokens")


def test_long_context_prices_cannot_have_bands() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4o
            effective_from: 2026-01-01
            standard: {input: 2, output: 8}
            long_context:
              above: 1000
              standard:
                input:
                  - {price: 4}
        """
    )
    assert problems == ["p.yaml:10: long-context prices cannot have bands: give one price"]


def test_a_yaml_syntax_error_is_reported_with_its_line() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4o
            standard: {input: 2.50, output: 10.00
            effective_from: 2026-01-01
        """
    )
    assert problems[0].startswith("p.yaml:5: not valid YAML")


def test_a_key_given_twice_is_reported_with_both_lines() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4o
            effective_from: 2026-01-01
            standard: {input: 2.50, output: 10.00}
            effective_from: 2026-02-01
        """
    )
    assert problems == [
        "p.yaml:6: 'effective_from' appears twice in a model block (first on line 4)"
    ]


def test_a_time_without_an_offset_is_refused() -> None:
    problems = problems_of(
        """
        currency: USD
        prices:
          - model: gpt-4o
            effective_from: 2026-01-01T00:00:00
            standard: {input: 2.50, output: 10.00}
        """
    )
    assert "or a time with an offset (2026-11-01T00:00:00Z)" in problems[0]


def test_an_empty_file_or_one_without_prices_is_refused() -> None:
    assert problems_of("") == ["p.yaml:1: the file is empty: see docs/billing.md"]
    assert "no 'prices:' list" in problems_of("currency: USD\n")[0]


def test_csv_rows_are_checked_with_their_line_numbers() -> None:
    text = (
        "model,token_class,service_tier,currency,price_per_million,effective_from\n"
        "# a comment line still counts\n"
        "gpt-4o,input,standard,USD,2.50,2026-01-01\n"
        "gpt-4o,prompt,standard,USD,2.50,2026-01-01\n"
        "gpt-4o,output,standard,USD,10.00\n"
    )
    problems = problems_of(text, parse=parse_price_csv)
    assert problems == [
        "p.yaml:4: token_class 'prompt' is not one of input, cached_input, cache_write,"
        " cache_write_1h, output, reasoning",
        "p.yaml:5: 5 cells but the header has 6; quote cells that contain commas",
    ]


def test_a_csv_header_must_name_the_required_columns() -> None:
    problems = problems_of("model,class,price\n", parse=parse_price_csv)
    assert problems[0].startswith("p.yaml:1: the header must name the columns")
    assert "unknown: class, price" in problems[0]


def test_only_yaml_and_csv_files_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text("{}")
    with pytest.raises(PriceFileError, match=r"unsupported file type '\.json': use \.yaml"):
        load_price_file(path)
