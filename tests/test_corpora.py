"""The multi-domain corpus and our news annotations: valid, disjoint, reproducible."""

from __future__ import annotations

from collections import Counter

import pytest

from inference.data.annotation import agreement, cohen_kappa
from inference.data.corpora import load_drug_reviews, load_imdb, load_news, news_texts
from inference.data.datasets import headline_view, load_topic
from inference.data.labels import (
    NEWS_LABELS,
    NEWS_SECOND_PASS,
    ZH_TOPIC_LABELS,
    ZH_TOPIC_SECOND_PASS,
    ZH_TOPIC_TRAIN_LABELS,
    ZH_TOPIC_TRAIN_SECOND_PASS,
    read_labels,
)
from inference.serve.contract import LABELS, TOPIC


@pytest.fixture(scope="module")
def labels():
    return read_labels(NEWS_LABELS)


def test_news_labels_cover_enough_texts_with_a_large_test_split(labels):
    ids = [r["id"] for r in labels]
    assert len(ids) == len(set(ids)) >= 3000
    splits = Counter(r["split"] for r in labels)
    assert set(splits) == {"train", "test"} and splits["test"] >= 800
    texts = news_texts()
    assert all(i in texts for i in ids)
    test = [r for r in labels if r["split"] == "test"]
    for task in ("sentiment", "topic"):
        assert {r[task] for r in test} == set(LABELS[task])  # every class is in the test split


def test_bbc_news_texts_never_cross_the_bbc_topic_split(labels):
    """A BBC lead in our news training data must not be an article of the BBC topic
    test split (and a news test lead may only come from that test split)."""
    topic = load_topic()
    test_leads = {headline_view(e.text) for e in topic.test}
    train_leads = {headline_view(e.text) for e in topic.train}
    texts = news_texts()
    for r in labels:
        if r["id"].startswith("bbc:"):
            assert texts[r["id"]] in (test_leads if r["split"] == "test" else train_leads), r["id"]


def test_news_splits_are_disjoint_and_val_comes_from_train():
    a, b = load_news(), load_news()
    assert [x.text for x in a["val"]] == [x.text for x in b["val"]]
    test = {x.text for x in a["test"]}
    assert not test & {x.text for x in a["train"] + a["val"]}
    assert len(a["test"]) >= 800


def test_second_pass_is_a_blind_sample_with_reported_agreement(labels):
    second = read_labels(NEWS_SECOND_PASS)
    assert len(second) == 300
    assert {r["id"] for r in second} <= {r["id"] for r in labels}
    result = agreement()
    assert result["sentiment"]["n"] == 300
    assert 0.6 < result["sentiment"]["kappa"] <= 1.0
    assert 0.6 < result["topic"]["kappa"] <= 1.0


def test_zh_topic_labels_test_and_val_splits_with_a_blind_second_pass():
    rows = read_labels(ZH_TOPIC_LABELS, (TOPIC,))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    # inews test titles are the test split; inews dev titles are for choices
    for r in rows:
        split, index = r["id"].removeprefix("inews:").split("/")
        assert r["split"] == {"test": "test", "dev": "val"}[split] and index.isdigit()
    assert sum(r["split"] == "test" for r in rows) >= 400
    assert {r["topic"] for r in rows} == set(LABELS[TOPIC])
    second = read_labels(ZH_TOPIC_SECOND_PASS, (TOPIC,))
    assert len(second) == 150 and {r["id"] for r in second} <= set(ids)
    assert 0.6 < agreement(ZH_TOPIC_LABELS, ZH_TOPIC_SECOND_PASS, (TOPIC,))["topic"]["kappa"] <= 1.0


def test_zh_topic_training_labels_are_train_titles_only():
    rows = read_labels(ZH_TOPIC_TRAIN_LABELS, (TOPIC,))
    assert len(rows) == 800 and len({r["id"] for r in rows}) == 800
    assert all(r["split"] == "train" and r["id"].startswith("inews:train/") for r in rows)
    assert {r["topic"] for r in rows} == set(LABELS[TOPIC])
    second = read_labels(ZH_TOPIC_TRAIN_SECOND_PASS, (TOPIC,))
    assert len(second) == 150 and {r["id"] for r in second} <= {r["id"] for r in rows}
    assert (
        0.6 < agreement(ZH_TOPIC_TRAIN_LABELS, ZH_TOPIC_TRAIN_SECOND_PASS, (TOPIC,))["topic"]["kappa"] <= 1.0
    )


def test_read_labels_names_the_row_with_a_bad_label(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("# comment\nid\tsplit\ttopic\nx:1\ttest\tsport\n", encoding="utf-8")
    assert read_labels(path, (TOPIC,)) == [{"id": "x:1", "split": "test", "topic": "sport"}]
    with pytest.raises(ValueError, match="bad label None"):
        read_labels(path)  # no sentiment column
    path.write_text("# comment\nid\tsplit\ttopic\nx:1\ttest\tsport\nx:2\ttest\tweather\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 3 \(x:2\): bad label 'weather'"):
        read_labels(path, (TOPIC,))


def test_cohen_kappa():
    assert cohen_kappa(list("aabb"), list("aabb")) == 1.0
    # agreement no better than chance
    assert cohen_kappa(list("abab"), list("aabb")) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        cohen_kappa([], [])


def test_imdb_is_deduplicated_cleaned_and_split_apart():
    parts = load_imdb()
    assert (len(parts["test"]), len(parts["val"])) == (2000, 1000)
    texts = [x.text for p in parts.values() for x in p]
    assert len(texts) == len(set(texts))
    assert not any("<br" in t for t in texts[:5000])
    assert {x.sentiment for x in parts["test"]} == {"negative", "positive"}


def test_drug_reviews_use_the_package_test_file():
    parts = load_drug_reviews()
    assert len(parts["test"]) == 379
    assert Counter(x.sentiment for x in parts["test"]) == {"positive": 248, "negative": 95, "neutral": 36}
    assert all(x.topic == "other" for p in parts.values() for x in p)
    assert not {x.text for x in parts["test"]} & {x.text for x in parts["train"]}
