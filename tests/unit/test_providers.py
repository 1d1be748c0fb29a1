import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types.beta import (
    BetaAdvisorMessageIterationUsage,
    BetaCacheCreation,
    BetaCompactionIterationUsage,
    BetaMessageIterationUsage,
    BetaUsage,
)
from anthropic.types.raw_message_delta_event import Delta
from azure.ai.inference.models import CompletionsUsage, StreamingChatCompletionsUpdate
from google.protobuf.json_format import MessageToDict, MessageToJson
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from xai_sdk.proto import chat_pb2, usage_pb2

from metering.billing.event_decoder import parse_event
from metering.billing.events import Catalog, event_to_json
from metering.billing.price_book import PriceBook
from metering.billing.rating import estimate_cost
from metering.billing.tokens import Usage
from metering.config import PROJECT_ROOT
from metering.files.price_files import load_price_file
from metering.produce.producer import usage_event
from metering.produce.providers import (
    from_anthropic,
    from_anthropic_stream,
    from_azure_ai_inference,
    from_azure_ai_inference_stream,
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
    assert from_openai_chat(usage) == Usage(
        input_tokens=2006, output_tokens=300, cached_input_tokens=1920
    )


def test_openai_chat_counts_reasoning_inside_the_completion():
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 1200,
        "completion_tokens_details": {"reasoning_tokens": 1024},
    }
    assert from_openai_chat(usage) == Usage(9, 1200, reasoning_tokens=1024)


def test_openai_responses_counts_reasoning_inside_the_output():
    # OpenAI platform docs, guide "Reasoning models", usage of a Responses API call.
    usage = {
        "input_tokens": 75,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1186,
        "output_tokens_details": {"reasoning_tokens": 1024},
        "total_tokens": 1261,
    }
    assert from_openai_responses(usage) == Usage(75, 1186, reasoning_tokens=1024)


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
    assert from_anthropic(first_call) == Usage(
        input_tokens=188107, output_tokens=393, cache_write_tokens=188086
    )
    assert from_anthropic(second_call) == Usage(
        input_tokens=188107, output_tokens=393, cached_input_tokens=188086
    )


def test_anthropic_usage_without_cache_fields_is_plain_input():
    # Anthropic API reference, Messages, example response.
    assert from_anthropic({"input_tokens": 2095, "output_tokens": 503}) == Usage(2095, 503)


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
    assert from_xai(usage) == Usage(
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
    assert from_xai(usage) == Usage(686, 123, cached_input_tokens=679, reasoning_tokens=112)


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
    assert from_deepseek(usage) == Usage(
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
        assert convert(usage) == Usage(10, 5)


def test_null_counts_inside_details_count_as_zero():
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "input_tokens_details": {"cached_tokens": None},
        "output_tokens_details": {},
    }
    assert from_openai_responses(usage) == Usage(10, 5)


def test_null_anthropic_cache_counts_count_as_zero():
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
    }
    assert from_anthropic(usage) == Usage(10, 5)


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
        Usage(input_tokens=1, output_tokens=5, reasoning_tokens=6).checked()


def test_usage_serialises_every_token_class():
    assert Usage(100, 50, 40, 10, 20).as_dict() == {
        "input_tokens": 100,
        "output_tokens": 50,
        "cached_input_tokens": 40,
        "cache_write_tokens": 10,
        "reasoning_tokens": 20,
    }


# --- against the providers' own SDK classes ------------------------------------------------
#
# Each input below is built from the SDK's classes and serialised the ways a serving layer
# does, so that a field renamed upstream fails here rather than in a customer's bill.

LIST_PRICES = PriceBook(load_price_file(PROJECT_ROOT / "prices" / "list-prices.yaml"))
NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)


def list_price(model: str, usage: Usage) -> Decimal:
    """What ``usage`` costs at the list prices of ``model``, standard tier, unrounded."""
    return estimate_cost(usage, LIST_PRICES.at(model, "standard", NOW))


def pydantic_dumps(model: Any) -> list[dict[str, Any]]:
    """A pydantic SDK object as serving layers pass it on."""
    return [
        model.model_dump(),
        model.model_dump(exclude_none=True),
        json.loads(model.model_dump_json()),
    ]


