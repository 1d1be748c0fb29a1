"""Settings from environment variables prefixed ``METERING_``, with safe local defaults.

Every name here is an interface: scripts, docker-compose and export jobs set them.
Add new ones; never rename.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metering.billing.events import ValidationPolicy
from metering.billing.invoices import Issuer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_BUNDLE = Path(__file__).resolve().parent / "_bundled"
RESOURCE_ROOT = _BUNDLE if _BUNDLE.is_dir() else PROJECT_ROOT
"""Where ``alembic.ini``, ``migrations/`` and ``prices/`` are: inside an installed wheel
(package ``metering._bundled``, see setup.py), else at the top of the checkout."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    # --- where things are -------------------------------------------------
    kafka_bootstrap: str = Field("", description="host:port list of Kafka brokers")
    database_url: str = Field("", description="SQLAlchemy URL of the billing database")

    # --- local services (`metering services ...`) -------------------------
    state_dir: Path = Field(PROJECT_ROOT / ".local", description="jars, data dirs, logs, pids")
    kafka_version: str = "4.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    pg_port: int = 15432
    pg_bin_dir: Path | None = Field(None, description="folder with initdb/postgres; found if unset")
    pg_user: str = "metering"
    pg_database: str = "metering"

    # --- topics and the consumer group -------------------------------------
    topic_usage: str = "usage.events"
    topic_dlq: str = "usage.events.dlq"
    topic_quota_state: str = "quota.state"
    topic_quota_alerts: str = "quota.alerts"
    topic_partitions: int = 6
    replication_factor: int = 1
    group_id: str = "metering-ingest"

    # --- worker -----------------------------------------------------------
    batch_size: int = Field(10_000, description="records the worker writes in one transaction")
    batch_window_s: float = 0.5
    session_timeout_s: float = Field(
        10.0, description="how soon a crashed worker's partitions move to the others"
    )
    worker_web_port: int | None = Field(
        None,
        description="the worker's HTTP port (quota API); unset: 6066 or the next free one; 0: none",
    )
    worker_data_dir: Path | None = Field(
        None, description="Faust's data dir; default <state_dir>/worker/<app id>"
    )
    quota_api_token: str = Field("", description="bearer token for GET /v1/quota; none if empty")
    worker_web_host: str = "127.0.0.1"
    log_level: str = "info"

    # --- validation of incoming events (docs/events.md) -----------------------
    max_message_bytes: int = 65_536
    max_tokens_per_event: int = 50_000_000
    clock_skew_s: float = 300.0
    backdating_days: float = 35.0

    # --- who issues the invoices (docs/billing.md, "Export") ----------------
    issuer_name: str = Field("LLM Hosting Platform", description="the invoices' sender")
    issuer_address: str = Field(
        "", description="the sender's postal address; lines separated by ';' or newlines"
    )
    issuer_tax_id: str = Field("", description="the sender's VAT or tax number; none if empty")
    payment_terms_days: int = Field(30, ge=0, description="days from issue to due date")

    # --- closing periods (docs/billing.md, "Closing a period") --------------
    invoice_grace_hours: float = Field(
        24.0, description="hours after a period's end before `invoices close` finalizes it"
    )
    late_margin_hours: float = Field(
        24.0, description="added to the ingest backdating window when looking for late usage"
    )

    def issuer(self) -> Issuer:
        lines = self.issuer_address.replace(";", "\n").splitlines()
        return Issuer(
            name=self.issuer_name,
            address=tuple(line.strip() for line in lines if line.strip()),
            tax_id=self.issuer_tax_id,
            payment_terms_days=self.payment_terms_days,
        )

    def validation_policy(self) -> ValidationPolicy:
        return ValidationPolicy(
            max_message_bytes=self.max_message_bytes,
            max_tokens_per_event=self.max_tokens_per_event,
            clock_skew=timedelta(seconds=self.clock_skew_s),
            backdating_window=timedelta(days=self.backdating_days),
        )

    @model_validator(mode="after")
    def _derive_local_addresses(self) -> Settings:
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        if not self.database_url:
            self.database_url = (
                f"postgresql+psycopg://{self.pg_user}@127.0.0.1:{self.pg_port}/{self.pg_database}"
            )
        return self

    @property
    def faust_app_id(self) -> str:
        """Faust's own app id and consumer group; ingest consumes as ``group_id``."""
        return f"{self.group_id}-app"

    @property
    def faust_data_dir(self) -> Path:
        """Where Faust keeps its files: one folder per app, like Faust's own default, but
        under the state dir rather than the working directory (which may not be writable,
        as in the Docker image)."""
        return self.worker_data_dir or self.state_dir / "worker" / self.faust_app_id

    def child_env(self) -> dict[str, str]:
        """This process's environment with every setting made explicit, for a child
        `metering` process (a worker, a command) that must use exactly these settings."""
        env = dict(os.environ)
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                env.pop(f"METERING_{name.upper()}", None)
            else:
                env[f"METERING_{name.upper()}"] = str(value)
        return env

    @property
    def psycopg_dsn(self) -> str:
        """The database URL in the form psycopg (not SQLAlchemy) understands."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
