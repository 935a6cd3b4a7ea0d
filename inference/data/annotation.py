"""Agreement between the two annotation passes over our labels.

The first pass labelled every text; a second annotator labelled a random
sample of them blind: 300 English news texts (sentiment and topic,
``inference/data/news_labels_second.tsv``), 150 Chinese news titles (topic,
``zh_topic_labels_second.tsv``) and 150 of the Chinese training titles
(``zh_topic_labels_train_second.tsv``), and 300 Chinese short texts (sentiment,
``zh_sentiment_second.tsv``).  Cohen's kappa per task says how far the
labels are reproducible, so how far any score on them can be trusted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from inference.data.labels import (
    NEWS_LABELS,
    NEWS_SECOND_PASS,
    ZH_SENTIMENT_LABELS,
    ZH_SENTIMENT_SECOND_PASS,
    ZH_TOPIC_LABELS,
    ZH_TOPIC_SECOND_PASS,
    ZH_TOPIC_TRAIN_LABELS,
    ZH_TOPIC_TRAIN_SECOND_PASS,
    read_labels,
)
from inference.serve.contract import SENTIMENT, TASKS, TOPIC

# label set -> (first pass, blind second pass, tasks labelled)
LABEL_SETS = {
    "news": (NEWS_LABELS, NEWS_SECOND_PASS, TASKS),
    "zh-news": (ZH_TOPIC_LABELS, ZH_TOPIC_SECOND_PASS, (TOPIC,)),
    "zh-news-train": (ZH_TOPIC_TRAIN_LABELS, ZH_TOPIC_TRAIN_SECOND_PASS, (TOPIC,)),
    "zh-short": (ZH_SENTIMENT_LABELS, ZH_SENTIMENT_SECOND_PASS, (SENTIMENT,)),
}


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Agreement beyond chance: (p_observed - p_chance) / (1 - p_chance)."""
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    chance = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def agreement(
    first: Path = NEWS_LABELS, second: Path = NEWS_SECOND_PASS, tasks: tuple[str, ...] = TASKS
) -> dict[str, dict[str, float]]:
    gold = {r["id"]: r for r in read_labels(first, tasks)}
    rows = read_labels(second, tasks)
    unknown = [r["id"] for r in rows if r["id"] not in gold]
    if unknown:
        raise ValueError(f"{second}: {len(unknown)} ids are not in {first.name}, e.g. {unknown[0]}")
    out = {}
    for task in tasks:
        a = [gold[r["id"]][task] for r in rows]
        b = [r[task] for r in rows]
        out[task] = {
            "n": len(rows),
            "agreement": round(sum(x == y for x, y in zip(a, b, strict=True)) / len(rows), 4),
            "kappa": round(cohen_kappa(a, b), 4),
        }
    return out
