"""Token classes and token counts: what usage is measured in and a price is quoted for.

Pure: no I/O. A *token class* is what a price is quoted for: uncached ``input``,
``cached_input``, ``cache_write``, ``cache_write_1h``, ``output`` and ``reasoning``. A class
without a price of its own is billed as the class it is part of (``PART_OF``): cached input
and cache writes as input, 1-hour cache writes as cache writes (and so as input when those
have no price either), reasoning as output.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Protocol


class TokenClass(StrEnum):
    INPUT = "input"  # uncached input: input_tokens - cached_input_tokens - cache_write_tokens
    CACHED_INPUT = "cached_input"
    CACHE_WRITE = "cache_write"  # all cache writes, or the 5-minute ones when 1h has a price
    CACHE_WRITE_1H = "cache_write_1h"  # cache writes kept for an hour (Anthropic: 2x input)
    OUTPUT = "output"  # output_tokens - reasoning_tokens when reasoning has its own price
    REASONING = "reasoning"


TOKEN_CLASSES: Final[tuple[TokenClass, ...]] = tuple(TokenClass)

PART_OF: Final[Mapping[TokenClass, TokenClass]] = MappingProxyType(
    {
        TokenClass.CACHED_INPUT: TokenClass.INPUT,
        TokenClass.CACHE_WRITE: TokenClass.INPUT,
        TokenClass.CACHE_WRITE_1H: TokenClass.CACHE_WRITE,
        TokenClass.REASONING: TokenClass.OUTPUT,
    }
)
"""The class a token class is billed as when it has no price of its own (and that one, in
turn, as the class it is part of)."""

CLASS_RANK: Final = {token_class: rank for rank, token_class in enumerate(TOKEN_CLASSES)}


class TokenCounts(Protocol):
    """The six counts of event schema v1: cached and cache-write tokens are parts of
    ``input_tokens``, 1-hour cache writes part of ``cache_write_tokens``, reasoning tokens
    part of ``output_tokens``. ``events.Usage``, ``providers.TokenUsage`` and
    ``invoicing.UsageRow`` all have this shape."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...
    @property
    def cache_write_1h_tokens(self) -> int: ...
