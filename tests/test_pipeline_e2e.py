"""End to end: real tansu broker, the worker as a subprocess, embedded ClickHouse (chDB).

2,000 events with 50 malformed ones must give exactly 1,950 distinct rows
whose labels match the local runner, 50 DLQ records with reasons, and
aggregates equal to a recount - also after ``kill -9`` of the worker mid-stream.
The worker classifies with the in-process ONNX runner here (to spare the
2 CPU cores); ``test_triton_worker_*`` runs it against the real Triton server.
ClickHouse is queried after the worker has exited: chDB lets one process open
a data directory, and reading from outside is what a user would do.
"""

from __future__ import annotations

import importlib.util
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
    scored_batches,
    settings_env,
    settings_from,
    stored_labels,
    totals_by,
    wait_drained,
)


@pytest.fixture(scope="module")
def local_runner():
    """Both local models behind the router, as the worker builds them: Han-script text (one
    sample text, whatever its lang) reads with the Chinese model."""
    from inference.serve.artifacts import model_name
    from inference.serve.routing import LanguageRouter
    from inference.serve.runner import LocalRunner

    r = LanguageRouter({lang: LocalRunner(name=model_name(lang)) for lang in ("en", "zh")})
    yield r
    r.close()


def agreement_with_local_runner(batches: list[list[tuple[str, str, str, str]]], local_runner) -> float:
    """Share of stored (sentiment, topic) equal to the local runner's for the same texts.

    Each micro-batch is one runner call stamped with one ``scored_at``, and the
    classify stage sorts it by id, so the reference classifies the same groups
    in the same order.  The runners score each text alone, so the grouping
    changes no score (tests/test_determinism.py); matching it anyway keeps
    this check about the pipeline alone.
    """
    batches = [sorted(group) for group in batches]
    same = total = 0
    for group in batches:
        expected = local_runner.classify([text for _, text, _, _ in group])
        for (_, _, sentiment, topic), ref in zip(group, expected, strict=True):
            same += (sentiment, topic) == (ref.sentiment.label, ref.topic.label)
            total += 1
    return same / total


def check_results(settings, stream, local_runner) -> dict[str, object]:
    """Every assertion the issue names, on a stopped pipeline; returns numbers for the report."""
    dlq = read_topic(settings, settings.topic_dlq)
    reasons, originals, sources = dlq_summary(dlq)
    expect_dlq = len(stream.malformed)
    assert len(dlq) >= expect_dlq
    assert set(originals) == set(stream.malformed), "DLQ values must be the original bytes"
    assert (
        len(set(zip(sources, originals, strict=True))) == expect_dlq
    )  # one per bad record (dups only if redelivered)
    assert all(reason for reason in reasons), reasons
    assert all(s.startswith(settings.topic_input + "/") for s in sources)

    client = open_clickhouse(settings)
    try:
        total, distinct = client.query("SELECT count(), uniqExact(id) FROM events FINAL").result_rows[0]
        labels = stored_labels(client)
        batches = scored_batches(client)
        counts = aggregate_counts(client)
        recount = recount_from_events(client)
    finally:
        client.close()
    assert distinct == total == len(stream.valid)
    assert set(labels) == set(stream.valid)
    assert counts == recount
    # And against the input itself (dimensions that do not depend on the model).
    assert totals_by(counts, "source") == Counter(e["source"] for e in stream.valid.values())
    assert totals_by(counts, "kind") == Counter(e["kind"] for e in stream.valid.values())
    assert totals_by(counts, "entity") == Counter(x for e in stream.valid.values() for x in e["entities"])

    agreement = agreement_with_local_runner(batches, local_runner)
    assert agreement == 1.0, f"label agreement with the local runner {agreement:.4f}"
    return {"dlq_reasons": dict(reasons), "agreement": agreement}


def test_2000_events_with_50_malformed(broker, local_runner, tmp_path: Path) -> None:
    env = settings_env(broker.bootstrap_servers, tmp_path / "data", "e2e")
    settings = settings_from(env)
    stream = make_stream(prefix="e2e")
    assert len(stream.lines) == 2000 and len(stream.valid) == 1950 and len(stream.malformed) == 50
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_running()
        t0 = time.monotonic()
        assert produce(settings, stream.lines) == 2000
        took = wait_drained(settings, worker)
        stats = worker.stats()
        assert worker.stop() == 0
    finally:
        worker.stop()
    result = check_results(settings, stream, local_runner)
    log = worker.log_text()
    assert "agent=classify records=" in log and "agent=store records=" in log  # one INFO line per batch
    print(
        f"\ne2e: drained {time.monotonic() - t0:.1f}s after produce start (drain wait {took:.1f}s); {result}; "
        f"worker stats consumed={stats['consumed']} stored={stats['stored']} dlq={stats['dlq']}"
    )


