"""Realistic, reproducible usage traffic for demos, load tests and end-to-end checks.

Pure: the same ``TrafficSpec`` (seed included) yields the same bytes, and nothing here
touches Kafka (``metering.produce.producer.produce`` sends the messages). A run mixes

- ``valid``: events that occurred in the hour before ``spec.now`` (with
  ``spec.occurred_from``: anywhere from then to ``spec.now``, e.g. across last month);
- ``late``: valid events that occurred 1 to 72 hours before ``spec.now`` (still billed);
- ``duplicate``: a byte-for-byte resend of a recent valid message, as a producer retry;
- ``invalid``: messages the pipeline must reject: not JSON, negative tokens, cached above
  input, an unknown model, no usage, or a bad event id.

Tenants are Zipf-skewed (a few produce most traffic); token counts are log-normal per
model, with reasoning only on reasoning models and cache writes mostly on Anthropic's.

    plan = TrafficPlan(spec)
    for message in plan.messages():     # a lazy stream: memory stays flat for 10**6 events
        ...
    plan.expected                        # what the pipeline must end up billing

``expected`` is tallied while the messages are generated, so it is only available once
the stream has been consumed to the end.
"""

from __future__ import annotations

import math
import random
import uuid
from bisect import bisect
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate, pairwise
from typing import Any, Literal, TypeVar

import orjson

from metering.billing.events import UsageEvent, event_to_json
from metering.billing.tokens import TOKEN_COUNTS, Usage, counts_of
from metering.produce.event_ids import RANDOM_BITS, uuid7
from metering.produce.producer import usage_event

Kind = Literal["valid", "duplicate", "invalid", "late"]

_T = TypeVar("_T")

UNKNOWN_MODEL = "no-such-model"
RECENT_VALID_KEPT = 4096
"""How many recent valid messages are kept to be resent as duplicates."""
VALID_AGE = timedelta(hours=1)
"""How long ago a ``valid`` event occurred at most (unless the spec gives a time span)."""
LATE_AGE = (timedelta(hours=1), timedelta(hours=72))
"""How long ago a ``late`` event occurred: at least, and less than."""
ARRIVAL_MARGIN = timedelta(hours=1)
"""How far inside the backdating window ``period_span`` keeps events, so that they are
still accepted when they reach the worker."""


@dataclass(frozen=True, slots=True)
class DemoModel:
    model_id: str
    provider: str
    display_name: str
    reasoning: bool = False


DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel("grok-3", "xai", "Grok 3"),
    DemoModel("grok-3-mini", "xai", "Grok 3 Mini", reasoning=True),
    DemoModel("grok-4", "xai", "Grok 4", reasoning=True),
    DemoModel("gpt-4.1", "openai", "GPT-4.1"),
    DemoModel("gpt-4.1-mini", "openai", "GPT-4.1 mini"),
    DemoModel("gpt-4o", "openai", "GPT-4o"),
    DemoModel("o3-mini", "openai", "o3-mini", reasoning=True),
    DemoModel("DeepSeek-R1", "deepseek", "DeepSeek R1", reasoning=True),
    DemoModel("DeepSeek-V3", "deepseek", "DeepSeek V3"),
    DemoModel("Llama-3.3-70B", "meta", "Llama 3.3 70B Instruct"),
    DemoModel("Llama-3.1-8B", "meta", "Llama 3.1 8B Instruct"),
    DemoModel("claude-sonnet-4", "anthropic", "Claude Sonnet 4"),
)
_DEMO_MODELS_BY_ID = {model.model_id: model for model in DEMO_MODELS}

_NAMED_TENANTS = (
    "acme-corp", "globex", "initech", "umbrella", "hooli", "stark-industries",
    "wayne-enterprises", "wonka-industries", "cyberdyne", "tyrell-corp", "massive-dynamic",
    "vandelay-industries", "pied-piper", "dunder-mifflin", "oscorp", "aperture-science",
    "black-mesa", "weyland-yutani", "soylent", "nakatomi", "sterling-cooper", "bluth-company",
    "planet-express", "los-pollos-hermanos", "krusty-krab", "gringotts", "monsters-inc",
    "blue-sun", "prestige-worldwide", "duff-beer",
)  # fmt: skip


