"""The worker's quota tables: every tenant's limits and state in memory, kept fresh, and the
re-evaluation and outbox sweep that run beside them.

The authoritative quota state is a row per tenant in PostgreSQL, written in the ledger's
transaction, so a worker crash, a replay or a rebalance cannot lose or double-count it
(the partition that carries a tenant's events carries its state with it, wherever the
row is read from). Every worker keeps an in-memory copy of all tenants' states, refreshed
from the rows that changed a few times a second, so any worker can answer
``GET /v1/quota/{tenant_id}`` without a query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg
from aiokafka import AIOKafkaProducer
from mode import Service

from metering.billing.price_book import PriceBook
from metering.billing.quotas.answer import quota_answer
from metering.billing.quotas.state import TenantQuotaState
from metering.config import Settings
from metering.store import quota_store
from metering.store.billing.prices import load_price_book
from metering.store.connection import Reconnecting
from streams.quota.publisher import QuotaPublisher
from streams.quota.rules import QuotaRules

log = logging.getLogger("metering.quotas")

REFRESH_INTERVAL_S = 0.25
PRICES_REFRESH_S = 10.0
SWEEP_AFTER = timedelta(seconds=5)


class QuotaService(Service):
    """Refreshes limits, prices and the in-memory states; re-evaluates; sweeps the outbox."""

    def __init__(self, settings: Settings, rules: QuotaRules) -> None:
        super().__init__()
        self.settings = settings
        self.rules = rules
        self.db = Reconnecting(settings.psycopg_dsn)
        self.states: dict[str, TenantQuotaState] = {}
        self.tenants: frozenset[str] = frozenset()
        self._states_seen_at: datetime | None = None
        self._prices_loaded_at = float("-inf")

    async def on_start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await self.producer.start()
        self.publisher = QuotaPublisher(self.settings, self.producer, self.db)
        await self._refresh()

    async def on_shutdown(self) -> None:
        await self.producer.stop()
        await self.db.close()

    def answer(self, tenant_id: str, model: str | None) -> dict[str, object] | None:
        if tenant_id not in self.tenants:
            return None
        state = self.states.get(tenant_id) or TenantQuotaState(tenant_id)
        limits = self.rules.limits.get(tenant_id, ())
        return quota_answer(state, limits, datetime.now(UTC), state.period_of, model=model)

    @Service.task
    async def _keep_fresh(self) -> None:
        while not self.should_stop:
            try:
                await self._refresh()
                await self._reevaluate_and_sweep()
            except Exception as exc:  # the database may be restarting; try again shortly
                log.warning("quota refresh failed, retrying: %r", exc)
            await self.sleep(REFRESH_INTERVAL_S)

    async def _refresh(self) -> None:
        if time.monotonic() - self._prices_loaded_at > PRICES_REFRESH_S:
            self.rules.prices = await asyncio.to_thread(self._load_prices)
            self._prices_loaded_at = time.monotonic()
        conn = await self.db.connection()
        self.rules.limits = await quota_store.load_limits(conn)
        cursor = await conn.execute("SELECT tenant_id FROM tenants")
        self.tenants = frozenset(t for (t,) in await cursor.fetchall())
        changed, self._states_seen_at = await quota_store.states_changed_since(
            conn, self._states_seen_at
        )
        for state in changed:
            known = self.states.get(state.tenant_id)
            if known is None or state.revision >= known.revision:
                self.states[state.tenant_id] = state

    def _load_prices(self) -> PriceBook:
        with psycopg.connect(self.settings.psycopg_dsn) as conn:
            return load_price_book(conn)

    async def _reevaluate_and_sweep(self) -> None:
        conn = await self.db.connection()
        now = datetime.now(UTC)
        effects = await quota_store.reevaluate_due(conn, now)
        effects.extend(await quota_store.unpublished(conn, now - SWEEP_AFTER))
        await self.publisher.publish(effects)
