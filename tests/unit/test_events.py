"""Schema v1 of usage events: what is accepted, how it is normalised, and why it is rejected."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from metering.billing.event_checks import explained
from metering.billing.event_decoder import parse_event, parse_events
from metering.billing.events import (
    REASONS,
    Catalog,
    Reason,
    Rejection,
    UsageEvent,
    ValidationPolicy,
    event_to_json,
)
from metering.billing.tokens import Usage

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
EVENT_ID = "0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f"
CATALOG = Catalog(tenants=frozenset({"acme", "globex"}), models=frozenset({"grok-3", "grok-4"}))
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
DEFAULT_POLICY = ValidationPolicy()
OMIT = object()


def message(counts: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid minimal message: `counts` are added to its usage, other keyword arguments
    replace fields, and OMIT removes them."""
    document: dict[str, Any] = {
        "event_id": EVENT_ID,
        "tenant_id": "acme",
        "model": "grok-3",
        "occurred_at": "2026-11-25T10:00:00Z",
        "usage": {"input_tokens": 1000, "output_tokens": 200, **(counts or {})},
    }
    document.update(fields)
    return {name: value for name, value in document.items() if value is not OMIT}


def parse(
    document: dict[str, Any] | bytes,
    *,
    catalog: Catalog = CATALOG,
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> UsageEvent | Rejection:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    return parse_event(raw, catalog=catalog, now=NOW, policy=policy)


def accepted(document: dict[str, Any] | bytes, **kwargs: Any) -> UsageEvent:
    result = parse(document, **kwargs)
    assert isinstance(result, UsageEvent), result
    return result


def rejected(document: dict[str, Any] | bytes, reason: str, **kwargs: Any) -> Rejection:
    result = parse(document, **kwargs)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    return result


# --- accepted events ----------------------------------------------------------------------


def test_a_minimal_event_is_accepted_with_the_defaults_filled_in() -> None:
    event = accepted(message())

    assert event.event_id == uuid.UUID(EVENT_ID)
    assert event.tenant_id == "acme"
    assert event.model == "grok-3"
    assert event.occurred_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert event.usage == Usage(input_tokens=1000, output_tokens=200)
    assert event.usage.cached_input_tokens == 0
    assert event.usage.cache_write_tokens == 0
    assert event.usage.reasoning_tokens == 0
    assert event.service_tier == "standard"
    assert (event.request_id, event.deployment, event.region) == (None, None, None)
    assert dict(event.attributes) == {}


def test_every_optional_field_is_kept_as_sent() -> None:
    event = accepted(
        message(
            counts={"cached_input_tokens": 600, "cache_write_tokens": 100, "reasoning_tokens": 50},
            request_id="req-1",
            deployment="grok-3-eu-blue",
            region="eu-west-1",
            service_tier="priority",
            attributes={"project": "search", "team": "ranking"},
        )
    )

    assert event.usage == Usage(1000, 200, 600, cache_write_tokens=100, reasoning_tokens=50)
    assert event.request_id == "req-1"
    assert event.deployment == "grok-3-eu-blue"
    assert event.region == "eu-west-1"
    assert event.service_tier == "priority"
    assert dict(event.attributes) == {"project": "search", "team": "ranking"}


@pytest.mark.parametrize("tier", ["standard", "batch", "priority"])
def test_each_service_tier_is_accepted(tier: str) -> None:
    assert accepted(message(service_tier=tier)).service_tier == tier


def test_a_timestamp_with_an_offset_is_normalised_to_utc() -> None:
    event = accepted(message(occurred_at="2026-11-25T12:15:00+02:00"))

    assert event.occurred_at == datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


def test_a_lower_case_t_and_z_are_accepted_as_rfc_3339_allows() -> None:
    event = accepted(message(occurred_at="2026-11-25t10:00:00z"))

    assert event.occurred_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_nanosecond_timestamps_are_accepted_and_kept_to_the_microsecond() -> None:
    event = accepted(message(occurred_at="2026-11-25T10:00:00.123456789Z"))

    assert event.occurred_at == datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)


def test_hour_is_the_utc_hour_the_event_falls_in() -> None:
    event = accepted(message(occurred_at="2026-11-25T15:59:59.999+05:30"))

    assert event.hour == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_an_upper_case_event_id_is_read_as_the_same_uuid() -> None:
    event = accepted(message(event_id=EVENT_ID.upper()))

    assert event.event_id == uuid.UUID(EVENT_ID)


def test_unknown_top_level_fields_are_ignored() -> None:
    with_extra = accepted(message(schema_version=2, billing_hint={"plan": "pro"}))

    assert with_extra == accepted(message())
    assert with_extra.fingerprint == accepted(message()).fingerprint


def test_unknown_usage_fields_are_ignored() -> None:
    event = accepted(message(counts={"audio_tokens": 40}))

    assert event.usage == Usage(input_tokens=1000, output_tokens=200)


def test_null_optional_fields_mean_the_same_as_leaving_them_out() -> None:
    with_nulls = accepted(
        message(
            counts={"cached_input_tokens": None, "reasoning_tokens": None},
            request_id=None,
            service_tier=None,
            attributes=None,
        )
    )

    assert with_nulls == accepted(message())


def test_the_attributes_of_an_event_cannot_be_changed() -> None:
    event = accepted(message(attributes={"project": "search"}))

    with pytest.raises(TypeError):
        event.attributes["project"] = "ads"  # type: ignore[index]


