"""One lazily (re)opened async connection, for long-running workers."""

from __future__ import annotations

import psycopg


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

    async def on_connect(self, conn: psycopg.AsyncConnection) -> None:
        """Per-session set-up, such as temporary tables."""

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
