"""Scale-out on the real broker, Triton and chDB: 3 classify workers + 1 storing worker share one group.

20,000 events of which 1% malformed; one classify worker is killed with -9 mid-stream and a fourth
is started later.  Every valid event ends up stored exactly once, every malformed one in the DLQ,
the aggregates equal a recount, and each rebalance's pause (revoke -> assigned, from the workers'
``rebalance=done pause_ms=`` lines) is reported.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from pipeline_harness import (
    Worker,
    aggregate_counts,
    dlq_summary,
    make_stream,
    open_clickhouse,
    produce,
    read_topic,
    recount_from_events,
    settings_env,
    settings_from,
    wait_drained,
)

from streams.embedded.broker import EmbeddedBroker, free_port

N_EVENTS, N_BAD = 20_000, 200
PAUSE = re.compile(r"rebalance=done pause_ms=(\d+)")


def classify_worker(env: dict[str, str], log: Path) -> Worker:
    # its own data dir: worker-stats.json is per worker (a classify worker never opens chDB)
    data = log.with_suffix("")
    return Worker(
        {
            **env,
            "MOODWIRE_WORKER_AGENTS": "classify",
            "MOODWIRE_WEB_PORT": "0",
            "MOODWIRE_DATA_DIR": str(data),
        },
        log,
    )


def wait_for(what: str, cond, timeout: float, workers: list[Worker]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        for w in workers:
            w.assert_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + "\n".join(
            w.tail(15) for w in workers
        )
        time.sleep(0.2)


@pytest.mark.triton
@pytest.mark.slow
def test_three_classify_workers_one_killed_one_added(tmp_path: Path) -> None:
    from inference.serve.triton_server import TritonServer, free_ports

    server = TritonServer("cpu", None, free_ports()).start()
    stream = make_stream(n_total=N_EVENTS, n_bad=N_BAD, prefix="scale")
    assert len(stream.valid) == N_EVENTS - N_BAD and len(stream.malformed) == N_BAD
    workers: list[Worker] = []
    try:
        with EmbeddedBroker(port=free_port()) as broker:
            env = settings_env(
                broker.bootstrap_servers,
                tmp_path / "data",
                "scale",
                MOODWIRE_RUNNER="triton",
                MOODWIRE_TRITON_URL=server.grpc_url,
                MOODWIRE_ALERTS_ENABLED="false",
            )
            settings = settings_from(env)
            store = Worker({**env, "MOODWIRE_WORKER_AGENTS": "store"}, tmp_path / "store.log").start()
            classify = [classify_worker(env, tmp_path / f"classify-{i}.log").start() for i in range(3)]
            workers = [store, *classify]
            for w in workers:
                w.wait_running()
            t0 = time.monotonic()
            produce(settings, stream.lines)
            wait_for("a fifth stored", lambda: store.stats().get("stored", 0) >= N_EVENTS // 5, 180, workers)
            victim = classify[1]
            victim.kill9()
            killed_at = store.stats().get("stored", 0)
            live = [store, classify[0], classify[2]]
            wait_for("a third stored", lambda: store.stats().get("stored", 0) >= N_EVENTS // 3, 180, live)
            fourth = classify_worker(env, tmp_path / "classify-3.log").start()
            live.append(fourth)
            fourth.wait_running()
            added_at = store.stats().get("stored", 0)
            wait_drained(settings, store, timeout=300)
            took = time.monotonic() - t0
            for w in live:
                assert w.stop() == 0
            dlq = read_topic(settings, settings.topic_dlq)
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.stop()
        server.stop()

    reasons, originals, sources = dlq_summary(dlq)
    # The DLQ is at-least-once like every output: a batch redelivered after the kill can send its
    # rejects again, each with the same moodwire-source (topic/partition/offset) to deduplicate by.
    by_source = dict(zip(sources, originals, strict=True))
    assert len(by_source) == N_BAD and Counter(by_source.values()) == Counter(stream.malformed)
    assert all(reasons) and sum(reasons.values()) == len(dlq)
    client = open_clickhouse(settings)
    try:
        total, distinct = client.query("SELECT count(), uniqExact(id) FROM events FINAL").result_rows[0]
        ids = {r[0] for r in client.query("SELECT id FROM events FINAL").result_rows}
        raw = client.query("SELECT count() FROM events").result_rows[0][0]
        counts, recount = aggregate_counts(client), recount_from_events(client)
    finally:
        client.close()
    assert total == distinct == N_EVENTS - N_BAD and ids == set(stream.valid)
    assert counts == recount

    logs = {p.name: p.read_text(errors="replace") for p in sorted(tmp_path.glob("*.log"))}
    pauses = {name: [int(ms) for ms in PAUSE.findall(text)] for name, text in logs.items()}
    scored = {name: text.count("agent=classify records=") for name, text in logs.items()}
    assert scored["classify-3.log"] > 0, "the fourth worker never got a partition"
    assert all(n > 0 for name, n in scored.items() if name.startswith("classify")), scored
    print(
        f"\nscale-out: {N_EVENTS} events in {took:.1f}s; killed classify-1 at {killed_at} stored, added "
        f"classify-3 at {added_at}; rows before "
        f"dedup {raw}; DLQ records {len(dlq)} ({len(by_source)} distinct sources); classify batches per worker "
        f"{scored}; rebalance pauses (ms) per worker {pauses}"
    )
