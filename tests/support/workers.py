"""The type of the ``start_worker`` fixture, for tests' signatures."""

from __future__ import annotations

from collections.abc import Callable

from metering.services.worker import WorkerProcess

StartWorker = Callable[..., WorkerProcess]
"""``start_worker(settings=None, cwd=PROJECT_ROOT)``: a real worker, killed after the test."""
