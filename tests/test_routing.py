"""Routing by language: each text to its language's model, results in batch order, batch-mates irrelevant."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from inference.serve.routing import LanguageRouter, is_chinese_tag, route
from inference.serve.runner import Classification, Prediction
from streams.pipeline.classify import classify_batch
from streams.pipeline.records import InRecord


class TaggingRunner:
    """Labels every text with its own name (the 'model'), records the batches it got."""

    def __init__(self, name: str) -> None:
        self.name, self.batches = name, []

    @property
    def model_versions(self) -> dict[str, str]:
        return {"sentiment": self.name, "topic": self.name}

    def classify(self, texts, langs=None):
        self.batches.append(list(texts))
        p = Prediction(self.name, {self.name: 1.0}, self.name)
        return [Classification(sentiment=p, topic=Prediction(t, {t: 1.0}, self.name)) for t in texts]

    async def aclassify(self, texts, langs=None):
        await asyncio.sleep(0.01 if self.name == "en" else 0)  # finish out of order
        return self.classify(texts)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("某银行因违规放贷被监管部门罚款三千万元", "zh", "zh"),
        ("某銀行因違規放貸被監管部門罰款三千萬元", "ja", "zh"),  # traditional script, mis-tagged
        ("某銀行因違規放貸被監管部門罰款三千萬元", "wuu", "zh"),
        ("佢哋話間公司執咗笠，好多人冇糧出", "yue", "zh"),  # Cantonese
        ("苹果iPhone 15销量下滑", "en", "zh"),  # mixed: Han is the main script
        ("Shares of 贵州茅台 fell 3% after the report", "en", "en"),  # mixed: English is
        ("日銀、追加緩和を決定", "ja", "en"),  # Japanese: kana among the Han
        ("トヨタの株価が上昇した", None, "en"),
        ("日本の消費者物価指数、前年同月比2.8%上昇", "zh", "en"),  # one hiragana among kanji
        ("优衣库（ユニクロ）在华门店销量增长三成，股价上涨", "ja", "zh"),  # a katakana brand in Chinese
        ("삼성전자 주가 하락", "ko", "en"),
        ("Bank fined for illegal lending", "zh", "en"),  # the text decides, not the tag
        ("12345 !!!", "yue", "zh"),  # no letters: only then the tag decides
        ("12345 !!!", "und", "en"),
        ("", None, "en"),
    ],
)
def test_route_follows_the_script(text, lang, expected):
    assert route(text, lang) == expected


@pytest.mark.parametrize(
    "tag", ["zh", "zh-cn", "ZH-Hant", "zh_TW", "cmn", "yue", "wuu", "lzh", "nan", "hak", "gan"]
)
def test_every_chinese_tag_is_chinese(tag):
    assert is_chinese_tag(tag)
    assert not is_chinese_tag("ja") and not is_chinese_tag(None)


def test_the_hand_written_routing_set_routes_as_labelled():
    """320 texts in nine kinds (tests/routing_cases.jsonl, written for this check; docs/models.md)."""
    cases = [
        json.loads(line) for line in (Path(__file__).parent / "routing_cases.jsonl").open(encoding="utf-8")
    ]
    assert len(cases) >= 300 and len({c["kind"] for c in cases}) == 9
    wrong = [(c["kind"], c["text"]) for c in cases if route(c["text"]) != c["expected"]]
    assert wrong == []


def test_each_text_goes_to_its_model_and_comes_back_in_order():
    en, zh = TaggingRunner("en"), TaggingRunner("zh")
    router = LanguageRouter({"en": en, "zh": zh})
    pool = ["Shares fall", "股市大跌", "股市大跌，投資者恐慌", "Profits rise", "央行降准"]
    texts = [f"{random.Random(i).choice(pool)} {i}" for i in range(40)]
    langs = [random.Random(i).choice(["en", "zh", "zh-tw", "und", "fr", "wuu"]) for i in range(40)]
    out = asyncio.run(router.aclassify(texts, langs))
    assert [r.topic.label for r in out] == texts  # batch order kept
    assert [r.sentiment.label for r in out] == [route(t) for t in texts]
    assert en.batches == [[t for t in texts if route(t) == "en"]]
    assert router.classify(["央行降准", "b"], ["en", "zh"])[0].sentiment.model_version == "zh"
    assert [r.sentiment.label for r in router.classify(["央行降准", "b"], force="en")] == ["en", "en"]
    router.close()
    assert en.closed and zh.closed


def test_without_a_chinese_model_chinese_texts_go_to_the_english_one():
    en = TaggingRunner("en")
    router = LanguageRouter({"en": en})
    assert [r.sentiment.label for r in router.classify(["央行降准", "b"], ["zh", "en"])] == ["en", "en"]
    assert [r.sentiment.label for r in router.classify(["a"])] == ["en"]
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        router.classify(["a", "b"], ["zh"])
    with pytest.raises(ValueError, match="needs a runner for 'en'"):
        LanguageRouter({"zh": en})
    with pytest.raises(ValueError, match="no 'zh' model here"):
        router.classify(["a"], force="zh")


def test_the_classify_stage_routes_on_the_event_language():
    router = LanguageRouter({"en": TaggingRunner("en"), "zh": TaggingRunner("zh")})
    events = [
        {"id": "a", "text": "Shares fall", "lang": "en"},
        {"id": "b", "text": "股市大跌，投资者恐慌"},  # lang detected
        {"id": "c", "text": "央行降准", "lang": "zh-CN"},
        {
            "id": "d",
            "text": "某銀行因違規放貸被監管部門罰款三千萬元",
            "lang": "wuu",
        },  # tag kept, Chinese model
        {"id": "e", "text": "Bank fined", "lang": "zh"},
    ]
    records = [
        InRecord("text-events", 0, i, 1_767_268_800_000, b"k", json.dumps(e).encode())
        for i, e in enumerate(events)
    ]
    out = asyncio.run(classify_batch(records, router))
    scored = {json.loads(r.value)["id"]: json.loads(r.value) for r in out.scored}
    assert {k: v["sentiment"] for k, v in scored.items()} == {
        "a": "en",
        "b": "zh",
        "c": "zh",
        "d": "zh",
        "e": "en",
    }
    assert scored["d"]["lang"] == "wuu" and scored["e"]["lang"] == "zh"  # the stored lang is never changed
    assert scored["b"]["lang"] == "zh" and scored["c"]["model_versions"]["sentiment"] == "zh"


def test_router_is_ready_only_when_every_remote_runner_is():
    class Remote(TaggingRunner):
        def __init__(self, name: str, ready: bool) -> None:
            super().__init__(name)
            self.ready = ready

        async def ais_ready(self, timeout_s: float = 2.0) -> bool:
            return self.ready

    assert asyncio.run(LanguageRouter({"en": Remote("en", True), "zh": Remote("zh", True)}).ais_ready())
    assert not asyncio.run(LanguageRouter({"en": Remote("en", True), "zh": Remote("zh", False)}).ais_ready())
    assert asyncio.run(LanguageRouter({"en": TaggingRunner("en")}).ais_ready())  # in-process: always