def proto_dumps(message: Any) -> list[dict[str, Any]]:
    """A protobuf SDK message as serving layers pass it on."""
    return [
        MessageToDict(message),  # camelCase, counts of 0 left out, int64 as a string
        MessageToDict(message, preserving_proto_field_name=True),
        json.loads(MessageToJson(message)),
    ]


def xai_sampling_usage(**counts: int) -> Any:
    return usage_pb2.SamplingUsage(**counts)


def test_xai_sdk_cached_prompt_tokens_are_billed_at_the_cached_price():
    # grok-3: 400 uncached x $3 + 600 cached x $0.75 + 200 output x $15 per 1M = $0.00465
    usage = xai_sampling_usage(
        prompt_tokens=1000, completion_tokens=200, total_tokens=1200, cached_prompt_text_tokens=600
    )
    for dumped in proto_dumps(usage):
        tokens = from_xai(dumped)
        assert tokens == Usage(1000, 200, cached_input_tokens=600), dumped
        assert list_price("grok-3", tokens) == Decimal("0.00465")


def test_xai_sdk_reasoning_tokens_are_added_to_the_completion():
    # A recorded grok response (pydantic-ai's xai test cassettes, x_search tool):
    # 5821 + 62 + 524 == 6407, so reasoning comes beside completion_tokens, as over REST.
    usage = xai_sampling_usage(
        prompt_tokens=5821,
        completion_tokens=62,
        total_tokens=6407,
        reasoning_tokens=524,
        cached_prompt_text_tokens=2692,
        prompt_text_tokens=5821,
    )
    for dumped in proto_dumps(usage):
        assert from_xai(dumped) == Usage(
            input_tokens=5821, output_tokens=586, cached_input_tokens=2692, reasoning_tokens=524
        ), dumped


def test_xai_sdk_usage_with_no_completion_reads_the_left_out_count_as_zero():
    usage = xai_sampling_usage(prompt_tokens=12, prompt_text_tokens=12, total_tokens=12)
    assert "completionTokens" not in MessageToDict(usage)
    for dumped in proto_dumps(usage):
        assert from_xai(dumped) == Usage(12, 0), dumped


def test_xai_sdk_reported_cost_agrees_with_our_list_price_rating():
    usage = xai_sampling_usage(
        prompt_tokens=1000,
        completion_tokens=200,
        total_tokens=1200,
        cached_prompt_text_tokens=600,
        cost_in_usd_ticks=46_500_000,
    )
    for dumped in proto_dumps(usage):
        assert xai_cost_usd(dumped) == list_price("grok-3", from_xai(dumped)), dumped


def test_xai_sdk_response_usage_is_read_from_the_chat_response():
    response = chat_pb2.GetChatCompletionResponse(
        id="r1", model="grok-3", usage=xai_sampling_usage(prompt_tokens=10, completion_tokens=4)
    )
    assert from_xai(MessageToDict(response)["usage"]) == Usage(10, 4)


def test_anthropic_one_hour_cache_writes_are_priced_at_twice_the_input():
    # claude-sonnet-4: 50 x $3 + 4000 five-minute writes x $3.75 + 6000 one-hour writes x $6
    # + 100 output x $15 per 1M = $0.05265 (all at $3.75: $0.04065)
    usage = anthropic.types.Usage(
        input_tokens=50,
        output_tokens=100,
        cache_creation_input_tokens=10_000,
        cache_read_input_tokens=0,
        cache_creation=anthropic.types.CacheCreation(
            ephemeral_1h_input_tokens=6000, ephemeral_5m_input_tokens=4000
        ),
    )
    for dumped in pydantic_dumps(usage):
        tokens = from_anthropic(dumped)
        assert tokens == Usage(
            input_tokens=10_050,
            output_tokens=100,
            cache_write_tokens=10_000,
            cache_write_1h_tokens=6000,
        ), dumped
        assert list_price("claude-sonnet-4", tokens) == Decimal("0.05265")


