"""Data loading: clean, de-duplicated, disjoint and reproducible splits."""

from __future__ import annotations

import pytest

from inference.data.datasets import clean_text, headline_view, load_sentiment, load_topic
from inference.serve.contract import LABELS


@pytest.mark.parametrize("loader", [load_sentiment, load_topic])
def test_splits_are_disjoint_and_deterministic(loader):
    a, b = loader(), loader()
    assert a.sizes() == b.sizes()
    assert [e.text for e in a.test] == [e.text for e in b.test]
    test_texts = {e.text for e in a.test}
    assert not test_texts & {e.text for e in a.val}
    assert not test_texts & {e.text for e in a.train}
    # BBC News has the five topics; `other` comes from other domains
    assert {e.label for e in a.test} == set(LABELS[a.task]) - {"other"}
    assert all(s["version"] for s in a.sources)


def test_sentiment_sizes_and_stratification():
    ds = load_sentiment()
    assert len(ds.test) > 3000
    share = lambda xs: sum(e.label == "positive" for e in xs) / len(xs)  # noqa: E731
    assert abs(share(ds.test) - share(ds.train)) < 0.01


def test_topic_test_split_is_full_articles_only():
    ds = load_topic()
    assert len(ds.test) >= 300
    assert min(len(e.text) for e in ds.test) > 300


def test_clean_text_drops_mojibake_and_spaces():
    assert clean_text("  bad \ufffd\ufffd  phone\n ") == "bad phone"


def test_headline_view_keeps_title_and_first_sentence():
    art = "Big win for United. They won 3-0. Fans cheered."
    assert headline_view(art) == "Big win for United. They won 3-0."
