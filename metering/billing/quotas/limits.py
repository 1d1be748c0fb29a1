"""Quota limits: what a tenant may use, and how usage compares with a limit.

Pure: no I/O, no clock and no settings. The contract for consumers is ``docs/quotas.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

Amount = int | Decimal
"""Tokens are ``int``; money is ``Decimal``, in the currency of the price book."""

PeriodOf = Callable[[datetime], tuple[datetime, datetime]]
"""The billing period ``[start, end)`` an instant falls in, e.g. the tenant's calendar month."""

MINUTE: Final = timedelta(minutes=1)
DEFAULT_THRESHOLDS: Final = (50, 80, 100)
MAX_TOKEN_LIMIT: Final = 2**63 - 1
"""The most tokens a limit can allow: the ledger's ``bigint`` counters, and the largest JSON
integer every consumer of ``quota.state`` and the endpoint can read (64-bit)."""
MAX_SPEND_LIMIT: Final = Decimal(10) ** 15
"""Spend limits are below this (exclusive), with at most ``SPEND_LIMIT_PLACES`` decimals, and
thresholds at most ``MAX_THRESHOLD``: so ``amount * threshold`` has at most 25 digits and is
exact in ``Decimal``'s 28, and thresholds are compared exactly."""
SPEND_LIMIT_PLACES: Final = 6
_SPEND_LIMIT_QUANTUM: Final = Decimal(1).scaleb(-SPEND_LIMIT_PLACES)
MAX_THRESHOLD: Final = 10_000
_ZERO: Final = Decimal(0)
# Alert ids are UUIDv5 names in this namespace, so a replay computes the same id again.


class LimitKind(StrEnum):
    TOKENS_PER_PERIOD = "tokens_per_period"
    SPEND_PER_PERIOD = "spend_per_period"
    TOKENS_PER_MINUTE = "tokens_per_minute"

    @property
    def per_minute(self) -> bool:
        return self is LimitKind.TOKENS_PER_MINUTE

    @property
    def is_spend(self) -> bool:
        return self is LimitKind.SPEND_PER_PERIOD


class QuotaStatus(StrEnum):
    """``blocked``: a hard limit is used up. ``warning``: nothing hard is used up, but some
    limit has reached its first threshold (or, if that is above 100, its amount). ``ok``:
    neither."""

    OK = "ok"
    WARNING = "warning"
    BLOCKED = "blocked"


SEVERITY: Final = {QuotaStatus.OK: 0, QuotaStatus.WARNING: 1, QuotaStatus.BLOCKED: 2}


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    skew: timedelta = timedelta(minutes=5)
    """How late (in event time) an event may arrive and still count for its minute; also how
    far ahead a minute is kept. Matches the validator's allowed clock skew."""
    retained_periods: int = 2
    """Previous billing periods kept besides the current one. Events older than those are
    ignored here (the ledger and the invoice still have them)."""
    signal_step_percent: int = 5
    """A new signal is sent when ``used`` moves into another step of this many percent of the
    determining limit, besides every change of state, limit or reset time."""

    def __post_init__(self) -> None:
        if self.skew < timedelta(0):
            raise ValueError(f"skew must not be negative, got {self.skew}")
        if self.retained_periods < 0:
            raise ValueError(f"retained_periods must be >= 0, got {self.retained_periods}")
        if not 0 < self.signal_step_percent <= 100:
            raise ValueError(
                f"signal_step_percent must be 1 to 100, got {self.signal_step_percent}"
            )


DEFAULT_POLICY: Final = QuotaPolicy()


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit. ``model=None`` applies to all of the tenant's usage; a model name
    applies to that model's usage only. A hard limit blocks once used up; a soft one only
    alerts. ``thresholds`` are percentages of ``amount`` and may exceed 100."""

    limit_id: str
    tenant_id: str
    model: str | None
    kind: LimitKind
    amount: Amount
    hard: bool
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LimitKind(self.kind))
        object.__setattr__(self, "amount", limit_amount(self.kind, self.amount))
        object.__setattr__(self, "thresholds", limit_thresholds(self.thresholds))

    @property
    def warning_percent(self) -> int:
        """Usage at or past this percentage makes the limit (at least) a warning."""
        return min(self.thresholds[0], 100)

    def applies_to(self, model: str) -> bool:
        return self.model is None or self.model == model


def threshold_reached(used: Amount, limit: Limit, threshold: int) -> bool:
    """Exact: ``used * 100 >= amount * threshold``, in integers or ``Decimal``."""
    return used * 100 >= limit.amount * threshold


def status_of(limit: Limit, used: Amount) -> QuotaStatus:
    if used >= limit.amount:
        return QuotaStatus.BLOCKED if limit.hard else QuotaStatus.WARNING
    if used * 100 >= limit.amount * limit.warning_percent:
        return QuotaStatus.WARNING
    return QuotaStatus.OK


def tenant_limits(tenant_id: str, limits: Iterable[Limit]) -> tuple[Limit, ...]:
    limits = tuple(limits)
    strangers = sorted({limit.limit_id for limit in limits if limit.tenant_id != tenant_id})
    if strangers:
        raise ValueError(f"limits {strangers} are not limits of tenant {tenant_id!r}")
    ids = [limit.limit_id for limit in limits]
    if len(set(ids)) != len(ids):
        raise ValueError(f"tenant {tenant_id!r} has duplicate limit ids: {sorted(ids)}")
    return tuple(sorted(limits, key=lambda limit: limit.limit_id))


def limit_amount(kind: LimitKind, amount: Any) -> Amount:
    """``amount`` as a limit of ``kind`` can hold it; ``ValueError`` says what is allowed."""
    kind = LimitKind(kind)
    if kind.is_spend:
        if type(amount) is int:
            amount = Decimal(amount)
        if (
            not isinstance(amount, Decimal)
            or not amount.is_finite()
            or not 0 < amount < MAX_SPEND_LIMIT
            or amount != amount.quantize(_SPEND_LIMIT_QUANTUM)
        ):
            raise ValueError(
                f"the amount of a {kind} limit is money above 0 and below {MAX_SPEND_LIMIT:,f}"
                f" with at most {SPEND_LIMIT_PLACES} decimals, not {_shown(amount)}"
            )
        return amount
    if type(amount) is not int or not 0 < amount <= MAX_TOKEN_LIMIT:
        raise ValueError(
            f"the amount of a {kind} limit is a whole number of tokens from 1 to {MAX_TOKEN_LIMIT},"
            f" not {_shown(amount)}"
        )
    return amount


def limit_thresholds(thresholds: Iterable[Any]) -> tuple[int, ...]:
    """Alert percentages, sorted and distinct; ``ValueError`` says what is allowed."""
    given = tuple(thresholds)
    if not given or any(type(t) is not int or not 0 < t <= MAX_THRESHOLD for t in given):
        raise ValueError(
            f"thresholds are whole percentages from 1 to {MAX_THRESHOLD}, like 50,80,100;"
            f" not {','.join(map(str, given)) or 'none'}"
        )
    return tuple(sorted(set(given)))


def _shown(value: Any) -> str:
    """A rejected amount as given: plain digits unless that would be very long."""
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) < 40:
        return format(value, "f")
    return str(value)


def amount_json(amount: Amount) -> int | str:
    """Tokens as JSON integers; money as a plain decimal string (never a float, no exponent)."""
    return format(amount, "f") if isinstance(amount, Decimal) else amount
