"""Billing on the real database: prices in, numbered immutable invoices out, late usage as
adjustments, exports that never change, and reporting roles that see what they may.

Expected amounts are worked out here by hand from the test's price file, with plain Decimal
arithmetic (quantity x price / 1M, rounded half-even per line), never with the billing core.
Usage is written straight into ``usage_hourly`` the way ingest aggregates it; no Kafka.
"""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pypdf import PdfReader

from metering.billing.close_policy import PeriodClosedError
from metering.billing.invoices import Issuer
from metering.billing.periods import period_for
from metering.billing.tokens import TokenClass
from metering.config import PROJECT_ROOT, Settings
from metering.files.price_files import load_price_file
from metering.services.process import poll_until
from metering.store import catalog, migrate
from metering.store.billing.close import Outcome, TenantClose, close_period
from metering.store.billing.contracts import set_contract
from metering.store.billing.errors import (
    PricesChangedError,
    PricesReachInvoicedError,
    UnknownTenantError,
)
from metering.store.billing.overrides import Bands, set_override
from metering.store.billing.price_imports import import_prices
from tests.support import cli
from tests.support.cli import succeeded as ok
from tests.support.logins import Logins
from tests.support.usage import add_usage

PRICE_FILE = """\
# Test prices, USD per 1M tokens.
currency: USD
prices:
  - model: tiered-70b               # graduated standard input: 2.00 up to 1M, then 1.50
    effective_from: 2026-01-01
    standard:
      input:
        - {up_to: 1_000_000, price: 2.00}
        - {price: 1.50}
      output: 8.00
    batch: {input: 1.00, output: 4.00}

  - model: sonnet                   # prices drop on 2026-10-15, mid-period
    effective_from: 2026-01-01
    effective_to: 2026-10-15
    standard: {input: 3.00, cached_input: 0.30, output: 15.00}
    batch: {input: 1.50, cached_input: 0.15, output: 7.50}
    long_context:
      above: 200_000
      standard: {input: 6.00, output: 22.50}

  - model: sonnet
    effective_from: 2026-10-15
    standard: {input: 2.00, cached_input: 0.20, output: 10.00}
    batch: {input: 1.00, cached_input: 0.10, output: 5.00}
    long_context:
      above: 200_000
      standard: {input: 4.00, output: 15.00}
"""

TENANTS = ("acme", "globex", "hooli", "initech", "umbrella", "wayne")
CENT = Decimal("0.01")
OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
# The test's usage is of 2026 whenever the tests run, so every closed period counts as one
# that late usage may still reach (normally: the ingest backdating window, 35 days).
LATE_WINDOW = timedelta(days=36_500)
ISSUER = Issuer("LLM Hosting Platform")  # the settings' default
LATE_ENV = {"METERING_BACKDATING_DAYS": "36500"}


def money(tokens: int, price: str) -> Decimal:
    """One line, worked out by hand: tokens x price per 1M, rounded half-even to cents."""
    return (Decimal(tokens) * Decimal(price) / 1_000_000).quantize(CENT, ROUND_HALF_EVEN)


def at(day: int, hour: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def this_year() -> int:
    return datetime.now(UTC).year


# --- the world -----------------------------------------------------------------------------------


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.psycopg_dsn, autocommit=True) as connection:
        yield connection


