"""Helpers for the pipeline integration tests: generate a stream, run the worker, drain, read results.

Everything here drives real components (tansu broker, the worker as a
subprocess, chDB); nothing is mocked.  ClickHouse is read only after the
worker has exited, because chDB lets one process at a time open a data dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.embedded.broker import free_port
from streams.pipeline.records import H_REASON, H_SOURCE
from streams.settings import Settings, load_settings
from streams.stats import read_stats

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_TEXTS = ROOT / "inference" / "samples" / "texts.jsonl"
SOURCES = ("wire", "daily-post", "tech-review", "app-store", "play-store", "sports-desk")
ENTITIES = ("Acme Corp", "Globex", "Northwind Traders", "Initech", "Umbrella", "Hooli")
T0_MS = 1_767_268_800_000  # 2026-01-01T12:00:00Z: events span a few minutes from here


@dataclass
class Stream:
    lines: list[bytes]
    valid: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> event
    malformed: list[bytes] = field(default_factory=list)


def sample_texts() -> list[str]:
    return [json.loads(line)["text"] for line in SAMPLE_TEXTS.read_text().splitlines() if line.strip()]


def malformed_events(prefix: str) -> list[bytes]:
    """50 records the worker must reject, of every kind the issue names."""
    bad: list[bytes] = []
    bad += [b'{"id": "%s-bad-json-%d", "text": "unterminated' % (prefix.encode(), i) for i in range(6)]
    bad += [b"not json at all %d" % i for i in range(4)]
    bad += [json.dumps({"id": f"{prefix}-no-text-{i}", "kind": "news"}).encode() for i in range(8)]
    bad += [json.dumps({"id": i, "text": "Numbers are not ids"}).encode() for i in range(4)]
    bad += [json.dumps({"id": f"{prefix}-text-num-{i}", "text": 42}).encode() for i in range(4)]
    bad += [
        json.dumps({"id": f"{prefix}-ent-{i}", "text": "ok", "entities": "Acme"}).encode() for i in range(3)
    ]
    bad += [json.dumps({"id": f"{prefix}-empty-{i}", "text": " " * i}).encode() for i in range(8)]
    bad += [json.dumps({"id": f"{prefix}-huge", "text": "x" * (5 * 1024 * 1024)}).encode()]
    bad += [b'{"id": "%s-utf8-%d", "text": "caf\xe9 \xff\xfe"}' % (prefix.encode(), i) for i in range(8)]
    bad += [b"[1, 2, 3]", b'"just a string"', b"null", b"{}"]
    assert len(bad) == 50, len(bad)
    return bad


def make_stream(n_total: int = 2000, n_bad: int = 50, prefix: str = "ev", seed: int = 7) -> Stream:
    """``n_total - n_bad`` valid events (sample texts, varied) with the malformed ones interleaved."""
    rng = random.Random(seed)
    texts = sample_texts()
    stream = Stream(lines=[])
    valid_lines = []
    for i in range(n_total - n_bad):
        base = texts[i % len(texts)]
        text = (
            base
            if i < len(texts)
            else f"{base} ({rng.choice(['update', 'report', 'review', 'analysis'])} {i})"
        )
        event = {
            "id": f"{prefix}-{i:05d}",
            "text": text,
            "kind": "review" if i % 3 == 0 else "news",
            "source": SOURCES[i % len(SOURCES)],
            "ts": T0_MS + i * 97,  # ~3 minutes of event time
            "lang": "en",
            "entities": [ENTITIES[i % len(ENTITIES)]] if i % 2 == 0 else [],
        }
        stream.valid[event["id"]] = event
        valid_lines.append(json.dumps(event).encode())
    # 50 kinds of malformed record; more than 50 repeats them (ids differ, some bytes repeat)
    stream.malformed = [b for k in range(-(-n_bad // 50)) for b in malformed_events(f"{prefix}{k or ''}")][
        :n_bad
    ]
    lines = valid_lines + stream.malformed
    rng.shuffle(lines)
    stream.lines = lines
    return stream


def settings_env(bootstrap: str, data_dir: Path, suffix: str, **extra: str) -> dict[str, str]:
    env = {
        "MOODWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MOODWIRE_DATA_DIR": str(data_dir),
        "MOODWIRE_TOPIC_INPUT": f"text-events-{suffix}",
        "MOODWIRE_TOPIC_SCORED": f"scored-events-{suffix}",
        "MOODWIRE_TOPIC_DLQ": f"text-events-dlq-{suffix}",
        "MOODWIRE_TOPIC_PARTITIONS": "4",
        # One consumer group per test: a member a previous test killed cannot delay this one's join.
        "MOODWIRE_KAFKA_GROUP_ID": f"moodwire-{suffix}",
        "MOODWIRE_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "MOODWIRE_RUNNER": "local",
        "MOODWIRE_RETRY_MAX_BACKOFF_S": "2",
        # Every worker serves the web API; a free port per worker keeps parallel runs apart.
        "MOODWIRE_WEB_PORT": str(free_port()),
    }
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> Settings:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Worker:
    """``python -m streams.cli.worker`` as a child process, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.stats_path = Path(env["MOODWIRE_DATA_DIR"]) / "worker-stats.json"

    def start(self) -> Worker:
        self.stats_path.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def stats(self) -> dict[str, Any]:
        return read_stats(self.stats_path) or {}

    def wait_running(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            if self.stats().get("status") == "running":
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not running after {timeout}s:\n{self.tail()}")

    def assert_alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"worker exited:\n{self.tail()}"

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"worker ignored SIGTERM for {timeout}s:\n{self.tail()}") from None
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# -- Kafka side -------------------------------------------------------------------------------


