"""Usage event schema v1: one Kafka message in, a ``UsageEvent`` or a ``Rejection`` out.

Pure: no I/O, no clock and no settings. The caller passes ``now``, the tenant and model
catalog, and the limits, so the same bytes always give the same answer for the same inputs.
The contract for producers is ``docs/events.md``; keep the two in step.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final

import msgspec
import orjson

from metering.billing.tokens import TOKEN_COUNTS, Usage


class Reason(StrEnum):
    """Why a message was rejected; the value is what the dead-letter topic carries."""

    NULL_VALUE = "null_value"
    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NUL_CHARACTER = "nul_character"
    INVALID_EVENT_ID = "invalid_event_id"
    INVALID_TENANT_ID = "invalid_tenant_id"
    INVALID_MODEL = "invalid_model"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FIELD_TOO_LONG = "field_too_long"
    NEGATIVE_TOKENS = "negative_tokens"
    NON_INTEGER_TOKENS = "non_integer_tokens"
    CACHED_EXCEEDS_INPUT = "cached_exceeds_input"
    CACHE_WRITE_1H_EXCEEDS_CACHE_WRITE = "cache_write_1h_exceeds_cache_write"
    REASONING_EXCEEDS_OUTPUT = "reasoning_exceeds_output"
    IMPLAUSIBLE_TOKENS = "implausible_tokens"
    OCCURRED_IN_FUTURE = "occurred_in_future"
    OCCURRED_TOO_LONG_AGO = "occurred_too_long_ago"
    INVALID_SERVICE_TIER = "invalid_service_tier"
    INVALID_ATTRIBUTES = "invalid_attributes"
    UNKNOWN_TENANT = "unknown_tenant"
    UNKNOWN_MODEL = "unknown_model"
    # Decided after parsing, by the price book and by the database (see streams/ingest/).
    UNPRICED = "unpriced"
    UNSTORABLE = "unstorable"


REASONS: Final[tuple[str, ...]] = tuple(reason.value for reason in Reason)

SERVICE_TIERS: Final[tuple[str, ...]] = ("standard", "batch", "priority")
MODEL_MAX_CHARS: Final = 128
TEXT_MAX_CHARS: Final = 256
ATTRIBUTES_MAX_ENTRIES: Final = 32
ATTRIBUTE_KEY_MAX_CHARS: Final = 64
ATTRIBUTE_VALUE_MAX_CHARS: Final = 256

_REQUIRED_FIELDS: Final = ("event_id", "tenant_id", "model", "occurred_at", "usage")
_REQUIRED_USAGE_FIELDS: Final = ("input_tokens", "output_tokens")

# uuid.UUID() alone also accepts braces, "urn:uuid:", missing hyphens and even underscores
# between hex digits; the contract is the canonical 8-4-4-4-12 spelling only.
_UUID_SHAPE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_TENANT_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# datetime.fromisoformat() accepts far more than RFC 3339 (no seconds, no offset, week dates),
# so the shape is checked first. RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
_RFC3339_SHAPE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # full-date
    r"[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"  # partial-time, any fraction of a second
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"  # time-offset, required
)
_SHOWN_VALUE_MAX_CHARS: Final = 80
# The one character that valid UTF-8 JSON can carry and PostgreSQL text and jsonb cannot
# (orjson already refuses invalid UTF-8 and lone surrogates).
_UNSTORABLE_CHARACTER: Final = "\x00"
_NO_ATTRIBUTES: Final[Mapping[str, str]] = MappingProxyType({})
_SORTED_COUNTS: Final = tuple(sorted(TOKEN_COUNTS))


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One accepted usage event, normalised: ``occurred_at`` in UTC, defaults filled in.

    ``fingerprint`` is derived from the content, so it can never disagree with it: two
    messages that mean the same thing have the same fingerprint, and a different payload under
    a known ``event_id`` (a conflict) shows up as a different one.
    """

    event_id: uuid.UUID
    tenant_id: str
    model: str
    occurred_at: datetime
    usage: Usage
    service_tier: str = "standard"
    request_id: str | None = None
    deployment: str | None = None
    region: str | None = None
    # A read-only mapping has no hash; equal events still hash alike through the other fields.
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    fingerprint: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is not UTC:
            if self.occurred_at.utcoffset() is None:
                raise ValueError(f"occurred_at must be timezone-aware, got {self.occurred_at!r}")
            object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        attributes = MappingProxyType(dict(self.attributes)) if self.attributes else _NO_ATTRIBUTES
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "fingerprint", hashlib.sha256(event_to_json(self)).digest())

    @property
    def hour(self) -> datetime:
        """The start of the UTC hour the event falls in."""
        return self.occurred_at.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message cannot be billed. The caller sends it to the dead-letter topic together
    with the original bytes."""

    reason: str  # one of REASONS
    detail: str  # names the field and the value, for the person who has to fix the producer
    event_id: str | None = None  # as sent, when it is a string that can be stored
    tenant_id: str | None = None  # as sent, when it is a string that can be stored
    model: str | None = None  # as sent, when it is a string that can be stored


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    max_message_bytes: int = 65_536
    max_tokens_per_event: int = 50_000_000  # each token count; above it is a producer bug
    clock_skew: timedelta = timedelta(minutes=5)  # how far in the future occurred_at may be
    backdating_window: timedelta = timedelta(days=35)  # how far in the past occurred_at may be


@dataclass(frozen=True, slots=True)
class Catalog:
    """The tenants and models that exist; an event naming anything else is not billable."""

    tenants: frozenset[str]
    models: frozenset[str]


_DEFAULT_POLICY: Final = ValidationPolicy()


def parse_event(
    raw: bytes | None,
    *,
    catalog: Catalog,
    now: datetime,
    policy: ValidationPolicy = _DEFAULT_POLICY,
) -> UsageEvent | Rejection:
    """Parse and validate one message of topic ``usage.events``.

    ``now`` is the receiver's clock, timezone-aware. Checks run in a fixed order and the first
    failure is reported: size, JSON, fields in schema order, then the catalog, so that a
    malformed event is reported as malformed rather than as unknown. ``raw`` is ``None`` for
    a record without a value (a tombstone).
    """
    return parse_events([raw], catalog=catalog, now=now, policy=policy)[0]


def parse_events(
    raws: Sequence[bytes | None],
    *,
    catalog: Catalog,
    now: datetime,
    policy: ValidationPolicy = _DEFAULT_POLICY,
) -> list[UsageEvent | Rejection]:
    """``parse_event`` for a batch of messages, in their order, with the same results.

    Each message is decoded once by a compiled schema decoder that checks types, required
    fields and lengths while it decodes; the remaining rules run on the decoded fields,
    and the catalog is consulted once per batch for the ids the batch names. Any message
    that fails a check there is decoded again by the step-by-step checks
    (``_explained``), which report its first failure in schema order: they alone decide
    what a rejection says, and they accept everything the fast path accepts, with an
    equal event (tests/unit/test_events.py compares them on generated messages).
    """
    decoded = [_decoded(raw, policy.max_message_bytes) for raw in raws]
    named = [wire for wire in decoded if wire is not None]
    # Each distinct id once per batch: in the catalog, and of a shape that can be stored.
    tenants = {
        t
        for t in {w.tenant_id for w in named}
        if t in catalog.tenants and _TENANT_ID_SHAPE.fullmatch(t)
    }
    models = {
        m
        for m in {w.model for w in named}
        if m in catalog.models and _UNSTORABLE_CHARACTER not in m
    }
    earliest, latest = now - policy.backdating_window, now + policy.clock_skew
    results: list[UsageEvent | Rejection] = []
    for raw, wire in zip(raws, decoded, strict=True):
        event = None
        if wire is not None and wire.tenant_id in tenants and wire.model in models:
            event = _checked(wire, earliest, latest, policy.max_tokens_per_event)
        results.append(
            event if event is not None else _explained(raw, catalog=catalog, now=now, policy=policy)
        )
    return results


_TokenCount = Annotated[int, msgspec.Meta(ge=0)]
_Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX_CHARS)]


class _WireUsage(msgspec.Struct):
    """The ``usage`` object as the fast path takes it (null counts go the slow way)."""

    input_tokens: _TokenCount
    output_tokens: _TokenCount
    cached_input_tokens: _TokenCount = 0
    cache_write_tokens: _TokenCount = 0
    reasoning_tokens: _TokenCount = 0
    cache_write_1h_tokens: _TokenCount = 0


class _WireEvent(msgspec.Struct):
    """A v1 message as the compiled decoder checks it: types, required fields, lengths."""

    event_id: Annotated[str, msgspec.Meta(min_length=36, max_length=36)]
    tenant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MODEL_MAX_CHARS)]
    occurred_at: str
    usage: _WireUsage
    service_tier: str | None = None
    request_id: _Text | None = None
    deployment: _Text | None = None
    region: _Text | None = None
    attributes: (
        Annotated[
            dict[
                Annotated[str, msgspec.Meta(max_length=ATTRIBUTE_KEY_MAX_CHARS)],
                Annotated[str, msgspec.Meta(max_length=ATTRIBUTE_VALUE_MAX_CHARS)],
            ],
            msgspec.Meta(max_length=ATTRIBUTES_MAX_ENTRIES),
        ]
        | None
    ) = None


_DECODE_WIRE: Final = msgspec.json.Decoder(_WireEvent).decode
_to_uuid: Final = msgspec.convert


def _decoded(raw: bytes | None, max_bytes: int) -> _WireEvent | None:
    if raw is None or len(raw) > max_bytes:
        return None
    try:
        return _DECODE_WIRE(raw)
    except msgspec.MsgspecError:
        return None


def _checked(
    wire: _WireEvent, earliest: datetime, latest: datetime, max_tokens: int
) -> UsageEvent | None:
    """The event, if it passes every rule the decoder and the batch's catalog checks could
    not check; else None."""
    if _RFC3339_SHAPE.fullmatch(wire.occurred_at) is None:
        return None
    try:
        # 36 characters that msgspec reads as a UUID: the canonical spelling, any case.
        event_id = _to_uuid(wire.event_id, uuid.UUID)
        occurred_at = datetime.fromisoformat(wire.occurred_at.upper()).astimezone(UTC)
    except (msgspec.ValidationError, ValueError, OverflowError):
        return None
    usage = wire.usage
    if (
        not earliest <= occurred_at <= latest
        or max(
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            usage.cache_write_1h_tokens,
        )
        > max_tokens
        or usage.cached_input_tokens + usage.cache_write_tokens > usage.input_tokens
        or usage.cache_write_1h_tokens > usage.cache_write_tokens
        or usage.reasoning_tokens > usage.output_tokens
    ):
        return None
    service_tier = wire.service_tier or "standard"
    if wire.service_tier is not None and wire.service_tier not in SERVICE_TIERS:
        return None
    texts = (wire.request_id, wire.deployment, wire.region)
    if any(text is not None and _UNSTORABLE_CHARACTER in text for text in texts):
        return None
    attributes = wire.attributes or {}
    if any(
        _UNSTORABLE_CHARACTER in key or _UNSTORABLE_CHARACTER in value
        for key, value in attributes.items()
    ):
        return None
    return UsageEvent(
        event_id=event_id,
        tenant_id=wire.tenant_id,
        model=wire.model,
        occurred_at=occurred_at,
        usage=Usage(
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            usage.cache_write_1h_tokens,
        ),
        service_tier=service_tier,
        request_id=wire.request_id,
        deployment=wire.deployment,
        region=wire.region,
        attributes=attributes,
    )


def _explained(
    raw: bytes | None, *, catalog: Catalog, now: datetime, policy: ValidationPolicy
) -> UsageEvent | Rejection:
    """One message through the step-by-step checks: its event, or its first failure."""
    if raw is None:
        return Rejection(
            Reason.NULL_VALUE, "the record has no value (a tombstone); send one JSON event object"
        )
    if len(raw) > policy.max_message_bytes:
        return Rejection(
            Reason.OVERSIZED,
            f"message is {len(raw)} bytes; the limit is {policy.max_message_bytes} bytes",
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(Reason.NOT_JSON, f"message is not UTF-8 encoded JSON: {exc}")
    if type(document) is not dict:
        return Rejection(
            Reason.NOT_AN_OBJECT, f"message must be a JSON object, got {_json_type(document)}"
        )
    try:
        return _event_from(document, catalog, now, policy)
    except _Invalid as exc:
        return Rejection(
            exc.reason,
            exc.detail,
            event_id=_as_sent(document.get("event_id")),
            tenant_id=_as_sent(document.get("tenant_id")),
            model=_as_sent(document.get("model")),
        )


def _as_sent(value: Any) -> str | None:
    """A rejected field's value for the rejection record: a string that can be stored."""
    return value if type(value) is str and _UNSTORABLE_CHARACTER not in value else None