def test_a_tenant_id_of_exactly_64_characters_is_accepted() -> None:
    tenant = "t" * 64
    catalog = Catalog(tenants=frozenset({tenant}), models=CATALOG.models)

    assert accepted(message(tenant_id=tenant), catalog=catalog).tenant_id == tenant


def test_a_tenant_id_may_use_dots_underscores_and_dashes() -> None:
    tenant = "Acme-EU_2.prod"
    catalog = Catalog(tenants=frozenset({tenant}), models=CATALOG.models)

    assert accepted(message(tenant_id=tenant), catalog=catalog).tenant_id == tenant


def test_an_event_exactly_at_the_clock_skew_limit_is_accepted() -> None:
    at_limit = NOW + ValidationPolicy().clock_skew

    event = accepted(message(occurred_at=at_limit.isoformat()))

    assert event.occurred_at == at_limit


def test_an_event_exactly_at_the_backdating_limit_is_accepted() -> None:
    at_limit = NOW - ValidationPolicy().backdating_window

    event = accepted(message(occurred_at=at_limit.isoformat()))

    assert event.occurred_at == at_limit


def test_token_counts_exactly_at_the_cap_are_accepted() -> None:
    cap = ValidationPolicy().max_tokens_per_event

    event = accepted(message(counts={"input_tokens": cap, "output_tokens": cap}))

    assert event.usage.input_tokens == event.usage.output_tokens == cap


def test_cached_and_cache_write_tokens_may_together_equal_the_input() -> None:
    event = accepted(message(counts={"cached_input_tokens": 700, "cache_write_tokens": 300}))

    assert event.usage.cached_input_tokens + event.usage.cache_write_tokens == 1000


def test_reasoning_tokens_may_equal_the_output() -> None:
    assert accepted(message(counts={"reasoning_tokens": 200})).usage.reasoning_tokens == 200


def test_zero_tokens_are_accepted() -> None:
    event = accepted(message(counts={"input_tokens": 0, "output_tokens": 0}))

    assert event.usage == Usage(input_tokens=0, output_tokens=0)


def test_a_message_exactly_at_the_size_limit_is_accepted() -> None:
    raw = orjson.dumps(message())

    assert isinstance(parse(raw, policy=ValidationPolicy(max_message_bytes=len(raw))), UsageEvent)


# --- fingerprints -------------------------------------------------------------------------


def test_the_fingerprint_is_a_sha256_digest() -> None:
    assert len(accepted(message()).fingerprint) == 32


def test_the_fingerprint_does_not_depend_on_key_order() -> None:
    document = message(counts={"cached_input_tokens": 10}, attributes={"a": "1", "b": "2"})
    reordered = {name: document[name] for name in reversed(list(document))}
    reordered["usage"] = dict(reversed(list(document["usage"].items())))
    reordered["attributes"] = {"b": "2", "a": "1"}

    assert accepted(reordered).fingerprint == accepted(document).fingerprint


@pytest.mark.parametrize(
    "same_instant",
    ["2026-11-25T10:00:00+00:00", "2026-11-25T12:00:00+02:00", "2026-11-25T05:00:00.000-05:00"],
)
def test_the_fingerprint_does_not_depend_on_how_the_instant_is_written(same_instant: str) -> None:
    assert (
        accepted(message(occurred_at=same_instant)).fingerprint
        == accepted(message(occurred_at="2026-11-25T10:00:00Z")).fingerprint
    )


def test_the_fingerprint_does_not_depend_on_defaults_being_written_out() -> None:
    explicit = message(
        counts={"cached_input_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0},
        service_tier="standard",
        attributes={},
    )

    assert accepted(explicit).fingerprint == accepted(message()).fingerprint


def test_the_fingerprint_does_not_depend_on_the_case_of_the_event_id() -> None:
    assert (
        accepted(message(event_id=EVENT_ID.upper())).fingerprint == accepted(message()).fingerprint
    )


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": "0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e40"},
        {"tenant_id": "globex"},
        {"model": "grok-4"},
        {"occurred_at": "2026-11-25T10:00:00.000001Z"},
        {"usage": {"input_tokens": 1001, "output_tokens": 200}},
        {"usage": {"input_tokens": 1000, "output_tokens": 201}},
        {"usage": {"input_tokens": 1000, "output_tokens": 200, "cached_input_tokens": 1}},
        {"usage": {"input_tokens": 1000, "output_tokens": 200, "cache_write_tokens": 1}},
        {"usage": {"input_tokens": 1000, "output_tokens": 200, "reasoning_tokens": 1}},
        {"service_tier": "batch"},
        {"request_id": "req-1"},
        {"request_id": ""},
        {"deployment": "blue"},
        {"region": "eu-west-1"},
        {"attributes": {"project": "search"}},
        {"attributes": {"project": ""}},
    ],
    ids=lambda change: orjson.dumps(change).decode(),
)
def test_any_difference_in_a_field_gives_a_different_fingerprint(change: dict[str, Any]) -> None:
    assert accepted({**message(), **change}).fingerprint != accepted(message()).fingerprint


def test_the_fingerprint_tells_moved_usage_apart() -> None:
    cached = message(counts={"cached_input_tokens": 100})
    written = message(counts={"cache_write_tokens": 100})

    assert accepted(cached).fingerprint != accepted(written).fingerprint


# --- canonical JSON -----------------------------------------------------------------------


