"""The ingest chain, built in one place; data flows down it and never back up."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from metering.config import Settings
from metering.store.catalog import CatalogCache
from metering.store.ledger import Ledger
from streams.ingest.batch import Fetched, Step
from streams.ingest.commit import CommitOffsets
from streams.ingest.dead_letters import DeadLetters
from streams.ingest.decode import Decode
from streams.ingest.partition import Partition
from streams.ingest.publish import PublishQuotas
from streams.ingest.quotas import ApplyQuotas
from streams.ingest.write import WriteBatch
from streams.quota.publisher import QuotaPublisher
from streams.quota.rules import QuotaRules


def build_ingest(
    settings: Settings,
    *,
    ledger: Ledger,
    catalog: CatalogCache,
    rules: QuotaRules,
    dead_letters: DeadLetters,
    quota_publisher: QuotaPublisher,
    consumer: AIOKafkaConsumer,
) -> Step[Fetched]:
    # fmt: off
    return Decode(settings.validation_policy(), catalog, rules,         # bytes -> event | rejection
           next_step=Partition(                                          # accepted | rejected
           next_step=WriteBatch(ledger, dead_letters, ApplyQuotas(rules), # one transaction
           next_step=PublishQuotas(quota_publisher,                      # alerts, quota.state
           next_step=CommitOffsets(consumer)))))                         # Kafka offsets, last
    # fmt: on