def demo_tenants(n: int) -> list[str]:
    """``n`` readable tenant ids: well-known fictional companies, then ``tenant-0031`` on."""
    named = list(_NAMED_TENANTS[:n])
    return named + [f"tenant-{i:04d}" for i in range(len(named) + 1, n + 1)]


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """What to generate. Fractions are of ``events``; the rest are ``valid``.

    ``tenant_ids`` and ``model_ids``, when given, replace ``demo_tenants(tenants)`` and the
    first ``models`` of ``DEMO_MODELS``; ``tenants`` and ``models`` are then not used.
    """

    events: int
    tenants: int
    models: int
    duplicates: float
    invalid: float
    late: float
    seed: int
    now: datetime
    tenant_ids: Sequence[str] | None = None
    model_ids: Sequence[str] | None = None
    occurred_from: datetime | None = None
    """With it, every event occurred in ``[occurred_from, now)``: ``valid`` ones anywhere in
    it, ``late`` ones 1 to 72 hours before ``now`` but not before ``occurred_from``."""
    random_ids: bool = False
    """Event ids as random UUID4s, as a caller that mints its own sends them, rather than the
    time-ordered UUID7s the producer mints (``event_ids.uuid7``, stamped ``occurred_at``)."""

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events}")
        if self.tenant_ids is None and self.tenants < 1:
            raise ValueError(f"tenants must be >= 1, got {self.tenants}")
        if self.tenant_ids is not None and not self.tenant_ids:
            raise ValueError("tenant_ids must not be empty")
        if self.model_ids is None and not 1 <= self.models <= len(DEMO_MODELS):
            raise ValueError(f"models must be within 1..{len(DEMO_MODELS)}, got {self.models}")
        if self.model_ids is not None and not self.model_ids:
            raise ValueError("model_ids must not be empty")
        for name in ("duplicates", "invalid", "late"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a fraction within 0..1")
        if self.duplicates + self.invalid + self.late > 1 + 1e-9:  # float sums like 0.1 + 0.2
            raise ValueError("duplicates + invalid + late must not exceed 1")
        if self.now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        if self.occurred_from is not None:
            if self.occurred_from.utcoffset() is None:
                raise ValueError("occurred_from must be timezone-aware")
            if self.occurred_from >= self.now:
                raise ValueError("occurred_from must be before now")
        counts = self.counts()
        if counts["late"] and self.occurred_from and self.now - self.occurred_from <= LATE_AGE[0]:
            raise ValueError(
                "the time span is shorter than a late event's age (1 h): set late to 0"
            )
        if counts["duplicate"] and not counts["valid"]:
            raise ValueError("duplicates need at least one valid event to resend")

    def counts(self) -> dict[Kind, int]:
        """Exactly how many messages of each kind the run contains.

        Rounded at cumulative boundaries, so each count is within one of its fraction and
        together they never exceed ``events``.
        """
        shares = accumulate((self.duplicates, self.invalid, self.late))
        bounds = [min(self.events, round(self.events * share)) for share in shares]
        duplicate, invalid, late = (end - start for start, end in pairwise([0, *bounds]))
        return {
            "valid": self.events - bounds[-1],
            "duplicate": duplicate,
            "invalid": invalid,
            "late": late,
        }


@dataclass(frozen=True, slots=True)
class TrafficMessage:
    key: bytes
    value: bytes
    kind: Kind


class UsageTotals(Usage, frozen=True, kw_only=True):
    """The usage of ``events`` events, summed (the generator writes no 1-hour cache entries)."""

    events: int


@dataclass(frozen=True, slots=True)
class ExpectedTotals:
    """What a correct pipeline bills for a run, and what the run contained.

    ``usage`` covers each unique valid or late event once (duplicates and invalid messages
    add nothing), keyed by ``(tenant_id, model)``. ``messages`` counts messages by kind.
    """

    usage: Mapping[tuple[str, str], UsageTotals]
    messages: Mapping[Kind, int]


class TrafficPlan:
    """A reproducible run of traffic: its messages and the totals they must produce."""

    def __init__(self, spec: TrafficSpec) -> None:
        self.spec = spec
        self._expected: ExpectedTotals | None = None

    @property
    def expected(self) -> ExpectedTotals:
        if self._expected is None:
            raise RuntimeError("expected totals are known once messages() is fully consumed")
        return self._expected

    def messages(self) -> Iterator[TrafficMessage]:
        """The run's messages, lazily; each call replays the same run from the start."""
        spec = self.spec
        rng = random.Random(spec.seed)
        sampler = _EventSampler(rng, spec)
        remaining = spec.counts()
        recent: deque[TrafficMessage] = deque(maxlen=RECENT_VALID_KEPT)
        sums: dict[tuple[str, str], tuple[int, Usage]] = {}
        for _ in range(spec.events):
            kind = _next_kind(rng, remaining, can_duplicate=bool(recent))
            remaining[kind] -= 1
            if kind == "duplicate":
                original = recent[rng.randrange(len(recent))]
                yield TrafficMessage(original.key, original.value, kind)
                continue
            event = sampler.event(late=kind == "late")
            key = event.tenant_id.encode()
            if kind == "invalid":
                yield TrafficMessage(key, _corrupt(rng, event), kind)
                continue
            message = TrafficMessage(key, event_to_json(event), kind)
            if kind == "valid":
                recent.append(message)
            _add(sums, event)
            yield message
        self._expected = ExpectedTotals(
            usage={key: _totals(events, usage) for key, (events, usage) in sums.items()},
            messages=spec.counts(),
        )


def generate(spec: TrafficSpec) -> Iterator[TrafficMessage]:
    """The messages of ``spec`` alone, for callers that do not need the expected totals."""
    return TrafficPlan(spec).messages()


def _next_kind(rng: random.Random, remaining: dict[Kind, int], *, can_duplicate: bool) -> Kind:
    """A kind drawn in proportion to what is left, so every count comes out exact."""
    weights = [
        count if (kind != "duplicate" or can_duplicate) else 0 for kind, count in remaining.items()
    ]
    pick = rng.randrange(sum(weights))
    for kind, weight in zip(remaining, weights, strict=True):
        if pick < weight:
            return kind
        pick -= weight
    raise AssertionError("unreachable: pick < sum(weights)")


def _add(sums: dict[tuple[str, str], tuple[int, Usage]], event: UsageEvent) -> None:
    key = (event.tenant_id, event.model)
    known = sums.get(key)
    sums[key] = (1, event.usage) if known is None else (known[0] + 1, known[1] + event.usage)


def _totals(events: int, usage: Usage) -> UsageTotals:
    return UsageTotals(events=events, **dict(zip(TOKEN_COUNTS, counts_of(usage), strict=True)))


class _EventSampler:
    """Draws plausible events: who, which model, how many tokens, when."""

    TENANT_SKEW = 1.2  # Zipf exponent: with 50 tenants the top 5 send about half
    MODEL_SKEW = 0.8
    REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1")
    TIERS = ("standard", "batch", "priority")
    TIER_CUM_WEIGHTS = (0.85, 0.97, 1.0)
    MAX_INPUT = 200_000
    MAX_OUTPUT = 8_192
    MIN_CACHEABLE = 1_024  # providers cache prompt prefixes of at least this many tokens

    def __init__(self, rng: random.Random, spec: TrafficSpec) -> None:
        self.rng = rng
        self.now = spec.now
        self.random_ids = spec.random_ids
        span = spec.now - spec.occurred_from if spec.occurred_from else None
        self.valid_age_ms = _ms(span or VALID_AGE)
        self.late_age_ms = (_ms(LATE_AGE[0]), _ms(min(LATE_AGE[1], span or LATE_AGE[1])))
        self.tenants = list(spec.tenant_ids or demo_tenants(spec.tenants))
        model_ids = spec.model_ids or [m.model_id for m in DEMO_MODELS[: spec.models]]
        self.models = [
            _DEMO_MODELS_BY_ID.get(model_id, DemoModel(model_id, "unknown", model_id))
            for model_id in model_ids
        ]
        self.tenant_cum_weights = _zipf_cum_weights(len(self.tenants), self.TENANT_SKEW)
        self.model_cum_weights = _zipf_cum_weights(len(self.models), self.MODEL_SKEW)

    def event(self, *, late: bool) -> UsageEvent:
        rng = self.rng
        tenant = _pick(rng, self.tenants, self.tenant_cum_weights)
        model = _pick(rng, self.models, self.model_cum_weights)
        if late:
            age = timedelta(milliseconds=rng.randrange(*self.late_age_ms))
        else:
            age = timedelta(milliseconds=rng.randrange(1, self.valid_age_ms))
        tier = _pick(rng, self.TIERS, self.TIER_CUM_WEIGHTS)
        occurred_at = self.now - age
        return usage_event(
            tenant_id=tenant,
            model=model.model_id,
            usage=self.usage(model),
            occurred_at=occurred_at,
            event_id=(
                uuid.UUID(int=rng.getrandbits(128), version=4)
                if self.random_ids
                else uuid7(occurred_at, rng.getrandbits(RANDOM_BITS))
            ),
            service_tier=tier,
            request_id=f"req_{rng.getrandbits(96):024x}",
            region=rng.choice(self.REGIONS),
        )

    def usage(self, model: DemoModel) -> Usage:
        rng = self.rng
        input_tokens = _clamp(rng.lognormvariate(math.log(1_200), 1.4), 50, self.MAX_INPUT)
        cached = 0
        if input_tokens >= self.MIN_CACHEABLE and rng.random() < 0.4:
            cached = int(input_tokens * rng.uniform(0.3, 0.95))
        cache_write = 0
        if rng.random() < (0.25 if model.provider == "anthropic" else 0.02):
            cache_write = int((input_tokens - cached) * rng.uniform(0.2, 1.0))
        if model.reasoning:
            output = _clamp(rng.lognormvariate(math.log(1_500), 0.9), 1, self.MAX_OUTPUT)
            reasoning = int(output * rng.uniform(0.5, 0.92))
        else:
            output = _clamp(rng.lognormvariate(math.log(250), 1.0), 1, self.MAX_OUTPUT)
            reasoning = 0
        return Usage(input_tokens, output, cached, cache_write, reasoning)


def period_span(
    start: datetime, end: datetime, now: datetime, backdating: timedelta
) -> tuple[datetime, datetime]:
    """The part of ``[start, end)`` in which events sent ``now`` may have occurred: not in
    the future, and ``ARRIVAL_MARGIN`` inside the backdating window, which ingest enforces.
    ``ValueError`` when no part is left."""
    earliest = now - backdating + ARRIVAL_MARGIN
    span = (max(start, earliest), min(end, now))
    if span[0] >= span[1]:
        raise ValueError(
            f"events of {start:%Y-%m-%d} to {end:%Y-%m-%d} cannot be sent now: ingest accepts"
            f" events from {earliest:%Y-%m-%d %H:%M} UTC on (METERING_BACKDATING_DAYS) and"
            " none from the future"
        )
    return span


def _ms(duration: timedelta) -> int:
    return duration // timedelta(milliseconds=1)


def _pick(rng: random.Random, items: Sequence[_T], cum_weights: Sequence[float]) -> _T:
    """``rng.choices(items, cum_weights=cum_weights)[0]``, without building lists."""
    return items[bisect(cum_weights, rng.random() * cum_weights[-1])]


def _zipf_cum_weights(n: int, skew: float) -> list[float]:
    return list(accumulate(1 / rank**skew for rank in range(1, n + 1)))


def _clamp(value: float, low: int, high: int) -> int:
    return min(high, max(low, round(value)))


def _corrupt(rng: random.Random, valid: UsageEvent) -> bytes:
    """``valid`` broken in one of the ways the pipeline must reject, as message bytes."""
    raw = event_to_json(valid)
    event: dict[str, Any] = orjson.loads(raw)
    usage = event["usage"]
    match rng.randrange(6):
        case 0:  # a torn write
            return raw[: len(raw) // 2]
        case 1:
            usage["output_tokens"] = -usage["output_tokens"] - 1
        case 2:
            usage["cached_input_tokens"] = usage["input_tokens"] + rng.randint(1, 1_000)
        case 3:
            event["model"] = UNKNOWN_MODEL
        case 4:
            del event["usage"]
        case _:
            event["event_id"] = f"evt-{rng.getrandbits(32):08x}"
    return orjson.dumps(event)