def metering(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs ``metering ARGS`` as a user would, against the test's database."""
    return cli.metering(settings, *args, env={**LATE_ENV, **env}, timeout_s=300)


def write_price_file(tmp_path: Path, text: str = PRICE_FILE, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def october(conn: psycopg.Connection, tmp_path: Path) -> psycopg.Connection:
    """Six tenants with contracts, an override and a month of varied usage in 2026-10.

    - acme: no contract (USD list prices); graduated band crossed inside an hour, batch usage
      counting towards the band volume.
    - globex: 10% discount; sonnet across the mid-period price change, batch, long context.
    - hooli: a 20.00 minimum commitment and no usage.
    - initech: 5% discount and a 50.00 minimum commitment; usage below it.
    - umbrella: nothing at all.
    - wayne: its own sonnet standard input price, 1.00, through the price change.
    """
    catalog.add_tenants(conn, [catalog.TenantRow(t, t.title()) for t in TENANTS])
    catalog.add_models(conn, [catalog.ModelRow("sonnet", "anthropic", "Sonnet")])
    import_prices(conn, load_price_file(write_price_file(tmp_path)))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    set_contract(conn, "globex", since, discount_percent=Decimal("10"))
    set_contract(
        conn, "initech", since, discount_percent=Decimal("5"), minimum_commitment=Decimal("50.00")
    )
    set_contract(conn, "hooli", at(1, month=9), minimum_commitment=Decimal("20"))
    set_override(
        conn,
        "wayne",
        model="sonnet",
        token_class=TokenClass.INPUT,
        service_tier="standard",
        price=Bands.parse("1.00"),
        effective_from=at(1),
    )

    add_usage(conn, "acme", "tiered-70b", at(3, 10), input_tokens=612_345, output_tokens=50_001)
    add_usage(
        conn,
        "acme",
        "tiered-70b",
        at(10, 8),
        input_tokens=300_000,
        output_tokens=20_000,
        tier="batch",
    )
    add_usage(conn, "acme", "tiered-70b", at(20, 14), input_tokens=700_000, output_tokens=29_999)

    add_usage(
        conn,
        "globex",
        "sonnet",
        at(10, 9),
        input_tokens=1_000_000,
        cached=200_000,
        output_tokens=100_000,
    )
    add_usage(
        conn,
        "globex",
        "sonnet",
        at(12, 9),
        input_tokens=500_000,
        output_tokens=50_000,
        tier="batch",
    )
    add_usage(
        conn,
        "globex",
        "sonnet",
        at(20, 9),
        input_tokens=1_000_000,
        cached=200_000,
        output_tokens=100_000,
    )
    add_usage(
        conn,
        "globex",
        "sonnet",
        at(21, 9),
        input_tokens=300_000,
        output_tokens=10_000,
        long_context=True,
    )
    add_usage(
        conn,
        "globex",
        "sonnet",
        at(22, 9),
        input_tokens=100_000,
        output_tokens=25_000,
        tier="batch",
    )

    add_usage(conn, "initech", "tiered-70b", at(5), input_tokens=1_000_000, output_tokens=500_000)

    add_usage(conn, "wayne", "sonnet", at(5), input_tokens=1_000_000)
    add_usage(conn, "wayne", "sonnet", at(25), input_tokens=2_000_000, output_tokens=100_000)
    return conn


def expected_october() -> dict[str, dict[str, Any]]:
    """Every invoice of 2026-10, worked out from the price file by hand."""
    # acme, tiered-70b input: the volume counts standard and batch tokens in hour order:
    # 612,345 (standard, Oct 3) + 300,000 (batch, Oct 10) = 912,345, so of the 700,000 on
    # Oct 20 the first 87,655 are still in the 2.00 band and the rest cost 1.50.
    in_first_band = 1_000_000 - 612_345 - 300_000
    acme = {
        ("tiered-70b", "input", "standard", 0): (612_345 + in_first_band, "2.00"),
        ("tiered-70b", "input", "standard", 1): (700_000 - in_first_band, "1.50"),
        ("tiered-70b", "input", "batch", 0): (300_000, "1.00"),
        ("tiered-70b", "output", "standard", 0): (50_001 + 29_999, "8.00"),
        ("tiered-70b", "output", "batch", 0): (20_000, "4.00"),
    }
    # globex, sonnet: before Oct 15 at the old prices, after at the new; cached reads have a
    # price of their own; long-context tokens at the long-context prices; 10% discount.
    globex = {
        ("sonnet", "input", "standard", "3.00"): (800_000, "3.00"),
        ("sonnet", "input", "standard", "2.00"): (800_000, "2.00"),
        ("sonnet", "input", "standard", "4.00"): (300_000, "4.00"),  # long context
        ("sonnet", "input", "batch", "1.50"): (500_000, "1.50"),
        ("sonnet", "input", "batch", "1.00"): (100_000, "1.00"),
        ("sonnet", "cached_input", "standard", "0.30"): (200_000, "0.30"),
        ("sonnet", "cached_input", "standard", "0.20"): (200_000, "0.20"),
        ("sonnet", "output", "standard", "15.00"): (100_000, "15.00"),
        ("sonnet", "output", "standard", "10.00"): (100_000, "10.00"),
        ("sonnet", "output", "standard", "15.00 lc"): (10_000, "15.00"),  # long context
        ("sonnet", "output", "batch", "7.50"): (50_000, "7.50"),  # 0.375 -> 0.38
        ("sonnet", "output", "batch", "5.00"): (25_000, "5.00"),  # 0.125 -> 0.12
    }
    initech = {
        ("tiered-70b", "input", "standard", 0): (1_000_000, "2.00"),  # the bound is inclusive
        ("tiered-70b", "output", "standard", 0): (500_000, "8.00"),
    }
    wayne = {
        ("sonnet", "input", "standard", "override"): (
            3_000_000,
            "1.00",
        ),  # both sides of the change
        ("sonnet", "output", "standard", "10.00"): (100_000, "10.00"),
    }
    result: dict[str, dict[str, Any]] = {}
    for tenant, lines, discount_percent, minimum in (
        ("acme", acme, Decimal(0), None),
        ("globex", globex, Decimal(10), None),
        ("hooli", {}, Decimal(0), Decimal("20.00")),
        ("initech", initech, Decimal(5), Decimal("50.00")),
        ("wayne", wayne, Decimal(0), None),
    ):
        amounts = sorted((q, Decimal(p), money(q, p)) for q, p in lines.values())
        subtotal = sum((a for _, _, a in amounts), Decimal("0.00"))
        discount = (subtotal * discount_percent / 100).quantize(CENT, ROUND_HALF_EVEN)
        shortfall = max(minimum - (subtotal - discount), Decimal(0)) if minimum else Decimal(0)
        result[tenant] = {
            "usage": amounts,
            "subtotal": subtotal,
            "discount": -discount,
            "commitment": shortfall,
            "total": subtotal - discount + shortfall,
        }
    return result


def invoice_rows(conn: psycopg.Connection, period: datetime) -> dict[str, dict[str, Any]]:
    """What the reporting views say about the invoices of a period, per tenant."""
    invoices = conn.execute(
        "SELECT invoice_id, invoice_number, tenant_id, subtotal, total, currency, status"
        " FROM reporting.invoices WHERE period_start = %s ORDER BY invoice_number",
        (period,),
    ).fetchall()
    result = {}
    for invoice_id, number, tenant, subtotal, total, currency, status in invoices:
        lines = conn.execute(
            "SELECT kind, model, token_class, service_tier, tier, quantity,"
            " unit_price_per_million, amount, adjusts_period FROM reporting.invoice_lines"
            " WHERE invoice_id = %s ORDER BY line_no",
            (invoice_id,),
        ).fetchall()
        result[tenant] = {
            "number": number,
            "subtotal": subtotal,
            "total": total,
            "currency": currency,
            "status": status,
            "lines": lines,
        }
    return result


def close(conn: psycopg.Connection, label: str, *, force: bool = False) -> list[TenantClose]:
    return close_period(
        conn,
        label,
        now=datetime.now(UTC),
        grace=timedelta(hours=24),
        late_window=LATE_WINDOW,
        issuer=ISSUER,
        force=force,
    )


# --- the close policy ----------------------------------------------------------------------------


def test_a_period_not_due_stays_open_saying_from_when_and_the_cli_offers_force(
    october: psycopg.Connection, settings: Settings
) -> None:
    current = period_for(datetime.now(UTC)).label
    [acme] = close_period(
        october,
        current,
        now=datetime.now(UTC),
        grace=timedelta(hours=24),
        late_window=LATE_WINDOW,
        issuer=ISSUER,
        tenant_id="acme",
    )
    assert acme.outcome == Outcome.NOT_DUE
    assert acme.detail.startswith("can be closed from ") and "--" not in acme.detail

    result = metering(settings, "invoices", "close", "--period", current, "--tenant", "acme")
    assert result.returncode == 0, result.stderr
    assert f"period {current} is not due yet: {acme.detail} (or now with --force)" in result.stderr
    assert october.execute("SELECT count(*) FROM period_billing").fetchone() == (0,)


def test_a_contract_change_inside_an_invoiced_period_is_refused_and_the_cli_says_from_when(
    october: psycopg.Connection, settings: Settings
) -> None:
    close(october, "2026-10")
    with pytest.raises(PeriodClosedError) as refused:
        set_contract(october, "acme", at(20), discount_percent=Decimal("5"))
    assert refused.value.closed_until == at(1, month=11)
    assert "--" not in str(refused.value), "the store says what is wrong, not which flag to use"

    result = metering(
        settings,
        "tenants",
        "set",
        "acme",
        "--discount-percent",
        "5",
        "--effective-from",
        "2026-10-20",
    )
    assert result.returncode == 2, result.stderr
    advice = "use --effective-from 2026-11-01T00:00:00Z or later"
    assert f"{refused.value}; {advice}" in result.stderr
    assert result.stderr.count("\n") == 1, "one line"


# --- invoices add up -----------------------------------------------------------------------------


def test_invoices_equal_an_independent_computation_from_the_price_file(
    october: psycopg.Connection, settings: Settings
) -> None:
    out = ok(metering(settings, "invoices", "close", "--period", "2026-10"))
    assert "INV-" in out

    invoices = invoice_rows(october, OCT)
    expected = expected_october()
    assert sorted(invoices) == sorted(expected), "umbrella, with nothing to bill, gets none"
    for tenant, want in expected.items():
        got = invoices[tenant]
        usage = sorted(
            (quantity, price, amount)
            for kind, _, _, _, _, quantity, price, amount, _ in got["lines"]
            if kind == "usage"
        )
        assert usage == want["usage"], tenant
        discount = [amount for kind, *_, amount, _ in got["lines"] if kind == "discount"]
        commitment = [amount for kind, *_, amount, _ in got["lines"] if kind == "commitment"]
        assert discount == ([want["discount"]] if want["discount"] else []), tenant
        assert commitment == ([want["commitment"]] if want["commitment"] else []), tenant
        assert (got["subtotal"], got["total"]) == (want["subtotal"], want["total"]), tenant
        assert (got["currency"], got["status"]) == ("USD", "finalized")

    assert invoices["acme"]["total"] == Decimal("3.34")
    assert invoices["globex"]["total"] == Decimal("8.37")  # 9.30 less 0.93
    assert invoices["initech"]["total"] == Decimal("50.00")  # 6.00 - 0.30 + 44.30 shortfall
    assert invoices["hooli"]["total"] == Decimal("20.00")
    assert invoices["wayne"]["total"] == Decimal("4.00")


def test_a_band_boundary_inside_an_hour_splits_its_tokens_over_two_lines(
    october: psycopg.Connection,
) -> None:
    close(october, "2026-10")
    lines = invoice_rows(october, OCT)["acme"]["lines"]
    standard_input = [
        (tier, quantity, price)
        for _, model, token_class, tier_name, tier, quantity, price, _, _ in lines
        if (model, token_class, tier_name) == ("tiered-70b", "input", "standard")
    ]
    assert standard_input == [(0, 700_000, Decimal("2.00")), (1, 612_345, Decimal("1.50"))]


def test_one_service_tier_crossing_a_band_is_billed_as_hour_by_hour(
    october: psycopg.Connection,
) -> None:
    """Hours of a model used on one service tier are summed before rating; the band split
    must come out as if each hour had been rated in turn."""
    catalog.add_tenants(october, [catalog.TenantRow("solo", "Solo")])
    for day in (2, 9, 16):
        add_usage(october, "solo", "tiered-70b", at(day, 7), input_tokens=450_000)
    close(october, "2026-10")
    lines = invoice_rows(october, OCT)["solo"]["lines"]
    assert [
        (tier, quantity, price, amount) for _, _, _, _, tier, quantity, price, amount, _ in lines
    ] == [
        (0, 1_000_000, Decimal("2.00"), money(1_000_000, "2.00")),
        (1, 350_000, Decimal("1.50"), money(350_000, "1.50")),
    ]


def test_the_running_draft_shows_what_close_will_bill(
    october: psycopg.Connection, settings: Settings
) -> None:
    import json

    draft = json.loads(
        ok(
            metering(
                settings,
                "invoices",
                "preview",
                "--tenant",
                "globex",
                "--period",
                "2026-10",
                "--format",
                "json",
            )
        )
    )
    assert draft["status"] == "draft"
    assert draft["invoice_number"] is None
    assert Decimal(draft["total"]) == expected_october()["globex"]["total"]

    close(october, "2026-10")
    final = json.loads(
        ok(
            metering(
                settings,
                "invoices",
                "preview",
                "--tenant",
                "globex",
                "--period",
                "2026-10",
                "--format",
                "json",
            )
        )
    )
    assert final["status"] == "finalized"
    assert final["invoice_number"].startswith(f"INV-{this_year()}-")
    assert final["lines"] == draft["lines"]


def test_an_open_period_is_not_closed_before_its_grace_period_without_force(
    october: psycopg.Connection, settings: Settings
) -> None:
    now = datetime.now(UTC)
    current = f"{now.year:04d}-{now.month:02d}"
    result = metering(settings, "invoices", "close", "--period", current)
    assert result.returncode == 0, result.stderr
    assert "not due" in result.stderr
    assert october.execute("SELECT count(*) FROM invoices").fetchone() == (0,)

    ok(metering(settings, "invoices", "close", "--period", current, "--force"))
    # hooli's and initech's commitments are billed even without usage
    tenants = {r[0] for r in october.execute("SELECT tenant_id FROM invoices").fetchall()}
    assert {"hooli", "initech"} <= tenants


def test_the_grace_period_comes_from_the_environment(
    october: psycopg.Connection, settings: Settings
) -> None:
    hours_since_october = (datetime.now(UTC) - NOV).total_seconds() / 3600
    result = metering(
        settings,
        "invoices",
        "close",
        "--period",
        "2026-10",
        METERING_INVOICE_GRACE_HOURS=str(int(hours_since_october) + 48),
    )
    assert "not due" in result.stderr
    assert october.execute("SELECT count(*) FROM invoices").fetchone() == (0,)


# --- numbers -------------------------------------------------------------------------------------


def test_closing_twice_creates_nothing_new_and_numbers_are_gap_free(
    october: psycopg.Connection, settings: Settings
) -> None:
    ok(metering(settings, "invoices", "close", "--period", "2026-10"))

    def snapshot() -> tuple[Any, ...]:
        return (
            october.execute(
                "SELECT invoice_number, tenant_id, total FROM invoices ORDER BY 1"
            ).fetchall(),
            october.execute("SELECT count(*) FROM invoice_lines").fetchone(),
            october.execute("SELECT * FROM invoice_number_counters").fetchall(),
            october.execute("SELECT count(*), max(closed_at) FROM period_billing").fetchone(),
        )

    before = snapshot()
    second = ok(metering(settings, "invoices", "close", "--period", "2026-10"))
    assert snapshot() == before
    assert "INV-" not in second

    numbers = [row[0] for row in before[0]]
    year = this_year()
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, len(numbers) + 1)]
    assert before[2] == [(f"INV-{year}", len(numbers))]
    by_tenant = [row[1] for row in before[0]]
    assert by_tenant == sorted(by_tenant), "numbered in tenant order"


