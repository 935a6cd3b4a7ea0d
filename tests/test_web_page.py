"""The live page without the stack: its empty state, and its bearer-token prompt.

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
    state, errors = run_page(tmp_path, token=None)
    assert state["status"].startswith("updated") and "0 events" in state["status"], state
    assert "No events in the last 60m" in state["timelines"]
    assert "No events in this window" in state["compare"]
    assert "No alert is firing" in state["alerts"]
    assert "No negative events" in state["headlines"]
    assert errors == [], errors


@pytest.mark.skipif(
    chromium_binary() is None, reason="Debian's chromium is not installed (make test installs it)"
)
def test_page_asks_for_the_token_and_then_loads(tmp_path: Path) -> None:
    state, errors = run_page(tmp_path, token="s3cret")
    assert state["asked"] is True and state["status"].startswith("updated"), state
    # The only errors are Chromium's own reports of the first, unauthorized requests.
    assert errors and all("401" in e for e in errors), errors


def run_page(tmp_path: Path, token: str | None) -> tuple[dict[str, Any], list[str]]:
    from aiohttp.test_utils import TestServer

    from streams.clickhouse import connect, migrate
    from streams.db import Database
    from streams.web.api import build_app
    from streams.worker import WorkerContext

    client = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(client)
    settings = Settings(data_dir=tmp_path, api_token=token)  # type: ignore[arg-type]
    ctx = WorkerContext(settings, Database(client), app=None, runner=None, stats=None)  # type: ignore[arg-type]
    probe = """(() => ({
        status: document.querySelector('#status')?.textContent ?? '',
        timelines: document.querySelector('#timelines')?.textContent ?? '',
        compare: document.querySelector('#compare tbody')?.textContent ?? '',
        alerts: document.querySelector('#alerts')?.textContent ?? '',
        headlines: document.querySelector('#headlines')?.textContent ?? '',
    }))()"""

    async def run() -> tuple[dict[str, Any], list[str]]:
        server = TestServer(build_app(ctx), host="127.0.0.1")
        await server.start_server()
        try:
            async with Chromium(tmp_path / "profile", tmp_path / "chromium.log") as browser:
                for domain in ("Runtime", "Log", "Page"):
                    await browser.send(f"{domain}.enable")
                await browser.send("Page.navigate", url=str(server.make_url("/")))
                state: dict[str, Any] = {"asked": False}
                for _ in range(60):
                    state = {**state, **(await browser.evaluate(probe) or {})}
                    if state.get("status", "").startswith("updated"):
                        break
                    if token and state.get("status") == "API token required":
                        state["asked"] = True
                        await browser.evaluate(ENTER_TOKEN % token)
                    await asyncio.sleep(0.25)
                return state, browser.errors()
        finally:
            await server.close()

    try:
        return asyncio.run(run())
    finally:
        client.close()


ENTER_TOKEN = """(() => {
    document.querySelector('#token').value = '%s';
    document.querySelector('#token-form').requestSubmit();
})()"""
