"""Routing by language: each text to its language's model, results in batch order, batch-mates irrelevant."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from inference.serve.routing import LanguageRouter, route
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
    ("lang", "expected"),
    [
        ("zh", "zh"),
        ("zh-cn", "zh"),
        ("ZH-Hant", "zh"),
        ("en", "en"),
        ("und", "en"),
        ("ja", "en"),
        (None, "en"),
    ],
)
def test_route(lang, expected):
    assert route(lang) == expected


def test_each_text_goes_to_its_language_model_and_comes_back_in_order():
    en, zh = TaggingRunner("en"), TaggingRunner("zh")
    router = LanguageRouter({"en": en, "zh": zh})
    texts = [f"t{i}" for i in range(40)]
    langs = [random.Random(i).choice(["en", "zh", "zh-tw", "und", "fr"]) for i in range(40)]
    out = asyncio.run(router.aclassify(texts, langs))
    assert [r.topic.label for r in out] == texts  # batch order kept
    assert [r.sentiment.label for r in out] == [route(lang) for lang in langs]
    assert en.batches == [[t for t, lang in zip(texts, langs, strict=True) if route(lang) == "en"]]
    assert router.classify(["a", "b"], ["zh", "en"])[0].sentiment.model_version == "zh"
    router.close()
    assert en.closed and zh.closed


def test_without_a_chinese_model_chinese_texts_go_to_the_english_one():
    en = TaggingRunner("en")
    router = LanguageRouter({"en": en})
    assert [r.sentiment.label for r in router.classify(["a", "b"], ["zh", "en"])] == ["en", "en"]
    assert [r.sentiment.label for r in router.classify(["a"])] == ["en"]
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        router.classify(["a", "b"], ["zh"])
    with pytest.raises(ValueError, match="needs a runner for 'en'"):
        LanguageRouter({"zh": en})


def test_the_classify_stage_routes_on_the_event_language():
    router = LanguageRouter({"en": TaggingRunner("en"), "zh": TaggingRunner("zh")})
    events = [
        {"id": "a", "text": "Shares fall", "lang": "en"},
        {"id": "b", "text": "股市大跌，投资者恐慌"},  # lang detected
        {"id": "c", "text": "央行降准", "lang": "zh-CN"},
    ]
    records = [
        InRecord("text-events", 0, i, 1_767_268_800_000, b"k", json.dumps(e).encode())
        for i, e in enumerate(events)
    ]
    out = asyncio.run(classify_batch(records, router))
    scored = {json.loads(r.value)["id"]: json.loads(r.value) for r in out.scored}
    assert {k: v["sentiment"] for k, v in scored.items()} == {"a": "en", "b": "zh", "c": "zh"}
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
