"""Publishing committed quota effects: alerts to ``quota.alerts``, signals to ``quota.state``."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from metering.config import Settings
from metering.store import quota_store
from metering.store.connection import Reconnecting
from metering.store.quota_store import QuotaEffects
from metering.wire.quota_messages import alert_to_json, signal_to_json

log = logging.getLogger("metering.quotas")


class QuotaPublisher:
    """Publishes committed quota effects: alerts to ``quota.alerts``, signals to the
    compacted ``quota.state`` (both keyed by tenant), then records that they went out."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, db: Reconnecting) -> None:
        self.settings = settings
        self.producer = producer
        self.db = db

    async def publish(self, effects: QuotaEffects) -> None:
        if not effects:
            return
        pending = [
            await self.producer.send(
                self.settings.topic_quota_alerts,
                alert_to_json(alert),
                key=alert.tenant_id.encode(),
            )
            for alert in effects.alerts
        ]
        pending += [
            await self.producer.send(
                self.settings.topic_quota_state,
                signal_to_json(signal),
                key=signal.tenant_id.encode(),
            )
            for signal in effects.signals
        ]
        await asyncio.gather(*pending)
        for signal in effects.signals:
            log.info("quota.state %s: %s", signal.tenant_id, signal.state.value)
        await quota_store.mark_published(await self.db.connection(), effects)
