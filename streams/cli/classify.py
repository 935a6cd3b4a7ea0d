"""moodwire classify: label texts from the command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from streams.cli.errors import fail


def _make_runner(backend: str, artifacts: str | None, precision: str) -> Any:
    from inference.serve.artifacts import ArtifactError
    from inference.serve.runner import LocalRunner

    if backend == "triton":
        from streams.cli.triton import make_triton_runner

        return make_triton_runner(None)  # MOODWIRE_TRITON_URL or 127.0.0.1:8001
    try:
        return LocalRunner(artifacts, precision=precision)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))


@click.command()
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
    from streams.cli.classify_io import parse_lines, render_table

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
