"""Integration tests against the real bundled tritonserver on loopback (CPU repository).

Part of the plain ``pytest`` run (``make test``); select them alone with
``-m triton``.  Skipped, with the reason, only when nvidia-pytriton (the wheel
that bundles tritonserver) is not installed.  Uses the committed artefacts
unless MOODWIRE_TEST_ARTIFACTS names another root.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        importlib.util.find_spec("pytriton") is None,
        reason="nvidia-pytriton (bundled tritonserver) not installed: pip install -e '.[triton]'",
    ),
]

from test_determinism import assert_same_scores, determinism_texts, in_batches, shuffled_among  # noqa: E402

from inference.evaluation.bench import sample_sets  # noqa: E402
from inference.serve.contract import MAX_LENGTH, TRUNCATION_HEAD  # noqa: E402
from inference.serve.triton_client import RetryPolicy, TritonRunner, TritonUnavailable  # noqa: E402
from inference.serve.triton_server import TritonServer, free_ports  # noqa: E402

ARTIFACTS = os.environ.get("MOODWIRE_TEST_ARTIFACTS")  # unset: the committed artefacts
ROOT = Path(__file__).resolve().parent.parent


def mixed_texts(n: int = 240) -> list[str]:
    """Headlines, fragments, reviews and multi-paragraph texts past max_length."""
    pool = [t for texts in sample_sets().values() for t in texts]
    out = []
    for i in range(n):
        a, b, c = pool[i % len(pool)], pool[(i * 7 + 3) % len(pool)], pool[(i * 13 + 5) % len(pool)]
        shape = i % 4
        if shape == 0:
            out.append(" ".join(a.split()[: 2 + i % 5]))
        elif shape == 1:
            out.append(a)
        elif shape == 2:
            out.append(f"{a} {b}")
        else:
            out.append(" ".join([a, b, c] * 4))
    return out


@pytest.fixture(scope="module")
def server():
    with TritonServer("cpu", ARTIFACTS, free_ports()) as srv:
        yield srv


@pytest.fixture(scope="module")
def runner(server):
    with TritonRunner(server.grpc_url, RetryPolicy(timeout_s=20, max_in_flight=16)) as r:
        yield r


@pytest.fixture(scope="module")
def local():
    from inference.serve.runner import LocalRunner

    r = LocalRunner(ARTIFACTS)
    yield r
    r.close()


def max_diff(a, b) -> tuple[float, int]:
    worst, where = 0.0, -1
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for p, q in ((x.sentiment, y.sentiment), (x.topic, y.topic)):
            d = max(abs(p.scores[k] - q.scores[k]) for k in p.scores)
            if d > worst:
                worst, where = d, i
    return worst, where


def label_agreement(a, b) -> float:
    same = sum(
        x.sentiment.label == y.sentiment.label and x.topic.label == y.topic.label
        for x, y in zip(a, b, strict=True)
    )
    return same / len(a)


@pytest.fixture(scope="module")
def reference(local):
    """The determinism texts, and each one classified alone by the local runner."""
    texts, others = determinism_texts()
    return texts, others, in_batches(local.classify, texts, 1)


def test_outputs_equal_local_runner(runner, local):
    # Both run each text alone through the same int8 graph with a
    # single-threaded ONNX Runtime session: the same scores, to float noise,
    # whatever the request sizes (headlines, fragments, texts past max_length).
    texts = mixed_texts(240)
    remote = runner.classify(texts)
    ref = local.classify(texts)
    agree = label_agreement(remote, ref)
    worst, where = max_diff(remote, ref)
    print(
        f"\nparity on {len(texts)} texts: label agreement {agree:.2%}, max prob diff {worst:.6f} (text {where})"
    )
    assert agree == 1.0
    assert worst <= 2e-6
    assert runner.model_versions == local.model_versions


@pytest.mark.parametrize("size", [1, 7, 64, 500])
def test_batch_size_does_not_change_scores_through_triton(runner, reference, size):
    # Reference: each text classified alone by the local runner (as in
    # tests/test_determinism.py).  Through Triton the texts go as sequential
    # requests of 1 (alone), 7 and 64, and as one call of 500 that the client
    # splits into concurrent requests of <= 128, merged by the dynamic batcher.
    texts, _, alone = reference
    assert_same_scores(alone, in_batches(runner.classify, texts, size), f"triton, requests of {size}")


def test_batch_mates_do_not_change_scores_through_triton(runner, reference):
    # Shuffled among 500 other texts (dozens cut at max_length) as 16
    # concurrent requests of 64, whose rows the entry model merges across
    # requests: each text still runs alone in the encoder.
    texts, others, alone = reference

    def concurrently(batch: list[str]) -> list:
        size = 64

        async def all_at_once() -> list:
            chunks = [batch[i : i + size] for i in range(0, len(batch), size)]
            results = await asyncio.gather(*(runner.aclassify(c) for c in chunks))
            return [c for chunk in results for c in chunk]

        return asyncio.run(all_at_once())

    mixed = shuffled_among(concurrently, texts, others, len(texts) + len(others))
    assert_same_scores(alone, mixed, "triton, shuffled among 500 others, 16 concurrent requests of 64")


def test_long_text_keeps_head_and_tail_through_triton(server, runner, local):
    # The `tokenizer` model cuts a long text as the local BatchTokenizer does:
    # its first 128 and last 128 tokens, padded to the request's longest row.
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tokenizers import Tokenizer

    from inference.serve.triton_client import load_contract

    contract = load_contract()
    artifact = local.model.artifact
    long_text = " ".join(f"w{i}" for i in range(2_000))
    texts = [long_text, "Stocks rally as inflation cools"]
    full_tok = Tokenizer.from_file(str(artifact.tokenizer_file))
    full_tok.no_truncation()
    full_tok.no_padding()
    full = full_tok.encode(long_text).ids
    assert len(full) > 3 * MAX_LENGTH

    name = next(iter(contract["tokenizer"]["inputs"]))
    data = np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)
    tensor = grpcclient.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        result = client.infer(contract["tokenizer"]["model"], [tensor])
    finally:
        client.close()
    ids_name, mask_name = contract["tokenizer"]["outputs"]
    ids, mask = result.as_numpy(ids_name), result.as_numpy(mask_name)
    assert ids.shape == mask.shape == (2, MAX_LENGTH)
    assert ids[0, :TRUNCATION_HEAD].tolist() == full[:TRUNCATION_HEAD]
    assert ids[0, TRUNCATION_HEAD:].tolist() == full[-(MAX_LENGTH - TRUNCATION_HEAD) :]
    assert mask[0].all()
    local_ids = local.model.tokenizer.encode(texts)
    n = len(local_ids[1])
    assert [ids[0].tolist(), ids[1, :n].tolist()] == local_ids
    assert mask[1].tolist() == [1] * n + [0] * (MAX_LENGTH - n)  # padding, masked
    # and the long text scores as the local runner scores it
    assert max_diff(runner.classify(texts), local.classify(texts))[0] <= 2e-6


def model_stats(server: TritonServer, model: str) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    client.close()
    return {
        "requests": int(stats["inference_stats"]["success"].get("count", 0)),
        "executions": int(stats.get("execution_count", 0)),
        "texts": int(stats.get("inference_count", 0)),
    }


def test_dynamic_batcher_merges_concurrent_requests(server, runner):
    texts = sample_sets()["headline"][:8]
    before = model_stats(server, "moodwire")

    async def burst() -> None:
        await asyncio.gather(*(runner.aclassify(texts) for _ in range(16)))

    asyncio.run(burst())
    # Triton counts an execution once the model's execute() has returned, which can be
    # after the client already holds the responses (seen on a loaded machine: 8 of 16
    # counted): read the statistics until every request is in them.
    deadline = time.monotonic() + 10
    while True:
        after = model_stats(server, "moodwire")
        if after["requests"] - before["requests"] >= 16 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    delta = {k: after[k] - before[k] for k in before}
    print(
        f"\nbatcher: {delta['requests']} requests, {delta['texts']} texts in {delta['executions']} executions"
    )
    assert delta["requests"] == 16 and delta["texts"] == 16 * len(texts)
    assert delta["executions"] < delta["requests"], "no requests were merged"


def test_kill_gives_typed_error_within_budget_and_restart_is_picked_up():
    ports = free_ports()
    policy = RetryPolicy(timeout_s=10, attempts=3, backoff_s=0.2)
    texts = mixed_texts(64)
    first = TritonServer("cpu", ARTIFACTS, ports).start()
    second: TritonServer | None = None
    try:
        with TritonRunner(first.grpc_url, policy) as client:
            baseline = client.classify(texts)
            outcome: dict[str, object] = {}

            def keep_classifying() -> None:
                while True:
                    try:
                        client.classify(texts)
                    except Exception as exc:
                        outcome["error"], outcome["at"] = exc, time.monotonic()
                        return

            worker = threading.Thread(target=keep_classifying, daemon=True)
            worker.start()
            time.sleep(1.0)
            outcome["killed_at"] = time.monotonic()
            first.kill()
            worker.join(policy.budget_s + 15)
            assert not worker.is_alive(), "client hung after the server was killed"
            assert isinstance(outcome["error"], TritonUnavailable), outcome["error"]
            took = float(outcome["at"]) - float(outcome["killed_at"])  # type: ignore[arg-type]
            print(
                f"\nkill: {type(outcome['error']).__name__} after {took:.1f}s (budget {policy.budget_s:.1f}s)"
            )
            assert took <= policy.budget_s + 1

            second = TritonServer("cpu", ARTIFACTS, ports).start()
            again = client.classify(texts)  # same client, no reconnect call
            assert [r.sentiment.label for r in again] == [r.sentiment.label for r in baseline]
            assert max_diff(again, baseline)[0] <= 2e-6
    finally:
        first.stop()
        if second is not None:
            second.stop()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.triton", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_serve_port_in_use_is_a_one_line_error():
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = free_ports()
        result = run_cli(
            "serve", "--grpc-port", str(port), "--http-port", str(p.http), "--metrics-port", str(p.metrics)
        )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and f"port {port} is already in use" in result.stderr


def test_serve_model_that_fails_to_load_is_a_one_line_error(tmp_path):
    from inference.serve.artifacts import load_artifact

    src = load_artifact(ARTIFACTS).directory
    dst = tmp_path / src.name
    dst.mkdir()
    for f in ("model.json", "tokenizer.json"):
        (dst / f).symlink_to(src / f)
    (dst / "model.int8.onnx").write_bytes(b"not an onnx model")
    p = free_ports()
    result = run_cli(
        "serve",
        "--artifacts",
        str(tmp_path),
        "--http-port",
        str(p.http),
        "--grpc-port",
        str(p.grpc),
        "--metrics-port",
        str(p.metrics),
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "encoder" in result.stderr, result.stderr


def test_serve_stops_cleanly_on_sigterm():
    p = free_ports()
    cmd = [
        sys.executable,
        "-m",
        "streams.cli.triton",
        "serve",
        "--http-port",
        str(p.http),
        "--grpc-port",
        str(p.grpc),
        "--metrics-port",
        str(p.metrics),
    ]
    if ARTIFACTS:
        cmd += ["--artifacts", ARTIFACTS]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        if not banner.startswith("triton ready"):
            pytest.fail(f"serve did not start: {banner}{proc.stderr.read() if proc.stderr else ''}")
        endpoints = [proc.stdout.readline() for _ in range(3)]
        assert f"127.0.0.1:{p.grpc}" in endpoints[0]
        server_pids = children_of(proc.pid)
        assert server_pids, "tritonserver is not running under the CLI"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    alive = [pid for pid in server_pids if Path(f"/proc/{pid}").exists()]
    assert not alive, f"orphaned processes after SIGTERM: {alive}"
    for port in (p.http, p.grpc, p.metrics):  # free again: a new server could bind them
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))


def children_of(pid: int) -> list[int]:
    """The tritonserver started by ``pid`` and everything in its process group."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,pgid"], capture_output=True, text=True, check=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines()[1:]]
    servers = [r[0] for r in rows if r[1] == pid]
    return [r[0] for r in rows if r[2] in servers or r[0] in servers]
