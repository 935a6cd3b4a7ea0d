"""Inference benchmarks: throughput per batch size, int8 vs fp32, same run.

Inputs are the bundled sample texts, split into headline-length (news) and
review-length (reviews) sets and repeated to fill each batch, so every
backend and precision sees identical token counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.artifacts import ArtifactError, load_artifact

SAMPLES = Path(__file__).resolve().parent / "samples" / "texts.jsonl"


def sample_sets() -> dict[str, list[str]]:
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


def run_local_bench(
    batch_sizes: Sequence[int], seconds: float, artifacts: str | None = None
) -> list[dict[str, Any]]:
    """Both models (sentiment + topic) per call, as the stream uses them."""
    from rich.console import Console
    from rich.table import Table

    from inference.runner import LocalRunner

    console = Console()
    precisions = ["int8"]
    try:
        load_artifact("sentiment", artifacts).onnx_file("fp32")
        load_artifact("topic", artifacts).onnx_file("fp32")
        precisions.append("fp32")
    except ArtifactError as exc:
        console.print(f"[yellow]fp32 skipped: {exc}[/]")
    runners = {p: LocalRunner(artifacts, precision=p, max_batch=max(batch_sizes)) for p in precisions}
    tokenizer = runners["int8"].models["sentiment"].tokenizer
    results = []
    table = Table(title="local ONNX Runtime, sentiment + topic per text")
    for col in ("input", "batch", "precision", "texts/s", "tokens/s", "p50 ms", "p99 ms", "int8/fp32"):
        table.add_column(col, justify="right")
    for kind, pool in sample_sets().items():
        for bs in batch_sizes:
            texts = fill(pool, bs)
            tokens = sum(len(x) for x in tokenizer.encode(texts))
            row: dict[str, Any] = {}
            for precision, runner in runners.items():
                m = measure(runner.classify, texts, seconds)
                m["tokens_per_s"] = m["texts_per_s"] * tokens / len(texts)
                row[precision] = m
                results.append(
                    {
                        "input": kind,
                        "batch": bs,
                        "precision": precision,
                        "tokens_per_text": tokens / len(texts),
                        **m,
                    }
                )
            for precision, m in row.items():
                ratio = (
                    f"{row['int8']['texts_per_s'] / row['fp32']['texts_per_s']:.2f}x"
                    if "fp32" in row and precision == "int8"
                    else ""
                )
                table.add_row(
                    kind,
                    str(bs),
                    precision,
                    f"{m['texts_per_s']:.1f}",
                    f"{m['tokens_per_s']:.0f}",
                    f"{m['p50_ms']:.1f}",
                    f"{m['p99_ms']:.1f}",
                    ratio,
                )
    console.print(table)
    for task in ("sentiment", "topic"):
        parity = load_artifact(task, artifacts).directory / "parity.json"
        if parity.is_file():
            p = json.loads(parity.read_text())
            console.print(
                f"{task}: int8 macro-F1 {p['int8']['macro_f1']:.4f} vs PyTorch {p['pytorch_macro_f1']:.4f} "
                f"(loss {p['int8_macro_f1_loss'] * 100:+.2f} points, test split n={p['n']})"
            )
    return results
