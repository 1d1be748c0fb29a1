"""The worker's HTTP port (the quota API): the one configured, or the first free one.

With ``METERING_WORKER_WEB_PORT`` unset, a worker takes port 6066, or the next free one
when another worker on the host has it, and logs which. A port set explicitly is used as
it is, and a taken one is a one-line error. The socket is bound and listening before the
Faust worker starts, and handed to its web server, so that workers started at the same
moment never pick the same port.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import faust
from aiohttp.web import BaseSite, SockSite
from faust.web.drivers.aiohttp import Web

DEFAULT_PORT = 6066
PORTS_TRIED = 100


class WebPortError(Exception):
    """The configured web port cannot be had; the message says what to set."""


def listen(host: str, port: int | None) -> socket.socket:
    """A listening socket on ``host``: on ``port``, or with ``None`` on the first free port
    from ``DEFAULT_PORT`` up."""
    candidates = [port] if port is not None else range(DEFAULT_PORT, DEFAULT_PORT + PORTS_TRIED)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in candidates:
        try:
            return socket.create_server((host, candidate), family=family)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise WebPortError(f"cannot listen on {host}:{candidate}: {exc.strerror}") from exc
    if port is not None:
        raise WebPortError(
            f"port {port} on {host} (METERING_WORKER_WEB_PORT) is in use, by another worker"
            " perhaps: set METERING_WORKER_WEB_PORT to a free port, leave it unset to take"
            f" the first free one from {DEFAULT_PORT}, or set it to 0 for no HTTP server"
        )
    raise WebPortError(
        f"ports {DEFAULT_PORT}-{DEFAULT_PORT + PORTS_TRIED - 1} on {host} are all in use:"
        " set METERING_WORKER_WEB_PORT to a free port, or to 0 for no HTTP server"
    )


def serve_on(app: faust.App, sock: socket.socket, *, requested: int | None) -> None:
    """Makes ``app``'s web server accept on ``sock`` instead of binding a port itself.
    ``requested`` is the configured port (``None``: none), for the log line.

    Call before anything registers a page: the web server is created on first use.
    """
    app.web = _SocketWeb(app, sock=sock, requested=requested)


class _SocketWeb(Web):  # type: ignore[misc]
    """Faust's aiohttp web server, serving on a socket that is already listening.

    Overrides the driver's ``_new_transport_tcp``, Faust's one place that binds the port
    (faust-streaming is pinned exactly; tests/integration/test_platform.py runs two workers).
    """

    def __init__(
        self, app: faust.App, *, sock: socket.socket, requested: int | None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._sock = sock
        self._requested = requested

    def _new_transport_tcp(self) -> BaseSite:
        host, port = self._sock.getsockname()[:2]
        if self._requested is None and port != DEFAULT_PORT:
            self.log.warning(
                "port %s is taken, by another worker perhaps; set METERING_WORKER_WEB_PORT"
                " to choose the port",
                DEFAULT_PORT,
            )
        self.log.info("quota API on http://%s:%s", host, port)
        return SockSite(self._runner, self._sock, ssl_context=self.app.conf.web_ssl_context)
