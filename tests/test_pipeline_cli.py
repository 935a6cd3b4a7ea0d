"""``moodwire broker`` and ``moodwire query`` as a user runs them (subprocesses, real tansu and chDB)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.embedded.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def cli(
    command: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    code = f"from streams.cli.pipeline import {command}; {command}(prog_name='moodwire')"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def ch_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("cli-ch")
    dsn = f"chdb://{data / 'ch'}"
    seed = (
        "from datetime import datetime, timezone\n"
        "from streams.clickhouse import connect, migrate, insert_scored\n"
        f"c = connect({dsn!r}); migrate(c)\n"
        "t = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)\n"
        "insert_scored(c, [{'id': f'e{i}', 'text': 'x', 'ts': t, 'entities': ['ACME'], 'meta': {},"
        " 'sentiment': 'negative' if i else 'positive', 'sentiment_scores': {'negative': 1.0}, 'topic': 'tech',"
        " 'topic_scores': {'tech': 1.0}, 'model_versions': {'sentiment': 's'}, 'scored_at': t} for i in range(3)])\n"
    )
    subprocess.run([sys.executable, "-c", seed], cwd=ROOT, check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODWIRE_")}
    env["MOODWIRE_CLICKHOUSE_DSN"] = dsn
    return env


def test_query_json_and_table(ch_env: dict[str, str]) -> None:
    sql = "SELECT value, events, negative FROM minute_counts WHERE dim = 'entity'"
    out = cli("query_command", sql, "--format", "json", env=ch_env)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"value": "ACME", "events": 3, "negative": 2}
    ]
    out = cli("query_command", "SELECT id, ts FROM events_latest ORDER BY id", env=ch_env)
    assert out.returncode == 0, out.stderr
    assert "e0" in out.stdout and "2026-01-01 12:00:00" in out.stdout and "3 rows in" in out.stdout


def test_query_refuses_writes_with_one_line(ch_env: dict[str, str]) -> None:
    out = cli("query_command", "DROP TABLE events", env=ch_env)
    assert out.returncode == 2
    assert out.stderr.startswith("moodwire: error: read-only: 'DROP'") and out.stderr.count("\n") == 1
    check = cli("query_command", "SELECT count() FROM events", "--format", "json", env=ch_env)
    assert json.loads(check.stdout) == {"count()": 3}


def test_query_sql_error_and_bad_dsn_are_one_line(ch_env: dict[str, str]) -> None:
    out = cli("query_command", "SELECT * FROM nope", env=ch_env)
    assert out.returncode == 1 and "UNKNOWN_TABLE" in out.stderr and out.stderr.count("\n") == 1
    out = cli("query_command", "SELECT 1", "--dsn", "mysql://h/db", env=ch_env)
    assert out.returncode == 1
    assert out.stderr.startswith(
        "moodwire: error: invalid settings: MOODWIRE_CLICKHOUSE_DSN: unsupported scheme"
    )


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_broker_serves_until_sigint_and_leaves_nothing_behind() -> None:
    port = free_port()
    code = "from streams.cli.pipeline import broker_command; broker_command(prog_name='moodwire')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODWIRE_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"bootstrap 127.0.0.1:{port}" in first, first + (proc.stderr.read() if proc.stderr else "")
        assert proc.stdout.readline().strip() == f"export MOODWIRE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
        assert "text-events, text-events-dlq, scored-events, alerts" in proc.stdout.readline()
        (tansu,) = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "broker stopped (SIGINT)" in out
        deadline = time.monotonic() + 5
        while Path(f"/proc/{tansu}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{tansu}").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_broker_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = cli("broker_command", "--port", str(port))
    assert out.returncode == 1
    assert (
        out.stderr
        == f"moodwire: error: port 127.0.0.1:{port} is in use: stop what listens there or choose another --port\n"
    )