def test_event_to_json_round_trips_through_parse_event() -> None:
    event = accepted(
        message(
            occurred_at="2026-11-25T11:29:30.25+01:00",
            counts={"cached_input_tokens": 600, "cache_write_tokens": 100, "reasoning_tokens": 50},
            request_id="req-1",
            deployment="blue",
            region="eu-west-1",
            service_tier="batch",
            attributes={"project": "search"},
        )
    )

    again = accepted(event_to_json(event))

    assert again == event
    assert again.fingerprint == event.fingerprint


def test_event_to_json_writes_sorted_keys_utc_with_z_and_every_usage_count() -> None:
    event = accepted(message(occurred_at="2026-11-25T12:00:00+02:00", region="eu-west-1"))

    assert event_to_json(event) == (
        b'{"event_id":"0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f","model":"grok-3",'
        b'"occurred_at":"2026-11-25T10:00:00Z","region":"eu-west-1","service_tier":"standard",'
        b'"tenant_id":"acme","usage":{"cache_write_tokens":0,"cached_input_tokens":0,'
        b'"input_tokens":1000,"output_tokens":200,"reasoning_tokens":0}}'
    )


def test_an_event_built_in_code_matches_the_same_event_parsed_from_json() -> None:
    built = UsageEvent(
        event_id=uuid.UUID(EVENT_ID),
        tenant_id="acme",
        model="grok-3",
        occurred_at=datetime(2026, 11, 25, 11, 0, tzinfo=UTC) + timedelta(hours=-1),
        usage=Usage(input_tokens=1000, output_tokens=200),
    )

    assert built == accepted(message())
    assert built.fingerprint == accepted(message()).fingerprint


def test_an_event_built_with_an_offset_is_normalised_to_utc() -> None:
    plus_two = datetime.fromisoformat("2026-11-25T12:00:00+02:00")

    event = UsageEvent(uuid.UUID(EVENT_ID), "acme", "grok-3", plus_two, Usage(1000, 200))

    assert event.occurred_at.tzinfo is UTC
    assert event.fingerprint == accepted(message()).fingerprint


def test_an_event_cannot_be_built_with_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UsageEvent(uuid.UUID(EVENT_ID), "acme", "grok-3", datetime(2026, 11, 25), Usage(1, 1))


def test_an_event_built_from_a_dict_of_attributes_does_not_follow_later_changes_to_it() -> None:
    attributes = {"project": "search"}
    event = UsageEvent(
        uuid.UUID(EVENT_ID), "acme", "grok-3", NOW, Usage(1, 1), attributes=attributes
    )

    attributes["project"] = "ads"

    assert event.attributes["project"] == "search"


def test_equal_events_hash_alike() -> None:
    assert len({accepted(message(attributes={"a": "1"})) for _ in range(3)}) == 1


# --- rejections ---------------------------------------------------------------------------


def test_reasons_are_listed_once_each_as_plain_strings() -> None:
    assert len(REASONS) == len(set(REASONS)) == len(Reason)
    assert all(type(reason) is str for reason in REASONS)
    assert "cached_exceeds_input" in REASONS


def test_a_rejection_serialises_with_its_reason_as_a_plain_string() -> None:
    rejection = rejected(message(tenant_id="nobody"), Reason.UNKNOWN_TENANT)

    assert orjson.loads(orjson.dumps({"reason": rejection.reason})) == {"reason": "unknown_tenant"}


def test_an_oversized_message_is_rejected_before_it_is_decoded() -> None:
    raw = b"\xff" * 70_000

    rejection = rejected(raw, Reason.OVERSIZED)

    assert "70000 bytes" in rejection.detail
    assert "65536" in rejection.detail


def test_the_size_limit_comes_from_the_policy() -> None:
    raw = orjson.dumps(message())

    rejected(raw, Reason.OVERSIZED, policy=ValidationPolicy(max_message_bytes=len(raw) - 1))


@pytest.mark.parametrize("raw", [b"", b"{", b"hello", b'{"event_id": NaN}', b"{'a': 1}"])
def test_bytes_that_are_not_json_are_rejected(raw: bytes) -> None:
    rejected(raw, Reason.NOT_JSON)


def test_json_that_is_not_utf_8_is_rejected_as_not_json() -> None:
    raw = orjson.dumps(message(region="Zürich")).replace("ü".encode(), "ü".encode("latin-1"))

    rejected(raw, Reason.NOT_JSON)


@pytest.mark.parametrize(
    ("raw", "json_type"),
    [(b"[1, 2]", "array"), (b'"event"', "string"), (b"42", "integer"), (b"null", "null")],
)
def test_json_that_is_not_an_object_is_rejected(raw: bytes, json_type: str) -> None:
    rejection = rejected(raw, Reason.NOT_AN_OBJECT)

    assert json_type in rejection.detail


@pytest.mark.parametrize("name", ["event_id", "tenant_id", "model", "occurred_at", "usage"])
def test_each_required_field_is_required(name: str) -> None:
    document = message()
    del document[name]

    rejection = rejected(document, Reason.MISSING_FIELD)

    assert rejection.detail == f"required field missing or null: {name}"


def test_all_missing_fields_are_named_at_once() -> None:
    rejection = rejected(message(model=OMIT, usage=OMIT), Reason.MISSING_FIELD)

    assert rejection.detail == "required field missing or null: model, usage"


def test_a_required_field_set_to_null_counts_as_missing() -> None:
    rejection = rejected(message(occurred_at=None), Reason.MISSING_FIELD)

    assert "occurred_at" in rejection.detail


