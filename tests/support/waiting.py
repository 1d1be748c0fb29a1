"""Waiting for what the pipeline does in the background, for ``assert``."""

from __future__ import annotations

from collections.abc import Callable

from metering.services.process import poll_until


def eventually(check: Callable[[], object], timeout_s: float = 10) -> bool:
    """Whether ``check()`` comes true within ``timeout_s``: ``assert eventually(...)``."""
    try:
        poll_until(check, "the check", timeout_s=timeout_s)
    except TimeoutError:
        return False
    return True
