"""The field-by-field checks of a v1 usage message: the slow path, which runs only for a
message the decoder does not accept as it is, and alone words every rejection (reason and
detail as docs/events.md lists them)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from metering.billing.events import (
    ATTRIBUTE_KEY_MAX_CHARS,
    ATTRIBUTE_VALUE_MAX_CHARS,
    ATTRIBUTES_MAX_ENTRIES,
    MODEL_MAX_CHARS,
    SERVICE_TIERS,
    TENANT_ID_SHAPE,
    TEXT_MAX_CHARS,
    UNSTORABLE_CHARACTER,
    Catalog,
    Reason,
    Rejection,
    UsageEvent,
    ValidationPolicy,
)
from metering.billing.tokens import Usage

_REQUIRED_FIELDS: Final = ("event_id", "tenant_id", "model", "occurred_at", "usage")


_REQUIRED_USAGE_FIELDS: Final = ("input_tokens", "output_tokens")


# uuid.UUID() alone also accepts braces, "urn:uuid:", missing hyphens and even underscores
# between hex digits; the contract is the canonical 8-4-4-4-12 spelling only.
_UUID_SHAPE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


# datetime.fromisoformat() accepts far more than RFC 3339 (no seconds, no offset, week dates),
# so the shape is checked first. RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
RFC3339_SHAPE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # full-date
    r"[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"  # partial-time, any fraction of a second
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"  # time-offset, required
)


_SHOWN_VALUE_MAX_CHARS: Final = 80


def explained(
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
    return value if type(value) is str and UNSTORABLE_CHARACTER not in value else None


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
    if UNSTORABLE_CHARACTER in value:
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
    if TENANT_ID_SHAPE.fullmatch(value) is None:
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
    if RFC3339_SHAPE.fullmatch(value) is None:
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
