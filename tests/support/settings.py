"""Settings that keep one test's run apart from every other's on the shared services."""

from __future__ import annotations

import uuid
from pathlib import Path

from metering.config import Settings
from metering.services.process import free_port


def isolated_settings(base_settings: Settings, database_url: str, scratch: Path) -> Settings:
    """Settings with their own database, topics, consumer group and web port, and Faust's
    files in ``scratch`` (not in the shared state dir, where they would pile up)."""
    suffix = uuid.uuid4().hex[:10]
    return base_settings.model_copy(
        update={
            "database_url": database_url,
            "topic_usage": f"usage.events.{suffix}",
            "topic_dlq": f"usage.events.dlq.{suffix}",
            "topic_quota_state": f"quota.state.{suffix}",
            "topic_quota_alerts": f"quota.alerts.{suffix}",
            "group_id": f"metering-test-{suffix}",
            "worker_web_port": free_port(),
            "worker_data_dir": scratch / "worker-data",
            "batch_window_s": 0.2,
        }
    )
