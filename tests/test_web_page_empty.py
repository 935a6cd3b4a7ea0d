"""The live page on an empty database: every block shows its empty-state text, no console errors.

The real aiohttp app is served in-process over a real, empty embedded
ClickHouse (chDB, migrations applied); the agents and the runner are not
needed by the page and are absent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from chromium_cdp import Chromium, chromium_binary

from streams.settings import Settings


@pytest.mark.skipif(
    chromium_binary() is None, reason="Debian's chromium is not installed (make test installs it)"
)
def test_page_empty_state(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestServer

    from streams.clickhouse import connect, migrate
    from streams.db import Database
    from streams.web.api import build_app
    from streams.worker import WorkerContext

    client = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(client)
    ctx = WorkerContext(Settings(data_dir=tmp_path), Database(client), app=None, runner=None, stats=None)  # type: ignore[arg-type]
    probe = """(() => ({
        status: document.querySelector('#status').textContent,
        timelines: document.querySelector('#timelines').textContent,
        compare: document.querySelector('#compare tbody').textContent,
        alerts: document.querySelector('#alerts').textContent,
        headlines: document.querySelector('#headlines').textContent,
    }))()"""

    async def run() -> tuple[dict[str, Any], list[str]]:
        server = TestServer(build_app(ctx), host="127.0.0.1")
        await server.start_server()
        try:
            async with Chromium(tmp_path / "profile", tmp_path / "chromium.log") as browser:
                for domain in ("Runtime", "Log", "Page"):
                    await browser.send(f"{domain}.enable")
                await browser.send("Page.navigate", url=str(server.make_url("/")))
                state: dict[str, Any] = {}
                for _ in range(60):
                    state = await browser.evaluate(probe) or {}
                    if state.get("status", "").startswith("updated"):
                        break
                    await asyncio.sleep(0.25)
                return state, browser.errors()
        finally:
            await server.close()

    try:
        state, errors = asyncio.run(run())
    finally:
        client.close()
    assert state["status"].startswith("updated") and "0 events" in state["status"], state
    assert "No events in the last 60m" in state["timelines"]
    assert "No events in this window" in state["compare"]
    assert "No alert is firing" in state["alerts"]
    assert "No negative events" in state["headlines"]
    assert errors == [], errors
