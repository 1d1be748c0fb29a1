"""Retrying a step while PostgreSQL or Kafka is away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from aiokafka.errors import KafkaError

from metering.store.ledger import RECORD_ERRORS
from streams.ingest.batch import log

_In = TypeVar("_In")
_Out = TypeVar("_Out")


async def retrying(step: Callable[[_In], Awaitable[_Out]], arg: _In) -> _Out:
    """Runs a step until it succeeds, backing off while PostgreSQL or Kafka is away.
    An error caused by a record's content (``RECORD_ERRORS``) is raised at once."""
    delay = 0.2
    while True:
        try:
            return await step(arg)
        except RECORD_ERRORS:
            raise
        except (psycopg.OperationalError, psycopg.errors.TransactionRollback) as exc:
            log.warning("database unavailable, retrying in %.1fs: %s", delay, exc)
        except KafkaError as exc:
            log.warning("dead-letter publish failed, retrying in %.1fs: %r", delay, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
