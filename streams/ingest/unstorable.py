"""Finding the records a database refuses, without retrying the whole batch for ever."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

_T = TypeVar("_T")


async def bisect_refused(
    items: Sequence[_T], refusal: Callable[[list[_T]], Awaitable[str | None]]
) -> list[tuple[_T, str]]:
    """The items that ``refusal`` refuses on their own, each with its reason: halves of a
    refused set are tried in turn, so k bad items among n cost about 2k·log2(n) trials.
    Items refused only together with others are not singled out."""
    reason = await refusal(list(items))
    if reason is None:
        return []
    if len(items) == 1:
        return [(items[0], reason)]
    middle = len(items) // 2
    return [
        *await bisect_refused(items[:middle], refusal),
        *await bisect_refused(items[middle:], refusal),
    ]


def error_text(error: BaseException) -> str:
    """The database's one-line message (the ledger stores any text it holds)."""
    lines = str(error).splitlines() or [type(error).__name__]
    return lines[0]
