"""One lazily (re)opened async connection, for long-running workers."""

from __future__ import annotations

import logging

import psycopg
from psycopg import pq

log = logging.getLogger(__name__)


class Reconnecting:
    """Opens its connection on first use and again after PostgreSQL went away.

    Callers retry the failed operation; the next ``connection()`` call reconnects.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection | None = None

    async def connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            await self.on_connect(self._conn)
        return self._conn

    async def idle_connection(self) -> psycopg.AsyncConnection:
        """The connection, for a transaction of the caller's own. One left inside a
        transaction or in the middle of a command (a write cancelled or failed half-way) is
        closed and replaced: its rollback is the server's, and nothing it holds can join
        the caller's transaction."""
        conn = await self.connection()
        status = pq.TransactionStatus(conn.pgconn.transaction_status)
        pipeline = pq.PipelineStatus(conn.pgconn.pipeline_status)
        if status != pq.TransactionStatus.IDLE or pipeline != pq.PipelineStatus.OFF:
            log.warning(
                "database connection left %s, pipeline %s; replacing it", status.name, pipeline.name
            )
            await conn.close()
            conn = await self.connection()
        return conn

    async def on_connect(self, conn: psycopg.AsyncConnection) -> None:
        """Per-session set-up, such as temporary tables."""

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
