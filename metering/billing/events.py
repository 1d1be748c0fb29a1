"""Usage event schema v1: what a message becomes (a ``UsageEvent`` or a ``Rejection`` with
its ``Reason``), the limits it is held to, and its canonical JSON. Decoding is
``event_decoder``; the field-by-field checks that word rejections are ``event_checks``.

Pure: no I/O, no clock and no settings. The caller passes ``now``, the tenant and model
catalog, and the limits, so the same bytes always give the same answer for the same inputs.
The contract for producers is ``docs/events.md``; keep the two in step.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import msgspec
from msgspec.structs import force_setattr

from metering.billing.tokens import TOKEN_COUNTS, Usage, counts_of


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


TENANT_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The one character that valid UTF-8 JSON can carry and PostgreSQL text and jsonb cannot
# (orjson already refuses invalid UTF-8 and lone surrogates).
UNSTORABLE_CHARACTER: Final = "\x00"
_NO_ATTRIBUTES: Final[Mapping[str, str]] = MappingProxyType({})


class UsageEvent(msgspec.Struct, frozen=True):
    """One accepted usage event, normalised: ``occurred_at`` in UTC, defaults filled in.

    ``fingerprint`` is derived from the content, so it can never disagree with it: two
    messages that mean the same thing have the same fingerprint, and a different payload under
    a known ``event_id`` (a conflict) shows up as a different one. Any value given for it is
    replaced.

    A frozen msgspec struct rather than a frozen dataclass: one is made for every event
    ingested, and a frozen dataclass's ``__init__`` (a call to ``object.__setattr__`` per
    field) took as long as the event's fingerprint.
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
    attributes: Mapping[str, str] = _NO_ATTRIBUTES
    fingerprint: bytes = b""

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is not UTC:
            if self.occurred_at.utcoffset() is None:
                raise ValueError(f"occurred_at must be timezone-aware, got {self.occurred_at!r}")
            force_setattr(self, "occurred_at", self.occurred_at.astimezone(UTC))
        attributes = MappingProxyType(dict(self.attributes)) if self.attributes else _NO_ATTRIBUTES
        force_setattr(self, "attributes", attributes)
        force_setattr(self, "fingerprint", hashlib.sha256(event_to_json(self)).digest())

    def __hash__(self) -> int:
        # A read-only mapping has no hash; equal events still hash alike through the others.
        return hash(
            (
                self.event_id,
                self.tenant_id,
                self.model,
                self.occurred_at,
                self.usage,
                self.service_tier,
                self.request_id,
                self.deployment,
                self.region,
            )
        )

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


_COUNTS_WRITTEN_WHEN_SET: Final = ("cache_write_1h_tokens",)
"""Counts that came after the first events were stored: written only when not 0, so that
every event sent before them keeps its fingerprint (a replayed old event stays a duplicate
rather than a conflict). They come last in ``TOKEN_COUNTS``."""
assert TOKEN_COUNTS[-len(_COUNTS_WRITTEN_WHEN_SET) :] == _COUNTS_WRITTEN_WHEN_SET

_CanonicalUsage: Final = msgspec.defstruct(
    "_CanonicalUsage",
    [(name, int, 0) if name in _COUNTS_WRITTEN_WHEN_SET else (name, int) for name in TOKEN_COUNTS],
    omit_defaults=True,
)


class _CanonicalEvent(msgspec.Struct, omit_defaults=True):
    """The fields of the canonical JSON; the optional ones are left out when unset."""

    event_id: uuid.UUID
    model: str
    occurred_at: datetime
    service_tier: str
    tenant_id: str
    usage: Any
    deployment: str | None = None
    region: str | None = None
    request_id: str | None = None
    attributes: dict[str, str] | None = None


_encode_sorted: Final = msgspec.json.Encoder(order="sorted").encode


def event_to_json(event: UsageEvent) -> bytes:
    """The canonical v1 JSON of an event: sorted keys, UTC with ``Z``, every usage count,
    optional fields only when set. ``parse_event`` reads it back to an equal event, and its
    SHA-256 is the event's fingerprint. The one writer of v1 JSON: the producer sends it.

    The bytes are those of ``orjson.dumps(..., option=OPT_SORT_KEYS | OPT_UTC_Z)`` of the
    same document (how the ledger's fingerprints were made; tests/unit/test_events.py holds
    them to it); msgspec writes them from a struct, without building dicts. Counts in
    ``_COUNTS_WRITTEN_WHEN_SET`` are written only when not 0."""
    return _encode_sorted(
        _CanonicalEvent(
            event.event_id,
            event.model,
            event.occurred_at,
            event.service_tier,
            event.tenant_id,
            _CanonicalUsage(*counts_of(event.usage)),
            event.deployment,
            event.region,
            event.request_id,
            dict(event.attributes) if event.attributes else None,
        )
    )
