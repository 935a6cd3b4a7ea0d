"""Test-split reports: per-class precision/recall/F1, confusion matrix, baselines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Metrics as plain JSON-able data (rows of the confusion matrix = true label)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(labels), zero_division=0)
    per_class = {
        label: {
            "precision": round(float(p[i]), 4),
            "recall": round(float(r[i]), 4),
            "f1": round(float(f[i]), 4),
            "support": int(s[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "n": len(y_true),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(sum(f) / len(labels)), 4),
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }


def format_report(title: str, report: dict[str, Any]) -> str:
    """Plain-text rendering, printed by train/eval and embedded in model cards."""
    labels = report["labels"]
    width = max(len(x) for x in [*labels, "macro avg"]) + 2
    lines = [
        f"{title}: n={report['n']} accuracy={report['accuracy']:.4f} macro-F1={report['macro_f1']:.4f}",
        f"{'':{width}}precision  recall      f1  support",
    ]
    for label in labels:
        c = report["per_class"][label]
        lines.append(f"{label:{width}}{c['precision']:9.4f}{c['recall']:8.4f}{c['f1']:8.4f}{c['support']:9d}")
    lines.append("confusion matrix (rows = true, columns = predicted):")
    lines.append(" " * width + " ".join(f"{x[:8]:>8}" for x in labels))
    for label, row in zip(labels, report["confusion_matrix"], strict=True):
        lines.append(f"{label:{width}}" + " ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)


def vader_labels(texts: Sequence[str]) -> list[str]:
    """VADER lexicon baseline with its authors' compound thresholds (±0.05)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    out = []
    for text in texts:
        c = analyzer.polarity_scores(text)["compound"]
        out.append("positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral")
    return out


def polarity_report(
    y_true: Sequence[str], p_negative: Sequence[float], p_positive: Sequence[float]
) -> dict[str, Any]:
    """Binary accuracy on texts whose gold label is negative or positive: the
    prediction is whichever of P(negative) and P(positive) is larger."""
    rows = [
        (t, "positive" if pp > pn else "negative")
        for t, pn, pp in zip(y_true, p_negative, p_positive, strict=True)
        if t != "neutral"
    ]
    correct = sum(t == p for t, p in rows)
    return {"n": len(rows), "accuracy": round(correct / len(rows), 4) if rows else float("nan")}


def vader_polarity(texts: Sequence[str]) -> list[tuple[float, float]]:
    """VADER's (neg, pos) scores, for the binary-polarity baseline."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [(s["neg"], s["pos"]) for s in map(analyzer.polarity_scores, texts)]
