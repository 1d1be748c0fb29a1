"""Ingest, end to end: what a producer sends is billed exactly once, or dead-lettered with
its reason, and the operator's commands tell the truth about it.

Everything runs against the real broker and database, with the worker as a real
`metering worker` process; events are sent with plain aiokafka.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka.structs import ConsumerRecord

from metering.billing.events import REASONS
from metering.config import Settings
from metering.services import KafkaBroker
from metering.services.scratch import scratch_database
from metering.services.worker import WorkerProcess
from metering.store import catalog
from tests.support.cli import metering
from tests.support.ingest import (
    USAGE_COLUMNS,
    Message,
    Sent,
    billed_hourly,
    encode,
    event,
    expected_by_tenant,
    expected_hourly,
    headers,
    ledger_rows_per_event,
    message,
    produce,
    progress,
    read_dead_letters,
    seed_catalog,
    wait_until_processed,
)
from tests.support.settings import isolated_settings

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
MODELS = ("grok-3", "grok-3-mini", "gpt-4.1")
TIERS = (None, "standard", "batch", "priority")  # None: left out, which means standard
HOURS_AGO = (1, 2, 3, 26, 24 * 7 + 5, 24 * 30)
INDIA = timezone(timedelta(hours=5, minutes=30))

StartWorker = Callable[..., WorkerProcess]


def varied_events(count: int, *, seed: int) -> list[dict[str, Any]]:
    """Events over several tenants, models, hours and service tiers, with every token class.

    A few hours are reused, so that each (tenant, model, hour) sums many events; some
    timestamps carry a +05:30 offset, so that they land in their UTC hour.
    """
    rng = random.Random(seed)
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = []
    for _ in range(count):
        occurred_at = this_hour - timedelta(hours=rng.choice(HOURS_AGO))
        occurred_at += timedelta(seconds=rng.randrange(3600), microseconds=rng.randrange(10**6))
        if rng.random() < 0.3:
            occurred_at = occurred_at.astimezone(INDIA)
        input_tokens = rng.randint(0, 200_000)
        cached = rng.randint(0, input_tokens // 2)
        cache_write = rng.randint(0, input_tokens - cached)
        output_tokens = rng.randint(0, 30_000)
        events.append(
            event(
                tenant_id=rng.choice(TENANTS),
                model=rng.choice(MODELS),
                occurred_at=occurred_at,
                service_tier=rng.choice(TIERS),
                input_tokens=input_tokens,
                cached_input_tokens=cached if rng.random() < 0.7 else None,
                cache_write_tokens=cache_write if rng.random() < 0.3 else None,
                output_tokens=output_tokens,
                reasoning_tokens=rng.randint(0, output_tokens) if rng.random() < 0.5 else None,
            )
        )
    return events


def seed_demo_catalog(settings: Settings) -> None:
    seed_catalog(settings, tenants=TENANTS, models=MODELS)


# --- billing -------------------------------------------------------------------------------


def test_every_event_sent_shows_up_in_the_hourly_report_with_exact_totals(
    settings: Settings, start_worker: StartWorker
) -> None:
    seed_demo_catalog(settings)
    events = varied_events(400, seed=1)
    produce(settings, [message(e) for e in events])

    worker = start_worker()
    done = wait_until_processed(settings, worker, len(events))

    assert done.accepted == len(events)
    expected = expected_hourly(events)
    assert len(expected) > 50  # many (tenant, model, hour) groups, each summing several events
    assert billed_hourly(settings) == expected


def test_one_worker_of_two_processes_shares_the_partitions_and_bills_every_event_once(
    settings: Settings, tmp_path: Path
) -> None:
    seed_demo_catalog(settings)
    events = varied_events(600, seed=5)
    worker = WorkerProcess(settings, tmp_path / "worker.log", args=["--processes", "2"])
    try:
        worker.wait_until(
            lambda: len(pids_that_logged("assigned [", worker)) == 2, "both processes assigned", 60
        )
        produce(settings, [message(e) for e in events])
        done = wait_until_processed(settings, worker, len(events))

        assert done.accepted == len(events)
        assert billed_hourly(settings) == expected_hourly(events)
        assert len(pids_that_logged("batch of", worker)) == 2  # both wrote batches
    finally:
        code = worker.terminate()
    assert code == 0, worker.log()[-3000:]  # SIGTERM stopped both processes cleanly
    assert len(pids_that_logged("[^-IngestService]: Stopping", worker)) == 2


def test_when_one_process_of_a_worker_dies_the_others_stop_and_the_worker_exits_with_its_code(
    settings: Settings, tmp_path: Path
) -> None:
    seed_demo_catalog(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", args=["--processes", "2"])
    try:
        worker.wait_until(
            lambda: len(pids_that_logged("assigned [", worker)) == 2, "both processes assigned", 60
        )
        victim, survivor = sorted(pids_that_logged("assigned [", worker))
        os.kill(int(victim), signal.SIGKILL)  # as the kernel's OOM killer would

        code = worker.proc.wait(60)
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    assert code == 128 + signal.SIGKILL  # whoever restarts the worker sees why
    assert pids_that_logged("[^-IngestService]: Stopping", worker) == {survivor}


def pids_that_logged(text: str, worker: WorkerProcess) -> set[str]:
    return set(re.findall(r"\[(\d+)\] \[\w+\] [^\n]*" + re.escape(text), worker.log()))


def test_a_retried_event_is_billed_once_and_a_reused_event_id_bills_only_the_first_payload(
    settings: Settings, start_worker: StartWorker
) -> None:
    seed_demo_catalog(settings)
    retried, first, *others = varied_events(10, seed=2)
    reused = {**first, "usage": {"input_tokens": 999_999, "output_tokens": 1}}
    # The serving layer retries `retried` at once and again later; someone reuses
    # `first`'s event_id for another request, twice.
    produce(settings, [message(retried), message(retried), message(first), message(reused)])
    produce(settings, [message(e) for e in others])
    worker = start_worker()
    wait_until_processed(settings, worker, 4 + len(others))
    produce(settings, [message(retried), message(reused)])  # a later batch
    done = wait_until_processed(settings, worker, 6 + len(others))

    assert billed_hourly(settings) == expected_hourly([retried, first, *others])
    assert set(ledger_rows_per_event(settings).values()) == {1}
    assert (done.accepted, done.duplicates, done.conflicts) == (2 + len(others), 2, 2)
    with psycopg.connect(settings.psycopg_dsn) as conn:
        conflicts = conn.execute(
            "SELECT event_id::text, raw FROM ledger_conflicts ORDER BY conflict_id"
        ).fetchall()
    assert [(event_id, bytes(raw)) for event_id, raw in conflicts] == [
        (first["event_id"], encode(reused))
    ] * 2
    reconcile = metering(settings, "reconcile")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr


# --- rejections ----------------------------------------------------------------------------


def offending_messages(now: datetime) -> dict[str, Message]:
    """For each rejection reason, a message that is valid except for that one thing."""

    def valid(**overrides: Any) -> dict[str, Any]:
        document = event(tenant_id="acme", model="grok-3", occurred_at=now - timedelta(minutes=5))
        document.update(overrides)
        return document

    def usage(**counts: Any) -> Message:
        document = valid()
        document["usage"].update(counts)
        return message(document)

    without_usage = valid()
    del without_usage["usage"]
    return {
        "oversized": message(valid(padding="x" * 70_000)),
        "not_json": Message(b"acme", b'{"event_id": "0b7e3f0c-5a8e-4c1e-9d2a-3f6b8c1d2e4f",'),
        "not_an_object": Message(b"acme", encode([valid(), valid()])),
        "missing_field": message(without_usage),
        "wrong_type": message(valid(tenant_id=42)),
        "invalid_event_id": message(valid(event_id="{" + str(uuid.uuid4()) + "}")),
        "invalid_tenant_id": message(valid(tenant_id="acme corp")),
        "invalid_model": message(valid(model="")),
        "invalid_timestamp": message(valid(occurred_at="2026-11-25T10:00:00")),
        "field_too_long": message(valid(request_id="r" * 257)),
        "negative_tokens": usage(output_tokens=-1),
        "non_integer_tokens": usage(input_tokens=1000.0),
        "cached_exceeds_input": usage(
            input_tokens=100, cached_input_tokens=80, cache_write_tokens=40
        ),
        "cache_write_1h_exceeds_cache_write": usage(
            cache_write_tokens=10, cache_write_1h_tokens=11
        ),
        "reasoning_exceeds_output": usage(output_tokens=10, reasoning_tokens=11),
        "implausible_tokens": usage(input_tokens=50_000_001),
        "occurred_in_future": message(valid(occurred_at=(now + timedelta(hours=1)).isoformat())),
        "occurred_too_long_ago": message(valid(occurred_at=(now - timedelta(days=40)).isoformat())),
        "invalid_service_tier": message(valid(service_tier="Standard")),
        "invalid_attributes": message(valid(attributes={"retries": 3})),
        "unknown_tenant": message(valid(tenant_id="wayne-enterprises")),
        "unknown_model": message(valid(model="grok-9000")),
        "null_value": Message(b"acme", None),
        "nul_character": message(valid(request_id="req\u0000001")),
        "unpriced": message(valid(model=UNPRICED_MODEL)),
        "unstorable": message(valid(request_id=REFUSED_BY_THE_DATABASE)),
    }


UNPRICED_MODEL = "grok-unpriced"  # in the catalog, without a price
REFUSED_BY_THE_DATABASE = "refused-by-the-database"


def refuse_in_the_database(settings: Settings, request_id: str) -> None:
    """A rule of the database that validation knows nothing of: the ledger refuses events
    with this request id, as it would refuse any value it cannot hold."""
    with psycopg.connect(settings.psycopg_dsn) as conn:
        conn.execute(
            "ALTER TABLE usage_ledger ADD CONSTRAINT test_refused"
            f" CHECK (request_id IS DISTINCT FROM '{request_id}')"
        )


@dataclass(frozen=True, slots=True)
class RejectionRun:
    settings: Settings
    sent: dict[str, Sent]
    dead_letters: list[ConsumerRecord]
    rejections: dict[tuple[int, int], tuple[str, bytes]]  # (partition, offset): (reason, raw)
    log: str  # the worker's


@pytest.fixture(scope="module")
def rejected(
    base_settings: Settings,
    migrated_template: str,
    kafka: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RejectionRun]:
    """One worker, sent one offending message per reason at once."""
    scratch = tmp_path_factory.mktemp("rejections")
    with scratch_database(base_settings, prefix="test", template=migrated_template) as url:
        settings = isolated_settings(base_settings, url, scratch)
        seed_catalog(settings, tenants=["acme"], models=["grok-3"])
        with psycopg.connect(settings.psycopg_dsn) as conn:
            catalog.add_models(conn, [catalog.ModelRow(UNPRICED_MODEL, "xai", "not priced yet")])
        refuse_in_the_database(settings, REFUSED_BY_THE_DATABASE)
        offending = offending_messages(datetime.now(UTC))
        reasons = list(offending)
        sent = dict(zip(reasons, produce(settings, [offending[r] for r in reasons]), strict=True))
        worker = WorkerProcess(settings, scratch / "worker.log")
        try:
            wait_until_processed(settings, worker, len(sent))
            dead_letters = read_dead_letters(settings, len(sent))
            with psycopg.connect(settings.psycopg_dsn) as conn:
                rows = conn.execute(
                    'SELECT partition, "offset", reason, raw FROM rejections WHERE topic = %s',
                    (settings.topic_usage,),
                ).fetchall()
            yield RejectionRun(
                settings,
                sent,
                dead_letters,
                {(p, o): (reason, raw and bytes(raw)) for p, o, reason, raw in rows},
                worker.log(),
            )
        finally:
            worker.kill()


@pytest.mark.parametrize("reason", REASONS)
def test_a_rejected_message_reaches_the_dead_letter_topic_untouched_with_its_reason(
    reason: str, rejected: RejectionRun
) -> None:
    assert reason in rejected.sent, f"no offending message for {reason!r} in offending_messages"
    sent = rejected.sent[reason]
    letters = [r for r in rejected.dead_letters if r.value == sent.message.value]
    assert letters, f"no dead letter carries the original bytes of the {reason} message"
    for letter in letters:
        found = headers(letter)
        assert found["reason"].decode() == reason, found["detail"].decode()
        assert found["detail"]  # says what is wrong, for whoever fixes the producer
        assert found["source_partition"] == str(sent.partition).encode()
        assert found["source_offset"] == str(sent.offset).encode()
        assert letter.key == sent.message.key
    assert rejected.rejections[(sent.partition, sent.offset)] == (reason, sent.message.value)


def test_nothing_rejected_is_billed(rejected: RejectionRun) -> None:
    done = progress(rejected.settings)
    assert (done.accepted, done.rejected) == (0, len(rejected.sent))
    assert ledger_rows_per_event(rejected.settings) == {}
    assert billed_hourly(rejected.settings) == {}


def test_the_worker_log_sums_up_the_dead_letters_of_a_batch_in_one_line(
    rejected: RejectionRun,
) -> None:
    summaries = [line for line in rejected.log.splitlines() if "dead-lettering" in line]
    counts = [re.search(r"dead-lettering (\d+): (.*) from (.*)", line) for line in summaries]

    assert all(counts), summaries
    assert sum(int(found[1]) for found in counts if found) == len(rejected.sent)
    assert len(summaries) < len(rejected.sent)  # not a line per record
    reasons = " ".join(found[2] for found in counts if found)
    assert all(f"{reason}=" in reasons for reason in rejected.sent), reasons
    where = " ".join(found[3] for found in counts if found)
    assert f"{rejected.settings.topic_usage}[" in where  # the partitions and offset ranges


# --- replaying dead letters ----------------------------------------------------------------


def price_file(folder: Path, model: str) -> Path:
    """A price file that prices ``model`` on every service tier since 2025."""
    path = folder / f"{model}-prices.yaml"
    path.write_text(
        "currency: USD\nprices:\n"
        f"  - model: {model}\n    effective_from: 2025-01-01\n"
        "    standard: &p {input: 1.00, output: 2.00}\n    batch: *p\n    priority: *p\n"
    )
    return path


def test_replayed_dead_letters_are_billed_once_even_when_the_replay_is_repeated(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    seed_demo_catalog(settings)
    billed = varied_events(20, seed=3)
    early = [{**e, "model": "grok-5"} for e in varied_events(15, seed=4)]  # not served yet
    produce(settings, [message(e) for e in [*billed, *early]])
    worker = start_worker()
    assert wait_until_processed(settings, worker, 35).rejected == 15

    added = metering(settings, "models", "add", "grok-5", "--provider", "xai")
    assert added.returncode == 0, added.stderr
    priced = metering(settings, "prices", "import", str(price_file(tmp_path, "grok-5")))
    assert priced.returncode == 0, priced.stderr
    replay = metering(settings, "dlq", "replay", "--reason", "unknown_model")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 15 " in replay.stdout
    wait_until_processed(settings, worker, 50)
    # The replay is interrupted after sending, before it records that it did; run it again.
    with psycopg.connect(settings.psycopg_dsn) as conn:
        conn.execute("UPDATE rejections SET replayed_at = NULL WHERE reason = 'unknown_model'")
    again = metering(settings, "dlq", "replay", "--reason", "unknown_model")
    assert again.returncode == 0, again.stderr
    assert "replayed 15 " in again.stdout
    done = wait_until_processed(settings, worker, 65)

    assert ledger_rows_per_event(settings) == {e["event_id"]: 1 for e in [*billed, *early]}
    assert billed_hourly(settings) == expected_hourly([*billed, *early])
    assert (done.accepted, done.duplicates, done.rejected) == (35, 15, 15)
    listed = metering(settings, "dlq", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert (summary["reason"], summary["events"], summary["awaiting_replay"]) == (
        "unknown_model",
        15,
        0,
    )


def test_usage_without_a_price_is_dead_lettered_and_billed_once_replayed_after_the_import(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    seed_demo_catalog(settings)
    with psycopg.connect(settings.psycopg_dsn) as conn:  # in the catalog, not yet priced
        catalog.add_models(conn, [catalog.ModelRow("grok-5", "xai", "Grok 5")])
    billed = varied_events(20, seed=5)
    early = [{**e, "model": "grok-5"} for e in varied_events(12, seed=6)]
    produce(settings, [message(e) for e in [*billed, *early]])
    worker = start_worker()
    assert wait_until_processed(settings, worker, 32).rejected == 12
    assert billed_hourly(settings) == expected_hourly(billed)

    priced = metering(settings, "prices", "import", str(price_file(tmp_path, "grok-5")))
    assert priced.returncode == 0, priced.stderr
    replay = metering(settings, "dlq", "replay", "--reason", "unpriced")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 12 " in replay.stdout
    done = wait_until_processed(settings, worker, 44)

    assert (done.accepted, done.rejected) == (32, 12)
    assert ledger_rows_per_event(settings) == {e["event_id"]: 1 for e in [*billed, *early]}
    assert billed_hourly(settings) == expected_hourly([*billed, *early])
    reconcile = metering(settings, "reconcile")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr


# --- records that must not halt ingestion ---------------------------------------------------


def poison_records(now: datetime) -> dict[str, tuple[str, Message]]:
    """Records that once made the worker exit on every restart, each with the reason it is
    dead-lettered for: a tombstone, NUL characters wherever text is stored, and a value
    that only the database refuses."""

    def nul_in(**fields: Any) -> Message:
        document = event(tenant_id="acme", model="grok-3", occurred_at=now - timedelta(minutes=1))
        document.update(fields)
        return message(document)

    nul = "\u0000"
    return {
        "tombstone": ("null_value", Message(b"acme", None)),
        "tenant_id": ("nul_character", nul_in(tenant_id=f"acme{nul}")),
        "event_id": ("nul_character", nul_in(event_id=f"{uuid.uuid4()}"[:-1] + nul)),
        "model": ("nul_character", nul_in(model=f"grok-3{nul}")),
        "request_id": ("nul_character", nul_in(request_id=f"req-{nul}")),
        "deployment": ("nul_character", nul_in(deployment=f"eu{nul}")),
        "attribute value": ("nul_character", nul_in(attributes={"team": f"a{nul}b"})),
        "attribute key": ("nul_character", nul_in(attributes={f"te{nul}am": "ab"})),
        "refused by the database": (
            "unstorable",
            nul_in(request_id=REFUSED_BY_THE_DATABASE),
        ),
    }


def test_records_that_cannot_be_stored_are_dead_lettered_once_and_the_rest_is_billed_exactly(
    settings: Settings, start_worker: StartWorker
) -> None:
    seed_demo_catalog(settings)
    refuse_in_the_database(settings, REFUSED_BY_THE_DATABASE)
    poison = poison_records(datetime.now(UTC))
    valid = varied_events(30 * len(poison), seed=7)
    # Each poison record sits between valid ones, in the same batches.
    poisoned = [m for _, m in poison.values()]
    stream: list[Message] = []
    for index, document in enumerate(valid):
        stream.append(message(document))
        if index % 30 == 15:
            stream.append(poisoned[index // 30])
    sent = produce(settings, stream)

    worker = start_worker()
    done = wait_until_processed(settings, worker, len(stream))
    dead_letters = read_dead_letters(settings, len(poison))

    assert worker.proc.poll() is None, worker.log()[-3000:]
    assert (done.accepted, done.rejected) == (len(valid), len(poison))
    assert billed_hourly(settings) == expected_hourly(valid)
    where = {s.message: (s.partition, s.offset) for s in sent}
    with psycopg.connect(settings.psycopg_dsn) as conn:
        stored = {
            (p, o): (reason, raw and bytes(raw), detail)
            for p, o, reason, raw, detail in conn.execute(
                'SELECT partition, "offset", reason, raw, detail FROM rejections'
            )
        }
    for name, (reason, poisoned) in poison.items():
        got_reason, got_raw, detail = stored[where[poisoned]]
        assert (got_reason, got_raw) == (reason, poisoned.value), f"{name}: {detail}"
        letters = [r for r in dead_letters if r.value == poisoned.value]
        assert len(letters) == 1, f"{name}: {len(letters)} dead letters"
        assert headers(letters[0])["reason"] == reason.encode()
    unstorable = stored[where[poison["refused by the database"][1]]][2]
    assert "test_refused" in unstorable  # the database's own error, for whoever fixes it
    reconcile = metering(settings, "reconcile")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr


# --- the operator's commands ---------------------------------------------------------------


def test_lag_waits_for_the_worker_to_catch_up_and_usage_then_shows_exact_totals(
    settings: Settings, start_worker: StartWorker
) -> None:
    seed_demo_catalog(settings)
    events = varied_events(300, seed=5)
    produce(settings, [message(e) for e in events])
    before = metering(settings, "lag")
    assert (before.returncode, before.stdout.strip()) == (1, "lag: 300")

    start_worker()
    caught_up = metering(settings, "lag", "--wait", "30")
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
    assert caught_up.stdout.strip() == "lag: 0"
    usage = metering(settings, "usage", "--by", "tenant", "--format", "json")

    assert usage.returncode == 0, usage.stderr
    shown = {
        row["tenant_id"]: {c: row[c] for c in USAGE_COLUMNS} for row in json.loads(usage.stdout)
    }
    assert shown == expected_by_tenant(events)


# --- stopping --------------------------------------------------------------------------------


def wait_for_a_blocked_batch(
    settings: Settings, worker: WorkerProcess, timeout_s: float = 30
) -> Callable[[], bool]:
    """Waits until the worker's batch transaction is waiting for a row lock; a check that it
    still is."""

    def blocked() -> bool:
        with psycopg.connect(settings.psycopg_dsn, autocommit=True) as conn:
            return conn.execute(
                "SELECT exists(SELECT FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock')"
            ).fetchone() == (True,)

    worker.wait_until(blocked, "the worker's next batch waiting for a row lock", timeout_s)
    return blocked


def test_sigterm_in_the_middle_of_a_batch_stops_cleanly_and_a_restart_loses_and_doubles_nothing(
    settings: Settings, start_worker: StartWorker
) -> None:
    seed_demo_catalog(settings)
    before, during = varied_events(50, seed=6), varied_events(600, seed=7)
    produce(settings, [message(e) for e in before])
    small_batches = settings.model_copy(update={"batch_size": 50})
    worker = start_worker(small_batches)
    wait_until_processed(settings, worker, len(before))

    # Holding the progress rows keeps the next batch open in the middle of its transaction.
    with psycopg.connect(settings.psycopg_dsn) as blocker:
        blocker.execute(
            "SELECT * FROM ingest_progress WHERE topic = %s FOR UPDATE", (settings.topic_usage,)
        )
        produce(settings, [message(e) for e in during])
        blocked = wait_for_a_blocked_batch(settings, worker)
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_for_log("Signal received")
        assert blocked(), "the worker gave up the batch it was writing when told to stop"
        blocker.rollback()
    assert worker.terminate() == 0
    stopped_at = progress(settings).processed
    assert stopped_at > len(before)  # the batch in flight was finished, not thrown away
    assert stopped_at < len(before) + len(during)  # and work was left for the restart

    restarted = start_worker(small_batches)
    done = wait_until_processed(settings, restarted, len(before) + len(during))

    assert done.accepted == len(before) + len(during)
    assert set(ledger_rows_per_event(settings).values()) == {1}
    assert billed_hourly(settings) == expected_hourly([*before, *during])
    assert restarted.terminate() == 0


def test_a_new_ledger_reads_the_topic_from_the_beginning_whatever_the_group_committed(
    settings: Settings, start_worker: StartWorker, migrated_template: str
) -> None:
    seed_demo_catalog(settings)
    sent = [message(e) for e in varied_events(60, seed=11)]
    produce(settings, sent)
    first = start_worker()
    wait_until_processed(settings, first, 60)
    assert first.terminate() == 0  # the group has committed all 60

    with scratch_database(settings, prefix="test", template=migrated_template) as url:
        fresh = settings.model_copy(update={"database_url": url})
        seed_demo_catalog(fresh)
        second = start_worker(fresh)
        assert wait_until_processed(fresh, second, 60).accepted == 60
