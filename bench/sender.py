"""The latency case's producer: realistic traffic at a fixed rate, in a process of its own.

Making a realistic event costs about as much CPU as sending it, so every message is made
before the first is sent: on a small machine the traffic generator would otherwise take
CPU from the worker it is measuring. Run as ``python -m bench.sender EVENTS RATE SEED``
with the METERING_* environment of the topic.
"""

from __future__ import annotations

import asyncio
import sys

from bench.drain import traffic
from metering.config import get_settings
from metering.produce.producer import produce
from metering.tools.traffic import TrafficPlan
from metering.wire.kafka_admin import ensure_topics


def main(events: int, rate: float, seed: int) -> None:
    settings = get_settings()
    messages = list(TrafficPlan(traffic(events, seed=seed)).messages())
    asyncio.run(ensure_topics(settings))
    sent = asyncio.run(
        produce(
            messages,
            bootstrap_servers=settings.kafka_bootstrap,
            topic=settings.topic_usage,
            rate=rate,
        )
    )
    print(f"sent {sent:,} messages to {settings.topic_usage} at up to {rate:,.0f}/s")


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
