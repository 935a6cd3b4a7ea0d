"""10,000 hostile records through the real broker and worker (local runner, chDB): no crash, every
invalid record in the DLQ with its reason, every valid one stored once, worker RSS bounded.

Records come from tests/fuzz_records.py (random bytes, invalid UTF-8, deeply nested JSON,
huge numbers, NUL and control characters, 1 MiB texts, keys and headers of every shape,
valid JSON of every wrong type) plus 200 plainly valid events.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from fuzz_records import FuzzRecord, fuzz_stream
from pipeline_harness import Worker, open_clickhouse, read_topic, settings_env, settings_from, wait_drained

from streams.pipeline.events import Rejection, parse_event
from streams.pipeline.records import H_REASON, MAX_RECORD_BYTES

pytestmark = pytest.mark.slow

RSS_GROWTH_LIMIT_MIB = 256


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def produce_records(settings, records: list[FuzzRecord]) -> None:
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(
            **settings.kafka_client_kwargs(), acks="all", max_request_size=MAX_RECORD_BYTES, linger_ms=10
        )
        await producer.start()
        try:
            pending = []
            for r in records:
                headers = list(r.headers)
                pending.append(await producer.send(settings.topic_input, r.value, key=r.key, headers=headers))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(go())


def test_10000_hostile_records(broker, tmp_path: Path) -> None:
    records = fuzz_stream()
    for r in records:  # the generator's labels agree with the event contract
        assert isinstance(parse_event(r.value, 0), Rejection) is not r.valid, (r.kind, r.value[:80])
    invalid = Counter(r.value for r in records if not r.valid)
    valid_ids = sorted(json.loads(r.value)["id"] for r in records if r.valid)
    assert sum(invalid.values()) >= 9_000 and len(valid_ids) == len(set(valid_ids)) >= 200

    env = settings_env(broker.bootstrap_servers, tmp_path / "data", "fuzz", MOODWIRE_ALERTS_ENABLED="false")
    settings = settings_from(env)
    worker = Worker(env, tmp_path / "worker.log").start()
    peak = [0.0]
    done = threading.Event()
    try:
        worker.wait_running()
        assert worker.proc is not None
        pid = worker.proc.pid
        before = rss_mib(pid)

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], rss_mib(pid))
                except (OSError, AssertionError):
                    return
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        produce_records(settings, records)
        produced_s = time.monotonic() - t0
        wait_drained(settings, worker, timeout=240)
        drained_s = time.monotonic() - t0
        worker.assert_alive()
        after = rss_mib(pid)
        done.set()
        assert worker.stop() == 0
    finally:
        done.set()
        worker.stop()

    dlq = read_topic(settings, settings.topic_dlq)
    reasons = Counter(dict(r.headers or ()).get(H_REASON, b"").decode() for r in dlq)
    assert "" not in reasons and "spoofed" not in reasons, reasons
    assert Counter(r.value for r in dlq) == invalid  # every invalid record, once, original bytes

    client = open_clickhouse(settings)
    try:
        stored = sorted(r[0] for r in client.query("SELECT id FROM events FINAL").result_rows)
        raw_rows = client.query("SELECT count() FROM events").result_rows[0][0]
    finally:
        client.close()
    assert stored == valid_ids  # every valid one stored once (NUL and control characters included)

    log = worker.log_text()
    assert "Traceback" not in log
    growth = after - before
    print(
        f"\nfuzz: {len(records)} records ({sum(invalid.values())} invalid, {len(valid_ids)} valid); "
        f"produced {produced_s:.1f}s, drained {drained_s:.1f}s; dlq reasons {len(reasons)} kinds "
        f"{reasons.most_common(6)}; stored rows {raw_rows}; worker RSS before {before:.0f} MiB, "
        f"after {after:.0f} MiB, peak {peak[0]:.0f} MiB (growth {growth:+.0f} MiB)"
    )
    assert growth < RSS_GROWTH_LIMIT_MIB, f"worker RSS grew {growth:.0f} MiB"