@pytest.mark.parametrize("name", ["input_tokens", "output_tokens"])
def test_input_and_output_tokens_are_required(name: str) -> None:
    document = message()
    del document["usage"][name]

    rejection = rejected(document, Reason.MISSING_FIELD)

    assert f"usage.{name}" in rejection.detail


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"event_id": 42}, "event_id must be a string, got integer 42"),
        ({"tenant_id": ["acme"]}, 'tenant_id must be a string, got array ["acme"]'),
        ({"model": {"id": "grok-3"}}, "model must be a string, got object"),
        ({"occurred_at": 1764064800}, "occurred_at must be a string, got integer 1764064800"),
        ({"usage": [1000, 200]}, "usage must be an object, got array [1000,200]"),
        ({"service_tier": 1}, "service_tier must be a string, got integer 1"),
        ({"request_id": 123}, "request_id must be a string, got integer 123"),
        ({"deployment": True}, "deployment must be a string, got boolean true"),
        ({"region": 1.5}, "region must be a string, got number 1.5"),
        ({"attributes": ["a"]}, 'attributes must be an object, got array ["a"]'),
    ],
)
def test_a_field_of_the_wrong_json_type_is_rejected_naming_field_and_value(
    change: dict[str, Any], detail: str
) -> None:
    rejection = rejected(message(**change), Reason.WRONG_TYPE)

    assert rejection.detail.startswith(detail)


def test_a_record_without_a_value_is_rejected_as_a_null_value() -> None:
    result = parse_event(None, catalog=CATALOG, now=NOW)
    assert isinstance(result, Rejection)
    assert result.reason == "null_value"
    assert "tombstone" in result.detail


NUL = "\u0000"


@pytest.mark.parametrize(
    "fields",
    [
        {"event_id": EVENT_ID[:-1] + NUL},
        {"tenant_id": "ac" + NUL + "me"},
        {"model": "grok-3" + NUL},
        {"occurred_at": "2026-11-25T10:00:00Z" + NUL},
        {"service_tier": "standard" + NUL},
        {"request_id": "req" + NUL},
        {"deployment": NUL},
        {"region": "eu" + NUL},
        {"attributes": {"team": "a" + NUL}},
        {"attributes": {"te" + NUL + "am": "a"}},
    ],
    ids=lambda fields: next(iter(fields)),
)
def test_text_with_a_nul_character_is_rejected_wherever_it_would_be_stored(
    fields: dict[str, Any],
) -> None:
    result = rejected(message(**fields), "nul_character")
    assert "NUL character" in result.detail
    assert NUL not in result.detail  # the detail itself is stored as text


def test_a_rejection_keeps_only_the_identifiers_that_can_be_stored() -> None:
    result = rejected(message(tenant_id="ac" + NUL, model="m" + NUL), "nul_character")
    assert (result.event_id, result.tenant_id, result.model) == (EVENT_ID, None, None)


@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_token_count_is_rejected_as_the_wrong_type(flag: bool) -> None:
    rejection = rejected(message(counts={"input_tokens": flag}), Reason.WRONG_TYPE)

    assert (
        rejection.detail
        == f"usage.input_tokens must be an integer, got boolean {str(flag).lower()}"
    )


def test_a_token_count_written_as_a_string_is_rejected_as_the_wrong_type() -> None:
    rejection = rejected(message(counts={"output_tokens": "200"}), Reason.WRONG_TYPE)

    assert rejection.detail == 'usage.output_tokens must be an integer, got string "200"'


@pytest.mark.parametrize(
    "event_id",
    [
        "not-a-uuid",
        "",
        "0b7e3f0c5a8e4c1e9d2a3f6b8c1d2e4f",
        "{0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f}",
        "urn:uuid:0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f",
        "0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4g",
        "0b7e3f0c-5a8e-4c1e-9d2a-3f6b_c1d2e4f",
        "0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f\n",
    ],
)
def test_an_event_id_that_is_not_a_canonical_uuid_is_rejected(event_id: str) -> None:
    rejection = rejected(message(event_id=event_id), Reason.INVALID_EVENT_ID)

    assert orjson.dumps(event_id).decode() in rejection.detail


@pytest.mark.parametrize("tenant_id", ["", "acme corp", "acme/eu", "acmé", "t" * 65])
def test_a_tenant_id_outside_the_allowed_characters_or_length_is_rejected(tenant_id: str) -> None:
    rejection = rejected(message(tenant_id=tenant_id), Reason.INVALID_TENANT_ID)

    assert f"({len(tenant_id)} characters)" in rejection.detail


@pytest.mark.parametrize("model", ["", "m" * 129])
def test_an_empty_or_overlong_model_is_rejected_as_invalid(model: str) -> None:
    rejection = rejected(message(model=model), Reason.INVALID_MODEL)

    assert f"({len(model)} characters)" in rejection.detail


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-25T10:00:00",
        "2026-11-25T10:00:00.5",
        "2026-11-25",
        "2026-11-25T10:00Z",
        "2026-11-25 10:00:00Z",
        "20261125T100000Z",
        "2026-11-25T10:00:00+0200",
        "2026-11-25T10:00:00+02",
        "yesterday",
    ],
)
def test_a_timestamp_that_is_not_rfc_3339_with_an_offset_is_rejected(occurred_at: str) -> None:
    rejection = rejected(message(occurred_at=occurred_at), Reason.INVALID_TIMESTAMP)

    assert orjson.dumps(occurred_at).decode() in rejection.detail
    assert "offset" in rejection.detail


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-02-30T10:00:00Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T23:59:60Z",
        "2026-11-25T10:00:00+24:00",
        "9999-12-31T23:00:00-02:00",
    ],
)
def test_a_timestamp_that_names_no_real_instant_is_rejected(occurred_at: str) -> None:
    rejection = rejected(message(occurred_at=occurred_at), Reason.INVALID_TIMESTAMP)

    assert "is not a valid time" in rejection.detail


