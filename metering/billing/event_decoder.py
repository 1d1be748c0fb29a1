"""Decoding v1 usage messages in bulk: a compiled msgspec decoder checks types, required
fields and lengths while it decodes, the catalog is consulted once per batch, and any message
that fails a check goes to the field-by-field checks (event_checks), which word its rejection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec

from metering.billing.event_checks import (
    RFC3339_SHAPE,
    explained,
)
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
    Rejection,
    UsageEvent,
    ValidationPolicy,
)
from metering.billing.tokens import Usage

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
    (``explained``), which report its first failure in schema order: they alone decide
    what a rejection says, and they accept everything the fast path accepts, with an
    equal event (tests/unit/test_events.py compares them on generated messages).
    """
    decoded = [_decoded(raw, policy.max_message_bytes) for raw in raws]
    named = [wire for wire in decoded if wire is not None]
    # Each distinct id once per batch: in the catalog, and of a shape that can be stored.
    tenants = {
        t
        for t in {w.tenant_id for w in named}
        if t in catalog.tenants and TENANT_ID_SHAPE.fullmatch(t)
    }
    models = {
        m for m in {w.model for w in named} if m in catalog.models and UNSTORABLE_CHARACTER not in m
    }
    earliest, latest = now - policy.backdating_window, now + policy.clock_skew
    results: list[UsageEvent | Rejection] = []
    for raw, wire in zip(raws, decoded, strict=True):
        event = None
        if wire is not None and wire.tenant_id in tenants and wire.model in models:
            event = _checked(wire, earliest, latest, policy.max_tokens_per_event)
        results.append(
            event if event is not None else explained(raw, catalog=catalog, now=now, policy=policy)
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
    if RFC3339_SHAPE.fullmatch(wire.occurred_at) is None:
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
    # Spelt out rather than with any() over a generator: this runs for every event.
    nul = UNSTORABLE_CHARACTER
    request_id, deployment, region = wire.request_id, wire.deployment, wire.region
    if (
        (request_id is not None and nul in request_id)
        or (deployment is not None and nul in deployment)
        or (region is not None and nul in region)
    ):
        return None
    attributes = wire.attributes or {}
    if attributes and any(nul in key or nul in value for key, value in attributes.items()):
        return None
    return UsageEvent(
        event_id,
        wire.tenant_id,
        wire.model,
        occurred_at,
        Usage(
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            usage.cache_write_1h_tokens,
        ),
        service_tier,
        request_id,
        deployment,
        region,
        attributes,
    )
