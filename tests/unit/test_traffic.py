import re
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import orjson
import pytest

from metering.billing.tokens import TOKEN_COUNTS
from metering.tools.traffic import (
    DEMO_MODELS,
    TrafficMessage,
    TrafficPlan,
    TrafficSpec,
    UsageTotals,
    demo_tenants,
    generate,
    period_span,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SPEC = TrafficSpec(
    events=20_000,
    tenants=40,
    models=len(DEMO_MODELS),
    duplicates=0.05,
    invalid=0.04,
    late=0.10,
    seed=42,
    now=NOW,
)
MODEL_IDS = {model.model_id for model in DEMO_MODELS}
REASONING_MODEL_IDS = {model.model_id for model in DEMO_MODELS if model.reasoning}
UUID_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TENANT_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@pytest.fixture(scope="module")
def run() -> tuple[list[TrafficMessage], TrafficPlan]:
    plan = TrafficPlan(SPEC)
    return list(plan.messages()), plan


def accepted_events(messages: list[TrafficMessage]) -> dict[str, dict]:
    """The unique valid and late events by event_id, as a consumer would decode them."""
    events = (orjson.loads(m.value) for m in messages if m.kind in ("valid", "late"))
    return {event["event_id"]: event for event in events}


def schema_violations(raw: bytes) -> list[str]:
    """What is wrong with a message under event schema v1 and the demo model catalog."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ["not JSON"]
    problems = [f"missing {name}" for name in ("event_id", "tenant_id", "model", "occurred_at")]
    problems = [p for p in problems if p.removeprefix("missing ") not in event]
    if "usage" not in event:
        return [*problems, "missing usage"]
    if not UUID_SHAPE.fullmatch(event.get("event_id", "")):
        problems.append("bad event_id")
    if not TENANT_SHAPE.fullmatch(event.get("tenant_id", "")):
        problems.append("bad tenant_id")
    if event.get("model") not in MODEL_IDS:
        problems.append("unknown model")
    usage = event["usage"]
    if any(count < 0 for count in usage.values()):
        problems.append("negative tokens")
    if usage["cached_input_tokens"] + usage["cache_write_tokens"] > usage["input_tokens"]:
        problems.append("cached exceeds input")
    if usage["reasoning_tokens"] > usage["output_tokens"]:
        problems.append("reasoning exceeds output")
    return problems


def test_the_same_seed_gives_the_same_bytes():
    assert list(generate(SPEC)) == list(generate(SPEC))


def test_another_seed_gives_other_traffic():
    assert list(islice(generate(SPEC), 50)) != list(islice(generate(replace(SPEC, seed=43)), 50))


def test_a_plan_replays_the_same_run_each_time(run):
    messages, plan = run
    assert list(plan.messages()) == messages


@pytest.mark.parametrize("events", [0, 1, 7, 999, 2_500])
def test_a_run_has_exactly_the_requested_number_of_messages(events):
    spec = replace(SPEC, events=events, duplicates=0.0 if events < 2 else SPEC.duplicates)
    assert sum(1 for _ in generate(spec)) == events


@pytest.mark.parametrize(
    ("events", "fractions"),
    [(3, (0.0, 0.5, 0.5)), (7, (0.1, 0.2, 0.3)), (1_001, (0.25, 0.25, 0.25)), (10, (0, 0, 0))],
)
def test_kind_counts_are_within_one_of_their_fraction_and_add_up(events, fractions):
    duplicates, invalid, late = fractions
    spec = replace(SPEC, events=events, duplicates=duplicates, invalid=invalid, late=late)
    counts = spec.counts()
    assert sum(counts.values()) == events
    for kind, fraction in zip(("duplicate", "invalid", "late"), fractions, strict=True):
        assert abs(counts[kind] - events * fraction) <= 1
    assert Counter(m.kind for m in generate(spec)) == {k: n for k, n in counts.items() if n}


def test_each_kind_comes_in_its_requested_fraction(run):
    messages, _ = run
    kinds = Counter(m.kind for m in messages)
    assert kinds == {"valid": 16_200, "duplicate": 1_000, "invalid": 800, "late": 2_000}


def test_kinds_are_mixed_through_the_run_rather_than_bunched(run):
    messages, _ = run
    first_half = Counter(m.kind for m in messages[: len(messages) // 2])
    for kind in ("duplicate", "invalid", "late"):
        assert 0.4 < first_half[kind] / sum(m.kind == kind for m in messages) < 0.6


def test_expected_totals_are_the_sums_of_the_unique_accepted_events(run):
    messages, plan = run
    recomputed: dict[tuple[str, str], Counter[str]] = {}
    for event in accepted_events(messages).values():
        sums = recomputed.setdefault((event["tenant_id"], event["model"]), Counter())
        sums["events"] += 1
        sums.update(event["usage"])
    assert plan.expected.usage == {
        key: UsageTotals(**{**dict.fromkeys(TOKEN_COUNTS, 0), **sums})
        for key, sums in recomputed.items()
    }
    assert plan.expected.messages == Counter(m.kind for m in messages)


def test_every_accepted_event_has_its_own_event_id(run):
    messages, _ = run
    accepted = [m for m in messages if m.kind in ("valid", "late")]
    assert len(accepted_events(messages)) == len(accepted)


def test_expected_totals_are_unknown_until_the_run_is_consumed():
    plan = TrafficPlan(SPEC)
    next(plan.messages())
    with pytest.raises(RuntimeError):
        _ = plan.expected


def test_a_duplicate_resends_an_earlier_valid_message_byte_for_byte(run):
    messages, _ = run
    seen_valid: set[tuple[bytes, bytes]] = set()
    for message in messages:
        if message.kind == "duplicate":
            assert (message.key, message.value) in seen_valid
        elif message.kind == "valid":
            seen_valid.add((message.key, message.value))


def test_every_invalid_message_violates_the_schema_in_one_of_the_planned_ways(run):
    messages, _ = run
    first_problems = {
        (schema_violations(m.value) or ["nothing wrong"])[0]
        for m in messages
        if m.kind == "invalid"
    }
    assert first_problems == {
        "not JSON",
        "negative tokens",
        "cached exceeds input",
        "unknown model",
        "missing usage",
        "bad event_id",
    }


def test_valid_late_and_duplicate_messages_satisfy_the_schema(run):
    messages, _ = run
    assert all(not schema_violations(m.value) for m in messages if m.kind != "invalid")


def test_messages_are_keyed_by_their_tenant(run):
    messages, _ = run
    for message in messages:
        if message.kind != "invalid":
            assert orjson.loads(message.value)["tenant_id"].encode() == message.key


def test_valid_events_occurred_within_the_hour_before_now(run):
    messages, _ = run
    for event in (orjson.loads(m.value) for m in messages if m.kind == "valid"):
        age = NOW - datetime.fromisoformat(event["occurred_at"])
        assert timedelta(0) < age <= timedelta(hours=1)


def test_late_events_occurred_one_to_seventy_two_hours_before_now(run):
    messages, _ = run
    for event in (orjson.loads(m.value) for m in messages if m.kind == "late"):
        age = NOW - datetime.fromisoformat(event["occurred_at"])
        assert timedelta(hours=1) <= age <= timedelta(hours=72)


def occurred(spec: TrafficSpec) -> dict[str, list[datetime]]:
    """When the valid and the late events of ``spec`` occurred."""
    times: dict[str, list[datetime]] = {"valid": [], "late": []}
    for message in generate(spec):
        if message.kind in times:
            times[message.kind].append(
                datetime.fromisoformat(orjson.loads(message.value)["occurred_at"])
            )
    return times


def test_with_a_time_span_every_event_occurred_within_it_spread_over_all_of_it():
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    times = occurred(replace(SPEC, events=5_000, now=end, occurred_from=start))
    assert all(start <= t < end for t in times["valid"] + times["late"])
    assert min(times["valid"]) < start + timedelta(days=2)  # not only the last hour
    assert max(times["valid"]) > end - timedelta(days=2)
    assert all(end - timedelta(hours=72) <= t <= end - timedelta(hours=1) for t in times["late"])


def test_late_events_never_occur_before_a_time_span_shorter_than_their_age():
    start, end = NOW - timedelta(hours=5), NOW
    times = occurred(replace(SPEC, events=2_000, occurred_from=start))
    assert times["late"]
    assert all(start <= t <= end - timedelta(hours=1) for t in times["late"])


def test_a_past_month_is_cut_to_what_the_backdating_window_accepts():
    nov, dec = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    on_the_first = datetime(2026, 12, 1, 8, 52, tzinfo=UTC)
    assert period_span(nov, dec, on_the_first, timedelta(days=35)) == (nov, dec)
    late_in_december = datetime(2026, 12, 20, tzinfo=UTC)
    assert period_span(nov, dec, late_in_december, timedelta(days=35)) == (
        datetime(2026, 11, 15, 1, tzinfo=UTC),  # 35 days back, plus an hour to arrive in
        dec,
    )


def test_the_current_month_ends_now():
    dec, jan = datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    now = datetime(2026, 12, 10, tzinfo=UTC)
    assert period_span(dec, jan, now, timedelta(days=35)) == (dec, now)


@pytest.mark.parametrize(
    "start, end",
    [
        (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),  # too old
        (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),  # the future
    ],
)
def test_a_month_that_ingest_would_refuse_entirely_is_refused(start, end):
    with pytest.raises(ValueError, match="METERING_BACKDATING_DAYS"):
        period_span(start, end, datetime(2026, 12, 1, 9, tzinfo=UTC), timedelta(days=35))


def test_timestamps_are_rfc3339_in_utc_with_a_z(run):
    messages, _ = run
    event = orjson.loads(messages[0].value)
    assert event["occurred_at"].endswith("Z")


def test_a_few_tenants_send_most_of_the_traffic(run):
    _, plan = run
    per_tenant = Counter[str]()
    for (tenant, _model), totals in plan.expected.usage.items():
        per_tenant[tenant] += totals.events
    top_tenth = sum(count for _, count in per_tenant.most_common(SPEC.tenants // 10))
    assert top_tenth > 0.5 * per_tenant.total()


def test_only_reasoning_models_report_reasoning_tokens(run):
    _, plan = run
    for (_tenant, model), totals in plan.expected.usage.items():
        assert (totals.reasoning_tokens > 0) == (model in REASONING_MODEL_IDS)


def test_token_counts_stay_within_plausible_bounds(run):
    messages, _ = run
    events = accepted_events(messages).values()
    assert all(50 <= e["usage"]["input_tokens"] <= 200_000 for e in events)
    assert all(1 <= e["usage"]["output_tokens"] <= 8_192 for e in events)
    assert any(e["usage"]["cached_input_tokens"] for e in events)
    assert any(e["usage"]["cache_write_tokens"] for e in events)


def test_most_events_are_standard_tier_some_batch_and_a_few_priority(run):
    messages, _ = run
    tiers = Counter(e["service_tier"] for e in accepted_events(messages).values())
    assert tiers["standard"] > tiers["batch"] > tiers["priority"] > 0


def test_messages_are_generated_lazily():
    huge = replace(SPEC, events=10**9)
    assert len(list(islice(generate(huge), 10))) == 10


def test_given_tenant_and_model_ids_are_the_only_ones_used():
    spec = replace(SPEC, events=500, tenant_ids=["t-1", "t-2"], model_ids=["grok-4", "my-model"])
    plan = TrafficPlan(spec)
    for _ in plan.messages():
        pass
    assert {key for key in plan.expected.usage} == {
        (tenant, model) for tenant in ("t-1", "t-2") for model in ("grok-4", "my-model")
    }


def test_demo_tenants_are_readable_names_then_numbered_ids():
    tenants = demo_tenants(40)
    assert tenants[:3] == ["acme-corp", "globex", "initech"]
    assert tenants[-1] == "tenant-0040"
    assert len(set(tenants)) == 40
    assert all(TENANT_SHAPE.fullmatch(tenant) for tenant in tenants)
    assert demo_tenants(40) == tenants


def test_event_ids_are_time_ordered_uuids_stamped_with_when_the_event_occurred(run):
    messages, _ = run
    event = orjson.loads(messages[0].value)
    event_id = uuid.UUID(event["event_id"])
    assert event_id.version == 7
    occurred_at = datetime.fromisoformat(event["occurred_at"])
    assert event_id.int >> 80 == (occurred_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


def test_event_ids_can_be_random_as_a_caller_minting_its_own_sends_them():
    spec = TrafficSpec(
        events=50, tenants=2, models=2, duplicates=0, invalid=0, late=0, seed=1,
        now=datetime(2026, 11, 3, tzinfo=UTC), random_ids=True,
    )  # fmt: skip
    ids = [uuid.UUID(orjson.loads(m.value)["event_id"]) for m in TrafficPlan(spec).messages()]
    assert {event_id.version for event_id in ids} == {4}


@pytest.mark.parametrize(
    "change",
    [
        {"duplicates": 0.5, "invalid": 0.3, "late": 0.3},
        {"late": -0.1},
        {"now": datetime(2025, 6, 1, 12)},
        {"models": 0},
        {"tenants": 0},
        {"duplicates": 0.5, "invalid": 0.5, "late": 0.0},
        {"occurred_from": NOW},
        {"occurred_from": datetime(2025, 6, 1, 11)},
        {"occurred_from": NOW - timedelta(minutes=30)},  # no room for late events
    ],
)
def test_an_impossible_spec_is_refused(change):
    with pytest.raises(ValueError):
        replace(SPEC, **change)