@pytest.mark.parametrize("name", ["request_id", "deployment", "region"])
def test_an_optional_string_longer_than_256_characters_is_rejected(name: str) -> None:
    assert isinstance(parse({**message(), name: "x" * 256}), UsageEvent)

    rejection = rejected({**message(), name: "x" * 257}, Reason.FIELD_TOO_LONG)

    assert rejection.detail == f"{name} is 257 characters; at most 256 are allowed"


@pytest.mark.parametrize("name", TOKEN_FIELDS)
def test_a_negative_token_count_is_rejected(name: str) -> None:
    rejection = rejected(message(counts={name: -1}), Reason.NEGATIVE_TOKENS)

    assert rejection.detail == f"usage.{name} must not be negative, got -1"


@pytest.mark.parametrize(
    ("raw_count", "shown"), [(b"1000.0", "1000.0"), (b"1.5", "1.5"), (b"1e3", "1000.0")]
)
def test_a_token_count_that_is_not_a_json_integer_is_rejected(raw_count: bytes, shown: str) -> None:
    raw = orjson.dumps(message()).replace(b'"input_tokens":1000', b'"input_tokens":' + raw_count)

    rejection = rejected(raw, Reason.NON_INTEGER_TOKENS)

    assert rejection.detail == f"usage.input_tokens must be a JSON integer, got {shown}"


def test_cached_tokens_above_input_are_rejected_with_both_numbers_in_the_detail() -> None:
    rejection = rejected(
        message(counts={"input_tokens": 1000, "cached_input_tokens": 1500}),
        Reason.CACHED_EXCEEDS_INPUT,
    )

    assert rejection.detail == (
        "usage.cached_input_tokens (1500) + usage.cache_write_tokens (0)"
        " exceed usage.input_tokens (1000)"
    )


def test_cached_and_cache_write_tokens_together_above_input_are_rejected() -> None:
    rejection = rejected(
        message(counts={"cached_input_tokens": 700, "cache_write_tokens": 301}),
        Reason.CACHED_EXCEEDS_INPUT,
    )

    assert "(700)" in rejection.detail
    assert "(301)" in rejection.detail


def test_reasoning_tokens_above_output_are_rejected_with_both_numbers_in_the_detail() -> None:
    rejection = rejected(message(counts={"reasoning_tokens": 201}), Reason.REASONING_EXCEEDS_OUTPUT)

    assert rejection.detail == "usage.reasoning_tokens (201) exceed usage.output_tokens (200)"


@pytest.mark.parametrize("name", TOKEN_FIELDS)
def test_a_token_count_above_the_cap_is_rejected_as_implausible(name: str) -> None:
    policy = ValidationPolicy(max_tokens_per_event=5000)

    rejection = rejected(message(counts={name: 5001}), Reason.IMPLAUSIBLE_TOKENS, policy=policy)

    assert rejection.detail == f"usage.{name} (5001) is above the limit of 5000 tokens per event"


def test_an_integer_too_large_for_64_bits_is_rejected_as_not_an_integer() -> None:
    """orjson reads integers beyond 64 bits as floats; the event must still not pass."""
    raw = orjson.dumps(message()).replace(b'"input_tokens":1000', b'"input_tokens":' + b"9" * 30)

    rejected(raw, Reason.NON_INTEGER_TOKENS)


def test_an_event_beyond_the_clock_skew_is_rejected_as_in_the_future() -> None:
    too_late = NOW + ValidationPolicy().clock_skew + timedelta(microseconds=1)

    rejection = rejected(message(occurred_at=too_late.isoformat()), Reason.OCCURRED_IN_FUTURE)

    assert too_late.isoformat() in rejection.detail
    assert "0:05:00" in rejection.detail


def test_an_event_beyond_the_backdating_window_is_rejected_as_too_old() -> None:
    too_early = NOW - ValidationPolicy().backdating_window - timedelta(microseconds=1)

    rejection = rejected(message(occurred_at=too_early.isoformat()), Reason.OCCURRED_TOO_LONG_AGO)

    assert too_early.isoformat() in rejection.detail
    assert "35 days" in rejection.detail


def test_the_time_window_comes_from_the_policy() -> None:
    policy = ValidationPolicy(clock_skew=timedelta(0), backdating_window=timedelta(minutes=10))

    rejected(message(occurred_at="2026-11-25T10:30:01Z"), Reason.OCCURRED_IN_FUTURE, policy=policy)
    rejected(
        message(occurred_at="2026-11-25T10:19:59Z"), Reason.OCCURRED_TOO_LONG_AGO, policy=policy
    )
    accepted(message(occurred_at="2026-11-25T10:25:00Z"), policy=policy)


@pytest.mark.parametrize("tier", ["gold", "Standard", ""])
def test_an_unknown_service_tier_is_rejected(tier: str) -> None:
    rejection = rejected(message(service_tier=tier), Reason.INVALID_SERVICE_TIER)

    assert rejection.detail == (
        f"service_tier {orjson.dumps(tier).decode()} must be one of standard, batch, priority"
    )


