"""Rating: the charges for usage under a price book, estimates, and the priced check.

Pure: no I/O, no clock, no settings. Every multiplication runs in ``EXACT``, a context that
raises rather than round, so an amount is exact until the invoice rounds it once. The rules
in prose, with examples, are in ``docs/billing.md``; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Final, Protocol

from metering.billing.events import Reason, Rejection, UsageEvent
from metering.billing.price_book import TIER_RANK, PriceBook, Timeline, no_price
from metering.billing.prices import Band, CurrencyMismatchError, ModelPrices, PricingError
from metering.billing.tokens import CLASS_RANK, TokenClass, TokenCounts
from metering.billing.utc import rfc3339

MILLION: Final = 1_000_000
"""Prices are quoted per million tokens."""

EXACT: Final = Context(
    prec=100,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
"""Arithmetic on money before rounding: 100 digits, and an error instead of a silent rounding.

One module-level context, passed explicitly (``EXACT.multiply(a, b)``), so that rating does not
switch the thread's context per row."""


class RatableUsage(TokenCounts, Protocol):
    """Usage that ``rate`` can price: an hourly aggregate row, or one request.

    ``hour`` is the moment whose prices apply (the start of the UTC hour for aggregates, or
    ``occurred_at`` for a request); ``long_context`` says the tokens come from requests whose
    input exceeded the model's long-context threshold."""

    @property
    def model(self) -> str: ...
    @property
    def service_tier(self) -> str: ...
    @property
    def hour(self) -> datetime: ...
    @property
    def long_context(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Charge:
    """Tokens of one model, class and service tier billed at one unit price: one invoice
    line before rounding. ``tier`` is the band's index (0 for the first or only band);
    ``long_context`` says the price is the long-context one."""

    model: str
    token_class: TokenClass
    service_tier: str
    tier: int
    long_context: bool
    unit_price_per_million: Decimal
    quantity: int

    @property
    def exact_amount(self) -> Decimal:
        return exact_amount(self.quantity, self.unit_price_per_million)


def exact_amount(quantity: int, price_per_million: Decimal) -> Decimal:
    """``quantity * price / 1,000,000`` with no rounding at all."""
    return EXACT.scaleb(EXACT.multiply(Decimal(quantity), price_per_million), -6)


def check_priced(book: PriceBook, event: UsageEvent) -> UsageEvent | Rejection:
    """An event is billable only if a price covers its model and service tier at its
    ``occurred_at`` (every priced model prices input and output, so every token class is
    then covered); otherwise it is rejected as ``unpriced``, to be replayed once a price is
    imported, rather than accepted into a bill that cannot be built."""
    if book.find(event.model, event.service_tier, event.occurred_at) is not None:
        return event
    return Rejection(
        Reason.UNPRICED,
        f"no {event.service_tier} price for {event.model} at"
        f" {rfc3339(event.occurred_at, to_seconds=True)}: import one (metering prices import"
        " FILE), then metering dlq replay --reason unpriced",
        event_id=str(event.event_id),
        tenant_id=event.tenant_id,
        model=event.model,
    )


def rate(book: PriceBook, usage: Iterable[RatableUsage], currency: str) -> tuple[Charge, ...]:
    """Price usage: one ``Charge`` per model, class, service tier, band and unit price.

    Each row is priced with the prices in effect at its ``hour``. Graduated bands apply to the
    period's cumulative volume of a model and token class *across all service tiers*, taken in
    the order hour, service tier (standard, batch, priority), then normal before long-context;
    so a band boundary can fall inside one hour and split its tokens. All of ``usage`` is
    therefore one billing period of one tenant. Models without bands anywhere in the book take
    a faster path that sums rows per price segment first; the result is the same.

    Charges come ordered by model, class, service tier, long-context, band, then the time
    their price took effect. Raises ``NoPriceError`` and ``CurrencyMismatchError``.
    """
    charges = _Charges()
    banded = _rate_summed(book, usage, currency, charges)
    _rate_in_order(book, banded, currency, charges)
    return charges.result()


def _rate_summed(
    book: PriceBook, usage: Iterable[RatableUsage], currency: str, charges: _Charges
) -> list[RatableUsage]:
    """Charges the rows of models without bands, summed per price segment first; returns the
    other rows, which ``_rate_in_order`` charges in band order."""
    timelines = book.timelines
    tiered = book.tiered_models
    # Keyed by the identity of the (immutable, shared) ModelPrices: hashing it by value per row
    # would cost more than the rest of the loop. The counts are in TOKEN_COUNTS order, spelt
    # out: summing through ``counts_of`` made this loop twice as slow.
    sums: dict[tuple[str, str, bool, int], list[int]] = {}
    segment: dict[int, ModelPrices] = {}
    ordered: list[RatableUsage] = []
    for row in usage:
        if row.model in tiered:
            ordered.append(row)
            continue
        prices = _prices_of(timelines, row)
        key = (row.model, row.service_tier, row.long_context, id(prices))
        counts = sums.get(key)
        if counts is None:
            segment[id(prices)] = prices
            sums[key] = [
                row.input_tokens,
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.output_tokens,
                row.reasoning_tokens,
                row.cache_write_1h_tokens,
            ]
        else:
            counts[0] += row.input_tokens
            counts[1] += row.cached_input_tokens
            counts[2] += row.cache_write_tokens
            counts[3] += row.output_tokens
            counts[4] += row.reasoning_tokens
            counts[5] += row.cache_write_1h_tokens
    # Earliest prices first, so that each line's first price segment is the one it meets first.
    for (model, service_tier, long_context, prices_id), counts in sorted(
        sums.items(), key=lambda item: segment[item[0][3]].valid_from
    ):
        prices = segment[prices_id]
        _check_currency(prices, currency)
        for token_class, tokens in prices.split(*counts):
            if tokens <= 0:
                _check_count(prices, token_class, tokens)
                continue
            charges.add_at(prices, model, token_class, service_tier, long_context, 0, tokens)
    return ordered


def _rate_in_order(
    book: PriceBook, ordered: list[RatableUsage], currency: str, charges: _Charges
) -> None:
    """Charges rows one by one in the order their tokens fill the period's bands."""
    timelines = book.timelines
    ordered.sort(key=lambda r: (r.hour, TIER_RANK.get(r.service_tier, 99), r.long_context))
    volume: dict[tuple[str, TokenClass], int] = {}
    for row in ordered:
        prices = _prices_of(timelines, row)
        if prices.currency != currency:
            _check_currency(prices, currency)
        model, service_tier, long_context = row.model, row.service_tier, row.long_context
        for token_class, tokens in prices.split(
            row.input_tokens,
            row.cached_input_tokens,
            row.cache_write_tokens,
            row.output_tokens,
            row.reasoning_tokens,
            row.cache_write_1h_tokens,
        ):
            if tokens <= 0:
                _check_count(prices, token_class, tokens)
                continue
            position = volume.get((model, token_class), 0)
            volume[(model, token_class)] = position + tokens
            charges.add_at(prices, model, token_class, service_tier, long_context, position, tokens)


def split_into_bands(
    bands: Sequence[Band], position: int, tokens: int
) -> list[tuple[int, int, Decimal]]:
    """``(band index, tokens, price)`` for ``tokens`` that follow ``position`` tokens already
    counted in the period; a band boundary inside them splits them."""
    start, end = position, position + tokens
    parts: list[tuple[int, int, Decimal]] = []
    lower = 0
    for index, band in enumerate(bands):
        upper = band.up_to
        if upper is not None and upper <= start:
            lower = upper
            continue
        taken = (end if upper is None else min(end, upper)) - max(start, lower)
        if taken > 0:
            parts.append((index, taken, band.price_per_million))
        if upper is None or upper >= end:
            break
        lower = upper
    return parts


def estimate_cost(
    usage_counts: TokenCounts, unit_prices: ModelPrices, *, long_context: bool | None = None
) -> Decimal:
    """An *estimate* of one request's cost, for quotas while usage streams in: each billable
    class at its first band's price (or its long-context price), unrounded.

    Bands need the period's cumulative volume, which one request does not know, so the
    estimate ignores volume discounts and may overstate; contract discounts, minimums and
    rounding are not applied either. The invoice is the final word. ``long_context`` defaults
    to deciding from ``usage_counts.input_tokens``, which is right for one request; pass it
    explicitly for anything else (an hourly sum, say).
    """
    if long_context is None:
        long_context = unit_prices.is_long_context(usage_counts.input_tokens)
    total = Decimal(0)
    for token_class, tokens in unit_prices.quantities(usage_counts).items():
        if tokens:
            price = unit_prices.base_price(token_class, long_context=long_context)
            total = EXACT.add(total, exact_amount(tokens, price))
    return total


def estimate_at(
    book: PriceBook,
    usage_counts: TokenCounts,
    model: str,
    service_tier: str,
    moment: datetime,
    *,
    long_context: bool | None = None,
) -> Decimal | None:
    """``estimate_cost`` at the prices ``book`` has in effect at ``moment``; ``None`` where
    it has none."""
    prices = book.find(model, service_tier, moment)
    return (
        None if prices is None else estimate_cost(usage_counts, prices, long_context=long_context)
    )


_LineKey = tuple[str, TokenClass, str, int, bool, Decimal]
"""model, token class, service tier, band, long-context, unit price: one ``Charge``."""


class _Charges:
    """Accumulates tokens per line key; ``result`` turns them into ordered ``Charge``s."""

    def __init__(self) -> None:
        self.tokens: dict[_LineKey, int] = {}
        self.since: dict[_LineKey, datetime] = {}  # when the line's price was first met

    def add_at(
        self,
        prices: ModelPrices,
        model: str,
        token_class: TokenClass,
        service_tier: str,
        long_context: bool,
        position: int,
        tokens: int,
    ) -> None:
        """Adds ``tokens`` of a class that follow ``position`` tokens of the period's volume:
        at the long-context price when they have one, else in the bands they fall in."""
        if long_context and token_class in prices.long_context_prices:
            price = prices.long_context_prices[token_class]
            self.add((model, token_class, service_tier, 0, True, price), tokens, prices)
            return
        bands = prices.schedules[token_class]
        tier = 0
        for band in bands:  # find the band of the next token; a handful of bands, so a scan
            if band.up_to is None or band.up_to > position:
                break
            tier += 1
        if band.up_to is None or position + tokens <= band.up_to:  # the usual case
            key = (model, token_class, service_tier, tier, False, band.price_per_million)
            self.add(key, tokens, prices)
            return
        for tier, part, price in split_into_bands(bands, position, tokens):
            self.add((model, token_class, service_tier, tier, False, price), part, prices)

    def add(self, key: _LineKey, tokens: int, prices: ModelPrices) -> None:
        """Callers add in order of ``prices.valid_from``, so the first addition is earliest."""
        known = self.tokens.get(key)
        if known is None:
            self.tokens[key] = tokens
            self.since[key] = prices.valid_from
        else:
            self.tokens[key] = known + tokens

    def result(self) -> tuple[Charge, ...]:
        def order(key: _LineKey) -> tuple[object, ...]:
            model, token_class, service_tier, tier, long_context, _price = key
            rank = TIER_RANK.get(service_tier, 99)
            return (model, CLASS_RANK[token_class], rank, long_context, tier, self.since[key])

        return tuple(Charge(*key, self.tokens[key]) for key in sorted(self.tokens, key=order))


def _check_currency(prices: ModelPrices, currency: str) -> None:
    if prices.currency != currency:
        raise CurrencyMismatchError(
            f"{prices.model} on {prices.service_tier} is priced in {prices.currency} from"
            f" {rfc3339(prices.valid_from, to_seconds=True)}, but the bill is in {currency};"
            f" there is no FX conversion: import {currency} prices for it or give the tenant a"
            f" {prices.currency} contract"
        )


def _check_count(prices: ModelPrices, token_class: TokenClass, tokens: int) -> None:
    if tokens < 0:
        raise PricingError(
            f"{prices.model} {prices.service_tier} usage has {tokens} {token_class} tokens:"
            " cached and cache-write tokens must be parts of input_tokens, 1-hour cache writes"
            " part of cache writes, and reasoning tokens part of output_tokens"
        )


def _prices_of(timelines: Mapping[tuple[str, str], Timeline], row: RatableUsage) -> ModelPrices:
    timeline = timelines.get((row.model, row.service_tier))
    prices = timeline.at(row.hour) if timeline is not None else None
    if prices is None:
        raise no_price(row.model, row.service_tier, row.hour)
    return prices
