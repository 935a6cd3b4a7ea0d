"""Who may read the web API: the bind-address rule, the opt-out's WARNING, constant-time tokens.

The worker CLI is run for real (it refuses before touching Kafka); the web
service is started on loopback with a context that has no database, which the
refusal and the opt-out warning never reach.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.embedded.broker import free_port
from streams.settings import Settings
from streams.web import web_service
from streams.web.access import exposure_problem, is_loopback_bind, token_matches

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-Rd0nly-4f1c9"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("worker.internal", False),
    ],
)
def test_loopback_bind(host, loopback):
    assert is_loopback_bind(host) is loopback


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_exposure_rule(tmp_path):
    assert exposure_problem(_settings(tmp_path)) is None  # 127.0.0.1 by default
    problem = exposure_problem(_settings(tmp_path, web_host="0.0.0.0"))
    assert problem and "MOODWIRE_API_TOKEN" in problem and "MOODWIRE_WEB_ALLOW_UNAUTHENTICATED" in problem
    assert exposure_problem(_settings(tmp_path, web_host="0.0.0.0", api_token=TOKEN)) is None
    assert exposure_problem(_settings(tmp_path, web_host="0.0.0.0", web_allow_unauthenticated=True)) is None
    assert exposure_problem(_settings(tmp_path, web_host="0.0.0.0", web_port=0)) is None
    assert "empty" in (exposure_problem(_settings(tmp_path, api_token=" ")) or "")


def test_token_comparison():
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"bearer  {TOKEN} ", TOKEN)
    assert not token_matches(f"Basic {TOKEN}", TOKEN)
    assert not token_matches("Bearer " + TOKEN[:-1], TOKEN)
    assert not token_matches("", TOKEN)
    # hmac.compare_digest raises on non-ASCII str; a hostile header must be a plain "no"
    assert not token_matches("Bearer tök\udcff", TOKEN)


def test_worker_refuses_a_public_bind_without_a_token(tmp_path):
    env = {
        **os.environ,
        "MOODWIRE_DATA_DIR": str(tmp_path),
        "MOODWIRE_WEB_HOST": "0.0.0.0",
        "MOODWIRE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    env.pop("MOODWIRE_API_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli.worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "MOODWIRE_WEB_HOST=0.0.0.0 is not loopback" in proc.stderr
    assert "Traceback" not in proc.stderr


def _serve_briefly(settings: Settings) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(web_service(SimpleNamespace(settings=settings, db=None), stop))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        stop.set()
        await task

    asyncio.run(go())


def test_web_service_refuses_or_warns(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="moodwire.web"):
        _serve_briefly(_settings(tmp_path, web_host="0.0.0.0", web_port=free_port()))
    assert "web=refused" in caplog.text and "web=listening" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="moodwire.web"):
        _serve_briefly(
            _settings(tmp_path, web_host="0.0.0.0", web_port=free_port(), web_allow_unauthenticated=True)
        )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("web=unauthenticated" in r.getMessage() for r in warnings)
    assert "web=listening" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="moodwire.web"):
        _serve_briefly(_settings(tmp_path, web_port=free_port(), api_token=TOKEN))
    assert "auth=bearer scope=read-only" in caplog.text and TOKEN not in caplog.text
