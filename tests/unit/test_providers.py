from decimal import Decimal

import pytest

from metering.providers import (
    TokenUsage,
    from_anthropic,
    from_deepseek,
    from_openai_chat,
    from_openai_responses,
    from_xai,
    xai_cost_usd,
)


def test_openai_chat_counts_cached_tokens_inside_the_prompt():
    # OpenAI platform docs, guide "Prompt caching", example usage of a cache hit.
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    assert from_openai_chat(usage) == TokenUsage(
        input_tokens=2006, output_tokens=300, cached_input_tokens=1920
    )


def test_openai_chat_counts_reasoning_inside_the_completion():
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 1200,
        "completion_tokens_details": {"reasoning_tokens": 1024},
    }
    assert from_openai_chat(usage) == TokenUsage(9, 1200, reasoning_tokens=1024)


def test_openai_responses_counts_reasoning_inside_the_output():
    # OpenAI platform docs, guide "Reasoning models", usage of a Responses API call.
    usage = {
        "input_tokens": 75,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1186,
        "output_tokens_details": {"reasoning_tokens": 1024},
        "total_tokens": 1261,
    }
    assert from_openai_responses(usage) == TokenUsage(75, 1186, reasoning_tokens=1024)


def test_anthropic_cache_writes_and_reads_add_to_the_uncached_input():
    # Anthropic docs, "Prompt caching": input_tokens exclude cache reads and writes.
    first_call = {
        "input_tokens": 21,
        "cache_creation_input_tokens": 188086,
        "cache_read_input_tokens": 0,
        "output_tokens": 393,
    }
    second_call = {
        "input_tokens": 21,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 188086,
        "output_tokens": 393,
    }
    assert from_anthropic(first_call) == TokenUsage(
        input_tokens=188107, output_tokens=393, cache_write_tokens=188086
    )
    assert from_anthropic(second_call) == TokenUsage(
        input_tokens=188107, output_tokens=393, cached_input_tokens=188086
    )


def test_anthropic_usage_without_cache_fields_is_plain_input():
    # Anthropic API reference, Messages, example response.
    assert from_anthropic({"input_tokens": 2095, "output_tokens": 503}) == TokenUsage(2095, 503)


def test_xai_reasoning_tokens_are_added_to_the_completion():
    # Google Cloud docs, "Reasoning for Grok models" (xAI models on Vertex AI), example
    # response: "The reasoning token count is outputted in the reasoning_tokens field,
    # separated from the completion_tokens" (663 + 50 + 124 == 837).
    usage = {
        "completion_tokens": 50,
        "completion_tokens_details": {
            "accepted_prediction_tokens": 0,
            "audio_tokens": 0,
            "reasoning_tokens": 124,
            "rejected_prediction_tokens": 0,
        },
        "cost_in_usd_ticks": 0,
        "num_sources_used": 0,
        "prompt_tokens": 663,
        "prompt_tokens_details": {
            "audio_tokens": 0,
            "cached_tokens": 654,
            "image_tokens": 0,
            "text_tokens": 663,
        },
        "total_tokens": 837,
    }
    assert from_xai(usage) == TokenUsage(
        input_tokens=663, output_tokens=174, cached_input_tokens=654, reasoning_tokens=124
    )


def test_xai_usage_reshaped_by_a_relay_is_not_double_counted():
    # 302.AI API docs, grok-4 chat completion example: a relay that re-serves Grok in
    # OpenAI's shape, reasoning inside completion_tokens (686 + 123 == 809).
    usage = {
        "prompt_tokens": 686,
        "completion_tokens": 123,
        "total_tokens": 809,
        "prompt_tokens_details": {"cached_tokens": 679},
        "completion_tokens_details": {"text_tokens": 11, "reasoning_tokens": 112},
    }
    assert from_xai(usage) == TokenUsage(686, 123, cached_input_tokens=679, reasoning_tokens=112)


def test_xai_usage_without_a_total_is_read_as_xai_documents_it():
    usage = {
        "prompt_tokens": 32,
        "completion_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 94},
    }
    assert from_xai(usage).output_tokens == 103


def test_xai_total_that_fits_neither_shape_is_rejected():
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 99,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    with pytest.raises(ValueError, match="total_tokens"):
        from_xai(usage)


def test_xai_cost_converts_ticks_to_dollars_exactly():
    # docs.x.ai, "Cost tracking": "cost_in_usd_ticks": 37756000 cost $0.0038.
    cost = xai_cost_usd({"prompt_tokens": 1, "completion_tokens": 1, "cost_in_usd_ticks": 37756000})
    assert cost == Decimal("0.0037756")
    assert isinstance(cost, Decimal)