def test_kill_9_mid_stream_then_restart(broker, local_runner, tmp_path: Path) -> None:
    env = settings_env(broker.bootstrap_servers, tmp_path / "data", "crash")
    settings = settings_from(env)
    stream = make_stream(prefix="crash")
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_running()
        produce(settings, stream.lines[:700])
        deadline = time.monotonic() + 60
        while worker.stats().get("stored", 0) < 300:  # mid-stream: some stored, much still to come
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.05)
        produce(settings, stream.lines[700:])
        before_kill = worker.stats()
        worker.kill9()
        worker.start()  # same data dir, same groups: resumes from the last commits
        worker.wait_running()
        wait_drained(settings, worker)
        assert worker.stop() == 0
        after_restart = worker.stats()
    finally:
        worker.stop()
    assert after_restart["consumed"] > 0, (
        "the restarted worker had nothing left to do: the kill was not mid-stream"
    )
    client = open_clickhouse(settings)
    try:
        raw_rows = client.query("SELECT count() FROM events").result_rows[0][0]
    finally:
        client.close()
    result = check_results(settings, stream, local_runner)
    print(
        f"\ncrash: killed at stored={before_kill.get('stored')}; restarted worker consumed "
        f"{after_restart['consumed']} stored {after_restart['stored']}; rows before dedup {raw_rows}; {result}"
    )


def wait_stored(worker: Worker, at_least: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while worker.stats().get("stored", 0) < at_least:
        worker.assert_alive()
        assert time.monotonic() < deadline, f"stored < {at_least} after {timeout}s\n{worker.tail()}"
        time.sleep(0.1)


def test_clickhouse_inserts_failing_for_10s(broker, local_runner, tmp_path: Path) -> None:
    """Inserts fail for 10 s (fault-injection file, see ClickHouseSink): nothing lost, worker stays up."""
    fault = tmp_path / "fail-inserts"
    env = settings_env(
        broker.bootstrap_servers,
        tmp_path / "data",
        "chdown",
        MOODWIRE_FAULT_STORE_FILE=str(fault),
        MOODWIRE_SHUTDOWN_GRACE_S="3",
    )
    settings = settings_from(env)
    stream = make_stream(n_total=600, n_bad=10, prefix="chdown")
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_running()
        produce(settings, stream.lines[:200])
        wait_stored(worker, 100)
        fault.touch()
        produce(settings, stream.lines[200:])
        time.sleep(10)
        stored_during = worker.stats()["stored"]
        worker.assert_alive()
        # SIGTERM while the insert still fails: the batch in flight gets the grace period
        # (MOODWIRE_SHUTDOWN_GRACE_S), then it is dropped unacked, and the worker exits.
        t0 = time.monotonic()
        assert worker.stop(timeout=30) == 0
        stop_s = time.monotonic() - t0
        fault.unlink()
        worker.start()  # the dropped batch is delivered again
        worker.wait_running()
        wait_drained(settings, worker)
        assert worker.stop() == 0
    finally:
        fault.unlink(missing_ok=True)
        worker.stop()
    log = worker.log_text()
    retries = log.count("agent=store status=retrying")
    assert retries >= 3, "inserts never failed: the outage did not happen"
    assert "shutdown=drained batches=0 unfinished=1" in log, "the stop did not happen mid-outage"
    assert stored_during < len(stream.valid)
    result = check_results(settings, stream, local_runner)
    print(
        f"\nclickhouse outage: {retries} retried inserts, stored {stored_during} before recovery, "
        f"SIGTERM mid-outage took {stop_s:.1f}s; {result}"
    )


triton = pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None or importlib.util.find_spec("tritonclient") is None,
    reason="nvidia-pytriton (bundled tritonserver) and tritonclient are needed: make install-dev",
)


@triton
@pytest.mark.triton
def test_triton_worker_with_triton_down_for_10s(broker, local_runner, tmp_path: Path) -> None:
    """The worker on the real Triton server; the server is stopped for 10 s mid-stream, then restarted."""
    from inference.serve.triton_server import TritonServer, free_ports

    ports = free_ports()
    server = TritonServer("cpu", None, ports).start()
    env = settings_env(
        broker.bootstrap_servers,
        tmp_path / "data",
        "triton",
        MOODWIRE_RUNNER="triton",
        MOODWIRE_TRITON_URL=server.grpc_url,
    )
    settings = settings_from(env)
    stream = make_stream(n_total=600, n_bad=10, prefix="triton")
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_running()
        produce(settings, stream.lines[:200])
        wait_stored(worker, 150)
        server.stop()
        down_at = time.monotonic()
        produce(settings, stream.lines[200:])
        time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
        stored_during = worker.stats()["stored"]
        worker.assert_alive()
        server = TritonServer("cpu", None, ports).start()
        wait_drained(settings, worker, timeout=240)
        assert worker.stop() == 0
    finally:
        worker.stop()
        server.stop()
    log = worker.log_text()
    retries = log.count("agent=classify status=retrying")
    assert retries >= 1 and "TritonUnavailable" in log, (
        "classification never failed: the outage did not happen"
    )
    assert stored_during < len(stream.valid)
    result = check_results(settings, stream, local_runner)
    print(f"\ntriton outage: {retries} retried batches, stored {stored_during} before recovery; {result}")
