"""A PostgreSQL 15 server from Debian's packages, with its own data dir, on 127.0.0.1.

PostgreSQL refuses to run as root, so when started by root it runs as the unprivileged
``postgres`` user (or ``nobody``); the data dir is owned by that user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import psycopg

from metering.config import Settings
from metering.services.process import (
    PidFile,
    ServiceError,
    ServiceStatus,
    require_free_port,
    spawn,
    wait_until,
)

PG_MAJOR = "15"

# Tuned for the ledger's workload: a stream of inserts keyed by random UUIDs, one commit per
# batch. Passed on the command line, so an existing data dir gets them at its next start.
# Production values are in docs/performance.md.
SERVER_SETTINGS: dict[str, str] = {
    # Room for the ledger's primary key as it grows (10M rows: ~400 MB), so that inserting
    # a random UUID does not read an index page back from disk.
    "shared_buffers": "1GB",
    # Checkpoints far apart: after each one, the first change to every page writes a full
    # image of it to the WAL; with random keys that is nearly every index page touched.
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    # Those full-page images compress well (lz4: little CPU for the bytes it saves).
    "wal_compression": "lz4",
}


class PostgresServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = _data_root(settings.state_dir, self._run_as())
        self.data = self.root / "data"
        self.log = settings.state_dir / "logs" / "postgres.log"
        self.pidfile = PidFile(settings.state_dir / "run" / "postgres.pid", str(self.data))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.pg_port}"

    def status(self) -> ServiceStatus:
        pid = self.pidfile.running_pid()
        return ServiceStatus(
            "postgres", pid is not None, pid, self.address, _version(self.settings), self.log
        )

    def up(self) -> ServiceStatus:
        if self.pidfile.running_pid() is None:
            require_free_port(self.settings.pg_port, "PostgreSQL", "METERING_PG_PORT")
            self._initdb_once()
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self.log.touch()
            _chown(self.log, self._run_as())
            process = spawn(
                [
                    str(_bin("postgres", self.settings)),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.settings.pg_port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    "",
                    *(f"--{name}={value}" for name, value in SERVER_SETTINGS.items()),
                ],
                self.log,
                user=self._run_as(),
            )
            self.pidfile.write(process.pid)
            wait_until(lambda: self._accepts_connections(process), 60, "PostgreSQL", self.log)
        self._create_database_once()
        return self.status()

    def down(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        return self.pidfile.stop(sig=signal.SIGINT, timeout_s=60)

    def kill(self) -> None:
        """Kills the postmaster abruptly (SIGKILL), as a crash would; for tests."""
        pid = self.pidfile.running_pid()
        self.pidfile.stop(sig=signal.SIGKILL)
        if pid is not None:  # orphaned backends keep the port until they notice
            subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        raise ServiceError("running as root and found no unprivileged user to run PostgreSQL as")

    def _initdb_once(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        user = self._run_as()
        self.root.mkdir(parents=True, exist_ok=True)
        _chown(self.root, user)
        print(f"postgres: initialising a data dir in {self.data}")
        result = subprocess.run(
            [
                str(_bin("initdb", self.settings)),
                "-D",
                str(self.data),
                "-U",
                self.settings.pg_user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            text=True,
            user=user,
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed:\n{result.stdout}{result.stderr}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# metering: local development settings\n"
                "listen_addresses = '127.0.0.1'\n"
                "max_connections = 200\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "log_min_messages = warning\n"
            )

    def _conninfo(self, dbname: str) -> str:
        s = self.settings
        return f"host=127.0.0.1 port={s.pg_port} user={s.pg_user} dbname={dbname}"

    def _accepts_connections(self, process: subprocess.Popen[bytes]) -> bool:
        if process.poll() is not None:
            raise ServiceError(f"PostgreSQL exited during start-up; see {self.log}")
        try:
            with psycopg.connect(self._conninfo("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _create_database_once(self) -> None:
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.pg_database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.settings.pg_database}"')


def _data_root(state_dir: Path, user: str | None) -> Path:
    """Where the data dir lives: in the state dir, unless the unprivileged user PostgreSQL
    runs as cannot reach it (a checkout under a private home, say): then in /var/tmp."""
    preferred = state_dir.resolve() / "pg"
    if user is None or _traversable(preferred.parent, pwd.getpwnam(user)):
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"metering-pg-{digest}"


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    for folder in [path, *path.parents]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            continue  # created later, by us
        if st.st_uid == user.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _bin(name: str, settings: Settings) -> Path:
    candidates = [settings.pg_bin_dir] if settings.pg_bin_dir else []
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    for folder in candidates:
        if folder and (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ServiceError(
        f"PostgreSQL {PG_MAJOR}'s `{name}` was not found; install Debian's "
        f"postgresql-{PG_MAJOR} package or set METERING_PG_BIN_DIR to the folder holding it"
    )


def _version(settings: Settings) -> str:
    try:
        out = subprocess.run(
            [str(_bin("postgres", settings)), "--version"], capture_output=True, text=True
        )
        return out.stdout.split()[2]  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    except ServiceError:
        return "not installed"


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
