"""What the worker's side services (web API, alerts) receive from the worker.

It lives apart from ``streams.worker`` so that the services, which the worker
starts, never import the worker back (docs/layout.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inference.serve.runner import Runner
from streams.db import Database
from streams.pipeline.agents import App
from streams.settings import Settings
from streams.stats import WorkerStats


@dataclass
class WorkerContext:
    """What the worker's side services (web API, alerts) share with the agents."""

    settings: Settings
    db: Database | None  # None in a worker that neither stores nor delivers
    app: App  # ``await app.ready.wait()`` before ``app.send``: the producer starts with the agents
    runner: Runner | None  # None in a worker that does not classify
    stats: WorkerStats


# A side service runs beside the agents until ``stop`` is set; it must not raise on a
# dependency outage (log, back off, go on), and must return promptly once stopped.
Service = Callable[[WorkerContext, asyncio.Event], Awaitable[None]]