def test_a_tenant_that_cannot_be_billed_leaves_no_gap_in_the_numbers(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    add_usage(october, "globex", "unpriced-model", at(7), input_tokens=1000, output_tokens=10)

    result = metering(settings, "invoices", "close", "--period", "2026-10")
    assert result.returncode == 1
    assert "no standard price for unpriced-model" in result.stdout

    year = this_year()
    numbers = [
        r[0] for r in october.execute("SELECT invoice_number FROM invoices ORDER BY 1").fetchall()
    ]
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 5)]  # acme hooli initech wayne
    assert "globex" not in {
        r[0] for r in october.execute("SELECT tenant_id FROM period_billing").fetchall()
    }

    write_price_file(
        tmp_path,
        "currency: USD\nprices:\n  - model: unpriced-model\n    effective_from: 2026-01-01\n"
        "    standard: {input: 1.00, output: 2.00}\n",
        "more.yaml",
    )
    ok(metering(settings, "prices", "import", str(tmp_path / "more.yaml")))
    ok(metering(settings, "invoices", "close", "--period", "2026-10"))
    globex = october.execute("SELECT invoice_number FROM invoices WHERE tenant_id = 'globex'")
    assert globex.fetchone() == (f"INV-{year}-000005",)


# --- late usage ----------------------------------------------------------------------------------


