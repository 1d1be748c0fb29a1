"""Prices: one price entry, the bands of a schedule, and the prices of a model at a time.

Pure: no I/O, no clock, no settings. Money is ``Decimal`` and never ``float``. The rules in
prose, with examples, are in ``docs/billing.md``; keep the two in step.

- A *schedule* is the price of one token class as a list of *bands* over the billing period's
  cumulative volume: the first ``up_to`` tokens at one price, the next at another. A flat
  price is a schedule of one unbounded band.
- A *long-context* price applies instead to the tokens of requests whose input exceeded the
  model's threshold. Usage carries that fact as a flag (``RatableUsage.long_context``), set
  per request by ingest with ``PriceBook.is_long_context``, because hourly sums cannot tell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import (
    Decimal,
)
from types import MappingProxyType
from typing import Final, NoReturn

from metering.billing.events import MODEL_MAX_CHARS, SERVICE_TIERS
from metering.billing.long_context import is_long_context
from metering.billing.tokens import PART_OF, TOKEN_CLASSES, TokenClass, TokenCounts, counts_of
from metering.billing.utc import rfc3339

_CURRENCY_SHAPE: Final = re.compile(r"[A-Z]{3}")


class PricingError(ValueError):
    """Something about prices a person has to fix; the message says what and where."""


class PriceBookError(PricingError):
    """An entry, or a set of entries, that cannot make a price book: overlaps, gaps, bad values.

    When the entry came from a file, the message starts with its ``file:line``."""


class NoPriceError(PricingError):
    """Usage for a model, service tier and moment that no price covers."""


class CurrencyMismatchError(PricingError):
    """Usage priced in one currency on a bill in another; there is no FX conversion."""


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One price: a model's token class on a service tier, per million tokens, for a time.

    ``effective_to`` is exclusive; ``None`` means until further notice. ``tier_up_to`` makes
    the entry one band of a graduated schedule: it covers the period's cumulative volume up to
    and including that many tokens, above the previous band's bound; ``None`` is the top band
    (or a flat price). ``long_context_above`` makes it a long-context price, for the tokens of
    requests whose input tokens exceeded that number. ``source`` says where the entry came
    from (``file:line``), for error messages; it takes no part in equality.
    """

    model: str
    token_class: TokenClass
    service_tier: str
    currency: str
    price_per_million: Decimal
    effective_from: datetime
    effective_to: datetime | None = None
    tier_up_to: int | None = None
    long_context_above: int | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        fail = self._fail
        if not isinstance(self.model, str) or not 0 < len(self.model) <= MODEL_MAX_CHARS:
            fail(f"model must be 1 to {MODEL_MAX_CHARS} characters, got {self.model!r}")
        try:
            object.__setattr__(self, "token_class", TokenClass(self.token_class))
        except ValueError:
            fail(f"token class {self.token_class!r} is not one of {', '.join(TOKEN_CLASSES)}")
        if self.service_tier not in SERVICE_TIERS:
            fail(f"service tier {self.service_tier!r} is not one of {', '.join(SERVICE_TIERS)}")
        if not isinstance(self.currency, str) or not _CURRENCY_SHAPE.fullmatch(self.currency):
            fail(f"currency {self.currency!r} must be an ISO 4217 code such as USD")
        price = self.price_per_million
        if type(price) is not Decimal:
            fail(
                f"price {price!r} must be a Decimal, never a float: write"
                f" Decimal('{price}') or read it from text"
            )
        if not price.is_finite() or price < 0:
            fail(f"price {price} must be a finite amount of zero or more")
        object.__setattr__(
            self, "effective_from", self._whole_hour("effective_from", self.effective_from)
        )
        if self.effective_to is not None:
            effective_to = self._whole_hour("effective_to", self.effective_to)
            object.__setattr__(self, "effective_to", effective_to)
            if effective_to <= self.effective_from:
                fail(
                    f"effective_to {rfc3339(effective_to, to_seconds=True)} must be after"
                    f" effective_from {rfc3339(self.effective_from, to_seconds=True)}"
                )
        for name in ("tier_up_to", "long_context_above"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value <= 0):
                fail(f"{name} must be a whole number of tokens above 0, got {value!r}")
        if self.long_context_above is not None and self.tier_up_to is not None:
            fail("a long-context price cannot be tiered: give it one price without tier_up_to")

    @property
    def key(self) -> tuple[str, str, str, str, int | None, int | None, datetime]:
        """What identifies an entry in a stored price book; the price and ``effective_to``
        are its value. Importing an entry whose key is stored and whose value is equal is a
        no-op."""
        return (
            self.model,
            self.token_class.value,
            self.service_tier,
            self.currency,
            self.long_context_above,
            self.tier_up_to,
            self.effective_from,
        )

    def covers(self, moment: datetime) -> bool:
        return self.effective_from <= moment and (
            self.effective_to is None or moment < self.effective_to
        )

    def describe(self) -> str:
        """E.g. ``claude-sonnet-4 input batch (requests above 200,000 input tokens)``."""
        text = f"{self.model} {self.token_class.value} {self.service_tier}"
        if self.long_context_above is not None:
            text += f" (requests above {self.long_context_above:,} input tokens)"
        if self.tier_up_to is not None:
            text += f" (up to {self.tier_up_to:,} tokens)"
        return text

    def _whole_hour(self, name: str, value: datetime) -> datetime:
        if not isinstance(value, datetime) or value.utcoffset() is None:
            self._fail(f"{name} must be a timezone-aware datetime, got {value!r}")
        value = value.astimezone(UTC)
        hour = value.replace(minute=0, second=0, microsecond=0)
        if value != hour:
            self._fail(
                f"{name} {rfc3339(value, to_seconds=True)} must be on a whole hour, because"
                f" usage is priced per hour: use {rfc3339(hour, to_seconds=True)}"
            )
        return value

    def _fail(self, message: str) -> NoReturn:
        where = f"{self.source}: " if self.source else ""
        raise PriceBookError(f"{where}{message}")


