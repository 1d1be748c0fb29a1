"""The price book: price entries assembled, checked, into timelines per model and service
tier, and the lookup of the prices in effect at a moment.

Pure: no I/O, no clock, no settings. The rules in prose, with examples, are in
``docs/billing.md``; keep the two in step.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    Decimal,
)
from types import MappingProxyType
from typing import Final

from metering.billing.events import SERVICE_TIERS
from metering.billing.prices import (
    Band,
    ModelPrices,
    NoPriceError,
    PriceBookError,
    PriceEntry,
)
from metering.billing.tokens import CLASS_RANK, TokenClass
from metering.billing.utc import rfc3339

TIER_RANK: Final = {tier: rank for rank, tier in enumerate(SERVICE_TIERS)}


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


_Group = tuple[TokenClass, bool]
"""A token class, and whether its entries are long-context prices."""


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
    chosen = {**_grouped(active), **_grouped(replacing)}
    if not chosen:
        return None
    when = f"from {rfc3339(start, to_seconds=True)}"
    everything = [e for group in chosen.values() for e in group]
    currency = _one_currency(model, service_tier, everything, when)
    schedules: dict[TokenClass, tuple[Band, ...]] = {}
    long_context_prices: dict[TokenClass, Decimal] = {}
    thresholds: dict[int, PriceEntry] = {}
    for (token_class, long_context), group in chosen.items():
        by_bound = _by_bound(group, when)
        if long_context:
            (entry,) = group  # long-context prices have no bands, so one bound: None
            thresholds.setdefault(entry.long_context_above or 0, entry)
            long_context_prices[token_class] = entry.price_per_million
        else:
            schedules[token_class] = _schedule(model, service_tier, token_class, by_bound, when)
    _check_threshold(model, service_tier, thresholds, when)
    _check_complete(model, service_tier, chosen, schedules, everything[0], when)
    return ModelPrices(
        model=model,
        service_tier=service_tier,
        currency=currency,
        valid_from=start,
        valid_to=end,
        schedules=MappingProxyType(schedules),
        long_context_above=next(iter(thresholds), None),
        long_context_prices=MappingProxyType(long_context_prices),
    )


def _grouped(entries: list[PriceEntry]) -> dict[_Group, list[PriceEntry]]:
    groups: dict[_Group, list[PriceEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.token_class, entry.long_context_above is not None), []).append(
            entry
        )
    return groups


def _one_currency(model: str, service_tier: str, entries: list[PriceEntry], when: str) -> str:
    currencies = sorted({e.currency for e in entries})
    if len(currencies) > 1:
        first = next(e for e in entries if e.currency == currencies[0])
        other = next(e for e in entries if e.currency == currencies[1])
        raise PriceBookError(
            f"{_where(other)}: {model} {service_tier} is priced in both {currencies[0]}"
            f" ({_where(first)}) and {currencies[1]} {when}; one model and service tier take"
            " one currency at a time (there is no FX conversion)"
        )
    return currencies[0]


def _by_bound(group: list[PriceEntry], when: str) -> dict[int | None, PriceEntry]:
    """The entries of one class by their band's bound; two with the same bound overlap."""
    by_bound: dict[int | None, PriceEntry] = {}
    for entry in group:
        earlier = by_bound.get(entry.tier_up_to)
        if earlier is not None:
            raise PriceBookError(
                f"{_where(entry)}: {entry.describe()} overlaps {_where(earlier)} {when}:"
                " end the earlier price with effective_to, or remove one of them"
            )
        by_bound[entry.tier_up_to] = entry
    return by_bound


def _schedule(
    model: str,
    service_tier: str,
    token_class: TokenClass,
    by_bound: dict[int | None, PriceEntry],
    when: str,
) -> tuple[Band, ...]:
    top = by_bound.get(None)
    if top is None:
        highest = max(by_bound.values(), key=_bound)
        raise PriceBookError(
            f"{_where(highest)}: {model} {token_class.value} {service_tier} has bands up to"
            f" {highest.tier_up_to:,} tokens {when} but no price above that: add a band"
            " without tier_up_to for the rest"
        )
    bounded = sorted((e for e in by_bound.values() if e.tier_up_to is not None), key=_bound)
    return tuple(Band(e.tier_up_to, e.price_per_million) for e in (*bounded, top))


def _check_threshold(
    model: str, service_tier: str, thresholds: dict[int, PriceEntry], when: str
) -> None:
    if len(thresholds) > 1:
        (a, first), (b, second) = sorted(thresholds.items())[:2]
        raise PriceBookError(
            f"{_where(second)}: {model} {service_tier} has long-context thresholds {a:,}"
            f" ({_where(first)}) and {b:,} {when}; one model and service tier take one"
            " threshold at a time"
        )


def _check_complete(
    model: str,
    service_tier: str,
    chosen: dict[_Group, list[PriceEntry]],
    schedules: dict[TokenClass, tuple[Band, ...]],
    some: PriceEntry,
    when: str,
) -> None:
    """Input and output are priced, and every long-context price has a normal one."""
    for required in (TokenClass.INPUT, TokenClass.OUTPUT):
        if required not in schedules:
            raise PriceBookError(
                f"{_where(some)}: {model} {service_tier} has no {required.value} price {when}:"
                " every priced model needs input and output prices (cached input, cache"
                " writes and reasoning may be left out; they are then billed as input or"
                " output, and 1-hour cache writes as cache writes)"
            )
    for token_class, long_context in chosen:
        if long_context and token_class not in schedules:
            entry = chosen[(token_class, True)][0]
            raise PriceBookError(
                f"{_where(entry)}: {entry.describe()} has a long-context price but no normal"
                f" price {when}: add the normal {token_class.value} price too"
            )


def _bound(entry: PriceEntry) -> int:
    return entry.tier_up_to or 0


def _where(entry: PriceEntry) -> str:
    return entry.source or entry.describe()
