"""What a price import changes: which entries it adds, leaves and changes, and where it
reprices usage already billed. Pure; the store applies it, prices import reports it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from metering.billing.prices import PriceEntry


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What importing a file would do to the stored entries. ``changed`` pairs a stored entry
    with an incoming one of the same ``key`` but another price or ``effective_to``; an
    importer should refuse those unless told to replace (they may alter closed periods)."""

    added: tuple[PriceEntry, ...]
    unchanged: tuple[PriceEntry, ...]
    changed: tuple[tuple[PriceEntry, PriceEntry], ...]

    @property
    def is_noop(self) -> bool:
        return not self.added and not self.changed


def plan_import(stored: Iterable[PriceEntry], incoming: Iterable[PriceEntry]) -> ImportPlan:
    """Compare a file's entries with the stored ones by ``PriceEntry.key``."""
    by_key = {entry.key: entry for entry in stored}
    added: list[PriceEntry] = []
    unchanged: list[PriceEntry] = []
    changed: list[tuple[PriceEntry, PriceEntry]] = []
    for entry in incoming:
        old = by_key.get(entry.key)
        if old is None:
            added.append(entry)
        elif old == entry:
            unchanged.append(entry)
        else:
            changed.append((old, entry))
    return ImportPlan(tuple(added), tuple(unchanged), tuple(changed))


@dataclass(frozen=True, slots=True)
class Repricing:
    """A span of time, ``[since, until)`` (``until`` ``None``: open-ended), in which an import
    changes the prices of a model and service tier that already had prices. Only such spans
    can change what a closed period billed. ``entry`` is the incoming entry responsible."""

    entry: PriceEntry
    since: datetime
    until: datetime | None

    def reaches_before(self, moment: datetime) -> bool:
        return self.since < moment


def repricings(stored: Iterable[PriceEntry], plan: ImportPlan) -> tuple[Repricing, ...]:
    """Where ``plan`` changes prices already in effect, in the order of its entries.

    An added entry for a model and tier already priced changes them over its own span; one
    for a model or tier without prices changes nothing billed (usage without a price cannot
    have been invoiced). A changed entry with another price changes them from its start to
    the later of its two ends; one with another end only, between the two ends."""
    priced = {(e.model, e.service_tier) for e in stored}
    spans = [
        Repricing(e, e.effective_from, e.effective_to)
        for e in plan.added
        if (e.model, e.service_tier) in priced
    ]
    for old, new in plan.changed:
        ends = (old.effective_to, new.effective_to)
        later = None if None in ends else max(e for e in ends if e is not None)
        if old.price_per_million != new.price_per_million:
            spans.append(Repricing(new, new.effective_from, later))
        else:
            spans.append(Repricing(new, min(e for e in ends if e is not None), later))
    return tuple(spans)
