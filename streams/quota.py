"""Quotas in the worker: count usage with the ledger, publish alerts and the block signal,
re-evaluate when windows end or limits change, and answer the gateway over HTTP.

The authoritative quota state is a row per tenant in PostgreSQL, written in the ledger's
transaction, so a worker crash, a replay or a rebalance cannot lose or double-count it
(the partition that carries a tenant's events carries its state with it, wherever the
row is read from). Every worker keeps an in-memory copy of all tenants' states, refreshed
from the rows that changed a few times a second, so any worker can answer
``GET /v1/quota/{tenant_id}`` without a query.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import faust
import psycopg
from aiokafka import AIOKafkaProducer
from faust.web import Request, Response, View
from mode import Service

from metering.billing.events import UsageEvent
from metering.billing.periods import billing_period_of
from metering.billing.pricing import PriceBook, estimate_at
from metering.billing.quotas import (
    Limit,
    QuotaUsage,
    TenantQuotaState,
    alert_to_json,
    quota_answer,
    signal_to_json,
    usage_from_event,
)
from metering.config import Settings
from metering.store import quota_store
from metering.store.billing.prices import load_price_book
from metering.store.connection import Reconnecting
from metering.store.quota_store import QuotaEffects

log = logging.getLogger("metering.quotas")

REFRESH_INTERVAL_S = 0.25
PRICES_REFRESH_S = 10.0
SWEEP_AFTER = timedelta(seconds=5)


class QuotaRules:
    """What quota accounting needs to know, kept fresh by ``QuotaService``: the limits (for
    the endpoint; batches read them in their transaction) and the prices."""

    def __init__(self) -> None:
        self.limits: dict[str, tuple[Limit, ...]] = {}
        self.prices = PriceBook(())
        self._unpriced: set[tuple[str, str]] = set()

    def usage(self, event: UsageEvent) -> QuotaUsage:
        """The quota usage of a newly accepted event, its spend estimated."""
        return usage_from_event(event, estimated_cost=self._estimate(event), accepted=True)

    def _estimate(self, event: UsageEvent) -> Decimal:
        """In-stream spend estimate at list prices; the invoice is the final word."""
        cost = estimate_at(
            self.prices, event.usage, event.model, event.service_tier, event.occurred_at
        )
        if cost is None:
            if (event.model, event.service_tier) not in self._unpriced:
                self._unpriced.add((event.model, event.service_tier))
                log.warning(
                    "no price for %s (%s) at %s: its spend counts as 0 toward spend limits",
                    event.model,
                    event.service_tier,
                    event.occurred_at.isoformat(),
                )
            return Decimal(0)
        return cost


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
        period_of = billing_period_of(state.anchor_day)
        return quota_answer(state, limits, datetime.now(UTC), period_of, model=model)

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


def _bearer_matches(header: str | None, token: str) -> bool:
    """Compared in constant time, so that how long a refusal takes does not tell a caller
    how much of a guessed token was right. Bytes, since ``compare_digest`` refuses
    non-ASCII text and a header may carry any."""
    given = (header or "").encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogatepass"))


def register_quota_api(app: faust.App, settings: Settings, quotas: QuotaService) -> None:
    """``GET /v1/quota/{tenant_id}[?model=M]`` for a gateway that asks before a request."""
    token = settings.quota_api_token

    @app.page("/v1/quota/{tenant_id}")
    class QuotaAnswer(View):  # type: ignore[misc]
        async def get(self, request: Request, tenant_id: str) -> Response:
            if token and not _bearer_matches(request.headers.get("Authorization"), token):
                return self.json(
                    {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"},
                    status=401,
                )
            answer = quotas.answer(tenant_id, request.query.get("model"))
            if answer is None:
                return self.json(
                    {"error": "unknown_tenant", "detail": f"no tenant {tenant_id!r}"}, status=404
                )
            return self.json(answer)
