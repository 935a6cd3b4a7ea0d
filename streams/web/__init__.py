"""The worker's web side service: HTTP API, probes, /metrics and the live dashboard (streams.web.api)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.context import WorkerContext

log = logging.getLogger("moodwire.web")
BIND_RETRY_S = (1.0, 30.0)  # first and longest wait between attempts to bind a busy port


async def web_service(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Serve on ``web_host:web_port`` until ``stop``; a port of 0 disables the server.

    A port that is taken (another worker on this machine) is retried with
    backoff, one warning line per attempt and no traceback: the agents go on
    without the API meanwhile, and the page appears once the port is free.
    """
    settings = ctx.settings
    if settings.web_port == 0:
        log.info("web=disabled (MOODWIRE_WEB_PORT=0)")
        return
    from aiohttp import web

    from streams.pipeline.agents import sleep_unless
    from streams.web.access import TOKEN_SCOPE, exposure_problem, open_on_purpose
    from streams.web.api import build_app

    problem = exposure_problem(settings)
    if problem is not None:  # worker_cli refuses earlier; this covers every other caller
        log.error("web=refused %s", problem)
        return
    if open_on_purpose(settings):
        log.warning(
            "web=unauthenticated host=%s port=%d: /api/* is open to anyone who can reach it "
            "(MOODWIRE_WEB_ALLOW_UNAUTHENTICATED=true)",
            settings.web_host,
            settings.web_port,
        )

    runner = web.AppRunner(build_app(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        wait_s = BIND_RETRY_S[0]
        while not stop.is_set():
            site = web.TCPSite(runner, settings.web_host, settings.web_port, reuse_address=True)
            try:
                await site.start()
                break
            except OSError as exc:
                log.warning(
                    "web=cannot_listen host=%s port=%d retry_s=%.0f error=%s (set MOODWIRE_WEB_PORT)",
                    settings.web_host,
                    settings.web_port,
                    wait_s,
                    exc.strerror or exc,
                )
                await sleep_unless(stop, wait_s)
                wait_s = min(wait_s * 2, BIND_RETRY_S[1])
        else:
            return
        log.info(
            "web=listening url=http://%s:%d/ auth=%s",
            settings.web_host,
            settings.web_port,
            f"bearer scope={TOKEN_SCOPE}" if settings.api_token else "none",
        )
        await stop.wait()
    finally:
        await runner.cleanup()
