"""Starts the Faust worker in this process, with the pipeline's agents registered."""

from __future__ import annotations

import asyncio

from faust.worker import Worker

from metering.config import Settings
from metering.wire.kafka_admin import ensure_topics
from streams import web
from streams.app import create_app
from streams.ingest.service import IngestService
from streams.quota import QuotaRules, QuotaService, register_quota_api


def run_worker(settings: Settings) -> int:
    """Runs until SIGTERM/SIGINT; returns the process exit code.

    Raises ``web.WebPortError`` before anything starts if the web port cannot be had.
    """
    requested = settings.worker_web_port
    sock = web.listen(settings.worker_web_host, requested) if requested != 0 else None
    asyncio.run(ensure_topics(settings))
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
