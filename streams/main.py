"""Starts the Faust worker in this process, with the pipeline's agents registered, or
several of them in child processes that share the partitions (``processes``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from types import FrameType

from faust.worker import Worker

from metering.config import Settings
from metering.wire.kafka_admin import ensure_topics
from streams import web
from streams.app import create_app
from streams.ingest.service import IngestService
from streams.quota.api import register_quota_api
from streams.quota.rules import QuotaRules
from streams.quota.tables import QuotaService

log = logging.getLogger("metering.worker")


def run_worker(settings: Settings, *, processes: int = 1) -> int:
    """Runs until SIGTERM/SIGINT; returns the process exit code.

    With ``processes`` above 1, that many worker processes are forked after start-up's
    imports, and they join the consumer group as any workers would; they share the quota
    API's listening socket, and each answers from its own copy of every tenant's state.

    Raises ``web.WebPortError`` before anything starts if the web port cannot be had.
    """
    requested = settings.worker_web_port
    sock = web.listen(settings.worker_web_host, requested) if requested != 0 else None
    asyncio.run(ensure_topics(settings))
    if processes == 1:
        return _serve(settings, sock, requested)
    return _supervise([_fork(settings, sock, requested) for _ in range(processes)])


def _serve(settings: Settings, sock: socket.socket | None, requested: int | None) -> int:
    asyncio.set_event_loop(asyncio.new_event_loop())  # asyncio.run closed its own
    app = create_app(settings, web_port=sock.getsockname()[1] if sock else None)
    if sock is not None:
        web.serve_on(app, sock, requested=requested)
    rules = QuotaRules()
    quotas = QuotaService(settings, rules)
    register_quota_api(app, settings, quotas)
    worker = Worker(
        app,
        quotas,
        IngestService(settings, rules),
        loglevel=settings.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def _fork(settings: Settings, sock: socket.socket | None, requested: int | None) -> int:
    """A child process running one worker; its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns: its exit code is its worker's
        code = 1
        try:
            code = _serve(settings, sock, requested)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _supervise(children: list[int]) -> int:
    """Waits for the worker processes. A signal to this process goes to each of them; when
    one stops on its own, the others are stopped too, so that whoever restarts this
    process restarts them all. The exit code is the first worker's that was not 0."""
    running = set(children)
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in running:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet waited for
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    code = 0
    while running:
        pid, status = os.wait()
        running.discard(pid)
        exited = os.waitstatus_to_exitcode(status)
        if exited != 0 and code == 0:
            code = exited if exited > 0 else 128 - exited  # killed by a signal: 128 + signum
        if running and not stopping:
            log.warning("worker process %d exited (%d): stopping the others", pid, exited)
            stop_all()
    return code