def test_anthropic_compaction_iterations_are_billed_on_top_of_the_top_level_counts():
    # The SDK: "A `compaction` entry's tokens are not included in the top-level usage fields";
    # the `message` entries are the sampling turns the top-level counts add up.
    turn = BetaMessageIterationUsage(
        type="message",
        input_tokens=30,
        output_tokens=400,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=9000,
    )
    compaction = BetaCompactionIterationUsage(
        type="compaction",
        input_tokens=150_000,
        output_tokens=2000,
        cache_creation_input_tokens=1000,
        cache_read_input_tokens=5000,
        cache_creation=BetaCacheCreation(
            ephemeral_1h_input_tokens=1000, ephemeral_5m_input_tokens=0
        ),
    )
    usage = BetaUsage(
        input_tokens=30,
        output_tokens=400,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=9000,
        iterations=[turn, compaction],
    )
    for dumped in pydantic_dumps(usage):
        assert from_anthropic(dumped) == Usage(
            input_tokens=30 + 9000 + 150_000 + 1000 + 5000,
            output_tokens=2400,
            cached_input_tokens=14_000,
            cache_write_tokens=1000,
            cache_write_1h_tokens=1000,
        ), dumped


def test_anthropic_iterations_of_an_unknown_kind_are_refused_rather_than_dropped():
    advisor = BetaAdvisorMessageIterationUsage(
        type="advisor_message",
        model="claude-opus-4-1",
        input_tokens=500,
        output_tokens=50,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=0,
    )
    usage = BetaUsage(input_tokens=10, output_tokens=5, iterations=[advisor])
    with pytest.raises(ValueError, match=r"^iterations\[0\]\.type 'advisor_message'"):
        from_anthropic(usage.model_dump())


def test_anthropic_stream_combines_message_start_and_the_final_message_delta():
    start = anthropic.types.RawMessageStartEvent(
        type="message_start",
        message=anthropic.types.Message(
            id="msg_1",
            type="message",
            role="assistant",
            model="claude-sonnet-4-20250514",
            content=[],
            usage=anthropic.types.Usage(
                input_tokens=472,
                output_tokens=2,
                cache_creation_input_tokens=2048,
                cache_read_input_tokens=1024,
                cache_creation=anthropic.types.CacheCreation(
                    ephemeral_1h_input_tokens=2048, ephemeral_5m_input_tokens=0
                ),
            ),
        ),
    )
    delta = anthropic.types.RawMessageDeltaEvent(
        type="message_delta",
        delta=Delta(stop_reason="end_turn"),
        usage=anthropic.types.MessageDeltaUsage(output_tokens=503),
    )
    for start_dump, delta_dump in zip(pydantic_dumps(start), pydantic_dumps(delta), strict=True):
        assert from_anthropic_stream(start_dump, delta_dump) == Usage(
            input_tokens=472 + 2048 + 1024,
            output_tokens=503,
            cached_input_tokens=1024,
            cache_write_tokens=2048,
            cache_write_1h_tokens=2048,
        )


def test_anthropic_stream_events_must_be_given_in_order():
    delta = {"type": "message_delta", "usage": {"output_tokens": 3}}
    with pytest.raises(ValueError, match="expected a message_start event"):
        from_anthropic_stream(delta, delta)


def test_openai_chat_reads_cache_writes_inside_the_prompt():
    usage = openai.types.CompletionUsage(
        prompt_tokens=3000,
        completion_tokens=20,
        total_tokens=3020,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=1024, cache_write_tokens=1900),
    )
    for dumped in pydantic_dumps(usage):
        assert from_openai_chat(dumped) == Usage(
            3000, 20, cached_input_tokens=1024, cache_write_tokens=1900
        ), dumped


def test_openai_responses_reads_cache_writes_inside_the_input():
    usage = openai.types.responses.ResponseUsage(
        input_tokens=3000,
        input_tokens_details=InputTokensDetails(cached_tokens=1024, cache_write_tokens=1900),
        output_tokens=300,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=256),
        total_tokens=3300,
    )
    for dumped in pydantic_dumps(usage):
        assert from_openai_responses(dumped) == Usage(
            3000, 300, cached_input_tokens=1024, cache_write_tokens=1900, reasoning_tokens=256
        ), dumped


def test_deepseek_in_the_openai_shape_reads_cache_hits_from_the_prompt_details():
    usage = openai.types.CompletionUsage(
        prompt_tokens=2048,
        completion_tokens=1530,
        total_tokens=3578,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=1920),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=1210),
    )
    for dumped in pydantic_dumps(usage):
        assert from_deepseek(dumped) == Usage(
            input_tokens=2048, output_tokens=1530, cached_input_tokens=1920, reasoning_tokens=1210
        ), dumped


def azure_usage(**fields: Any) -> CompletionsUsage:
    """A ``CompletionsUsage`` as the SDK deserialises the service's JSON (details kept)."""
    return CompletionsUsage(fields)


