"""Case 5, invoice close: a month of hourly aggregates for T tenants x M models.

The aggregates are inserted with ``generate_series`` (one row per tenant, model and hour,
standard tier) into a month no other case touches, the list prices are imported with
`metering prices import`, and `metering invoices close --period YYYY-MM --force` is timed
as a process against the bench database. The baseline is a plain
``SELECT tenant_id, model, sum(...) ... GROUP BY`` over the same rows.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime

import psycopg

from bench.harness import dsn
from bench.report import Case, Figure, Target
from metering.config import PROJECT_ROOT, Settings
from metering.services.worker import metering_command
from metering.tools.traffic import DEMO_MODELS, demo_tenants

TARGET_S = 10.0  # for 1,000 tenants x 10 models
TIMEOUT_S = 1_800
PRICES = PROJECT_ROOT / "prices" / "list-prices.yaml"

_SEED = """
INSERT INTO usage_hourly AS h (
    tenant_id, model, service_tier, long_context, hour, events,
    input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens)
SELECT t, m, 'standard', false, hour, x.events, x.events * 1200, x.events * 300, 0,
       x.events * 250, 0
  FROM unnest(%(tenants)s::text[]) t, unnest(%(models)s::text[]) m,
       generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour',
                       interval '1 hour') hour,
       LATERAL (SELECT 1 + (hashtext(t || m || hour::text) & 63)::bigint AS events) x
"""

_BASELINE = """
SELECT tenant_id, model, sum(events), sum(input_tokens), sum(cached_input_tokens),
       sum(cache_write_tokens), sum(output_tokens), sum(reasoning_tokens)
  FROM usage_hourly
 WHERE hour >= %s AND hour < %s
 GROUP BY tenant_id, model
"""


def period(today: datetime) -> tuple[datetime, datetime]:
    """The month before last, whole: nothing else in the bench database falls in it."""
    month = today.year * 12 + today.month - 1 - 2
    start = datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)
    month += 1
    return start, datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


def run_metering(settings: Settings, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        metering_command(*args),
        env=settings.child_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return done, time.perf_counter() - started


def invoice_close_case(settings: Settings, tenants: int, models: int) -> Case:
    start, end = period(datetime.now(UTC))
    label = f"{start:%Y-%m}"
    with psycopg.connect(dsn(settings.database_url)) as conn:
        started = time.perf_counter()
        rows = conn.execute(
            _SEED,
            {
                "tenants": demo_tenants(tenants),
                "models": [m.model_id for m in DEMO_MODELS[:models]],
                "start": start,
                "end": end,
            },
        ).rowcount
        conn.commit()
        conn.execute("ANALYZE usage_hourly")
        seeded_s = time.perf_counter() - started
        started = time.perf_counter()
        groups = len(conn.execute(_BASELINE, (start, end)).fetchall())
        baseline_s = time.perf_counter() - started
    size = f"{tenants:,} x {models} for {label}"
    case = Case(
        "invoice_close",
        [Figure(f"GROUP BY tenant, model: {size}", baseline_s, "s")],
        notes=[f"{rows:,} hourly aggregate rows, {groups:,} (tenant, model) groups"],
        details={"period": label, "rows": rows, "groups": groups, "seed_s": seeded_s},
    )
    help_run, startup_s = run_metering(settings, "invoices", "--help")
    imported, _ = run_metering(settings, "prices", "import", str(PRICES))
    closed, close_s = run_metering(settings, "invoices", "close", "--period", label, "--force")
    steps = (("invoices --help", help_run), ("prices import", imported), ("invoices close", closed))
    for step, done in steps:
        if done.returncode != 0:
            case.status = f"failed: `metering {step}` exited {done.returncode}"
            case.details["stderr"] = (done.stderr or done.stdout)[-2000:]
            return case
    targets = (Target("<=", TARGET_S),) if tenants * models >= 10_000 else ()
    case.figures = [
        Figure(f"close {size}", close_s, "s", "GROUP BY", baseline_s, targets),
        Figure(
            "aggregate rows closed per second",
            rows / close_s,
            "rows/s",
            "GROUP BY",
            rows / baseline_s,
        ),
        Figure("`metering invoices --help` (process start-up)", startup_s, "s"),
    ]
    case.details["close_stdout"] = closed.stdout[-2000:]
    return case