def test_xai_cost_is_unknown_when_xai_did_not_report_it():
    assert xai_cost_usd({"prompt_tokens": 1, "completion_tokens": 1}) is None


def test_deepseek_cache_hits_are_the_cached_part_of_the_prompt():
    # DeepSeek API docs, "Create Chat Completion" response usage fields (deepseek-reasoner);
    # counts illustrative.
    usage = {
        "completion_tokens": 1530,
        "prompt_tokens": 2048,
        "prompt_cache_hit_tokens": 1920,
        "prompt_cache_miss_tokens": 128,
        "total_tokens": 3578,
        "completion_tokens_details": {"reasoning_tokens": 1210},
    }
    assert from_deepseek(usage) == TokenUsage(
        input_tokens=2048, output_tokens=1530, cached_input_tokens=1920, reasoning_tokens=1210
    )


def test_deepseek_hits_and_misses_must_add_up_to_the_prompt():
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "prompt_cache_hit_tokens": 60,
        "prompt_cache_miss_tokens": 60,
    }
    with pytest.raises(ValueError, match="prompt_cache_miss_tokens"):
        from_deepseek(usage)


@pytest.mark.parametrize("details", [None, "absent"])
def test_missing_or_null_details_count_as_zero(details):
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    if details is None:
        usage |= {"prompt_tokens_details": None, "completion_tokens_details": None}
    for convert in (from_openai_chat, from_xai, from_deepseek):
        assert convert(usage) == TokenUsage(10, 5)


def test_null_counts_inside_details_count_as_zero():
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "input_tokens_details": {"cached_tokens": None},
        "output_tokens_details": {},
    }
    assert from_openai_responses(usage) == TokenUsage(10, 5)


def test_null_anthropic_cache_counts_count_as_zero():
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
    }
    assert from_anthropic(usage) == TokenUsage(10, 5)


@pytest.mark.parametrize(
    ("convert", "usage", "field"),
    [
        (from_openai_chat, {"completion_tokens": 5}, "prompt_tokens"),
        (from_openai_chat, {"prompt_tokens": None, "completion_tokens": 5}, "prompt_tokens"),
        (from_openai_responses, {"input_tokens": 5}, "output_tokens"),
        (from_anthropic, {"output_tokens": 5}, "input_tokens"),
        (from_xai, {"prompt_tokens": 5}, "completion_tokens"),
        (from_deepseek, {"completion_tokens": 5}, "prompt_tokens"),
    ],
)
def test_a_missing_required_count_is_named(convert, usage, field):
    with pytest.raises(ValueError, match=f"^{field} is missing"):
        convert(usage)


@pytest.mark.parametrize("bad", [-1, 1.5, 10.0, "10", True])
def test_a_negative_or_non_integer_count_is_named(bad):
    with pytest.raises(ValueError, match=r"^completion_tokens must be a non-negative integer"):
        from_openai_chat({"prompt_tokens": 10, "completion_tokens": bad})


def test_a_bad_count_inside_details_is_named_with_its_path():
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": -3},
    }
    with pytest.raises(ValueError, match=r"^prompt_tokens_details\.cached_tokens"):
        from_openai_chat(usage)


def test_details_that_are_not_an_object_are_rejected():
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "completion_tokens_details": [3]}
    with pytest.raises(ValueError, match=r"^completion_tokens_details must be an object"):
        from_openai_chat(usage)


def test_a_negative_anthropic_cache_count_is_named():
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": -1}
    with pytest.raises(ValueError, match=r"^cache_read_input_tokens"):
        from_anthropic(usage)


def test_cached_tokens_above_the_prompt_are_rejected():
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 11},
    }
    with pytest.raises(ValueError, match="exceed input_tokens"):
        from_openai_chat(usage)


def test_reasoning_above_the_output_is_rejected():
    with pytest.raises(ValueError, match="exceed output_tokens"):
        TokenUsage(input_tokens=1, output_tokens=5, reasoning_tokens=6)


def test_token_usage_serialises_every_token_class():
    assert TokenUsage(100, 50, 40, 10, 20).as_dict() == {
        "input_tokens": 100,
        "output_tokens": 50,
        "cached_input_tokens": 40,
        "cache_write_tokens": 10,
        "reasoning_tokens": 20,
    }