def produce(settings: Settings, lines: Iterable[bytes], rate: float | None = None) -> int:
    from streams.cli.produce import produce_lines

    return asyncio.run(produce_lines(settings, list(lines), rate))


async def _read_topic(settings: Settings, topic: str, idle_s: float) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                out.extend(recs)
                last = time.monotonic()
    finally:
        await consumer.stop()
    return out


def read_topic(settings: Settings, topic: str, idle_s: float = 2.0) -> list[Any]:
    """Every record of ``topic`` from the beginning (stops after ``idle_s`` without new ones)."""
    return asyncio.run(_read_topic(settings, topic, idle_s))


async def _committed(
    settings: Settings, group: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    # A group member that never subscribes: it only reads the group's commits (OffsetFetch).
    # (aiokafka's admin list_consumer_group_offsets cannot decode tansu's answer.)
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for topic, partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            out[(topic, partition)] = offset if offset is not None else 0
        return out
    finally:
        await consumer.stop()


def end_offsets(records: Iterable[Any]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        out[key] = max(out.get(key, 0), r.offset + 1)
    return out


def drained(settings: Settings) -> bool:
    """Both agents have committed everything on their topics (fetch-based ends; tansu's ListOffsets is wrong)."""
    group = settings.kafka_group_id  # all agents share one consumer group (streams.pipeline.agents)
    for topic in (settings.topic_input, settings.topic_scored):
        ends = end_offsets(read_topic(settings, topic, idle_s=0.8))
        committed = asyncio.run(_committed(settings, group, ends))
        if any(committed.get(tp, 0) < end for tp, end in ends.items()):
            return False
    return True


def wait_drained(settings: Settings, worker: Worker, timeout: float = 180) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        worker.assert_alive()
        if drained(settings):
            return time.monotonic() - t0
        time.sleep(1.0)
    raise AssertionError(f"pipeline not drained after {timeout}s; stats={worker.stats()}\n{worker.tail()}")


def dlq_summary(records: list[Any]) -> tuple[Counter[str], list[bytes], list[str]]:
    reasons: Counter[str] = Counter()
    sources = []
    for r in records:
        headers = dict(r.headers or ())
        reasons[headers.get(H_REASON, b"").decode()] += 1
        sources.append(headers.get(H_SOURCE, b"").decode())
    return reasons, [r.value for r in records], sources


# -- ClickHouse side (after the worker has exited) -------------------------------------------


def open_clickhouse(settings: Settings) -> Any:
    from streams.clickhouse import connect

    return connect(settings.effective_clickhouse_dsn)


def stored_labels(client: Any) -> dict[str, tuple[str, str]]:
    rows = client.query("SELECT id, sentiment, topic FROM events FINAL").result_rows
    return {r[0]: (r[1], r[2]) for r in rows}


def scored_batches(
    client: Any, order: dict[str, tuple[int, int]] | None = None
) -> list[list[tuple[str, str, str, str]]]:
    """Stored rows grouped by ``scored_at`` (one group per micro-batch): (id, text, sentiment, topic)."""
    rows = client.query("SELECT scored_at, id, text, sentiment, topic FROM events FINAL").result_rows
    groups: dict[Any, list[tuple[str, str, str, str]]] = {}
    for scored_at, *rest in rows:
        groups.setdefault(scored_at, []).append(tuple(rest))  # type: ignore[arg-type]
    out = []
    for _, group in sorted(groups.items()):
        out.append(sorted(group, key=lambda r: (order or {}).get(r[0], (0, 0))))
    return out


def aggregate_counts(client: Any) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    rows = client.query(
        "SELECT dim, value, toString(minute), events, negative, neutral, positive FROM minute_counts"
    ).result_rows
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5], r[6]) for r in rows}


def recount_from_events(client: Any) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    """The aggregates recomputed from scratch from the de-duplicated events table."""
    exprs = {
        "topic": "topic",
        "source": "source",
        "kind": "kind",
        "lang": "lang",
        "entity": "arrayJoin(entities)",
    }
    out = {}
    for dim, expr in exprs.items():
        rows = client.query(
            f"SELECT {expr} AS v, toString(toStartOfMinute(ts)), count(), countIf(sentiment = 'negative'), "
            f"countIf(sentiment = 'neutral'), countIf(sentiment = 'positive') FROM events FINAL GROUP BY v, 2"
        ).result_rows
        out.update({(dim, r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows})
    return out


def totals_by(counts: dict[tuple[str, str, str], tuple[int, int, int, int]], dim: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for (d, value, _minute), c in counts.items():
        if d == dim:
            out[value] += c[0]
    return out
