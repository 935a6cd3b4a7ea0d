"""Inference benchmarks: throughput per batch size, int8 vs fp32, same run.

Inputs are the bundled sample texts, split into headline-length (news) and
review-length (reviews) sets and repeated to fill each batch, so every
backend and precision sees identical token counts.  Chinese (``language="zh"``,
the Chinese model): the Chinese demo sample, split into headlines (up to 60
characters) and article leads (longer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.serve.artifacts import ArtifactError, load_artifact, model_name

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "texts.jsonl"
ZH_SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "samples" / "stream_zh.jsonl"


def sample_sets(language: str = "en") -> dict[str, list[str]]:
    if language == "zh":
        lines = ZH_SAMPLES.read_text(encoding="utf-8").splitlines()
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
        return {"headline": [t for t in texts if len(t) <= 60], "article": [t for t in texts if len(t) > 60]}
    rows = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {
        "headline": [r["text"] for r in rows if r["kind"] == "news"],
        "review": [r["text"] for r in rows if r["kind"] == "review"],
    }


def fill(texts: Sequence[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]


def measure(classify: Any, texts: list[str], seconds: float) -> dict[str, float]:
    """Repeat one batch until ``seconds`` pass; returns texts/s and latency."""
    classify(texts)  # warm-up: first run allocates arenas
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < 3:
        t0 = time.perf_counter()
        classify(texts)
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    total = sum(latencies)
    return {
        "texts_per_s": len(texts) * len(latencies) / total,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "runs": len(latencies),
    }


class TwoModelBaseline:
    """The serving path before the multi-task model, for A/B runs: separate
    sentiment and topic int8 models (two encoder passes per text), texts
    length-bucketed 32 at a time and padded per bucket, 128 tokens, head only.
    ``root`` holds ``sentiment/`` and ``topic/`` as committed at dc94024
    (``git archive dc94024 inference/artifacts | tar -x -C /tmp/old``)."""

    def __init__(self, root: Path | str, threads: int = 0) -> None:
        import os

        import onnxruntime as ort

        from inference.serve.tokenization import BatchTokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        root = Path(root)
        missing = [t for t in ("sentiment", "topic") if not (root / t / "model.int8.onnx").is_file()]
        if missing:
            raise ArtifactError(f"{root}: no {missing[0]}/model.int8.onnx (the pre-multi-task artefacts)")
        self.sessions = [
            ort.InferenceSession(str(root / t / "model.int8.onnx"), opts, providers=["CPUExecutionProvider"])
            for t in ("sentiment", "topic")
        ]
        self.tokenizer = BatchTokenizer(root / "sentiment" / "tokenizer.json", 128)

    def classify(self, texts: Sequence[str]) -> None:
        from inference.serve.tokenization import length_buckets, pad

        encoded = self.tokenizer.encode(texts)
        for rows in length_buckets(encoded, 32):
            ids, mask = pad([encoded[i] for i in rows])
            for session in self.sessions:
                session.run(None, {"input_ids": ids, "attention_mask": mask})


def run_local_bench(
    batch_sizes: Sequence[int],
    seconds: float,
    artifacts: str | None = None,
    baseline: str | None = None,
    language: str = "en",
) -> list[dict[str, Any]]:
    """Both labels per text, as the stream uses them: the served model (int8,
    and fp32 when exported) and, with ``baseline``, the old two-model path."""
    from rich.console import Console
    from rich.table import Table

    from inference.serve.runner import LocalRunner

    console = Console()
    runners: dict[str, Any] = {}
    if baseline:
        runners["old 2x int8"] = TwoModelBaseline(baseline)
    name = model_name(language)
    runners["int8"] = LocalRunner(artifacts, precision="int8", name=name)
    try:
        load_artifact(artifacts, name).onnx_file("fp32")
        runners["fp32"] = LocalRunner(artifacts, precision="fp32", name=name)
    except ArtifactError as exc:
        console.print(f"[yellow]fp32 skipped: {exc}[/]")
    tokenizer = runners["int8"].model.tokenizer
    reference = "old 2x int8" if baseline else "fp32" if "fp32" in runners else "int8"
    results = []
    table = Table(title=f"local ONNX Runtime, sentiment + topic per text ({name})")
    for col in ("input", "batch", "model", "texts/s", "tokens/s", "p50 ms", "p99 ms", f"vs {reference}"):
        table.add_column(col, justify="right")
    for kind, pool in sample_sets(language).items():
        for bs in batch_sizes:
            texts = fill(pool, bs)
            tokens = sum(len(x) for x in tokenizer.encode(texts))
            row = {runner: measure(r.classify, texts, seconds) for runner, r in runners.items()}
            for runner, m in row.items():
                m["tokens_per_s"] = m["texts_per_s"] * tokens / len(texts)
                ratio = m["texts_per_s"] / row[reference]["texts_per_s"]
                results.append(
                    {
                        "input": kind,
                        "batch": bs,
                        "model": runner,
                        "tokens_per_text": tokens / len(texts),
                        "ratio": ratio,
                        **m,
                    }
                )
                table.add_row(
                    kind,
                    str(bs),
                    runner,
                    f"{m['texts_per_s']:.1f}",
                    f"{m['tokens_per_s']:.0f}",
                    f"{m['p50_ms']:.1f}",
                    f"{m['p99_ms']:.1f}",
                    f"{ratio:.2f}x",
                )
    console.print(table)
    parity = load_artifact(artifacts, name).directory / "parity.json"
    if parity.is_file():
        p = json.loads(parity.read_text())
        for task, q in p["int8"].items():
            console.print(
                f"{task}: int8 agrees with PyTorch on {q['label_agreement']:.2%} of {p['n']} validation texts "
                f"(mean prob diff {q['mean_abs_prob_diff']:.4f}); accuracy per precision: MODEL_CARD.md"
            )
    return results
