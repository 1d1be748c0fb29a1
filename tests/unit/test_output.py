"""The command line's tables: laid out as rich lays them out, at a fraction of its cost."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from metering.cli.output import Format, _rich_table, render

# Text of every width rich measures: ASCII, accents, combining marks, East Asian wide
# characters, emoji, and spaces at either end.
WORDS = [
    "acme",
    "",
    "t-0001",
    "Zürich",
    "e\u0301",
    "漢字",
    "東京都",
    "😀",
    " padded ",
    "INV-2026-000001",
]


def generated_rows(rng: random.Random, count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    kinds = [
        lambda: rng.choice(WORDS),
        lambda: rng.randrange(-(10**12), 10**12),
        lambda: Decimal(rng.randrange(-(10**9), 10**9)) / 100,
        lambda: start + timedelta(seconds=rng.randrange(10**7)),
        lambda: None,
        lambda: rng.choice([True, False]),
    ]
    columns = {f"c{n}{rng.choice(WORDS)}": rng.sample(kinds, 2) for n in range(rng.randint(1, 6))}
    return [{name: rng.choice(made)() for name, made in columns.items()} for _ in range(count)]


def test_every_table_is_laid_out_as_rich_lays_it_out() -> None:
    rng = random.Random(7)
    for _ in range(300):
        rows = generated_rows(rng, rng.randint(0, 12))
        columns = list(rows[0]) if rows else ["tenant_id", "total"]
        assert render(rows, columns, Format.table) == _rich_table(rows, columns)


def test_a_cell_with_a_line_break_or_a_tab_is_laid_out_by_rich() -> None:
    rows = [{"tenant_id": "acme", "detail": "no price for\n\tgrok-4"}]
    assert render(rows, ["tenant_id", "detail"], Format.table) == _rich_table(
        rows, ["tenant_id", "detail"]
    )


def test_numbers_are_right_aligned_under_a_rule_as_wide_as_the_table() -> None:
    rows = [{"tenant_id": "acme", "total": Decimal("1234.56")}, {"tenant_id": "globex", "total": 7}]
    assert render(rows, ["tenant_id", "total"], Format.table).splitlines() == [
        "tenant_id     total",
        "───────────────────",
        "acme        1234.56",
        "globex            7",
    ]


def test_a_thousand_rows_print_one_line_each() -> None:
    rows = [{"tenant_id": f"t-{n:04d}", "lines": n} for n in range(1000)]
    lines = render(rows, ["tenant_id", "lines"], Format.table).splitlines()
    assert len(lines) == 1002
    assert lines[-1] == "t-0999        999"
