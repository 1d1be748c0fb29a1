"""What the serving layer imports to send usage events to Kafka.

    from metering.produce.producer import UsageProducer
    from metering.produce.providers import from_openai_chat

    async with UsageProducer("127.0.0.1:19092") as producer:
        usage = from_openai_chat(response.usage.model_dump())
        event_id = await producer.send_usage(tenant_id="acme", model="gpt-4.1", usage=usage)

``send_usage`` returns once the broker has acknowledged the event (``acks="all"``), so the
event is durable. The producer is idempotent, so its own retries never duplicate a
message; a retry by the caller with the same ``event_id`` is deduplicated by the ledger.
Events are JSON (schema v1) keyed by tenant, so one tenant's events stay in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Required, TypedDict, Unpack

from metering.billing.events import UsageEvent, event_to_json
from metering.billing.tokens import Usage
from metering.produce.event_ids import uuid7

if TYPE_CHECKING:  # aiokafka is loaded when a producer is made, not to import this module
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import RecordMetadata

USAGE_TOPIC = "usage.events"
BULK_CHUNK = 20_000
"""Messages in flight before ``produce`` waits for their acknowledgements."""
PROGRESS_INTERVAL_S = 0.1


class UsageFields(TypedDict, total=False):
    """The keyword arguments of ``usage_event`` and ``UsageProducer.send_usage``."""

    tenant_id: Required[str]
    model: Required[str]
    usage: Required[Usage | Mapping[str, int]]
    occurred_at: datetime | None
    event_id: uuid.UUID | str | None
    service_tier: str
    request_id: str | None
    deployment: str | None
    region: str | None
    attributes: Mapping[str, str] | None


def usage_event(
    *,
    tenant_id: str,
    model: str,
    usage: Usage | Mapping[str, int],
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | str | None = None,
    service_tier: str = "standard",
    request_id: str | None = None,
    deployment: str | None = None,
    region: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> UsageEvent:
    """One event of schema v1; ``event_to_json`` writes it as the message value.

    ``occurred_at`` defaults to now and must be timezone-aware; ``event_id`` defaults to a
    fresh time-ordered UUID (version 7, ``event_ids.uuid7``). Token counts are checked
    here, so the caller hears of a bad count at once rather than through the dead-letter
    topic.
    """
    if occurred_at is None:
        occurred_at = datetime.now(UTC)
    elif occurred_at.utcoffset() is None:
        raise ValueError(f"occurred_at must be timezone-aware, got naive {occurred_at!r}")
    tokens = usage if isinstance(usage, Usage) else Usage(**usage)
    return UsageEvent(
        event_id=_event_id(event_id),
        tenant_id=tenant_id,
        model=model,
        occurred_at=occurred_at,
        usage=tokens.checked(),
        service_tier=service_tier,
        request_id=request_id,
        deployment=deployment,
        region=region,
        attributes=attributes or {},
    )


def _event_id(event_id: uuid.UUID | str | None) -> uuid.UUID:
    """``event_id`` as a UUID, a fresh UUID7 when ``None``; text that is not one raises."""
    if event_id is None:
        return uuid7()
    return event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event handed to the producer; ``await`` it for the broker's ack and its id."""

    event_id: str
    ack: asyncio.Future[RecordMetadata]

    def __await__(self) -> Generator[Any, None, str]:
        yield from self.ack.__await__()
        return self.event_id


class UsageProducer:
    """An idempotent Kafka producer of usage events; use it as an async context manager."""

    def __init__(self, bootstrap_servers: str, topic: str = USAGE_TOPIC) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._kafka: AIOKafkaProducer | None = None

    async def __aenter__(self) -> UsageProducer:
        # aiokafka binds to the running loop when constructed, so not in __init__.
        kafka = _idempotent_producer(self.bootstrap_servers, linger_ms=5)
        await kafka.start()
        self._kafka = kafka
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        kafka, self._kafka = self._started(), None
        await kafka.stop()

    async def send_usage(self, **fields: Unpack[UsageFields]) -> str:
        """Send one event and wait until the broker has it; returns its ``event_id``."""
        return await (await self.send_usage_nowait(**fields))

    async def send_usage_nowait(self, **fields: Unpack[UsageFields]) -> PendingEvent:
        """Queue one event without waiting for the broker, for high-throughput callers.

        Returns as soon as the event is in the producer's buffer (waiting only when the
        buffer is full); ``await`` the result to learn that the event is durable.
        """
        event = usage_event(**fields)
        ack = await self._started().send(
            self.topic, event_to_json(event), key=event.tenant_id.encode()
        )
        return PendingEvent(str(event.event_id), ack)

    async def send_raw(self, key: bytes, value: bytes) -> RecordMetadata:
        """Send bytes exactly as given, e.g. replayed from the dead-letter topic, and wait."""
        return await self._started().send_and_wait(self.topic, value, key=key)

    def _started(self) -> AIOKafkaProducer:
        if self._kafka is None:
            raise RuntimeError("use UsageProducer as `async with UsageProducer(...) as p:`")
        return self._kafka


class KeyedMessage(Protocol):
    """Anything with Kafka key and value bytes, such as ``traffic.TrafficMessage``."""

    @property
    def key(self) -> bytes: ...

    @property
    def value(self) -> bytes: ...


async def produce(
    messages: Iterable[KeyedMessage],
    *,
    bootstrap_servers: str,
    topic: str,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send ``messages`` in order and wait for every acknowledgement; returns how many.

    Uses its own idempotent producer (``acks="all"``) tuned for bulk: longer linger and
    bigger batches than ``UsageProducer``. Without ``rate`` it goes as fast as the broker
    allows, pipelining sends in chunks of ``BULK_CHUNK``; with ``rate``, at most that many
    messages per second. ``progress`` is called with the count handed to the client so far,
    at most every ``PROGRESS_INTERVAL_S``, and once at the end after all acks.
    """
    kafka = _idempotent_producer(bootstrap_servers, linger_ms=20, max_batch_size=256 * 1024)
    bucket = _TokenBucket(rate) if rate is not None else None
    sent = 0
    reported_at = time.monotonic()
    in_flight: list[Awaitable[RecordMetadata]] = []
    await kafka.start()
    try:
        for message in messages:
            if bucket is not None:
                await bucket.take()
            in_flight.append(await kafka.send(topic, message.value, key=message.key))
            sent += 1
            if len(in_flight) >= BULK_CHUNK:
                await asyncio.gather(*in_flight)
                in_flight.clear()
            if progress is not None and time.monotonic() - reported_at >= PROGRESS_INTERVAL_S:
                progress(sent)
                reported_at = time.monotonic()
        await asyncio.gather(*in_flight)
    finally:
        await kafka.stop()
    if progress is not None:
        progress(sent)
    return sent


class _TokenBucket:
    """Paces a loop to ``rate`` per second without sleeping once per item.

    Tokens accrue continuously up to a twentieth of a second's worth; when the bucket runs
    dry the caller sleeps at least ``MIN_SLEEP_S``, then spends the accrued tokens in a
    burst. That keeps high rates accurate despite the event loop's coarse timers.
    """

    MIN_SLEEP_S = 0.005

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.capacity = max(1.0, rate / 20)
        self._tokens = 1.0
        self._stamp = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep(max((1 - self._tokens) / self.rate, self.MIN_SLEEP_S))


def _idempotent_producer(
    bootstrap_servers: str, *, linger_ms: int, max_batch_size: int = 16384
) -> AIOKafkaProducer:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        compression_type=None,
    )