def test_late_usage_becomes_an_adjustment_and_the_closed_invoice_never_changes(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    ok(metering(settings, "invoices", "close", "--period", "2026-10"))
    first, second = tmp_path / "first", tmp_path / "second"
    for fmt in ("json", "pdf"):
        ok(
            metering(
                settings,
                "invoices",
                "export",
                "--period",
                "2026-10",
                "--format",
                fmt,
                "--out",
                str(first),
            )
        )
    acme_number = invoice_rows(october, OCT)["acme"]["number"]

    # 100,000 standard input tokens of Oct 25 arrive after the close: the period's volume was
    # 1,612,345, so they cost 1.50 (second band); and a late hour for umbrella, which had
    # nothing when October closed.
    add_usage(october, "acme", "tiered-70b", at(25, 3), input_tokens=100_000)
    add_usage(october, "umbrella", "tiered-70b", at(30, 23), input_tokens=10_000)
    unbilled = october.execute(
        "SELECT tenant_id, status, period_label, input_tokens FROM reporting.unbilled_usage"
        " ORDER BY tenant_id"
    ).fetchall()
    assert unbilled == [
        ("acme", "late", "2026-10", 100_000),
        ("umbrella", "late", "2026-10", 10_000),
    ]

    ok(metering(settings, "invoices", "close", "--period", "2026-11", "--force"))
    november = invoice_rows(october, NOV)
    acme_lines = november["acme"]["lines"]
    assert acme_lines == [
        (
            "adjustment",
            "tiered-70b",
            "input",
            "standard",
            1,
            100_000,
            Decimal("1.50"),
            money(100_000, "1.50"),
            "2026-10",
        ),
    ]
    assert november["acme"]["subtotal"] == 0
    assert november["acme"]["total"] == Decimal("0.15")
    assert november["umbrella"]["lines"] == [
        (
            "adjustment",
            "tiered-70b",
            "input",
            "standard",
            0,
            10_000,
            Decimal("2.00"),
            Decimal("0.02"),
            "2026-10",
        ),
    ]
    assert october.execute("SELECT count(*) FROM reporting.unbilled_usage").fetchone() == (0,)

    for fmt in ("json", "pdf"):
        ok(
            metering(
                settings,
                "invoices",
                "export",
                "--period",
                "2026-10",
                "--format",
                fmt,
                "--out",
                str(second),
            )
        )
        name = f"{acme_number}.{fmt}"
        assert (second / name).read_bytes() == (first / name).read_bytes(), name
    assert invoice_rows(october, OCT)["acme"]["total"] == Decimal("3.34")

    # the next close finds nothing more to adjust
    close_period(
        october,
        "2026-12",
        now=datetime(2027, 1, 5, tzinfo=UTC),
        grace=timedelta(hours=24),
        late_window=LATE_WINDOW,
        issuer=ISSUER,
    )
    assert "acme" not in invoice_rows(october, datetime(2026, 12, 1, tzinfo=UTC))


def test_a_period_past_its_late_window_is_not_compared_again(
    october: psycopg.Connection,
) -> None:
    close(october, "2026-10")
    # usage that ingest could not accept any more (older than its backdating window)
    add_usage(october, "acme", "tiered-70b", at(25, 3), input_tokens=100_000)
    close_period(
        october,
        "2026-11",
        now=datetime.now(UTC),
        grace=timedelta(0),
        late_window=timedelta(0),
        issuer=ISSUER,
        force=True,
    )
    assert "acme" not in invoice_rows(october, NOV)
    unbilled = october.execute("SELECT tenant_id, status FROM reporting.unbilled_usage")
    assert unbilled.fetchall() == [("acme", "late")], "but it is not silently lost"


def test_late_usage_that_fills_a_commitment_credits_the_shortfall(
    october: psycopg.Connection,
) -> None:
    close(october, "2026-10")
    # initech paid a 44.30 shortfall; 1,000,000 more output tokens (8.00) arrive late
    add_usage(october, "initech", "tiered-70b", at(30), input_tokens=0, output_tokens=1_000_000)
    close(october, "2026-11", force=True)
    lines = invoice_rows(october, NOV)["initech"]["lines"]
    adjustments = [(kind, amount) for kind, *_, amount, adjusts in lines if adjusts == "2026-10"]
    # usage +8.00, its 5% discount -0.40, and the shortfall shrinks by 7.60: nothing more to pay
    assert sorted(adjustments) == sorted(
        [
            ("adjustment", Decimal("8.00")),
            ("discount", Decimal("-0.40")),
            ("commitment", Decimal("-7.60")),
        ]
    )
    assert sum(amount for _, amount in adjustments) == 0


def test_the_database_refuses_to_change_a_finalized_invoice(october: psycopg.Connection) -> None:
    close(october, "2026-10")
    invoice_id, number = october.execute(
        "SELECT invoice_id, invoice_number FROM invoices WHERE tenant_id = 'acme'"
    ).fetchone() or (None, None)
    statements = [
        ("UPDATE invoices SET total = 0 WHERE invoice_id = %s", (invoice_id,)),
        ("DELETE FROM invoices WHERE invoice_id = %s", (invoice_id,)),
        ("UPDATE invoice_lines SET amount = 0 WHERE invoice_id = %s", (invoice_id,)),
        ("DELETE FROM invoice_lines WHERE invoice_id = %s", (invoice_id,)),
        (
            "INSERT INTO invoice_lines (invoice_id, line_no, tenant_id, kind, quantity, amount)"
            " VALUES (%s, 99, 'acme', 'discount', 0, -1)",
            (invoice_id,),
        ),
        ("TRUNCATE invoice_lines", ()),
    ]
    for statement, params in statements:
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation) as refused:
            october.execute(statement, params)
        assert "finalized" in str(refused.value), statement
    assert invoice_rows(october, OCT)["acme"]["total"] == Decimal("3.34")
    assert number is not None


# --- prices --------------------------------------------------------------------------------------


def test_importing_the_list_prices_twice_changes_nothing(
    conn: psycopg.Connection, settings: Settings
) -> None:
    catalog.add_models(
        conn,
        [
            catalog.ModelRow("claude-sonnet-4", "anthropic", "Claude Sonnet 4"),
            catalog.ModelRow("grok-4", "xai", "Grok 4"),
        ],
    )
    prices = str(PROJECT_ROOT / "prices" / "list-prices.yaml")
    first = ok(metering(settings, "prices", "import", prices))
    assert " 0 unchanged" in first
    stored = conn.execute("SELECT * FROM price_entries ORDER BY entry_id").fetchall()
    models = conn.execute("SELECT * FROM models ORDER BY model_id").fetchall()

    second = ok(metering(settings, "prices", "import", prices))
    assert "0 prices added, 0 replaced" in second
    assert conn.execute("SELECT * FROM price_entries ORDER BY entry_id").fetchall() == stored
    assert conn.execute("SELECT * FROM models ORDER BY model_id").fetchall() == models
    thresholds = dict(conn.execute("SELECT model_id, long_context_above FROM models").fetchall())
    assert thresholds == {"claude-sonnet-4": 200_000, "grok-4": 128_000}, "ingest flags with these"

    listed = ok(
        metering(
            settings,
            "prices",
            "list",
            "--at",
            "2026-10-01",
            "--model",
            "gpt-4.1",
            "--format",
            "csv",
        )
    )
    assert "gpt-4.1,standard,input,,,2.00,USD" in listed


