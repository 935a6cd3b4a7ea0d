"""``moodwire produce`` against the real broker, the replay schedule, and a short local-runner demo run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_harness import read_topic, settings_env, settings_from

from streams.cli.replay import Surge, load_sample, schedule

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_produce_file_keys_and_original_bytes(broker, tmp_path: Path, compression: str) -> None:
    env = settings_env(broker.bootstrap_servers, tmp_path, f"produce-{compression}")
    lines = [
        json.dumps({"id": "1", "text": "a", "source": "wire"}).encode(),
        json.dumps({"id": "2", "text": "b", "entities": ["Acme"]}).encode(),
        b'{"id": "3", "text": "caf\xe9"}',  # invalid UTF-8 is published as-is (the worker rejects it)
        json.dumps({"id": "4", "text": "c"}).encode(),
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli.produce",
            str(src),
            "--compression",
            compression,
            "--rate",
            "200",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"produced 4 events" in result.stdout
    records = read_topic(settings_from(env), env["MOODWIRE_TOPIC_INPUT"], idle_s=1.0)
    assert sorted(r.value for r in records) == sorted(lines)
    keys = {r.value: r.key for r in records}
    assert [keys[v] for v in lines] == [b"wire", b"Acme", None, None]


def test_produce_missing_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli.produce", str(tmp_path / "nope.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "no such file" in result.stderr


def test_sample_and_replay_schedule_has_a_surge() -> None:
    items = load_sample()
    assert 300 <= len(items) <= 400
    assert {it["meta"]["topic_hint"] for it in items} == {
        "business",
        "entertainment",
        "politics",
        "sport",
        "tech",
    }
    assert {it["kind"] for it in items} == {"news", "review"}
    assert all(it["entities"] for it in items) and len({it["source"] for it in items}) >= 8
    surge = Surge("sport", start_s=20, duration_s=20, rate=10)
    timed = schedule(items, 60, 10, surge, start_ms=0, malformed=())
    assert [t for t, _ in timed] == sorted(t for t, _ in timed)
    events = [(t, json.loads(raw)) for t, raw in timed]

    def sport_neg_share(lo: float, hi: float) -> float:
        sport = [e for t, e in events if lo <= t < hi and e["meta"]["topic_hint"] == "sport"]
        return sum(e["meta"]["tone_hint"] == "neg" for e in sport) / max(len(sport), 1)

    assert sport_neg_share(20, 40) > sport_neg_share(0, 20) + 0.3
    assert len({e["id"] for _, e in events}) == len(events)
    assert len(schedule(items, 60, 10, surge, start_ms=0)) == len(timed) + 3  # + the malformed ones


def test_chinese_sample_and_a_surge_of_one_language() -> None:
    from streams.cli.replay import SAMPLE_ZH

    zh = load_sample(SAMPLE_ZH)
    assert len(zh) == 140 and {it["lang"] for it in zh} == {"zh"}
    assert len({it["id"] for it in zh}) == 140 and not {it["id"] for it in zh} & {
        it["id"] for it in load_sample()
    }
    surge_items = [it for it in zh if it["meta"]["tone_hint"] == "neg" and it["meta"]["topic_hint"] == "tech"]
    assert sum("云帆科技" in it["entities"] for it in surge_items) >= 50
    surges = [Surge("tech", 20, 20, 10, lang="en"), Surge("tech", 20, 20, 5, lang="zh")]
    timed = schedule(load_sample() + zh, 60, 10, surges, start_ms=0, malformed=())
    events = [(t, json.loads(raw)) for t, raw in timed]
    in_window = [e for t, e in events if 20 <= t < 40 and e["meta"]["tone_hint"] == "neg"]
    zh_neg = [e for e in in_window if e["lang"] == "zh" and e["meta"]["topic_hint"] == "tech"]
    assert len(zh_neg) >= 100  # the Chinese surge's 100 events, plus base-rate ones
    assert all(raw.decode("utf-8") for _, raw in timed)  # raw UTF-8 records
    assert "云帆科技".encode() in b"".join(raw for _, raw in timed)
    with pytest.raises(ValueError, match="lang fr"):
        schedule(zh, 10, 1, Surge("tech", lang="fr"), start_ms=0)


def test_demo_local_runner_short(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli.demo",
            "--runner",
            "local",
            "--duration",
            "12",
            "--rate",
            "10",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "per-topic results from ClickHouse" in out and "demo finished" in out
    assert "sport" in out and "tech *" in out
