"""Web API parameter validation (pure functions) and bearer auth, without a broker.

The auth test serves the real aiohttp app in-process over a real embedded
ClickHouse (chDB) with migrations applied; only the parts of the worker the
API does not touch (agents, runner) are absent.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.web.params import (
    MAX_POINTS,
    BadParam,
    Params,
    buckets,
    check_points,
    parse_duration,
    parse_limit,
    parse_time,
    time_range,
)

NOW = datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC)


def p(**raw: str | list[str]) -> Params:
    return Params({k: v if isinstance(v, list) else [v] for k, v in raw.items()}, NOW)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-01T12:00:00Z", datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01T14:00:00+02:00", datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01T12:00:00", datetime(2026, 1, 1, 12, tzinfo=UTC)),  # no offset = UTC
        ("1767268800000", datetime(2026, 1, 1, 12, tzinfo=UTC)),  # epoch ms
        ("now", NOW),
        ("now-15m", NOW - timedelta(minutes=15)),
        ("now-2d", NOW - timedelta(days=2)),
    ],
)
def test_parse_time(raw: str, expected: datetime) -> None:
    assert parse_time("from", raw, NOW) == expected


@pytest.mark.parametrize("raw", ["yesterday", "1e12", "99999999999999", "now+5m", "now-5", "2026-13-01", ""])
def test_parse_time_rejects(raw: str) -> None:
    with pytest.raises(BadParam) as exc:
        parse_time("from", raw, NOW)
    assert exc.value.param == "from"


def test_duration_bounds() -> None:
    one, week = timedelta(minutes=1), timedelta(days=7)
    assert parse_duration("window", "90m", minimum=one, maximum=week) == timedelta(minutes=90)
    for bad in ("30s", "8d", "15", "m", "1.5h"):
        with pytest.raises(BadParam):
            parse_duration("window", bad, minimum=one, maximum=week)


def test_time_range_defaults_and_bounds() -> None:
    assert time_range(p(), "from", "to", timedelta(hours=1)) == (NOW - timedelta(hours=1), NOW)
    assert time_range(p(to="now-1h"), "from", "to", timedelta(hours=1))[0] == NOW - timedelta(hours=2)
    with pytest.raises(BadParam, match="before"):
        time_range(p(**{"from": "now", "to": "now-1h"}), "from", "to", timedelta(hours=1))
    with pytest.raises(BadParam, match="maximum"):
        time_range(p(**{"from": "now-32d"}), "from", "to", timedelta(hours=1))


def test_limits_repeats_and_unknown_parameters() -> None:
    assert parse_limit(p(), default=50) == 50
    assert parse_limit(p(limit="500")) == 500
    for bad in ("0", "501", "-1", "ten", "1.5"):
        with pytest.raises(BadParam):
            parse_limit(p(limit=bad))
    with pytest.raises(BadParam, match="more than once"):
        p(topic=["a", "b"]).get("topic")
    with pytest.raises(BadParam) as exc:
        p(topic="a", colour="red").reject_unknown(("topic",))
    assert exc.value.param == "colour"


def test_buckets_are_aligned_and_bounded() -> None:
    grid = buckets(NOW - timedelta(minutes=12), NOW, 300)
    assert grid[0] == datetime(2026, 3, 1, 12, 15, tzinfo=UTC) and grid[-1] == datetime(
        2026, 3, 1, 12, 30, tzinfo=UTC
    )
    check_points(NOW - timedelta(minutes=MAX_POINTS - 1), NOW, 60)
    with pytest.raises(BadParam, match="points"):
        check_points(NOW - timedelta(minutes=MAX_POINTS + 1), NOW, 60)


def test_bearer_token_guards_api_only(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from streams.clickhouse import connect, migrate
    from streams.context import WorkerContext
    from streams.db import Database
    from streams.settings import Settings
    from streams.web.api import build_app

    client = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(client)
    settings = Settings(data_dir=tmp_path, api_token="s3cret")  # type: ignore[arg-type]
    ctx = WorkerContext(settings, Database(client), app=None, runner=None, stats=None)  # type: ignore[arg-type]

    async def run() -> dict[str, int]:
        async with TestClient(TestServer(build_app(ctx))) as http:
            out = {}
            for name, path, headers in (
                ("no token", "/api/v1/summary", {}),
                ("wrong token", "/api/v1/summary", {"Authorization": "Bearer nope"}),
                ("right token", "/api/v1/summary", {"Authorization": "Bearer s3cret"}),
                ("health", "/health", {}),
                ("page", "/", {}),
                ("metrics", "/metrics", {}),
            ):
                resp = await http.get(path, headers=headers)
                out[name] = resp.status
                if name == "right token":
                    assert (await resp.json())["totals"]["events"] == 0  # empty database: zeros, not errors
                if name == "no token":
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            return out

    try:
        assert asyncio.run(run()) == {
            "no token": 401,
            "wrong token": 401,
            "right token": 200,
            "health": 200,
            "page": 200,
            "metrics": 200,
        }
    finally:
        client.close()


def test_busy_port_is_retried_until_free(caplog: pytest.LogCaptureFixture) -> None:
    import socket
    import urllib.request
    from types import SimpleNamespace

    from streams.settings import Settings
    from streams.web import web_service

    async def run() -> bytes:
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stop = asyncio.Event()
        task = asyncio.create_task(
            web_service(SimpleNamespace(settings=Settings(web_port=port), db=None), stop)
        )  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        assert not task.done()  # still trying, not crashed
        busy.close()
        await asyncio.sleep(1.5)
        try:
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
            )
        finally:
            stop.set()
            await task

    with caplog.at_level("WARNING", logger="moodwire.web"):
        assert asyncio.run(run()) == b'{"status":"ok"}'
    assert "web=cannot_listen" in caplog.text