def test_an_invalid_price_file_is_refused_with_its_file_and_line(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    broken = write_price_file(
        tmp_path,
        "currency: USD\nprices:\n  - model: m\n    effective_from: 2026-01-01\n"
        "    standard: {input: 1.0O, output: 2.00}\n",
        "broken.yaml",
    )
    result = metering(settings, "prices", "import", str(broken))
    assert result.returncode != 0
    assert f"{broken}:5:" in result.stderr
    assert conn.execute("SELECT count(*) FROM price_entries").fetchone() == (0,)

    csv_file = write_price_file(
        tmp_path,
        "model,token_class,service_tier,currency,price_per_million,effective_from\n"
        "m,input,standard,USD,1.00,2026-01-01\n"
        "m,output,sometimes,USD,2.00,2026-01-01\n",
        "broken.csv",
    )
    result = metering(settings, "prices", "import", str(csv_file))
    assert result.returncode != 0
    assert f"{csv_file}:3: service_tier 'sometimes'" in result.stderr


def test_a_price_change_that_would_rewrite_an_invoiced_period_is_refused(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    cheaper = PRICE_FILE.replace("output: 8.00", "output: 7.00")
    changed = write_price_file(tmp_path, cheaper, "cheaper.yaml")
    refused = metering(settings, "prices", "import", str(changed))
    assert refused.returncode != 0
    assert "--replace" in refused.stderr
    refused = metering(settings, "prices", "import", str(changed), "--replace")
    assert refused.returncode != 0
    assert "already invoiced" in refused.stderr

    # a new block from December, ending the old one there, is fine
    december = PRICE_FILE.replace(
        "  - model: tiered-70b               # graduated standard input: 2.00 up to 1M, then 1.50\n"
        "    effective_from: 2026-01-01\n",
        "  - model: tiered-70b\n    effective_from: 2026-01-01\n    effective_to: 2026-12-01\n",
    ) + (
        "  - model: tiered-70b\n    effective_from: 2026-12-01\n"
        "    standard: {input: 1.00, output: 4.00}\n    batch: {input: 0.50, output: 2.00}\n"
    )
    new_block = write_price_file(tmp_path, december, "december.yaml")
    out = ok(metering(settings, "prices", "import", str(new_block), "--replace"))
    assert "4 prices added, 5 replaced" in out


def test_the_store_says_why_an_import_is_refused_and_the_cli_which_flag_would_pass_it(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    cheaper = write_price_file(
        tmp_path, PRICE_FILE.replace("output: 8.00", "output: 7.00"), "cheaper.yaml"
    )
    with pytest.raises(PricesChangedError) as changed:
        import_prices(october, load_price_file(cheaper))
    with pytest.raises(PricesReachInvoicedError) as invoiced:
        import_prices(october, load_price_file(cheaper), replace_changed=True)
    for refusal in (changed.value, invoiced.value):
        assert not {"--replace", "--dry-run", "--correct-invoiced"} & set(str(refusal).split())

    refused = metering(settings, "prices", "import", str(cheaper))
    assert refused.returncode == 2
    assert refused.stderr.rstrip().endswith(", or pass --replace to replace the stored entries")
    refused = metering(settings, "prices", "import", str(cheaper), "--replace")
    assert refused.returncode == 2
    assert refused.stderr.rstrip().endswith(
        ": see which invoices it would adjust with --dry-run, then import it with"
        " --correct-invoiced to bill the difference on each tenant's next invoice"
    )


def test_the_store_names_an_unknown_tenant_without_prescribing_a_command(
    conn: psycopg.Connection,
) -> None:
    with pytest.raises(UnknownTenantError) as unknown:
        set_contract(conn, "nobody", OCT, discount_percent=Decimal("5"))
    assert str(unknown.value) == "unknown tenant 'nobody': it is not in the catalog"


# --- price corrections ---------------------------------------------------------------------------

SONNET_FROM_OCT_15 = "    standard: {input: 2.00, cached_input: 0.20, output: 10.00}\n"
# The invoiced October prices of sonnet from Oct 15 were too low: input 2.50, output 12.00.
SONNET_UP = PRICE_FILE.replace(
    SONNET_FROM_OCT_15, "    standard: {input: 2.50, cached_input: 0.20, output: 12.00}\n"
)
assert SONNET_UP != PRICE_FILE


def adjustment(
    model: str, token_class: str, tier: int, quantity: int, price: str, sign: int = 1
) -> tuple[Any, ...]:
    """A standard-tier adjustment line of October, its amount worked out by hand."""
    amount = money(quantity, price) * sign
    line = (model, token_class, "standard", tier, quantity * sign, Decimal(price), amount)
    return ("adjustment", *line, "2026-10")


def discount_of(subtotal: Decimal, percent: int) -> Decimal:
    return (subtotal * percent / 100).quantize(CENT, ROUND_HALF_EVEN)


def marks(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """Everything a correction writes besides prices: the imports and the marked periods."""
    imports = conn.execute("SELECT import_id, corrected FROM price_imports ORDER BY 1")
    periods = conn.execute(
        "SELECT tenant_id, period_label, repriced_by FROM period_billing"
        " WHERE repriced_by IS NOT NULL ORDER BY 1, 2"
    )
    return [*imports.fetchall(), *periods.fetchall()]


def test_a_price_correction_up_is_billed_on_the_next_invoice_and_october_never_changes(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    invoiced = invoice_rows(october, OCT)
    fix = write_price_file(tmp_path, SONNET_UP, "fix.yaml")
    out = ok(metering(settings, "prices", "import", str(fix), "--replace", "--correct-invoiced"))
    assert "0 prices added, 2 replaced" in out

    close(october, "2026-11", force=True)
    november = invoice_rows(october, NOV)
    # globex: 800,000 standard input and 100,000 output tokens after Oct 15 cost more, and its
    # 10% discount grows with them; its long-context and batch tokens keep their prices
    globex = expected_october()["globex"]["subtotal"]
    more = Decimal("0.40") + Decimal("0.20")
    change = discount_of(globex, 10) - discount_of(globex + more, 10)
    discount = ("discount", None, None, None, None, 0, None, change, "2026-10")
    assert sorted(november["globex"]["lines"], key=str) == sorted(
        [
            adjustment("sonnet", "input", 0, 800_000, "2.00", -1),
            adjustment("sonnet", "input", 0, 800_000, "2.50"),
            adjustment("sonnet", "output", 0, 100_000, "10.00", -1),
            adjustment("sonnet", "output", 0, 100_000, "12.00"),
            discount,
        ],
        key=str,
    )
    assert november["globex"]["subtotal"] == 0
    assert november["globex"]["total"] == more + change
    # wayne pays its own input price, so only its output is corrected
    assert sorted(november["wayne"]["lines"], key=str) == sorted(
        [
            adjustment("sonnet", "output", 0, 100_000, "10.00", -1),
            adjustment("sonnet", "output", 0, 100_000, "12.00"),
        ],
        key=str,
    )
    assert "acme" not in november, "tiered-70b's prices did not change"
    assert invoice_rows(october, OCT) == invoiced, "a finalized invoice never changes"


def test_a_price_correction_down_credits_the_difference_of_the_rounded_lines(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    # tiered-70b's second band (above 1M tokens of the period) should have cost 1.20, not 1.50
    cheaper = write_price_file(tmp_path, PRICE_FILE.replace("- {price: 1.50}", "- {price: 1.20}"))
    ok(metering(settings, "prices", "import", str(cheaper), "--replace", "--correct-invoiced"))

    close(october, "2026-11", force=True)
    november = invoice_rows(october, NOV)
    # the period is re-rated as a whole: its band volume puts 612,345 of acme's tokens above
    # 1M; initech's 1,000,000 are all in the first band, so its invoice adjusts nothing
    in_second_band = 700_000 - (1_000_000 - 612_345 - 300_000)
    assert sorted(november["acme"]["lines"], key=str) == sorted(
        [
            adjustment("tiered-70b", "input", 1, in_second_band, "1.50", -1),  # -0.92
            adjustment("tiered-70b", "input", 1, in_second_band, "1.20"),  # 0.73
        ],
        key=str,
    )
    # each line is rounded, and the credit is their difference: 0.73 - 0.92 = -0.19, where the
    # exact difference, 612,345 x 0.30 / 1M = 0.1837035, would round to 0.18
    assert november["acme"]["total"] == Decimal("-0.19")
    assert all(line[8] is None for line in november["initech"]["lines"])


def test_a_correction_is_billed_once_and_a_later_one_only_by_its_own_difference(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    fix = write_price_file(tmp_path, SONNET_UP, "fix.yaml")
    flags = ("--replace", "--correct-invoiced")
    ok(metering(settings, "prices", "import", str(fix), *flags))
    written = marks(october)
    # the fixture's import, this one (a correction), and the two periods whose bills it changes
    assert written == [(1, False), (2, True), ("globex", "2026-10", 2), ("wayne", "2026-10", 2)]
    again = ok(metering(settings, "prices", "import", str(fix), *flags))
    assert "0 prices added, 0 replaced" in again and "re-rated" not in again
    assert marks(october) == written, "importing the same correction again marks nothing"

    close(october, "2026-11", force=True)
    assert [r.outcome for r in close(october, "2026-11", force=True)].count("invoiced") == 0
    november = invoice_rows(october, NOV)
    assert len(november["wayne"]["lines"]) == 2
    assert marks(october) == written[:2], "the adjusted periods are no longer marked"
    ok(metering(settings, "prices", "import", str(fix), *flags))
    close_period(
        october,
        "2026-12",
        now=at(5, month=1) + timedelta(days=365),
        grace=timedelta(0),
        late_window=timedelta(0),
        issuer=ISSUER,
    )
    assert "wayne" not in invoice_rows(october, datetime(2026, 12, 1, tzinfo=UTC))

    # output from Oct 15 is corrected once more, to 11.00: December adjusts 12.00 -> 11.00 only
    second = write_price_file(tmp_path, SONNET_UP.replace("output: 12.00", "output: 11.00"))
    ok(metering(settings, "prices", "import", str(second), *flags))
    close_period(
        october,
        "2027-01",
        now=at(5, month=2) + timedelta(days=365),
        grace=timedelta(0),
        late_window=timedelta(0),
        issuer=ISSUER,
    )
    january = invoice_rows(october, datetime(2027, 1, 1, tzinfo=UTC))
    assert sorted(january["wayne"]["lines"], key=str) == sorted(
        [
            adjustment("sonnet", "output", 0, 100_000, "12.00", -1),
            adjustment("sonnet", "output", 0, 100_000, "11.00"),
        ],
        key=str,
    )
    assert january["wayne"]["total"] == Decimal("-0.10")


def test_a_close_never_bills_with_prices_an_import_changed_meanwhile(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    importer = psycopg.connect(settings.psycopg_dsn)
    importer.execute("SELECT 1")  # a transaction is open: the import runs in it, uncommitted
    entries = load_price_file(write_price_file(tmp_path, SONNET_UP, "fix.yaml"))
    import_prices(importer, entries, replace_changed=True)  # October is not closed yet
    with (
        psycopg.connect(settings.psycopg_dsn, autocommit=True) as closer,
        ThreadPoolExecutor(1) as pool,
    ):
        closing = pool.submit(close, closer, "2026-10")  # reads the book before the import

        def close_waits() -> bool:
            assert not closing.done(), closing.result()
            return october.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone() != (0,)

        poll_until(close_waits, "the close waiting for the import", timeout_s=30)
        importer.commit()
        importer.close()
        closing.result(timeout=60)
    globex = invoice_rows(october, OCT)["globex"]["lines"]
    input_prices = {line[6] for line in globex if line[1:4] == ("sonnet", "input", "standard")}
    assert input_prices == {Decimal("3.00"), Decimal("2.50"), Decimal("4.00")}, "2.00 was stale"


def test_a_dry_run_lists_the_invoices_a_correction_adjusts_and_changes_nothing(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    numbers = {t: row["number"] for t, row in invoice_rows(october, OCT).items()}
    prices = october.execute("SELECT * FROM price_entries ORDER BY entry_id").fetchall()
    written = marks(october)
    fix = write_price_file(tmp_path, SONNET_UP, "fix.yaml")

    refused = metering(settings, "prices", "import", str(fix), "--replace")
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "already invoiced" in refused.stderr
    assert "--correct-invoiced" in refused.stderr and "--dry-run" in refused.stderr

    out = ok(metering(settings, "prices", "import", str(fix), "--replace", "--dry-run"))
    globex = expected_october()["globex"]["subtotal"]
    more = Decimal("0.60")
    globex_adjustment = more + discount_of(globex, 10) - discount_of(globex + more, 10)
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split() and line.split()[0] in TENANTS
    }
    assert rows == {
        "globex": ["globex", "2026-10", numbers["globex"], str(globex_adjustment), "USD", "5"],
        "wayne": ["wayne", "2026-10", numbers["wayne"], "0.20", "USD", "2"],
    }
    assert "would add 0 prices, replace 2" in out
    assert "to import it, pass --correct-invoiced" in out

    assert october.execute("SELECT * FROM price_entries ORDER BY entry_id").fetchall() == prices
    assert marks(october) == written
    close(october, "2026-11", force=True)
    assert "globex" not in invoice_rows(october, NOV), "nothing was corrected"


def test_a_dry_run_of_a_normal_import_says_what_it_would_store(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    out = ok(metering(settings, "prices", "import", str(write_price_file(tmp_path)), "--dry-run"))
    assert "would add 21 prices, replace 0, leave 0 unchanged" in out
    assert "  add sonnet input standard: 2.00 USD per 1M from 2026-10-15T00:00:00Z" in out
    assert conn.execute("SELECT count(*) FROM price_entries").fetchone() == (0,)


def test_adding_a_model_without_a_price_in_effect_warns(
    october: psycopg.Connection, settings: Settings
) -> None:
    added = metering(settings, "models", "add", "grok-9", "--provider", "xai")
    assert added.returncode == 0
    (warning,) = added.stderr.strip().splitlines()
    assert warning.startswith("warning: model grok-9 has no price in effect now")
    assert "metering prices import" in warning
    priced = metering(settings, "models", "add", "sonnet", "--provider", "anthropic")
    assert "already exists" in ok(priced)
    assert priced.stderr == "", "sonnet has prices"


# --- contracts -----------------------------------------------------------------------------------


def test_contracts_are_effective_dated_and_shown_as_a_history(
    october: psycopg.Connection, settings: Settings
) -> None:
    ok(
        metering(
            settings,
            "tenants",
            "set",
            "acme",
            "--discount-percent",
            "12.5",
            "--effective-from",
            "2026-10-15",
        )
    )
    ok(
        metering(
            settings,
            "tenants",
            "set",
            "acme",
            "--minimum-commitment",
            "100",
            "--effective-from",
            "2026-12-01",
        )
    )
    import json

    shown = json.loads(ok(metering(settings, "tenants", "contract", "acme", "--format", "json")))
    history = [
        (c["terms"], c["effective_from"][:10], c["discount_percent"], c["minimum_commitment"])
        for c in shown["contracts"]
    ]
    assert history == [
        ("default", "1970-01-01", "0", None),
        ("contract", "2026-10-15", "12.5", None),
        ("contract", "2026-12-01", "12.5", "100"),
    ]
    # the version that took effect last during October governs all of October
    close(october, "2026-10")
    acme = invoice_rows(october, OCT)["acme"]
    assert acme["total"] == Decimal("3.34") - (Decimal("3.34") * Decimal("0.125")).quantize(
        CENT, ROUND_HALF_EVEN
    )

    refused = metering(
        settings,
        "tenants",
        "set",
        "acme",
        "--discount-percent",
        "50",
        "--effective-from",
        "2026-10-20",
    )
    assert refused.returncode != 0
    assert "invoiced until 2026-11-01" in refused.stderr
    refused = metering(settings, "tenants", "set", "acme", "--anchor-day", "15")
    assert refused.returncode != 0
    assert "anchor day" in refused.stderr

    shown = json.loads(ok(metering(settings, "tenants", "contract", "wayne", "--format", "json")))
    assert [(o["model"], o["token_class"], o["price_per_million"]) for o in shown["overrides"]] == [
        ("sonnet", "input", "1.00")
    ]


def test_an_override_can_be_ended_and_bands_given(
    october: psycopg.Connection, settings: Settings
) -> None:
    ok(
        metering(
            settings,
            "tenants",
            "override",
            "wayne",
            "--model",
            "sonnet",
            "--token-class",
            "input",
            "--tier",
            "standard",
            "--price",
            "list",
            "--effective-from",
            "2026-10-20",
        )
    )
    ok(
        metering(
            settings,
            "tenants",
            "override",
            "acme",
            "--model",
            "tiered-70b",
            "--token-class",
            "output",
            "--tier",
            "standard",
            "--price",
            "50000:4.00,2.00",
            "--effective-from",
            "2026-10-01",
        )
    )
    close(october, "2026-10")
    invoices = invoice_rows(october, OCT)
    wayne = {(q, p) for kind, m, c, *_, q, p, _, _ in invoices["wayne"]["lines"] if c == "input"}
    assert wayne == {(1_000_000, Decimal("1.00")), (2_000_000, Decimal("2.00"))}
    acme = [
        (tier, q, p)
        for _, m, c, s, tier, q, p, _, _ in invoices["acme"]["lines"]
        if (c, s) == ("output", "standard")
    ]
    assert acme == [(0, 50_000, Decimal("4.00")), (1, 30_000, Decimal("2.00"))]


# --- export --------------------------------------------------------------------------------------


def test_export_writes_one_file_per_invoice_and_a_summary(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    import json

    close(october, "2026-10")
    numbers = [r[0] for r in october.execute("SELECT invoice_number FROM invoices ORDER BY 1")]
    for fmt in ("json", "csv", "pdf"):
        out = tmp_path / fmt
        result = metering(
            settings,
            "invoices",
            "export",
            "--period",
            "2026-10",
            "--format",
            fmt,
            "--out",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no progress lines litter a log; they are for terminals
        names = sorted(p.name for p in out.iterdir())
        assert names == sorted([*(f"{n}.{fmt}" for n in numbers), f"summary-2026-10.{fmt}"])

    summary = json.loads((tmp_path / "json" / "summary-2026-10.json").read_text())
    assert summary["totals"] == [{"currency": "USD", "invoices": 5, "total": "85.71"}]
    globex = json.loads((tmp_path / "json" / f"{numbers[1]}.json").read_text())
    assert (globex["tenant_id"], globex["total"]) == ("globex", "8.37")
    rows = list(csv.DictReader((tmp_path / "csv" / f"{numbers[1]}.csv").open()))
    assert len(rows) == len(globex["lines"])
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("8.37")
    [page] = PdfReader(tmp_path / "pdf" / f"{numbers[1]}.pdf").pages
    text = page.extract_text()
    assert numbers[1] in text and "Account: globex" in text and "Amount due 8.37" in text


def test_exporting_one_tenant_into_a_period_export_keeps_the_period_summary(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    import json

    close(october, "2026-10")
    for fmt in ("json", "csv", "pdf"):
        out = tmp_path / fmt

        def export(*only: str, fmt: str = fmt, out: Path = out) -> str:
            args = ("--period", "2026-10", "--format", fmt, "--out", str(out), *only)
            return ok(metering(settings, "invoices", "export", *args))

        export()
        summary = out / f"summary-2026-10.{fmt}"
        period_summary = summary.read_bytes()
        said = export("--tenant", "globex")
        assert summary.read_bytes() == period_summary, "the period's summary is left as it is"
        assert f"summary-2026-10-globex.{fmt}" in said
        assert (out / f"summary-2026-10-globex.{fmt}").exists()

    everyone = json.loads((tmp_path / "json" / "summary-2026-10.json").read_text())
    globex = json.loads((tmp_path / "json" / "summary-2026-10-globex.json").read_text())
    assert len(everyone["invoices"]) == 5
    assert [i["tenant_id"] for i in globex["invoices"]] == ["globex"]
    assert globex["totals"] == [{"currency": "USD", "invoices": 1, "total": "8.37"}]


OLD_ISSUER = {
    "METERING_ISSUER_NAME": "Old Name GmbH",
    "METERING_ISSUER_ADDRESS": "1 Old Street;10115 Berlin",
    "METERING_ISSUER_TAX_ID": "DE111111111",
    "METERING_PAYMENT_TERMS_DAYS": "14",
}
NEW_ISSUER = {
    "METERING_ISSUER_NAME": "New Name AG",
    "METERING_ISSUER_ADDRESS": "2 New Road;8001 Zürich",
    "METERING_ISSUER_TAX_ID": "CHE-222.222.222",
    "METERING_PAYMENT_TERMS_DAYS": "45",
}


def test_an_issued_invoice_keeps_its_issuer_and_terms_when_the_settings_change(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    import json

    def export(out: Path, issuer: dict[str, str]) -> dict[str, bytes]:
        for fmt in ("json", "csv", "pdf"):
            args = ("--period", "2026-10", "--format", fmt, "--out", str(out / fmt))
            ok(metering(settings, "invoices", "export", *args, **issuer))
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.*"))}

    ok(metering(settings, "invoices", "close", "--period", "2026-10", **OLD_ISSUER))
    number = invoice_rows(october, OCT)["acme"]["number"]
    issued = export(tmp_path / "issued", OLD_ISSUER)
    assert export(tmp_path / "later", NEW_ISSUER) == issued, "byte for byte, every file"
    document = json.loads(issued[f"json/{number}.json"])
    assert document["issuer"] == {
        "name": "Old Name GmbH",
        "address": ["1 Old Street", "10115 Berlin"],
        "tax_id": "DE111111111",
    }
    assert (document["payment_terms_days"], document["due_on"]) == (
        14,
        (date.fromisoformat(document["issued_on"]) + timedelta(days=14)).isoformat(),
    )
    shown = metering(settings, "invoices", "show", number, "--format", "json", **NEW_ISSUER)
    assert shown.stdout.encode() == issued[f"json/{number}.json"]

    add_usage(october, "acme", "tiered-70b", at(3, month=11), input_tokens=1_000)
    close_november = ("--period", "2026-11", "--tenant", "acme", "--force")
    ok(metering(settings, "invoices", "close", *close_november, **NEW_ISSUER))
    [(november,)] = october.execute(
        "SELECT invoice_number FROM invoices WHERE period_label = '2026-11'"
    ).fetchall()
    later = json.loads(
        ok(metering(settings, "invoices", "show", november, "--format", "json", **OLD_ISSUER))
    )
    assert later["issuer"]["name"] == "New Name AG" and later["payment_terms_days"] == 45


def test_invoices_show_prints_the_exported_json_document(
    october: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    close(october, "2026-10")
    number = invoice_rows(october, OCT)["acme"]["number"]
    exported = tmp_path / f"{number}.json"
    ok(
        metering(
            settings,
            "invoices",
            "export",
            "--period",
            "2026-10",
            "--format",
            "json",
            "--out",
            str(tmp_path),
        )
    )
    shown = metering(settings, "invoices", "show", number, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode() == exported.read_bytes()
    rows = list(
        csv.DictReader(
            io.StringIO(ok(metering(settings, "invoices", "show", number, "--format", "csv")))
        )
    )
    assert rows and {row["long_context"] for row in rows} <= {"true", "false"}


# --- reporting -----------------------------------------------------------------------------------


def test_reporting_views_agree_with_the_invoices_and_the_usage(october: psycopg.Connection) -> None:
    close(october, "2026-10")
    revenue = october.execute(
        "SELECT model, currency, sum(amount) FROM reporting.revenue_by_model_daily"
        " GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    billed = october.execute(
        "SELECT model, 'USD', sum(amount) FROM reporting.invoice_lines"
        " WHERE kind IN ('usage', 'adjustment') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert revenue == billed
    days = october.execute(
        "SELECT day, amount FROM reporting.revenue_by_model_daily WHERE model = 'tiered-70b'"
        " ORDER BY day"
    ).fetchall()
    assert [d.day for d, _ in days] == [3, 5, 10, 20], "the days with tiered-70b usage"
    assert all(amount == amount.quantize(CENT) for _, amount in days)

    daily = october.execute(
        "SELECT sum(events), sum(input_tokens), sum(output_tokens) FROM reporting.usage_daily"
    ).fetchone()
    hourly = october.execute(
        "SELECT sum(events), sum(input_tokens), sum(output_tokens) FROM reporting.usage_hourly"
    ).fetchone()
    assert daily == hourly

    assert october.execute("SELECT count(*) FROM reporting.unbilled_usage").fetchone() == (0,)
    add_usage(october, "acme", "tiered-70b", at(2, month=11), input_tokens=5)
    assert october.execute(
        "SELECT tenant_id, status, input_tokens FROM reporting.unbilled_usage"
    ).fetchall() == [("acme", "not_invoiced", 5)]


# --- roles ---------------------------------------------------------------------------------------


@pytest.fixture
def as_role(settings: Settings) -> Iterator[Any]:
    connections: list[psycopg.Connection] = []

    def connect(role: str) -> psycopg.Connection:
        connection = psycopg.connect(settings.psycopg_dsn, autocommit=True)
        connections.append(connection)
        connection.execute(f"SET ROLE {role}")
        return connection

    yield connect
    for connection in connections:
        connection.close()


REPORTING_VIEWS = (
    "usage_hourly",
    "usage_daily",
    "invoices",
    "invoice_lines",
    "revenue_by_model_daily",
    "unbilled_usage",
)


def test_the_reader_reads_reporting_and_nothing_else(
    october: psycopg.Connection, as_role: Any
) -> None:
    close(october, "2026-10")
    reader = as_role("metering_reader")
    every_view = [
        name
        for (name,) in october.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'reporting'"
        )
    ]
    assert set(REPORTING_VIEWS) <= set(every_view)
    for view in every_view:  # also views other migrations add
        reader.execute(f"SELECT * FROM reporting.{view}").fetchall()
    assert reader.execute("SELECT count(*) FROM reporting.invoices").fetchone() == (5,)

    refused = [
        "SELECT * FROM public.invoices",
        "SELECT * FROM public.usage_ledger",
        "SELECT * FROM public.tenants",
        "SELECT * FROM public.price_entries",
        "INSERT INTO reporting.invoices (invoice_number) VALUES ('x')",
        "UPDATE reporting.invoices SET total = 0",
        "DELETE FROM reporting.invoice_lines",
        "INSERT INTO public.tenants VALUES ('evil', 'Evil')",
        "CREATE TABLE reporting.mine (x int)",
        "CREATE TABLE public.mine (x int)",
    ]
    for statement in refused:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(statement)


def test_a_tenant_login_sees_only_its_own_rows(
    october: psycopg.Connection, login_roles: Logins, as_role: Any
) -> None:
    close(october, "2026-10")
    globex = login_roles.connect(login_roles.grant("globex"))
    for view in ("usage_hourly", "usage_daily", "invoices", "invoice_lines"):
        tenants = {r[0] for r in globex.execute(f"SELECT tenant_id FROM reporting.{view}")}
        assert tenants == {"globex"}, view
    assert globex.execute(
        "SELECT sum(amount) FROM reporting.revenue_by_model_daily"
    ).fetchone() == (Decimal("9.30"),)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        globex.execute("SELECT * FROM public.invoices")

    nobody = as_role("metering_tenant")  # a session that logged in as no tenant's login
    assert nobody.execute("SELECT count(*) FROM reporting.invoices").fetchone() == (0,)
    assert nobody.execute("SELECT count(*) FROM reporting.usage_hourly").fetchone() == (0,)


def test_downgrading_revokes_in_this_database_and_keeps_the_shared_roles(
    empty_database: str, base_settings: Settings
) -> None:
    migrate.upgrade(empty_database, "0004")  # the roles exist already: created elsewhere
    migrate.downgrade(empty_database, "0003")
    dsn = empty_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as connection:
        roles = connection.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'metering\\_%' ORDER BY 1"
        ).fetchall()
        assert ("metering_reader",) in roles and ("metering_tenant",) in roles
        grants = connection.execute(
            "SELECT count(*) FROM information_schema.role_table_grants"
            " WHERE grantee IN ('metering_reader', 'metering_tenant')"
        ).fetchone()
        assert grants == (0,)
        assert connection.execute(
            "SELECT has_schema_privilege('public', 'public', 'USAGE')"
        ).fetchone() == (True,)
    migrate.upgrade(empty_database)
