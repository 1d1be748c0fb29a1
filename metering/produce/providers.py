"""Converters from each provider's usage object to our token classes.

Every provider counts the same six things differently:

- OpenAI (Chat Completions and Responses) counts cached reads and cache writes inside the
  prompt and reasoning tokens inside the completion: our shape, field names aside. DeepSeek,
  Grok and Llama served in that shape (Azure, relays) report cache hits the same way.
- Anthropic's ``input_tokens`` exclude cache reads and cache writes, which add on top; its
  ``cache_creation`` splits the writes into 5-minute and 1-hour ones, priced apart; and the
  ``compaction`` entries of ``iterations`` are outside the top-level counts.
- DeepSeek's own API splits the prompt into ``prompt_cache_hit_tokens`` +
  ``prompt_cache_miss_tokens``.
- xAI reports reasoning tokens *beside* ``completion_tokens``, not inside them:
  ``total_tokens == prompt_tokens + completion_tokens + reasoning_tokens``, both over REST and
  in the xai-sdk's gRPC ``SamplingUsage`` (flat ``reasoning_tokens`` and
  ``cached_prompt_text_tokens``; camelCase keys after protobuf's ``MessageToDict``).
- Azure AI Inference's ``CompletionsUsage`` has the OpenAI field names, whichever model it
  serves; its ``total_tokens`` tells where the model put reasoning.

Each converter returns the domain's ``metering.billing.tokens.Usage``, checked. It takes the
usage object as a plain dict, as a serving layer has it
(``response.usage.model_dump()``, ``CompletionsUsage.as_dict()``, ``MessageToDict(usage)`` or
the decoded JSON), and raises ``ValueError`` naming the offending field when a count is
missing, negative or not an integer. Fields we do not bill (audio, predictions, ...) are
ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from metering.billing.tokens import Usage

XAI_TICKS_PER_USD_EXPONENT = 10
"""xAI's ``cost_in_usd_ticks`` counts 10**10 ticks per US dollar."""


def from_openai_chat(usage: Mapping[str, Any]) -> Usage:
    """OpenAI Chat Completions: ``prompt_tokens`` / ``completion_tokens`` and their details.

    Also DeepSeek, Grok or Llama served in OpenAI's shape: cache hits are
    ``prompt_tokens_details.cached_tokens``, cache writes ``...cache_write_tokens``.
    """
    return Usage(
        input_tokens=_required(usage, "prompt_tokens"),
        output_tokens=_required(usage, "completion_tokens"),
        cached_input_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
        cache_write_tokens=_detail(usage, "prompt_tokens_details", "cache_write_tokens"),
        reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
    ).checked()


def from_openai_responses(usage: Mapping[str, Any]) -> Usage:
    """OpenAI Responses API: ``input_tokens`` / ``output_tokens`` and their details."""
    return Usage(
        input_tokens=_required(usage, "input_tokens"),
        output_tokens=_required(usage, "output_tokens"),
        cached_input_tokens=_detail(usage, "input_tokens_details", "cached_tokens"),
        cache_write_tokens=_detail(usage, "input_tokens_details", "cache_write_tokens"),
        reasoning_tokens=_detail(usage, "output_tokens_details", "reasoning_tokens"),
    ).checked()


_ANTHROPIC_ITERATIONS_INSIDE: Final = ("message", "fallback_message")
"""Iteration types whose tokens the top-level counts already hold (sampling turns)."""
_ANTHROPIC_ITERATIONS_BESIDE: Final = ("compaction",)
"""Iteration types whose tokens the top-level counts leave out, so they are added."""


def from_anthropic(usage: Mapping[str, Any]) -> Usage:
    """Anthropic Messages API, whose ``input_tokens`` exclude cache reads and writes.

    1-hour cache writes (``cache_creation.ephemeral_1h_input_tokens``) become
    ``cache_write_1h_tokens``. The ``compaction`` entries of ``iterations`` (the server-side
    summarising of a long context) are not in the top-level counts, so they are added; the
    sampling turns (``message``, ``fallback_message``) are in them already. An iteration
    type this module does not know (such as ``advisor_message``, a sub-inference that may
    run on another model) raises, so that no tokens are silently left unbilled.
    """
    total = _anthropic_counts(usage, "")
    iterations = usage.get("iterations")
    if iterations is None:
        return total
    if not isinstance(iterations, list):
        raise ValueError(f"iterations must be a list or null, got {iterations!r}")
    for index, iteration in enumerate(iterations):
        path = f"iterations[{index}]."
        if not isinstance(iteration, Mapping):
            raise ValueError(f"iterations[{index}] must be an object, got {iteration!r}")
        kind = iteration.get("type")
        if kind in _ANTHROPIC_ITERATIONS_BESIDE:
            total += _anthropic_counts(iteration, path)
        elif kind not in _ANTHROPIC_ITERATIONS_INSIDE:
            raise ValueError(
                f"{path}type {kind!r} is not a known usage iteration"
                f" ({', '.join((*_ANTHROPIC_ITERATIONS_INSIDE, *_ANTHROPIC_ITERATIONS_BESIDE))}):"
                " whether the top-level counts include its tokens is not known"
            )
    return total


