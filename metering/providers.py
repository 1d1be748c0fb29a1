"""Converters from each provider's usage object to our token classes.

Every provider counts the same five things differently:

- OpenAI (Chat Completions and Responses) counts cached tokens inside the prompt and
  reasoning tokens inside the completion: our shape, field names aside.
- Anthropic's ``input_tokens`` exclude cache reads and cache writes, which add on top.
- DeepSeek splits the prompt into ``prompt_cache_hit_tokens`` + ``prompt_cache_miss_tokens``.
- xAI reports reasoning tokens *beside* ``completion_tokens``, not inside them:
  ``total_tokens == prompt_tokens + completion_tokens + reasoning_tokens``.

Each converter takes the usage object as a plain dict (``response.usage.model_dump()``
or the decoded JSON) and raises ``ValueError`` naming the offending field when a count is
missing, negative or not an integer. Fields we do not bill (audio, predictions, ...) are
ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

XAI_TICKS_PER_USD_EXPONENT = 10
"""xAI's ``cost_in_usd_ticks`` counts 10**10 ticks per US dollar."""


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one request, in the shape of the ``usage`` object of event schema v1.

    Cached reads and cache writes are parts of ``input_tokens``; reasoning is part of
    ``output_tokens``.
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in _TOKEN_FIELDS:
            value = getattr(self, name)
            if not _is_count(value):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"cached_input_tokens + cache_write_tokens "
                f"({self.cached_input_tokens} + {self.cache_write_tokens}) "
                f"exceed input_tokens ({self.input_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) "
                f"exceed output_tokens ({self.output_tokens})"
            )

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _TOKEN_FIELDS}


_TOKEN_FIELDS = tuple(field.name for field in fields(TokenUsage))


def from_openai_chat(usage: Mapping[str, Any]) -> TokenUsage:
    """OpenAI Chat Completions: ``prompt_tokens`` / ``completion_tokens`` and their details."""
    return TokenUsage(
        input_tokens=_required(usage, "prompt_tokens"),
        output_tokens=_required(usage, "completion_tokens"),
        cached_input_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
        reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
    )


def from_openai_responses(usage: Mapping[str, Any]) -> TokenUsage:
    """OpenAI Responses API: ``input_tokens`` / ``output_tokens`` and their details."""
    return TokenUsage(
        input_tokens=_required(usage, "input_tokens"),
        output_tokens=_required(usage, "output_tokens"),
        cached_input_tokens=_detail(usage, "input_tokens_details", "cached_tokens"),
        reasoning_tokens=_detail(usage, "output_tokens_details", "reasoning_tokens"),
    )


def from_anthropic(usage: Mapping[str, Any]) -> TokenUsage:
    """Anthropic Messages API, whose ``input_tokens`` exclude cache reads and writes."""
    uncached = _required(usage, "input_tokens")
    cache_write = _optional(usage, "cache_creation_input_tokens")
    cache_read = _optional(usage, "cache_read_input_tokens")
    return TokenUsage(
        input_tokens=uncached + cache_write + cache_read,
        output_tokens=_required(usage, "output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def from_xai(usage: Mapping[str, Any]) -> TokenUsage:
    """xAI chat completions, whose ``completion_tokens`` exclude reasoning tokens.

    Our ``output_tokens`` include reasoning, so reasoning is added to the completion.
    Relays that re-shape xAI responses the OpenAI way fold reasoning into
    ``completion_tokens`` instead; ``total_tokens``, when present, tells the two shapes
    apart, so neither is under- or double-counted.
    """
    prompt = _required(usage, "prompt_tokens")
    completion = _required(usage, "completion_tokens")
    reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    total = _field(usage, "total_tokens")
    if total is None or total == prompt + completion + reasoning:
        output = completion + reasoning
    elif total == prompt + completion:
        output = completion
    else:
        raise ValueError(
            f"total_tokens ({total}) matches neither prompt_tokens + completion_tokens "
            f"({prompt} + {completion}) nor that plus "
            f"completion_tokens_details.reasoning_tokens ({reasoning})"
        )
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=output,
        cached_input_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
        reasoning_tokens=reasoning,
    )


def xai_cost_usd(usage: Mapping[str, Any]) -> Decimal | None:
    """What xAI says it charged for the request, exactly; ``None`` when it did not say.

    A cross-check for our own rating, not a price: it already includes xAI's discounts.
    """
    ticks = _field(usage, "cost_in_usd_ticks")
    return None if ticks is None else Decimal(ticks).scaleb(-XAI_TICKS_PER_USD_EXPONENT)


def from_deepseek(usage: Mapping[str, Any]) -> TokenUsage:
    """DeepSeek, which splits the prompt into cache hits and misses."""
    prompt = _required(usage, "prompt_tokens")
    hits = _optional(usage, "prompt_cache_hit_tokens")
    misses = _field(usage, "prompt_cache_miss_tokens")
    if misses is not None and hits + misses != prompt:
        raise ValueError(
            f"prompt_cache_hit_tokens + prompt_cache_miss_tokens ({hits} + {misses}) "
            f"differ from prompt_tokens ({prompt})"
        )
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=_required(usage, "completion_tokens"),
        cached_input_tokens=hits,
        reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
    )


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


def _detail(usage: Mapping[str, Any], details_key: str, key: str) -> int:
    """A count inside a details object that may itself be missing or null."""
    details = usage.get(details_key)
    if details is None:
        return 0
    if not isinstance(details, Mapping):
        raise ValueError(f"{details_key} must be an object or null, got {details!r}")
    return _optional(details, key, f"{details_key}.")
