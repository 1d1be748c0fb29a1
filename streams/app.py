"""The Faust application: one consumer group, configured from settings."""

from __future__ import annotations

import faust

from metering.config import Settings
from streams.web import DEFAULT_PORT


def create_app(settings: Settings, *, web_port: int | None) -> faust.App:
    """The app; ``web_port`` is the port its web server serves on, ``None`` for none."""
    datadir = settings.faust_data_dir
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.faust_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=datadir,
        autodiscover=False,
        topic_replication_factor=settings.replication_factor,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=web_port is not None,
        web_port=web_port or DEFAULT_PORT,  # unused when the web server is off
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(settings.session_timeout_s / 5, 0.5),
    )
    return app
