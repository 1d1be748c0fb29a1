"""Topic names come from settings: producers, the DLQ replayer and reports depend on them."""

from __future__ import annotations

import faust

from metering.config import Settings


def usage_events(app: faust.App, settings: Settings) -> faust.TopicT:
    return app.topic(
        settings.topic_usage,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )


def dead_letters(app: faust.App, settings: Settings) -> faust.TopicT:
    return app.topic(
        settings.topic_dlq,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
