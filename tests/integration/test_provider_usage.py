"""Usage read from a provider SDK's own objects is ingested and billed the way the provider
prices it, through the real broker, worker and database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import psycopg

from metering.billing.events import event_to_json
from metering.billing.tokens import Usage
from metering.config import Settings
from metering.produce.producer import usage_event
from metering.produce.providers import from_anthropic
from tests.support.cli import metering
from tests.support.ingest import (
    Message,
    billed_hourly,
    produce,
    seed_catalog,
    wait_until_processed,
)


def test_anthropic_one_hour_cache_writes_are_billed_apart_and_old_events_stay_duplicates(
    settings: Settings, start_worker
) -> None:
    seed_catalog(settings, tenants=["acme"], models=["claude-sonnet-4"])
    imported = metering(settings, "prices", "import", "prices/list-prices.yaml")
    assert imported.returncode == 0, imported.stderr
    occurred_at = datetime.now(UTC) - timedelta(minutes=1)
    sdk_usage = anthropic.types.Usage(
        input_tokens=50,
        output_tokens=100,
        cache_creation_input_tokens=10_000,
        cache_read_input_tokens=0,
        cache_creation=anthropic.types.CacheCreation(
            ephemeral_1h_input_tokens=6000, ephemeral_5m_input_tokens=4000
        ),
    )
    one_hour = usage_event(
        tenant_id="acme",
        model="claude-sonnet-4",
        usage=from_anthropic(sdk_usage.model_dump(exclude_none=True)),
        occurred_at=occurred_at,
    )
    # As a producer wrote events before 1-hour writes were counted apart.
    old_style = usage_event(
        tenant_id="acme",
        model="claude-sonnet-4",
        usage=Usage(1000, 10, cache_write_tokens=800),
        occurred_at=occurred_at,
    )
    sent = [
        Message(b"acme", event_to_json(event))
        for event in (one_hour, one_hour, old_style, old_style)
    ]
    produce(settings, sent)
    done = wait_until_processed(settings, start_worker(), len(sent))

    assert (done.accepted, done.duplicates, done.conflicts) == (2, 2, 0)
    [hourly] = billed_hourly(settings).values()
    assert (hourly["cache_write_tokens"], hourly["cache_write_1h_tokens"]) == (10_800, 6000)
    with psycopg.connect(settings.psycopg_dsn) as conn:
        ledger = conn.execute(
            "SELECT sum(cache_write_1h_tokens) FROM usage_ledger WHERE tenant_id = 'acme'"
        ).fetchone()
    assert ledger == (6000,)
    checked = metering(settings, "reconcile")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    preview = metering(
        settings,
        "invoices",
        "preview",
        "--tenant",
        "acme",
        "--period",
        occurred_at.strftime("%Y-%m"),
        "--format",
        "json",
    )
    assert preview.returncode == 0, preview.stderr
    lines = {
        line["token_class"]: (line["quantity"], Decimal(line["unit_price_per_million"]))
        for line in json.loads(preview.stdout)["lines"]
        if line["kind"] == "usage"
    }
    assert lines == {
        "input": (50 + 200, Decimal("3.00")),
        "cache_write": (4000 + 800, Decimal("3.75")),
        "cache_write_1h": (6000, Decimal("6.00")),
        "output": (110, Decimal("15.00")),
    }