def event_to_json(event: UsageEvent) -> bytes:
    """The canonical v1 JSON of an event: sorted keys, UTC with ``Z``, every usage count,
    optional fields only when set. ``parse_event`` reads it back to an equal event, and its
    SHA-256 is the event's fingerprint. The one writer of v1 JSON: the producer sends it.

    The dict is built with its keys already in sorted order, which gives the bytes of
    ``orjson.dumps(..., option=OPT_SORT_KEYS | OPT_UTC_Z)`` (how the ledger's fingerprints
    were made) without sorting each time.

    ``cache_write_1h_tokens`` came after the first events were stored, so it is written only
    when it is not 0: every event sent before it keeps its fingerprint, and a replayed old
    event stays a duplicate rather than a conflict."""
    usage = event.usage
    document: dict[str, Any] = {}
    option = orjson.OPT_UTC_Z
    if event.attributes:
        document["attributes"] = dict(event.attributes)
        option |= orjson.OPT_SORT_KEYS  # for the attributes' own keys
    if event.deployment is not None:
        document["deployment"] = event.deployment
    document["event_id"] = event.event_id
    document["model"] = event.model
    document["occurred_at"] = event.occurred_at
    if event.region is not None:
        document["region"] = event.region
    if event.request_id is not None:
        document["request_id"] = event.request_id
    document["service_tier"] = event.service_tier
    document["tenant_id"] = event.tenant_id
    counts = {name: getattr(usage, name) for name in _SORTED_COUNTS}
    if not usage.cache_write_1h_tokens:
        del counts["cache_write_1h_tokens"]
    document["usage"] = counts
    return orjson.dumps(document, option=option)


