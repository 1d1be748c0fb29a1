"""Finding the records a database refuses, without retrying the whole batch for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from streams.ingest.unstorable import bisect_refused


def refusing(bad: set[int], trials: list[int]) -> Callable[[list[int]], Awaitable[str | None]]:
    """A database that refuses every set holding one of ``bad``; ``trials`` records each try."""

    async def refusal(part: list[int]) -> str | None:
        trials.append(len(part))
        found = sorted(bad.intersection(part))
        return f"refused {found}" if found else None

    return refusal


def test_each_refused_record_is_singled_out_with_its_error_in_few_trials() -> None:
    trials: list[int] = []
    found = asyncio.run(bisect_refused(list(range(2000)), refusing({13, 1500}, trials)))
    assert found == [(13, "refused [13]"), (1500, "refused [1500]")]
    assert len(trials) <= 2 * 2 * 11 + 1  # about 2k·log2(n) trials, not n


def test_a_batch_the_database_accepts_needs_one_trial_and_refuses_nothing() -> None:
    trials: list[int] = []
    assert asyncio.run(bisect_refused(list(range(50)), refusing(set(), trials))) == []
    assert trials == [50]


def test_records_refused_only_together_are_not_blamed_one_by_one() -> None:
    async def only_together(part: list[int]) -> str | None:
        return "refused" if {3, 4} <= set(part) else None

    assert asyncio.run(bisect_refused(list(range(8)), only_together)) == []
