"""The price book: price entries, their bands and timelines, and what applies at a moment.

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

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import (
    Decimal,
)
from types import MappingProxyType
from typing import Final, NoReturn

from metering.billing.events import MODEL_MAX_CHARS, SERVICE_TIERS
from metering.billing.tokens import CLASS_RANK, PART_OF, TOKEN_CLASSES, TokenClass, TokenCounts
from metering.billing.utc import rfc3339

TIER_RANK: Final = {tier: rank for rank, tier in enumerate(SERVICE_TIERS)}
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
        return self.long_context_above is not None and input_tokens > self.long_context_above

    def quantities(self, counts: TokenCounts) -> dict[TokenClass, int]:
        """The billable tokens per class of these counts under these prices."""
        return dict(
            self.split(
                counts.input_tokens,
                counts.cached_input_tokens,
                counts.cache_write_tokens,
                counts.output_tokens,
                counts.reasoning_tokens,
                counts.cache_write_1h_tokens,
            )
        )

    def split(
        self,
        input_tokens: int,
        cached: int,
        cache_write: int,
        output_tokens: int,
        reasoning: int,
        cache_write_1h: int,
    ) -> list[tuple[TokenClass, int]]:
        """The six raw counts as billable ``(class, tokens)``. It is linear in the counts,
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


@dataclass(frozen=True, slots=True)
class Timeline:
    """The prices of one model and service tier over time: ``prices[i]`` holds from
    ``starts[i]`` until ``starts[i + 1]``; ``None`` where nothing is priced."""

    starts: list[datetime]
    prices: list[ModelPrices | None]

    def at(self, moment: datetime) -> ModelPrices | None:
        index = bisect.bisect_right(self.starts, moment) - 1
        return self.prices[index] if index >= 0 else None


class PriceBook:
    """Validated prices, and the lookup of what applies at a moment.

    ``entries`` are the list prices; ``overrides`` (a tenant's contract) replace, while they
    are in effect, the list schedule of each model, service tier and token class they price,
    leaving the other classes at list price. Construction checks everything up front
    (overlaps, bands without a top, missing input or output prices, mixed currencies), so a
    book that exists can price any moment it covers.
    """

    __slots__ = ("_entries", "_overrides", "_tiered_models", "_timelines")

    def __init__(
        self,
        entries: Iterable[PriceEntry] = (),
        overrides: Iterable[PriceEntry] = (),
        *,
        _base: PriceBook | None = None,
    ) -> None:
        self._entries: tuple[PriceEntry, ...] = tuple(entries)
        self._overrides: tuple[PriceEntry, ...] = tuple(overrides)
        by_group: dict[tuple[str, str], tuple[list[PriceEntry], list[PriceEntry]]] = {}
        for layer, entries_of_layer in enumerate((self._entries, self._overrides)):
            for entry in entries_of_layer:
                if not isinstance(entry, PriceEntry):
                    raise PriceBookError(f"not a PriceEntry: {entry!r}")
                group = by_group.setdefault((entry.model, entry.service_tier), ([], []))
                group[layer].append(entry)
        touched = {(e.model, e.service_tier) for e in self._overrides}
        self._timelines: dict[tuple[str, str], Timeline] = {
            key: (
                _base._timelines[key]
                if _base is not None and key not in touched
                else _timeline(key[0], key[1], base, over)
            )
            for key, (base, over) in by_group.items()
        }
        self._tiered_models = frozenset(
            e.model for e in (*self._entries, *self._overrides) if e.tier_up_to is not None
        )

    @property
    def entries(self) -> tuple[PriceEntry, ...]:
        return self._entries

    @property
    def overrides(self) -> tuple[PriceEntry, ...]:
        return self._overrides

    @property
    def timelines(self) -> Mapping[tuple[str, str], Timeline]:
        """The prices of each model and service tier over time, for rating."""
        return self._timelines

    @property
    def tiered_models(self) -> frozenset[str]:
        """The models that have bands anywhere in the book."""
        return self._tiered_models

    def with_overrides(self, overrides: Iterable[PriceEntry]) -> PriceBook:
        """This book with a contract's price overrides on top (see the class docstring)."""
        extra = tuple(overrides)
        if not extra:
            return self
        return PriceBook(self._entries, (*self._overrides, *extra), _base=self)

    def find(self, model: str, service_tier: str, moment: datetime) -> ModelPrices | None:
        timeline = self._timelines.get((model, service_tier))
        return timeline.at(moment) if timeline is not None else None

    def at(self, model: str, service_tier: str, moment: datetime) -> ModelPrices:
        """The prices of ``model`` on ``service_tier`` in effect at ``moment``."""
        prices = self.find(model, service_tier, moment)
        if prices is None:
            raise no_price(model, service_tier, moment)
        return prices

    def is_long_context(
        self, model: str, service_tier: str, moment: datetime, input_tokens: int
    ) -> bool:
        """What ingest stores as a request's ``long_context`` flag: whether its input tokens
        exceed the long-context threshold in effect at ``moment``. Unpriced models: no."""
        prices = self.find(model, service_tier, moment)
        return prices is not None and prices.is_long_context(input_tokens)

    def in_effect(self, moment: datetime) -> tuple[PriceEntry, ...]:
        """The list-price entries in effect at ``moment`` (what ``prices list --at`` shows),
        ordered by model, service tier, token class, long-context and band."""
        return tuple(
            sorted(
                (e for e in self._entries if e.covers(moment)),
                key=lambda e: (
                    e.model,
                    TIER_RANK[e.service_tier],
                    e.long_context_above is not None,
                    CLASS_RANK[e.token_class],
                    e.tier_up_to is None,
                    e.tier_up_to or 0,
                ),
            )
        )