def from_anthropic_stream(
    message_start: Mapping[str, Any], message_delta: Mapping[str, Any]
) -> Usage:
    """One streamed Anthropic message: its ``message_start`` and last ``message_delta``
    events (``event.model_dump()``).

    ``message_start`` carries the input counts and the cache split; ``message_delta`` the
    final, cumulative output count and, where the API sends them, cumulative input counts,
    which then win. ``iterations`` come with the delta.
    """
    for event, kind in ((message_start, "message_start"), (message_delta, "message_delta")):
        if event.get("type") != kind:
            raise ValueError(f"expected a {kind} event, got type {event.get('type')!r}")
    message = message_start.get("message")
    start = message.get("usage") if isinstance(message, Mapping) else None
    delta = message_delta.get("usage")
    if not isinstance(start, Mapping):
        raise ValueError("message_start.message.usage is missing")
    if not isinstance(delta, Mapping):
        raise ValueError("message_delta.usage is missing")
    combined = dict(start)
    combined.update((key, value) for key, value in delta.items() if value is not None)
    return from_anthropic(combined)


def from_xai(usage: Mapping[str, Any]) -> Usage:
    """xAI: chat completions over REST, or the xai-sdk's ``SamplingUsage`` (gRPC).

    xAI's ``completion_tokens`` exclude reasoning tokens, and our ``output_tokens`` include
    them, so reasoning is added to the completion. Relays that re-shape xAI responses the
    OpenAI way fold reasoning into ``completion_tokens`` instead; ``total_tokens``, when
    present, tells the two apart, so neither is under- or double-counted.

    ``SamplingUsage`` has flat ``reasoning_tokens`` and ``cached_prompt_text_tokens`` (a part
    of ``prompt_tokens``). ``MessageToDict`` spells them in camelCase and leaves out every
    count that is 0; both spellings are read.
    """
    usage, sampling_usage = _xai_shape(usage)
    if sampling_usage:
        completion = _optional(usage, "completion_tokens")  # proto3 leaves out a 0
        reasoning = _optional(usage, "reasoning_tokens")
        cached = _optional(usage, "cached_prompt_text_tokens")
        reasoning_field = "reasoning_tokens"
    else:
        completion = _required(usage, "completion_tokens")
        reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
        reasoning_field = "completion_tokens_details.reasoning_tokens"
    prompt = _required(usage, "prompt_tokens")
    return Usage(
        input_tokens=prompt,
        output_tokens=_output_tokens(usage, prompt, completion, reasoning, reasoning_field),
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
    ).checked()


def xai_cost_usd(usage: Mapping[str, Any]) -> Decimal | None:
    """What xAI says it charged for the request, exactly; ``None`` when it did not say.

    A cross-check for our own rating, not a price: it already includes xAI's discounts and
    its server-side tools. ``MessageToDict`` writes this int64 as a string of digits.
    """
    ticks = _xai_shape(usage)[0].get("cost_in_usd_ticks")
    if isinstance(ticks, str) and ticks.isascii() and ticks.isdigit():
        ticks = int(ticks)
    if ticks is not None and not _is_count(ticks):
        raise ValueError(f"cost_in_usd_ticks must be a non-negative integer, got {ticks!r}")
    return None if ticks is None else Decimal(ticks).scaleb(-XAI_TICKS_PER_USD_EXPONENT)


def from_deepseek(usage: Mapping[str, Any]) -> Usage:
    """DeepSeek, which splits the prompt into cache hits and misses.

    Served in OpenAI's shape (Azure, relays), it reports the hits as
    ``prompt_tokens_details.cached_tokens`` instead; those are read when the split is absent.
    """
    prompt = _required(usage, "prompt_tokens")
    hits = _field(usage, "prompt_cache_hit_tokens")
    misses = _field(usage, "prompt_cache_miss_tokens")
    if hits is None:
        hits = _detail(usage, "prompt_tokens_details", "cached_tokens")
    if misses is not None and hits + misses != prompt:
        raise ValueError(
            f"prompt_cache_hit_tokens + prompt_cache_miss_tokens ({hits} + {misses}) "
            f"differ from prompt_tokens ({prompt})"
        )
    return Usage(
        input_tokens=prompt,
        output_tokens=_required(usage, "completion_tokens"),
        cached_input_tokens=hits,
        reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
    ).checked()


