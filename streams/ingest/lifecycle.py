"""Stopping safely: a batch is finished and committed, or abandoned uncommitted everywhere."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import NoReturn, TypeVar

from streams.ingest.batch import log

SHUTDOWN_GRACE_S = 20.0
EXIT_ABANDONED_BATCH = 75  # EX_TEMPFAIL: restart me, nothing was committed

_T = TypeVar("_T")


def exit_if_failed(task: asyncio.Future[_T]) -> None:
    """A batch that fails unexpectedly stops the worker at once, uncommitted."""
    if not task.cancelled() and task.exception() is not None:
        exit_uncommitted("unexpected error in a batch", task.exception())


async def finish_or_exit(task: asyncio.Future[_T]) -> _T:
    """Waits for a batch, shielded from cancellation; exits if it cannot finish in time.

    A batch interrupted between the dead-letter publish and the commit is harmless (the
    ledger skips it on replay), but stopping half-way through the loop that drives it
    would leave Kafka offsets and the database telling different stories. Exiting hard is
    the one way to leave an unfinished batch uncommitted everywhere. (A batch that fails
    is handled by ``exit_if_failed``, its done callback, before this wakes up.)
    """
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(task, SHUTDOWN_GRACE_S)
        except TimeoutError:
            exit_uncommitted("stopping mid-batch and the batch could not finish")
        log.info("finished the current batch before stopping")
        raise


def exit_uncommitted(reason: str, error: BaseException | None = None) -> NoReturn:
    log.error("%s: exiting uncommitted, restart to resume", reason, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_ABANDONED_BATCH)