def test_attributes_with_more_than_32_entries_are_rejected() -> None:
    assert isinstance(parse(message(attributes={f"k{i}": "v" for i in range(32)})), UsageEvent)

    rejection = rejected(
        message(attributes={f"k{i}": "v" for i in range(33)}), Reason.INVALID_ATTRIBUTES
    )

    assert rejection.detail == "attributes has 33 entries; at most 32 are allowed"


def test_an_attribute_key_longer_than_64_characters_is_rejected() -> None:
    assert isinstance(parse(message(attributes={"k" * 64: "v"})), UsageEvent)

    rejection = rejected(message(attributes={"k" * 65: "v"}), Reason.INVALID_ATTRIBUTES)

    assert "is 65 characters; at most 64 are allowed" in rejection.detail


def test_an_attribute_value_longer_than_256_characters_is_rejected() -> None:
    assert isinstance(parse(message(attributes={"k": "v" * 256})), UsageEvent)

    rejection = rejected(message(attributes={"k": "v" * 257}), Reason.INVALID_ATTRIBUTES)

    assert rejection.detail == 'attributes["k"] is 257 characters; at most 256 are allowed'


@pytest.mark.parametrize(
    ("value", "shown"), [(3, "integer 3"), (None, "null null"), (["a"], 'array ["a"]')]
)
def test_an_attribute_value_that_is_not_a_string_is_rejected(value: Any, shown: str) -> None:
    rejection = rejected(message(attributes={"k": value}), Reason.INVALID_ATTRIBUTES)

    assert rejection.detail == f'attributes["k"] must be a string, got {shown}'


def test_a_tenant_missing_from_the_catalog_is_rejected_as_unknown() -> None:
    rejection = rejected(message(tenant_id="initech"), Reason.UNKNOWN_TENANT)

    assert rejection.detail == 'tenant_id "initech" is not a tenant'


def test_a_model_missing_from_the_catalog_is_rejected_as_unknown() -> None:
    rejection = rejected(message(model="grok-9"), Reason.UNKNOWN_MODEL)

    assert rejection.detail == 'model "grok-9" is not in the model catalog'


def test_a_malformed_event_is_reported_as_malformed_even_for_an_unknown_tenant_and_model() -> None:
    document = message(tenant_id="initech", model="grok-9", counts={"input_tokens": -5})

    rejected(document, Reason.NEGATIVE_TOKENS)


def test_a_rejection_names_the_event_and_tenant_when_they_could_be_read() -> None:
    rejection = rejected(message(counts={"reasoning_tokens": 999}), Reason.REASONING_EXCEEDS_OUTPUT)

    assert rejection.event_id == EVENT_ID
    assert rejection.tenant_id == "acme"


def test_a_rejection_carries_the_ids_as_sent_even_when_they_are_invalid() -> None:
    rejection = rejected(message(event_id="42", tenant_id="acme corp"), Reason.INVALID_EVENT_ID)

    assert (rejection.event_id, rejection.tenant_id) == ("42", "acme corp")


def test_a_rejection_leaves_out_ids_that_are_not_strings() -> None:
    rejection = rejected(message(event_id=42, tenant_id=None), Reason.MISSING_FIELD)

    assert (rejection.event_id, rejection.tenant_id) == (None, None)


def test_a_rejection_before_decoding_names_no_event() -> None:
    rejection = rejected(b"not json", Reason.NOT_JSON)

    assert (rejection.event_id, rejection.tenant_id) == (None, None)


def test_a_long_value_is_cut_short_in_the_detail() -> None:
    rejection = rejected(message(tenant_id="x" * 10_000), Reason.INVALID_TENANT_ID)

    assert len(rejection.detail) < 200
    assert "(10000 characters)" in rejection.detail


# --- 1-hour cache writes ----------------------------------------------------------------------


def test_one_hour_cache_writes_are_read_as_a_part_of_the_cache_writes() -> None:
    event = accepted(message(counts={"cache_write_tokens": 800, "cache_write_1h_tokens": 300}))

    assert event.usage == Usage(1000, 200, cache_write_tokens=800, cache_write_1h_tokens=300)


def test_one_hour_cache_writes_above_the_cache_writes_are_rejected_with_both_numbers() -> None:
    rejection = rejected(
        message(counts={"cache_write_tokens": 300, "cache_write_1h_tokens": 301}),
        Reason.CACHE_WRITE_1H_EXCEEDS_CACHE_WRITE,
    )

    assert rejection.detail == (
        "usage.cache_write_1h_tokens (301) exceed usage.cache_write_tokens (300)"
    )


def test_an_event_stored_before_one_hour_cache_writes_keeps_its_fingerprint() -> None:
    # Computed by the code before cache_write_1h_tokens existed: the ledger holds this value
    # for this event, so a replay of it must stay a duplicate, not become a conflict.
    old = message(
        model="claude-sonnet-4",
        request_id="req-1",
        usage={
            "input_tokens": 12000,
            "output_tokens": 200,
            "cached_input_tokens": 1000,
            "cache_write_tokens": 10000,
            "reasoning_tokens": 50,
        },
    )
    catalog = Catalog(tenants=frozenset({"acme"}), models=frozenset({"claude-sonnet-4"}))
    stored = "fdba9656601fc64f1c03a6f7e46ce5c360036200f4c594eb910c657fdc3b68e9"

    assert accepted(old, catalog=catalog).fingerprint.hex() == stored
    written_as_zero = {**old, "usage": {**old["usage"], "cache_write_1h_tokens": 0}}
    assert accepted(written_as_zero, catalog=catalog).fingerprint.hex() == stored


