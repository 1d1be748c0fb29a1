"""The quota side of the pipeline as a client sees it: the HTTP answer and the topics."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from metering.config import Settings


def ask_quota(
    port: int | None, tenant: str, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """``GET /v1/quota/{tenant}`` of the worker on ``port``: the status and the JSON body."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/quota/{tenant}",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def read_topic(settings: Settings, topic: str, timeout_s: float = 5) -> list[dict[str, Any]]:
    """Every record of a topic, from the start, as JSON (waits up to the timeout for more)."""

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        values: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    values.extend(orjson.loads(r.value) for r in batch)
        finally:
            await consumer.stop()
        return values

    return asyncio.run(read())