@dataclass(frozen=True, slots=True)
class Band:
    """One band of a schedule: the price of tokens up to and including cumulative volume
    ``up_to`` (above the previous band's bound); ``None`` has no upper bound."""

    up_to: int | None
    price_per_million: Decimal


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """Everything that prices one model on one service tier between ``valid_from`` and
    ``valid_to`` (exclusive; ``None`` = open-ended). A quota cache may keep it until then.

    ``schedules`` holds the classes with a price of their own; the others are billed as the
    class they are part of (``PART_OF``). ``long_context_prices`` are flat prices for the
    tokens of long-context requests; a class without one keeps its normal schedule there.
    """

    model: str
    service_tier: str
    currency: str
    valid_from: datetime
    valid_to: datetime | None
    schedules: Mapping[TokenClass, tuple[Band, ...]] = field(hash=False)
    long_context_above: int | None = None
    long_context_prices: Mapping[TokenClass, Decimal] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def billed_as(self, token_class: TokenClass) -> TokenClass:
        while token_class not in self.schedules:  # ends at input or output, always priced
            token_class = PART_OF[token_class]
        return token_class

    def base_price(self, token_class: TokenClass, *, long_context: bool = False) -> Decimal:
        """The price of the first band (or the long-context price) of the class this token
        class is billed as: what an estimate uses, since bands need the period's volume."""
        billed = self.billed_as(token_class)
        if long_context and billed in self.long_context_prices:
            return self.long_context_prices[billed]
        return self.schedules[billed][0].price_per_million

    def is_long_context(self, input_tokens: int) -> bool:
        """Whether one request with this many input tokens (cached and cache-write included)
        is priced at the long-context rates: strictly above the threshold."""
        return is_long_context(input_tokens, self.long_context_above)

    def quantities(self, counts: TokenCounts) -> dict[TokenClass, int]:
        """The billable tokens per class of these counts under these prices."""
        return dict(self.split(*counts_of(counts)))

    def split(
        self,
        input_tokens: int,
        cached: int,
        cache_write: int,
        output_tokens: int,
        reasoning: int,
        cache_write_1h: int,
    ) -> list[tuple[TokenClass, int]]:
        """The six raw counts (in ``TOKEN_COUNTS`` order) as billable ``(class, tokens)``. It
        is linear in the counts,
        so the sum of rows can be split instead of each row."""
        own = self.schedules
        uncached = input_tokens
        answer = output_tokens
        parts: list[tuple[TokenClass, int]] = []
        if TokenClass.CACHED_INPUT in own:
            uncached -= cached
            parts.append((TokenClass.CACHED_INPUT, cached))
        if TokenClass.CACHE_WRITE_1H in own:  # then cache_write bills the 5-minute rest
            cache_write -= cache_write_1h
            uncached -= cache_write_1h
        if TokenClass.CACHE_WRITE in own:
            uncached -= cache_write
            parts.append((TokenClass.CACHE_WRITE, cache_write))
        if TokenClass.CACHE_WRITE_1H in own:
            parts.append((TokenClass.CACHE_WRITE_1H, cache_write_1h))
        if TokenClass.REASONING in own:
            answer -= reasoning
            parts.append((TokenClass.REASONING, reasoning))
        return [(TokenClass.INPUT, uncached), *parts, (TokenClass.OUTPUT, answer)]