def test_one_hour_cache_writes_are_in_the_canonical_json_and_the_fingerprint() -> None:
    hourly = accepted(message(counts={"cache_write_tokens": 100, "cache_write_1h_tokens": 100}))
    five_minute = accepted(message(counts={"cache_write_tokens": 100}))

    assert b'"cache_write_1h_tokens":100' in event_to_json(hourly)
    assert accepted(event_to_json(hourly)) == hourly
    assert hourly.fingerprint != five_minute.fingerprint


# --- the batch decoder ------------------------------------------------------------------------

FIELD_MUTATIONS: dict[str, list[Any]] = {
    "event_id": [
        EVENT_ID.upper(),
        "0b7e3f0c5a8e4c1e9d2a3f6b8c1d2e4f",
        "{0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f}",
        "0b7e3f0c-5a8e-4c1e-9d2a-3f6b_c1d2e4f",
        EVENT_ID + "\n",
        "0b7e3f0c5-a8e-4c1e-9d2a-3f6b8c1d2e4f",
        EVENT_ID[:-1] + NUL,
        "",
        42,
        None,
        ["x"],
    ],
    "tenant_id": [
        "globex",
        "t" * 64,
        "t" * 65,
        "acme corp",
        "acmé",
        "ac" + NUL,
        "",
        "initech",
        7,
        None,
    ],
    "model": ["grok-4", "m" * 129, "", "grok-3" + NUL, "grok-9", True, None],
    "occurred_at": [
        "2026-11-25T12:15:00+02:00",
        "2026-11-25t10:00:00z",
        "2026-11-25T10:00:00.123456789Z",
        "2026-11-25T10:00:00.9999995Z",
        "2026-11-25 10:00:00Z",
        "2026-11-25T10:00:00",
        "2026-11-25T10:00:00+0200",
        "2026-11-25T10:00:00,5Z",
        "2026-11-25T23:59:60Z",
        "2026-02-30T10:00:00Z",
        "9999-12-31T23:00:00-02:00",
        "2026-11-25T10:35:00Z",
        "2026-11-25T10:35:00.000001Z",
        "2026-10-21T10:30:00Z",
        "2026-10-21T10:29:59.999999Z",
        "2026-11-25T10:00:00Z" + NUL,
        1764064800,
        None,
    ],
    "service_tier": [
        "batch",
        "priority",
        "standard",
        "gold",
        "Standard",
        "",
        None,
        1,
        "batch" + NUL,
    ],
    "request_id": ["req-1", "", "x" * 256, "x" * 257, "r" + NUL, 'q"uote\\', 123, None],
    "deployment": ["blue", "x" * 257, NUL, "Zürich ✓", False, None],
    "region": ["eu-west-1", "x" * 256, "eu" + NUL, "\t\n", 1.5, None],
    "attributes": [
        {"project": "search"},
        {},
        None,
        ["a"],
        {"k": 3},
        {"k": None},
        {"k" * 64: "v"},
        {"k" * 65: "v"},
        {"k": "v" * 256},
        {"k": "v" * 257},
        {"team": "a" + NUL},
        {"te" + NUL + "am": "a"},
        {f"k{i}": "v" for i in range(32)},
        {f"k{i}": "v" for i in range(33)},
        {"b": "2", "a": "1", "ü": "ß"},
    ],
    "schema_version": [2, None],
}
COUNT_MUTATIONS: list[Any] = [
    0,
    1,
    150,
    5000,
    50_000_000,
    50_000_001,
    -1,
    1.0,
    1.5,
    True,
    "200",
    None,
    2**63,
    2**64,
    -(2**63) - 1,
]
COUNT_FIELDS = (*TOKEN_FIELDS, "cache_write_1h_tokens")
RAW_MUTATIONS: list[bytes | None] = [
    None,
    b"",
    b"{",
    b"[1, 2]",
    b"null",
    b'"event"',
    b"\xff" * 10,
    b"x" * 70_000,
    b'{"event_id": NaN}',
    b'{"a":"\\ud800"}',
]


def generated_messages(count: int, seed: int) -> list[bytes | None]:
    """Valid messages with up to four random changes each: values a producer might send,
    every limit and its neighbour, wrong types, nulls, NULs, and some bytes that are no
    event at all."""
    rng = random.Random(seed)
    messages: list[bytes | None] = []
    for _ in range(count):
        if rng.random() < 0.03:
            messages.append(rng.choice(RAW_MUTATIONS))
            continue
        document = message(
            counts={"cached_input_tokens": 100, "cache_write_tokens": 50, "reasoning_tokens": 20}
        )
        for _ in range(rng.randrange(5)):
            if rng.random() < 0.4:
                usage = document["usage"] if type(document.get("usage")) is dict else {}
                usage[rng.choice(COUNT_FIELDS)] = rng.choice(COUNT_MUTATIONS)
                if rng.random() < 0.1:
                    usage = rng.choice([None, [1], "usage", usage])
                document["usage"] = usage
            else:
                name = rng.choice(list(FIELD_MUTATIONS))
                document[name] = rng.choice(FIELD_MUTATIONS[name])
        document = {k: v for k, v in document.items() if v is not OMIT}
        if rng.random() < 0.1:
            del document[rng.choice(list(document))]
        # json, not orjson: it writes integers past 64 bits, and \u escapes if asked.
        messages.append(json.dumps(document, ensure_ascii=rng.random() < 0.5).encode())
    return messages