def from_azure_ai_inference(usage: Mapping[str, Any]) -> Usage:
    """Azure AI Inference (``azure-ai-inference``, how Azure AI Foundry serves Grok,
    DeepSeek-R1, Llama and others): ``CompletionsUsage.as_dict()``.

    The SDK declares only the three totals; the service's details (cached tokens, reasoning
    tokens) come through ``as_dict()`` when the model reports them. Models differ in where
    reasoning goes (DeepSeek-R1 inside the completion, Grok beside it), and ``total_tokens``
    tells which.
    """
    prompt = _required(usage, "prompt_tokens")
    completion = _required(usage, "completion_tokens")
    reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    return Usage(
        input_tokens=prompt,
        output_tokens=_output_tokens(
            usage, prompt, completion, reasoning, "completion_tokens_details.reasoning_tokens"
        ),
        cached_input_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
        reasoning_tokens=reasoning,
    ).checked()


def from_azure_ai_inference_stream(updates: Iterable[Mapping[str, Any]]) -> Usage:
    """A streamed Azure AI Inference completion: its ``StreamingChatCompletionsUpdate``s
    (``update.as_dict()``), in order. The last update that carries ``usage`` has the
    totals of the whole response."""
    last = None
    for update in updates:
        if update.get("usage") is not None:
            last = update["usage"]
    if last is None:
        raise ValueError(
            "no streaming update carried usage: ask the service for it"
            ' (model_extras={"stream_options": {"include_usage": True}})'
        )
    return from_azure_ai_inference(last)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field(obj: Mapping[str, Any], key: str, path: str = "") -> int | None:
    """The count at ``key``; ``None`` when absent or null. ``path`` prefixes error messages."""
    value = obj.get(key)
    if value is not None and not _is_count(value):
        raise ValueError(f"{path}{key} must be a non-negative integer, got {value!r}")
    return value


def _required(obj: Mapping[str, Any], key: str) -> int:
    value = _field(obj, key)
    if value is None:
        raise ValueError(f"{key} is missing")
    return value


def _optional(obj: Mapping[str, Any], key: str, path: str = "") -> int:
    value = _field(obj, key, path)
    return 0 if value is None else value


def _detail(usage: Mapping[str, Any], details_key: str, key: str, path: str = "") -> int:
    """A count inside a details object that may itself be missing or null."""
    details = usage.get(details_key)
    if details is None:
        return 0
    if not isinstance(details, Mapping):
        raise ValueError(f"{path}{details_key} must be an object or null, got {details!r}")
    return _optional(details, key, f"{path}{details_key}.")


def _output_tokens(
    usage: Mapping[str, Any], prompt: int, completion: int, reasoning: int, reasoning_field: str
) -> int:
    """All output tokens, when ``reasoning`` may be beside ``completion`` (xAI's way, and
    what is assumed without ``total_tokens``) or inside it (OpenAI's)."""
    total = _field(usage, "total_tokens")
    if total is None or total == prompt + completion + reasoning:
        return completion + reasoning
    if total == prompt + completion:
        return completion
    raise ValueError(
        f"total_tokens ({total}) matches neither prompt_tokens + completion_tokens "
        f"({prompt} + {completion}) nor that plus {reasoning_field} ({reasoning})"
    )


def _anthropic_counts(usage: Mapping[str, Any], path: str) -> Usage:
    """One Anthropic usage object (top level or one iteration), cache split included."""
    uncached = _field(usage, "input_tokens", path)
    if uncached is None:
        raise ValueError(f"{path}input_tokens is missing")
    output = _field(usage, "output_tokens", path)
    if output is None:
        raise ValueError(f"{path}output_tokens is missing")
    cache_write = _optional(usage, "cache_creation_input_tokens", path)
    cache_read = _optional(usage, "cache_read_input_tokens", path)
    return Usage(
        input_tokens=uncached + cache_write + cache_read,
        output_tokens=output,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=_detail(usage, "cache_creation", "ephemeral_1h_input_tokens", path),
    ).checked()


_XAI_SAMPLING_USAGE_ONLY: Final = frozenset(
    {
        "reasoning_tokens",
        "cached_prompt_text_tokens",
        "prompt_text_tokens",
        "prompt_image_tokens",
        "server_side_tools_used",
    }
)
"""Fields of xai-sdk's ``SamplingUsage`` that xAI's REST usage object does not have."""

_CAMEL_HUMP: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _xai_shape(usage: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``usage`` with the top-level keys as the proto fields are named (``promptTokens`` ->
    ``prompt_tokens``), and whether it is a ``SamplingUsage``: camelCase keys, or fields
    only ``SamplingUsage`` has and no REST details objects."""
    snake = {_CAMEL_HUMP.sub("_", key).lower(): value for key, value in usage.items()}
    camel = any(key not in snake for key in usage)
    rest = any(key.endswith("_details") for key in snake)
    return snake, camel or (not rest and not _XAI_SAMPLING_USAGE_ONLY.isdisjoint(snake))
