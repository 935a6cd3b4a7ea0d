"""moodwire classify: label texts from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from streams.cli.errors import fail


def _make_router(backend: str, artifacts: str | None, precision: str) -> Any:
    """A LanguageRouter over the English and Chinese models, as the worker builds it.

    ``--artifacts`` may name a root holding both models or one model directory;
    a single model serves the route of its own language (and English's).
    """
    from inference.serve.artifacts import ArtifactError, artifact_directory, model_name
    from inference.serve.routing import ROUTES, LanguageRouter
    from inference.serve.runner import LocalRunner

    if backend == "triton":
        from streams.cli.triton import make_triton_runner

        # MOODWIRE_TRITON_URL or 127.0.0.1:8001; the bundled server serves both models
        return LanguageRouter({lang: make_triton_runner(None, lang) for lang in ROUTES})
    try:
        if artifacts and (Path(artifacts) / "model.json").is_file():  # one model directory
            meta = json.loads((Path(artifacts) / "model.json").read_text())
            runner = LocalRunner(artifacts, precision=precision)
            return LanguageRouter({"en": runner, meta.get("language", "en"): runner})
        runners = {
            lang: LocalRunner(artifacts, precision=precision, name=model_name(lang))
            for lang in ROUTES
            if artifact_directory(artifacts, model_name(lang)).is_dir()
        }
        return LanguageRouter(runners)
    except (ArtifactError, ValueError, OSError) as exc:
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
@click.option(
    "--lang",
    "force_lang",
    type=click.Choice(["en", "zh"]),
    help="Send every text to this model.  [default: by script, as the pipeline routes]",
)
def classify(
    texts: tuple[str, ...],
    jsonl: bool,
    fmt: str,
    no_text: bool,
    backend: str,
    precision: str,
    artifacts: str | None,
    batch_size: int,
    force_lang: str | None,
) -> None:
    """Classify TEXTS, or stdin (one text per line) when no TEXTS are given.

    Prints one JSON object per input.  An empty line or a bad JSON line gets an
    object with "line" and "error" instead; the exit status is then 1.  Each
    text goes to the model of its script as in the pipeline: Han-script text to
    the Chinese model, everything else to the English one.  "lang" is a JSON
    line's own or the detected one.
    """
    from streams.cli.classify_io import parse_lines, render_table
    from streams.pipeline.events import detect_lang

    runner = _make_router(backend, artifacts, precision)
    source = ((i + 1, t) for i, t in enumerate(texts)) if texts else enumerate(sys.stdin, 1)
    errors = 0
    rows: list[dict[str, Any]] = []
    try:
        for chunk in parse_lines(source, jsonl=jsonl, as_arguments=bool(texts), chunk=batch_size):
            good = [item for item in chunk if "error" not in item]
            for item in good:
                item["lang"] = force_lang or item.get("lang") or detect_lang(item["text"])
            batch_texts = [item["text"] for item in good]
            results = runner.classify(batch_texts, [item["lang"] for item in good], force=force_lang)
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