def no_price(model: str, service_tier: str, moment: datetime) -> NoPriceError:
    return NoPriceError(
        f"no {service_tier} price for {model} at {rfc3339(moment, to_seconds=True)}: the price"
        " book has none in effect for that model, service tier and moment"
    )


def _timeline(
    model: str, service_tier: str, base: list[PriceEntry], overrides: list[PriceEntry]
) -> Timeline:
    cuts: set[datetime] = set()
    for entry in (*base, *overrides):
        cuts.add(entry.effective_from)
        if entry.effective_to is not None:
            cuts.add(entry.effective_to)
    starts = sorted(cuts)
    prices: list[ModelPrices | None] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else None
        active = [e for e in base if e.covers(start)]
        replacing = [e for e in overrides if e.covers(start)]
        prices.append(_prices_at(model, service_tier, start, end, active, replacing))
    return Timeline(starts, prices)


def _prices_at(
    model: str,
    service_tier: str,
    start: datetime,
    end: datetime | None,
    active: list[PriceEntry],
    replacing: list[PriceEntry],
) -> ModelPrices | None:
    """Validate and assemble the prices in effect from ``start``: each (class, long-context?)
    comes wholly from the overrides when they price it, else from the list."""
    chosen: dict[tuple[TokenClass, bool], list[PriceEntry]] = {}
    for entry in active:
        chosen.setdefault((entry.token_class, entry.long_context_above is not None), []).append(
            entry
        )
    replaced: dict[tuple[TokenClass, bool], list[PriceEntry]] = {}
    for entry in replacing:
        replaced.setdefault((entry.token_class, entry.long_context_above is not None), []).append(
            entry
        )
    chosen.update(replaced)
    if not chosen:
        return None
    when = f"from {rfc3339(start, to_seconds=True)}"
    everything = [e for group in chosen.values() for e in group]

    currencies = sorted({e.currency for e in everything})
    if len(currencies) > 1:
        first = next(e for e in everything if e.currency == currencies[0])
        other = next(e for e in everything if e.currency == currencies[1])
        raise PriceBookError(
            f"{_where(other)}: {model} {service_tier} is priced in both {currencies[0]}"
            f" ({_where(first)}) and {currencies[1]} {when}; one model and service tier take"
            " one currency at a time (there is no FX conversion)"
        )

    schedules: dict[TokenClass, tuple[Band, ...]] = {}
    long_context_prices: dict[TokenClass, Decimal] = {}
    thresholds: dict[int, PriceEntry] = {}
    for (token_class, long_context), group in chosen.items():
        by_bound: dict[int | None, PriceEntry] = {}
        for entry in group:
            earlier = by_bound.get(entry.tier_up_to)
            if earlier is not None:
                raise PriceBookError(
                    f"{_where(entry)}: {entry.describe()} overlaps {_where(earlier)} {when}:"
                    " end the earlier price with effective_to, or remove one of them"
                )
            by_bound[entry.tier_up_to] = entry
        if long_context:
            (entry,) = group  # long-context prices have no bands, so one bound: None
            thresholds.setdefault(entry.long_context_above or 0, entry)
            long_context_prices[token_class] = entry.price_per_million
            continue
        top = by_bound.get(None)
        if top is None:
            highest = max(group, key=lambda e: e.tier_up_to or 0)
            raise PriceBookError(
                f"{_where(highest)}: {model} {token_class.value} {service_tier} has bands up to"
                f" {highest.tier_up_to:,} tokens {when} but no price above that: add a band"
                " without tier_up_to for the rest"
            )
        bounded = sorted((e for e in group if e.tier_up_to is not None), key=_bound)
        schedules[token_class] = tuple(
            Band(e.tier_up_to, e.price_per_million) for e in (*bounded, top)
        )

    if len(thresholds) > 1:
        (a, first), (b, second) = sorted(thresholds.items())[:2]
        raise PriceBookError(
            f"{_where(second)}: {model} {service_tier} has long-context thresholds {a:,}"
            f" ({_where(first)}) and {b:,} {when}; one model and service tier take one"
            " threshold at a time"
        )
    for required in (TokenClass.INPUT, TokenClass.OUTPUT):
        if required not in schedules:
            some = everything[0]
            raise PriceBookError(
                f"{_where(some)}: {model} {service_tier} has no {required.value} price {when}:"
                " every priced model needs input and output prices (cached input, cache"
                " writes and reasoning may be left out; they are then billed as input or"
                " output, and 1-hour cache writes as cache writes)"
            )
    for token_class in long_context_prices:
        if token_class not in schedules:
            entry = chosen[(token_class, True)][0]
            raise PriceBookError(
                f"{_where(entry)}: {entry.describe()} has a long-context price but no normal"
                f" price {when}: add the normal {token_class.value} price too"
            )
    return ModelPrices(
        model=model,
        service_tier=service_tier,
        currency=currencies[0],
        valid_from=start,
        valid_to=end,
        schedules=MappingProxyType(schedules),
        long_context_above=next(iter(thresholds), None),
        long_context_prices=MappingProxyType(long_context_prices),
    )


def _bound(entry: PriceEntry) -> int:
    return entry.tier_up_to or 0


def _where(entry: PriceEntry) -> str:
    return entry.source or entry.describe()
