"""The Faust application: one consumer group, configured from settings."""

from __future__ import annotations

import faust

from metering.config import Settings


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.faust_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        autodiscover=False,
        topic_replication_factor=settings.replication_factor,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=settings.worker_web_port > 0,
        web_port=max(settings.worker_web_port, 1),
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(settings.session_timeout_s / 5, 0.5),
    )
    return app
