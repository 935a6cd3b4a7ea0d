"""The worker's web side service: HTTP API, probes, /metrics and the live dashboard (streams.web.api)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.worker import WorkerContext

log = logging.getLogger("moodwire.web")


async def web_service(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Serve on ``web_host:web_port`` until ``stop``; a port of 0 disables the server."""
    settings = ctx.settings
    if settings.web_port == 0:
        log.info("web=disabled (MOODWIRE_WEB_PORT=0)")
        return
    from aiohttp import web

    from streams.web.api import build_app

    runner = web.AppRunner(build_app(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.web_host, settings.web_port, reuse_address=True)
        await site.start()  # a port in use raises OSError: the worker logs it and restarts us with backoff
        log.info(
            "web=listening url=http://%s:%d/ auth=%s",
            settings.web_host,
            settings.web_port,
            "bearer" if settings.api_token else "none",
        )
        await stop.wait()
    finally:
        await runner.cleanup()
