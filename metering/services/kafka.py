"""A single Apache Kafka broker in KRaft mode, from Maven Central jars, on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from metering.config import Settings
from metering.services.process import (
    PidFile,
    ServiceError,
    ServiceStatus,
    port_is_busy,
    require_free_port,
    spawn,
    wait_until,
)

POM = Path(__file__).with_name("kafka-pom.xml")
MAIN_CLASS = "kafka.Kafka"


class KafkaBroker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / f"kafka-{settings.kafka_version}"
        self.libs = self.home / "libs"
        self.data = settings.state_dir / "kafka-data"
        self.log = settings.state_dir / "logs" / "kafka.log"
        self.properties = settings.state_dir / "kafka.properties"
        self._log_offset = 0
        self.pidfile = PidFile(settings.state_dir / "run" / "kafka.pid", MAIN_CLASS)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    def status(self) -> ServiceStatus:
        pid = self.pidfile.running_pid()
        return ServiceStatus(
            "kafka", pid is not None, pid, self.address, self.settings.kafka_version, self.log
        )

    def up(self) -> ServiceStatus:
        if self.pidfile.running_pid() is not None:
            return self.status()
        require_free_port(self.settings.kafka_port, "the Kafka broker", "METERING_KAFKA_PORT")
        require_free_port(
            self.settings.kafka_controller_port,
            "the Kafka KRaft controller",
            "METERING_KAFKA_CONTROLLER_PORT",
        )
        self._install_jars()
        self._write_properties()
        self._format_storage_once()
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        process = spawn(
            [
                _java(),
                "-Xms128m",  # grows to the maximum only under load
                f"-Xmx{self.settings.kafka_heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-cp",
                f"{self.libs}/*",
                MAIN_CLASS,
                str(self.properties),
            ],
            self.log,
        )
        self.pidfile.write(process.pid)
        wait_until(lambda: self._ready(process), 90, "the Kafka broker", self.log)
        return self.status()

    def down(self) -> bool:
        return self.pidfile.stop(timeout_s=60)

    def kill(self) -> None:
        """Kills the broker abruptly (SIGKILL), as a crash would; for tests."""
        self.pidfile.stop(sig=signal.SIGKILL)

    def _ready(self, process: subprocess.Popen[bytes]) -> bool:
        if process.poll() is not None:
            raise ServiceError(f"the Kafka broker exited during start-up; see {self.log}")
        return port_is_busy(self.settings.kafka_port) and "Kafka Server started" in _read_from(
            self.log, self._log_offset
        )

    def _install_jars(self) -> None:
        if (self.libs / f"kafka_2.13-{self.settings.kafka_version}.jar").exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (`mvn`) is needed once to fetch the Kafka jars; install it")
        print(f"kafka: fetching Apache Kafka {self.settings.kafka_version} jars from Maven Central")
        staging = self.home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                f"-Dkafka.version={self.settings.kafka_version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"fetching the Kafka jars failed:\n{result.stdout}{result.stderr}")
        staging.rename(self.libs)

    def _write_properties(self) -> None:
        s = self.settings
        self.properties.parent.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},"
                    f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data}",
                    f"num.partitions={s.topic_partitions}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "log.retention.hours=-1",
                    "",
                ]
            )
        )

    def _format_storage_once(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                _java(),
                "-cp",
                f"{self.libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _kafka_cluster_id(),
                "-c",
                str(self.properties),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def _kafka_cluster_id() -> str:
    """A random cluster id in Kafka's own format: base64url of 16 bytes, unpadded."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise ServiceError("Java 17+ is needed to run the Kafka broker; install OpenJDK 17")
    return found


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
