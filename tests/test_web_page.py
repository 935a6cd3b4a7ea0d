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


@pytest.mark.skipif(
    chromium_binary() is None, reason="Debian's chromium is not installed (make test installs it)"
)
def test_page_shows_chinese_headlines_in_cjk_glyphs(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    text = "贵州茅台股价大跌，投资者恐慌抛售"
    now = datetime.now(UTC)
    event = {
        "id": "zh-1",
        "text": text,
        "kind": "news",
        "source": "新浪财经",
        "lang": "zh",
        "ts": now.isoformat().replace("+00:00", "Z"),
        "title": "",
        "url": "",
        "entities": ["贵州茅台"],
        "meta": {},
        "sentiment": "negative",
        "sentiment_scores": {"negative": 0.9, "neutral": 0.05, "positive": 0.05},
        "topic": "business",
        "topic_scores": {"business": 0.9, "other": 0.1},
        "model_versions": {"sentiment": "zh", "topic": "zh"},
        "scored_at": now,
        "ts_from_broker": False,
        "lang_detected": True,
    }
    # Two different characters drawn in the page's font: without a CJK font both are the same
    # "missing glyph" box.
    glyphs = """(() => {
        const draw = (ch) => {
            const c = document.createElement('canvas'); c.width = 64; c.height = 64;
            const g = c.getContext('2d');
            g.font = '40px ' + getComputedStyle(document.body).fontFamily;
            g.fillText(ch, 8, 48);
            return Array.from(g.getImageData(0, 0, 64, 64).data).join(',');
        };
        return {distinct: draw('股') !== draw('跌'), inked: draw('股') !== draw(' ')};
    })()"""
    state, errors = run_page(tmp_path, token=None, events=[event], extra=glyphs)
    assert text in state["headlines"], state
    assert state["extra"] == {"distinct": True, "inked": True}, "CJK text renders as missing-glyph boxes"
    assert errors == [], errors


def run_page(
    tmp_path: Path, token: str | None, events: list[dict[str, Any]] = (), extra: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    from aiohttp.test_utils import TestServer

    from streams.clickhouse import connect, insert_scored, migrate
    from streams.context import WorkerContext
    from streams.db import Database
    from streams.web.api import build_app

    client = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(client)
    insert_scored(client, list(events))
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
                if extra:
                    state["extra"] = await browser.evaluate(extra)
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
