"""Distillation: the served student learns the teacher's labels on unlabelled news.

The student starts from the served int8 model (dequantized: ``teacher.recover_state``) or from
an earlier run's saved model, not from its base encoder, and trains on two kinds of example at once:

- gold: the multi-domain training split (news, tweets, reviews, BBC), class-weighted cross
  entropy as in ``training.train``, at lower per-domain weights than a full run (a replay that
  keeps what the student already knows);
- soft: unlabelled news (``teacher.distillation_pool``) with the teacher's probabilities for
  both tasks as targets (soft cross entropy).

The teacher is ``moodwire train --teacher`` (all-mpnet-base-v2 fine-tuned on our news
annotations); its labels are computed once into ``<out>/soft.npz``.  Selection is on the
validation scores of ``training.validation_scores``, as for a full run.  The output directory
has the layout ``moodwire export`` reads (config.json, best/, history.json).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.serve.contract import LABELS, SENTIMENT, TASKS, TOPIC
from inference.serve.tokenization import BatchTokenizer, pad
from inference.train.training import (
    ALL_DOMAINS,
    DEFAULT_BASE_MODEL,
    EpochResult,
    TrainConfig,
    TrainResult,
    class_weights,
    epoch_sample,
    length_bucketed_batches,
    optimizer,
    predict_proba,
    resolve_base_model,
    set_seed,
    step,
    torch_predictor,
    unpack,
    validation_scores,
)

# Gold copies per epoch while distilling: our news twice (the soft examples are news too), every
# other domain a fraction, enough to keep what the student already knows.
REPLAY_WEIGHTS: dict[str, float] = {
    "news": 2.0,
    "tweets": 0.2,
    "imdb": 0.03,
    "rt": 0.3,
    "drugs": 1.0,
    "bbc": 0.3,
}


@dataclass
class DistilConfig:
    out_dir: str
    teacher: str  # a teacher's saved model directory (runs/teacher/best)
    init: str  # where the student starts: an artefact directory (its int8 model) or a saved model (best/)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 2e-5
    head_lr: float = 2e-4
    soft_per_epoch: int = 16000
    soft_pool: int = 16000  # pool texts the teacher labels (a seeded sample)
    soft_weight: float = 1.0
    weights: dict[str, float] = field(default_factory=lambda: dict(REPLAY_WEIGHTS))
    seed: int = 13
    threads: int = 0


def teacher_labels(
    cfg: DistilConfig, student_tokenizer: BatchTokenizer, console: Any
) -> dict[str, np.ndarray]:
    """The teacher's probabilities over a seeded sample of the pool, with the student's token ids
    (cached in ``<out>/soft.npz``)."""
    from inference.train.teacher import distillation_pool

    path = Path(cfg.out_dir) / "soft.npz"
    key = json.dumps({"teacher": str(Path(cfg.teacher).resolve()), "pool": cfg.soft_pool, "seed": cfg.seed})
    if path.is_file():
        with np.load(path) as data:
            cached = {k: data[k] for k in data.files}
        if str(cached.get("key", "")) == key:
            return cached
        console.print(f"{path} was labelled by another teacher or pool: labelling again")
    pool = distillation_pool()
    random.Random(cfg.seed).shuffle(pool)
    pool = pool[: cfg.soft_pool]
    texts = [t for _, t in pool]
    t0 = time.perf_counter()
    probs = torch_predictor(Path(cfg.teacher))(texts)
    console.print(f"teacher labelled {len(texts)} pool texts in {time.perf_counter() - t0:.0f}s")
    ids = student_tokenizer.encode(texts)
    arrays = {
        "keys": np.asarray([k for k, _ in pool]),
        "ids": np.concatenate([np.asarray(x, np.int32) for x in ids]),
        "offsets": np.cumsum([0, *(len(x) for x in ids)]).astype(np.int64),
        SENTIMENT: probs[SENTIMENT],
        TOPIC: probs[TOPIC],
        "key": np.asarray(key),
    }
    np.savez_compressed(path, **arrays)
    return arrays


def distil(cfg: DistilConfig, arrays: dict[str, np.ndarray], console: Any = None) -> TrainResult:
    """Train the student in ``cfg.out_dir`` from a gold pack (``training.prepare``) and the teacher."""
    import os

    import torch
    from rich.console import Console
    from transformers import AutoTokenizer

    from inference.serve.artifacts import load_artifact
    from inference.train import multitask
    from inference.train.teacher import recover_state

    console = console or Console(stderr=True)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    set_seed(cfg.seed)
    init = Path(cfg.init)
    if (init / "multitask.json").is_file():  # a saved model (an earlier distillation's best/)
        model = multitask.load(init)
        run_cfg = json.loads((init.parent / "config.json").read_text())
        max_length, head = int(run_cfg["max_length"]), int(run_cfg["truncation_head"])
        tokenizer = BatchTokenizer(init / "tokenizer.json", max_length, int(arrays["pad_id"]), head)
    else:  # an artefact: its served int8 model, dequantized
        art = load_artifact(init.parent, init.name)
        model = multitask.build(resolve_base_model(DEFAULT_BASE_MODEL))
        model.load_state_dict(recover_state(art.onnx_file("int8")), strict=False)
        max_length, head = art.max_length, art.truncation_head
        tokenizer = BatchTokenizer(art.tokenizer_file, max_length, art.pad_id, head)
    # The student's run config, in the layout export and the model card read.
    train_cfg = TrainConfig(
        out_dir=str(out),
        base_model=DEFAULT_BASE_MODEL,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        head_lr=cfg.head_lr,
        max_length=max_length,
        truncation_head=head,
        seed=cfg.seed,
        domain_weights=dict(cfg.weights),
    )
    (out / "config.json").write_text(json.dumps({**asdict(train_cfg), "distillation": asdict(cfg)}, indent=2))
    soft = teacher_labels(cfg, tokenizer, console)

    for p in model.encoder.embeddings.word_embeddings.parameters():
        p.requires_grad = False
    hf_tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL))

    gold = unpack(arrays, "train")
    val_ids = unpack(arrays, "val")
    pad_id = int(arrays["pad_id"])
    off = soft["offsets"]
    soft_ids = [soft["ids"][off[i] : off[i + 1]].tolist() for i in range(len(off) - 1)]
    soft_targets = {task: torch.from_numpy(soft[task]) for task in TASKS}
    targets = {task: arrays[f"train_{task}"].astype(np.int64) for task in TASKS}
    domains = arrays["train_domain"].tolist()
    n_gold, n_soft = len(gold), min(cfg.soft_per_epoch, len(soft_ids))

    expected = sum(cfg.weights.get(ALL_DOMAINS[d], 0.0) for d in domains) + n_soft
    total_steps = math.ceil(expected / cfg.batch_size) * cfg.epochs
    opt, sched = optimizer(model, cfg.lr, cfg.head_lr, 0.01, total_steps, 0.06)
    loss_fns = {
        task: torch.nn.CrossEntropyLoss(
            weight=torch.tensor(class_weights(targets[task], len(LABELS[task]))),
            ignore_index=-1,
            reduction="sum",
        )
        for task in TASKS
    }
    params = [p for p in model.parameters() if p.requires_grad]

    history: list[EpochResult] = []
    best = validation_scores(arrays, predict_proba(model, val_ids, pad_id))
    console.print(f"student before distillation: val {best}")
    history.append(EpochResult(0, 0.0, best, 0.0))
    saved = False  # best/ always holds a model of this run: the first epoch's, then any better one
    for epoch in range(cfg.epochs):
        rng = random.Random(cfg.seed * 1000 + epoch)
        items = epoch_sample(domains, {d: cfg.weights.get(d, 0.0) for d in ALL_DOMAINS}, rng)
        items += [n_gold + j for j in rng.sample(range(len(soft_ids)), n_soft)]
        lengths = [len(gold[i]) if i < n_gold else len(soft_ids[i - n_gold]) for i in items]
        batches = [[items[i] for i in b] for b in length_bucketed_batches(lengths, cfg.batch_size, rng)]
        model.train()
        t0, running, seen = time.perf_counter(), 0.0, 0
        for n, batch in enumerate(batches):
            seqs = [gold[i] if i < n_gold else soft_ids[i - n_gold] for i in batch]
            ids, mask = pad(seqs, pad_id)
            logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
            rows_gold = [k for k, i in enumerate(batch) if i < n_gold]
            rows_soft = [k for k, i in enumerate(batch) if i >= n_gold]
            loss = torch.zeros(())
            if rows_gold:
                picked = [batch[k] for k in rows_gold]
                for task in TASKS:
                    loss = loss + loss_fns[task](
                        logits[task][rows_gold], torch.from_numpy(targets[task][picked])
                    )
            if rows_soft:
                picked = [batch[k] - n_gold for k in rows_soft]
                for task in TASKS:
                    logp = torch.log_softmax(logits[task][rows_soft], dim=-1)
                    loss = loss - cfg.soft_weight * (soft_targets[task][picked] * logp).sum()
            loss = loss / len(batch)
            step(loss, params, opt, sched)
            running += float(loss.detach()) * len(batch)
            seen += len(batch)
            if n % 200 == 0:
                console.print(f"epoch {epoch + 1}: batch {n}/{len(batches)}, loss {running / seen:.4f}")
        val = validation_scores(arrays, predict_proba(model, val_ids, pad_id))
        result = EpochResult(
            epoch + 1, round(running / max(seen, 1), 4), val, round(time.perf_counter() - t0, 1)
        )
        history.append(result)
        console.print(
            f"epoch {result.epoch}: train loss {result.train_loss}, val {val}, {result.seconds:.0f}s"
        )
        if not saved or val["selection"] > best["selection"]:
            best, saved = val, True
            multitask.save(model, hf_tokenizer, out / "best")
        (out / "history.json").write_text(json.dumps([asdict(h) for h in history], indent=2))
    return TrainResult(best_dir=out / "best", history=history)