class _Invalid(Exception):
    """Raised by the field checks below; ``parse_event`` turns it into a ``Rejection``."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _event_from(
    document: dict[str, Any], catalog: Catalog, now: datetime, policy: ValidationPolicy
) -> UsageEvent:
    _require(document, _REQUIRED_FIELDS, prefix="")
    event_id = _event_id(document["event_id"])
    tenant_id = _tenant_id(document["tenant_id"])
    model = _model(document["model"])
    occurred_at = _occurred_at(document["occurred_at"], now, policy)
    usage = _usage(document["usage"], policy.max_tokens_per_event)
    service_tier = _service_tier(document.get("service_tier"))
    request_id = _optional_text("request_id", document.get("request_id"))
    deployment = _optional_text("deployment", document.get("deployment"))
    region = _optional_text("region", document.get("region"))
    attributes = _attributes(document.get("attributes"))
    if tenant_id not in catalog.tenants:
        raise _Invalid(Reason.UNKNOWN_TENANT, f"tenant_id {_show(tenant_id)} is not a tenant")
    if model not in catalog.models:
        raise _Invalid(Reason.UNKNOWN_MODEL, f"model {_show(model)} is not in the model catalog")
    return UsageEvent(
        event_id=event_id,
        tenant_id=tenant_id,
        model=model,
        occurred_at=occurred_at,
        usage=usage,
        service_tier=service_tier,
        request_id=request_id,
        deployment=deployment,
        region=region,
        attributes=attributes,
    )


def _require(document: dict[str, Any], names: tuple[str, ...], *, prefix: str) -> None:
    """Report every missing required field at once; null counts as missing."""
    missing = [prefix + name for name in names if document.get(name) is None]
    if missing:
        raise _Invalid(
            Reason.MISSING_FIELD, f"required field missing or null: {', '.join(missing)}"
        )


def _expect(name: str, value: Any, expected_type: type, expected: str) -> None:
    if type(value) is not expected_type:
        raise _Invalid(
            Reason.WRONG_TYPE,
            f"{name} must be {expected}, got {_json_type(value)} {_show(value)}",
        )


def _expect_text(name: str, value: Any) -> None:
    """A string that PostgreSQL can store: of type string, without a NUL character."""
    _expect(name, value, str, "a string")
    if _UNSTORABLE_CHARACTER in value:
        raise _Invalid(
            Reason.NUL_CHARACTER,
            f"{name} {_show(value)} contains a NUL character (\\u0000), which cannot be stored",
        )


def _event_id(value: Any) -> uuid.UUID:
    _expect_text("event_id", value)
    if _UUID_SHAPE.fullmatch(value) is None:
        raise _Invalid(
            Reason.INVALID_EVENT_ID,
            f"event_id {_show(value)} is not a UUID like 0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f",
        )
    return uuid.UUID(value)


def _tenant_id(value: Any) -> str:
    _expect_text("tenant_id", value)
    if _TENANT_ID_SHAPE.fullmatch(value) is None:
        raise _Invalid(
            Reason.INVALID_TENANT_ID,
            f"tenant_id {_show(value)} ({len(value)} characters) must be 1 to 64 characters"
            " from A-Z, a-z, 0-9, '.', '_' and '-'",
        )
    return value


def _model(value: Any) -> str:
    _expect_text("model", value)
    if not 0 < len(value) <= MODEL_MAX_CHARS:
        raise _Invalid(
            Reason.INVALID_MODEL,
            f"model {_show(value)} ({len(value)} characters) must be 1 to"
            f" {MODEL_MAX_CHARS} characters",
        )
    return value


def _occurred_at(value: Any, now: datetime, policy: ValidationPolicy) -> datetime:
    _expect_text("occurred_at", value)
    if _RFC3339_SHAPE.fullmatch(value) is None:
        raise _Invalid(
            Reason.INVALID_TIMESTAMP,
            f"occurred_at {_show(value)} must be RFC 3339 with seconds and an offset,"
            " e.g. 2026-11-25T10:00:00Z or 2026-11-25T12:00:00+02:00",
        )
    try:
        occurred_at = datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # e.g. 2026-02-30, or past year 9999 in UTC
        raise _Invalid(
            Reason.INVALID_TIMESTAMP, f"occurred_at {_show(value)} is not a valid time: {exc}"
        ) from None
    if occurred_at > now + policy.clock_skew:
        raise _Invalid(
            Reason.OCCURRED_IN_FUTURE,
            f"occurred_at {value} is {occurred_at - now} ahead of the receiver's clock"
            f" ({now.isoformat()}); at most {policy.clock_skew} of clock skew is allowed",
        )
    if occurred_at < now - policy.backdating_window:
        raise _Invalid(
            Reason.OCCURRED_TOO_LONG_AGO,
            f"occurred_at {value} is {now - occurred_at} before the receiver's clock"
            f" ({now.isoformat()}); events older than {policy.backdating_window} are not accepted",
        )
    return occurred_at


def _usage(value: Any, max_tokens: int) -> Usage:
    _expect("usage", value, dict, "an object")
    _require(value, _REQUIRED_USAGE_FIELDS, prefix="usage.")
    usage = Usage(
        input_tokens=_token_count(value, "input_tokens", max_tokens),
        output_tokens=_token_count(value, "output_tokens", max_tokens),
        cached_input_tokens=_token_count(value, "cached_input_tokens", max_tokens),
        cache_write_tokens=_token_count(value, "cache_write_tokens", max_tokens),
        reasoning_tokens=_token_count(value, "reasoning_tokens", max_tokens),
        cache_write_1h_tokens=_token_count(value, "cache_write_1h_tokens", max_tokens),
    )
    if usage.cached_input_tokens + usage.cache_write_tokens > usage.input_tokens:
        raise _Invalid(
            Reason.CACHED_EXCEEDS_INPUT,
            f"usage.cached_input_tokens ({usage.cached_input_tokens})"
            f" + usage.cache_write_tokens ({usage.cache_write_tokens})"
            f" exceed usage.input_tokens ({usage.input_tokens})",
        )
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        raise _Invalid(
            Reason.CACHE_WRITE_1H_EXCEEDS_CACHE_WRITE,
            f"usage.cache_write_1h_tokens ({usage.cache_write_1h_tokens})"
            f" exceed usage.cache_write_tokens ({usage.cache_write_tokens})",
        )
    if usage.reasoning_tokens > usage.output_tokens:
        raise _Invalid(
            Reason.REASONING_EXCEEDS_OUTPUT,
            f"usage.reasoning_tokens ({usage.reasoning_tokens})"
            f" exceed usage.output_tokens ({usage.output_tokens})",
        )
    return usage


def _token_count(usage: dict[str, Any], name: str, max_tokens: int) -> int:
    """A count of tokens: a JSON integer from 0 to ``max_tokens``; absent or null is 0."""
    value = usage.get(name)
    if value is None:
        return 0
    # A float is 1.0, 1e3, or an integer too large for 64 bits, which orjson reads as a float.
    if type(value) is float:
        raise _Invalid(
            Reason.NON_INTEGER_TOKENS, f"usage.{name} must be a JSON integer, got {_show(value)}"
        )
    _expect(f"usage.{name}", value, int, "an integer")  # exact type: refuses true and false
    if value < 0:
        raise _Invalid(Reason.NEGATIVE_TOKENS, f"usage.{name} must not be negative, got {value}")
    if value > max_tokens:
        raise _Invalid(
            Reason.IMPLAUSIBLE_TOKENS,
            f"usage.{name} ({value}) is above the limit of {max_tokens} tokens per event",
        )
    return value


def _service_tier(value: Any) -> str:
    if value is None:
        return "standard"
    _expect_text("service_tier", value)
    if value not in SERVICE_TIERS:
        raise _Invalid(
            Reason.INVALID_SERVICE_TIER,
            f"service_tier {_show(value)} must be one of {', '.join(SERVICE_TIERS)}",
        )
    return value


def _optional_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    _expect_text(name, value)
    if len(value) > TEXT_MAX_CHARS:
        raise _Invalid(
            Reason.FIELD_TOO_LONG,
            f"{name} is {len(value)} characters; at most {TEXT_MAX_CHARS} are allowed",
        )
    return value


def _attributes(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    _expect("attributes", value, dict, "an object")
    if len(value) > ATTRIBUTES_MAX_ENTRIES:
        raise _Invalid(
            Reason.INVALID_ATTRIBUTES,
            f"attributes has {len(value)} entries; at most {ATTRIBUTES_MAX_ENTRIES} are allowed",
        )
    for key, item in value.items():
        _expect_text("attributes key", key)
        if len(key) > ATTRIBUTE_KEY_MAX_CHARS:
            raise _Invalid(
                Reason.INVALID_ATTRIBUTES,
                f"attributes key {_show(key)} is {len(key)} characters;"
                f" at most {ATTRIBUTE_KEY_MAX_CHARS} are allowed",
            )
        if type(item) is not str:
            raise _Invalid(
                Reason.INVALID_ATTRIBUTES,
                f"attributes[{_show(key)}] must be a string, got {_json_type(item)} {_show(item)}",
            )
        _expect_text(f"attributes[{_show(key)}]", item)
        if len(item) > ATTRIBUTE_VALUE_MAX_CHARS:
            raise _Invalid(
                Reason.INVALID_ATTRIBUTES,
                f"attributes[{_show(key)}] is {len(item)} characters;"
                f" at most {ATTRIBUTE_VALUE_MAX_CHARS} are allowed",
            )
    return value


_JSON_TYPE_NAMES: Final[dict[type, str]] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES[type(value)]


def _show(value: Any) -> str:
    """The value as JSON, cut short so that a detail stays readable."""
    text = orjson.dumps(value).decode()
    if len(text) <= _SHOWN_VALUE_MAX_CHARS:
        return text
    return text[: _SHOWN_VALUE_MAX_CHARS - 3] + "..."