# A catalog that holds ids no event may carry (a table edited by hand, say).
ODD_CATALOG = Catalog(
    tenants=CATALOG.tenants | {"acme corp", "t" * 65, "ac" + NUL, "acmé"},
    models=CATALOG.models | {"grok-3" + NUL, "m" * 129, ""},
)


@pytest.mark.parametrize(
    ("policy", "catalog"),
    [
        (DEFAULT_POLICY, CATALOG),
        (ValidationPolicy(max_tokens_per_event=5000), CATALOG),
        (DEFAULT_POLICY, ODD_CATALOG),
    ],
)
def test_the_batch_decoder_gives_what_the_field_by_field_checks_give_for_any_message(
    policy: ValidationPolicy, catalog: Catalog
) -> None:
    raws = generated_messages(4000, seed=12)

    results = parse_events(raws, catalog=catalog, now=NOW, policy=policy)

    # The field-by-field checks on their own, which decide what every rejection says.
    expected = [explained(raw, catalog=catalog, now=NOW, policy=policy) for raw in raws]
    assert results == expected
    accepted_events = [
        (r, e) for r, e in zip(results, expected, strict=True) if isinstance(e, UsageEvent)
    ]
    assert all(r.fingerprint == e.fingerprint for r, e in accepted_events)  # type: ignore[union-attr]
    # The generated mix exercises both sides: plenty accepted, and many reasons of rejection.
    assert len(accepted_events) > 500
    assert len({e.reason for e in expected if isinstance(e, Rejection)}) >= 20


def test_a_batch_is_decoded_in_order_with_each_message_judged_on_its_own() -> None:
    good = orjson.dumps(message())
    unknown = orjson.dumps(message(tenant_id="initech"))

    results = parse_events([good, None, unknown, good], catalog=CATALOG, now=NOW)

    assert [type(r).__name__ for r in results] == [
        "UsageEvent",
        "Rejection",
        "Rejection",
        "UsageEvent",
    ]
    assert [r.reason for r in results if isinstance(r, Rejection)] == [
        "null_value",
        "unknown_tenant",
    ]


# --- fingerprints of stored events never change -------------------------------------------------


def fingerprinted_as_stored(event: UsageEvent) -> bytes:
    """How the fingerprints in the ledger were made: SHA-256 of ``orjson.dumps`` of the
    event as a dict, keys sorted, UTC written with Z, ``cache_write_1h_tokens`` only when
    it is not 0, optional fields only when set."""
    usage = event.usage
    counts = {name: getattr(usage, name) for name in TOKEN_FIELDS}
    if usage.cache_write_1h_tokens:
        counts["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
    document: dict[str, Any] = {
        "event_id": event.event_id,
        "tenant_id": event.tenant_id,
        "model": event.model,
        "occurred_at": event.occurred_at,
        "service_tier": event.service_tier,
        "usage": counts,
    }
    for name in ("request_id", "deployment", "region"):
        if getattr(event, name) is not None:
            document[name] = getattr(event, name)
    if event.attributes:
        document["attributes"] = dict(event.attributes)
    return hashlib.sha256(
        orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)
    ).digest()


TEXTS = [
    "",
    "a",
    "req-1",
    'q"u\\ote',
    "tab\there",
    "line\nbreak",
    "\x01\x1f\x7f",
    "Zürich ✓",
    "東京",
    "😀",
    "/",
    "x" * 256,
]


def generated_events(count: int, seed: int) -> list[UsageEvent]:
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        input_tokens = rng.choice([0, 1, 999, 200_000, 50_000_000])
        cache_write = rng.randint(0, input_tokens // 2)
        output_tokens = rng.choice([0, 7, 30_000])
        occurred_at = datetime(rng.choice([1, 999, 2026, 9999]), rng.randint(1, 12), 28, tzinfo=UTC)
        occurred_at += timedelta(
            seconds=rng.randrange(86_400), microseconds=rng.choice([0, 1, 500_000, 999_999])
        )
        if rng.random() < 0.3 and occurred_at.year < 9999:
            occurred_at = occurred_at.astimezone(timezone(timedelta(hours=rng.randint(-12, 12))))
        events.append(
            UsageEvent(
                event_id=uuid.UUID(int=rng.getrandbits(128)),
                tenant_id=rng.choice(["acme", "t" * 64, "Acme-EU_2.prod"]),
                model=rng.choice(["grok-3", "claude-sonnet-4", *TEXTS[1:]]),
                occurred_at=occurred_at,
                usage=Usage(
                    input_tokens,
                    output_tokens,
                    cached_input_tokens=rng.randint(0, input_tokens - cache_write),
                    cache_write_tokens=cache_write,
                    reasoning_tokens=rng.randint(0, output_tokens),
                    cache_write_1h_tokens=rng.choice([0, 0, cache_write]),
                ),
                service_tier=rng.choice(["standard", "batch", "priority"]),
                request_id=rng.choice([None, *TEXTS]),
                deployment=rng.choice([None, *TEXTS]),
                region=rng.choice([None, *TEXTS]),
                attributes=rng.choice(
                    [
                        {},
                        {"project": "search"},
                        {t: t for t in rng.sample(TEXTS, 4)},
                        {"b": "2", "a": "1"},
                    ]
                ),
            )
        )
    return events


def test_every_kind_of_event_keeps_the_fingerprint_the_ledger_stored_for_it() -> None:
    events = generated_events(5000, seed=7)

    assert [e.fingerprint for e in events] == [fingerprinted_as_stored(e) for e in events]