def azure_dumps(model: Any) -> list[dict[str, Any]]:
    return [model.as_dict(), json.loads(json.dumps(model.as_dict()))]


def test_azure_ai_inference_deepseek_r1_counts_reasoning_inside_the_completion():
    usage = azure_usage(
        prompt_tokens=2048,
        completion_tokens=1530,
        total_tokens=3578,
        prompt_tokens_details={"cached_tokens": 1920},
        completion_tokens_details={"reasoning_tokens": 1210},
    )
    assert not hasattr(usage, "model_dump")
    for dumped in azure_dumps(usage):
        assert from_azure_ai_inference(dumped) == Usage(
            2048, 1530, cached_input_tokens=1920, reasoning_tokens=1210
        ), dumped


def test_azure_ai_inference_grok_adds_reasoning_reported_beside_the_completion():
    usage = azure_usage(
        prompt_tokens=663,
        completion_tokens=50,
        total_tokens=837,
        completion_tokens_details={"reasoning_tokens": 124},
    )
    for dumped in azure_dumps(usage):
        assert from_azure_ai_inference(dumped) == Usage(663, 174, reasoning_tokens=124)


def test_azure_ai_inference_usage_with_only_the_declared_fields():
    usage = CompletionsUsage(prompt_tokens=20, completion_tokens=7, total_tokens=27)
    assert from_azure_ai_inference(usage.as_dict()) == Usage(20, 7)


def test_azure_ai_inference_stream_takes_the_usage_of_the_last_update_that_has_one():
    def update(usage: dict[str, Any] | None) -> StreamingChatCompletionsUpdate:
        body = {"id": "c1", "created": 1_764_000_000, "model": "Llama-3.3-70B", "choices": []}
        return StreamingChatCompletionsUpdate(body if usage is None else body | {"usage": usage})

    updates = [
        update(None),
        update({"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}),
        update({"prompt_tokens": 40, "completion_tokens": 90, "total_tokens": 130}),
        update(None),
    ]
    assert from_azure_ai_inference_stream(u.as_dict() for u in updates) == Usage(40, 90)


def test_azure_ai_inference_stream_without_usage_says_how_to_ask_for_it():
    with pytest.raises(ValueError, match="include_usage"):
        from_azure_ai_inference_stream([{"id": "c1", "choices": []}])


def test_one_hour_cache_writes_above_the_cache_writes_are_rejected():
    with pytest.raises(ValueError, match="exceed cache_write_tokens"):
        Usage(100, 1, cache_write_tokens=10, cache_write_1h_tokens=11).checked()


def test_usage_serialises_one_hour_cache_writes_when_there_are_some():
    assert Usage(100, 50, 0, 10, 0, 4).as_dict()["cache_write_1h_tokens"] == 4


# --- the producer ---------------------------------------------------------------------------


def test_the_producer_sends_what_ingest_reads_back_as_the_same_event():
    """The producer writes an event with the domain's one writer of v1 JSON, so ingest parses
    the bytes a serving layer sends to an equal event, fingerprint included."""
    sent = usage_event(
        tenant_id="acme",
        model="claude-sonnet-4",
        usage=from_anthropic(
            {
                "input_tokens": 50,
                "output_tokens": 100,
                "cache_creation_input_tokens": 10_000,
                "cache_creation": {"ephemeral_1h_input_tokens": 6000},
            }
        ),
        occurred_at=datetime(2026, 11, 25, 11, 30, 0, 250_000, tzinfo=timezone(timedelta(hours=2))),
        request_id="req_1",
        attributes={"team": "search"},
    )
    catalog = Catalog(tenants=frozenset({"acme"}), models=frozenset({"claude-sonnet-4"}))
    received = parse_event(event_to_json(sent), catalog=catalog, now=NOW)
    assert received == sent
    assert received.fingerprint == sent.fingerprint
    assert b'"occurred_at":"2026-11-25T09:30:00.250000Z"' in event_to_json(sent)


def test_the_producer_refuses_counts_that_no_event_may_carry():
    with pytest.raises(ValueError, match="exceed output_tokens"):
        usage_event(
            tenant_id="acme",
            model="gpt-4.1",
            usage={"input_tokens": 1, "output_tokens": 5, "reasoning_tokens": 6},
        )
