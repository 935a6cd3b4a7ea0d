"""The input event contract: every rejection reason, defaults, meta, lang, and the schema."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from streams.pipeline.events import (
    MAX_EVENT_BYTES,
    MAX_TEXT_CHARS,
    Rejection,
    ValidEvent,
    detect_lang,
    load_schema,
    parse_event,
    scored_event,
)

BROKER_MS = 1_767_268_800_000  # 2026-01-01T12:00:00Z


def enc(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def ok(obj: Any) -> ValidEvent:
    result = parse_event(enc(obj), BROKER_MS)
    assert isinstance(result, ValidEvent), result
    return result


def reason(raw: bytes | dict[str, Any]) -> str:
    result = parse_event(raw if isinstance(raw, bytes) else enc(raw), BROKER_MS)
    assert isinstance(result, Rejection), result
    assert result.detail
    return result.reason


GOOD = {"id": "n-1", "text": "Shares of ACME plunged after the company cut its outlook."}

# (raw record, expected reason): one or more per reason code.
BAD: list[tuple[bytes | dict[str, Any], str]] = [
    (b'\xff\xfe{"id": "1"}', "invalid_utf8"),
    (b'{"id": "1", "text": "caf\xc3"}', "invalid_utf8"),
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"id": "1", "text": "x", "meta": {"v": NaN}}', "invalid_json"),
    (b"[" * 100_000, "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"just text"', "not_an_object"),
    (b"null", "not_an_object"),
    ({"text": "hello"}, "missing_field:id"),
    ({"id": None, "text": "hello"}, "missing_field:id"),
    ({"id": "1"}, "missing_field:text"),
    ({"id": 7, "text": "hello"}, "wrong_type:id"),
    ({"id": "1", "text": ["hello"]}, "wrong_type:text"),
    ({"id": "1", "text": 3.5}, "wrong_type:text"),
    ({**GOOD, "kind": 1}, "wrong_type:kind"),
    ({**GOOD, "source": {"a": 1}}, "wrong_type:source"),
    ({**GOOD, "title": True}, "wrong_type:title"),
    ({**GOOD, "url": 5}, "wrong_type:url"),
    ({**GOOD, "lang": 5}, "wrong_type:lang"),
    ({**GOOD, "meta": "x"}, "wrong_type:meta"),
    ({**GOOD, "meta": [1]}, "wrong_type:meta"),
    ({**GOOD, "entities": "ACME"}, "wrong_type:entities"),
    ({**GOOD, "entities": ["ACME", 3]}, "wrong_type:entities"),
    ({**GOOD, "ts": True}, "wrong_type:ts"),
    ({**GOOD, "ts": [1]}, "wrong_type:ts"),
    ({"id": " ", "text": "hello"}, "empty_id"),
    ({"id": "1", "text": ""}, "empty_text"),
    ({"id": "1", "text": " \n\t "}, "empty_text"),
    ({"id": "1", "text": "a" * (MAX_TEXT_CHARS + 1)}, "text_too_large"),
    ({"id": "1", "text": "a" * 5_000_000}, "event_too_large"),  # the 5 MB text
    ({"id": "x" * 257, "text": "hello"}, "field_too_long:id"),
    ({**GOOD, "kind": "k" * 33}, "field_too_long:kind"),
    ({**GOOD, "source": "s" * 257}, "field_too_long:source"),
    ({**GOOD, "title": "t" * 2001}, "field_too_long:title"),
    ({**GOOD, "url": "u" * 4097}, "field_too_long:url"),
    ({**GOOD, "entities": ["e" * 257]}, "field_too_long:entity"),
    ({**GOOD, "entities": [f"e{i}" for i in range(101)]}, "too_many_entities"),
    ({**GOOD, "ts": "yesterday"}, "bad_timestamp"),
    ({**GOOD, "ts": "2026-13-01T00:00:00Z"}, "bad_timestamp"),
    ({**GOOD, "ts": -1}, "bad_timestamp"),
    ({**GOOD, "ts": 1_767_268_800_000_000_000}, "bad_timestamp"),  # nanoseconds, not ms
    ({**GOOD, "ts": 10**400}, "bad_timestamp"),  # does not fit a float (OverflowError once)
    ({**GOOD, "ts": "1969-12-31T23:59:59Z"}, "bad_timestamp"),
    ({**GOOD, "lang": "english!"}, "bad_lang"),
    ({**GOOD, "lang": "e"}, "bad_lang"),
    (b'{"id": "1", "text": "bad \\ud800 surrogate"}', "invalid_unicode:text"),
    (b'{"id": "\\udfff", "text": "hello"}', "invalid_unicode:id"),
    (b'{"id": "1", "text": "hello", "meta": {"k": "\\ud83d"}}', "invalid_unicode:meta"),
    (b'{"id": "1", "text": "hello", "extra": "\\ud83d"}', "invalid_unicode:meta"),
    (b'{"id": "1", "text": "hello", "entities": ["\\ud83d"]}', "invalid_unicode:entities"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD, ids=[f"{i}-{r}" for i, (_, r) in enumerate(BAD)])
def test_every_rejection_reason(raw: bytes | dict[str, Any], expected: str) -> None:
    assert reason(raw) == expected


def test_oversized_record_is_rejected_before_decoding_fast() -> None:
    raw = b'{"id": "1", "text": "' + b"a" * (5 * MAX_EVENT_BYTES) + b'"}'
    t0 = time.perf_counter()
    assert reason(raw) == "event_too_large"
    assert time.perf_counter() - t0 < 0.01


def test_defaults_and_broker_timestamp() -> None:
    ev = ok(GOOD)
    assert (ev.id, ev.kind, ev.source, ev.title, ev.url, ev.entities, ev.meta) == (
        "n-1",
        "other",
        "unknown",
        "",
        "",
        (),
        {},
    )
    assert ev.ts == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert ev.ts_from_broker
    assert ev.lang == "en" and ev.lang_detected


def test_null_optional_fields_are_absent() -> None:
    ev = ok({**GOOD, "kind": None, "source": None, "ts": None, "lang": None, "entities": None, "meta": None})
    assert (ev.kind, ev.source, ev.ts_from_broker, ev.lang_detected, ev.entities, ev.meta) == (
        "other",
        "unknown",
        True,
        True,
        (),
        {},
    )


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-03-01T10:15:30.123Z", datetime(2026, 3, 1, 10, 15, 30, 123000, tzinfo=UTC)),
        ("2026-03-01T12:15:30+02:00", datetime(2026, 3, 1, 10, 15, 30, tzinfo=UTC)),
        ("2026-03-01T10:15:30", datetime(2026, 3, 1, 10, 15, 30, tzinfo=UTC)),  # naive = UTC
        (1_772_360_130_123, datetime(2026, 3, 1, 10, 15, 30, 123000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_event_time_forms(ts: Any, expected: datetime) -> None:
    ev = ok({**GOOD, "ts": ts})
    assert ev.ts == expected and not ev.ts_from_broker


def test_unknown_fields_go_to_meta_and_meta_wins_on_collision() -> None:
    ev = ok({**GOOD, "rating": 2, "author": {"n": "x"}, "meta": {"rating": 5, "k": [1]}})
    assert ev.meta == {"rating": 5, "author": {"n": "x"}, "k": [1]}


def test_fields_are_normalised() -> None:
    ev = ok(
        {
            **GOOD,
            "kind": " News ",
            "source": " reuters ",
            "lang": "PT-br",
            "entities": [" ACME ", "ACME", "", "Globex"],
            "title": "T",
            "url": "https://x",
        }
    )
    assert (ev.kind, ev.source, ev.lang, ev.lang_detected, ev.entities) == (
        "news",
        "reuters",
        "pt-br",
        False,
        ("ACME", "Globex"),
    )


def test_limits_are_inclusive() -> None:
    ev = ok({"id": "x" * 256, "text": "a" * MAX_TEXT_CHARS})
    assert len(ev.text) == MAX_TEXT_CHARS


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Shares of ACME plunged 12% after the company cut its full-year outlook.", "en"),
        ("Der Akku hält kaum einen Tag, sehr enttäuschend.", "de"),
        ("Le service client était excellent, je recommande.", "fr"),
        ("这家公司的股价今天大跌投资者非常担心。", "zh"),
        ("12345 !!!", "und"),
    ],
)
def test_language_detection(text: str, lang: str) -> None:
    assert detect_lang(text) == lang
    assert detect_lang(text) == lang  # deterministic


def test_language_detection_cost_is_bounded() -> None:
    detect_lang("warm up")
    t0 = time.perf_counter()
    for _ in range(50):
        detect_lang("word " * 20_000)  # 100k chars: only the opening is read
    assert (time.perf_counter() - t0) / 50 < 0.005


def test_scored_event_adds_labels() -> None:
    ev = ok({**GOOD, "ts": "2026-03-01T10:15:30.123Z", "entities": ["ACME"]})
    cls = {
        "sentiment": "negative",
        "sentiment_scores": {"negative": 0.8, "neutral": 0.15, "positive": 0.05},
        "topic": "business",
        "topic_scores": {"business": 0.9, "tech": 0.1},
        "model_versions": {"sentiment": "s1", "topic": "t1"},
    }
    out = scored_event(ev, cls, datetime(2026, 3, 1, 10, 15, 31, tzinfo=UTC))
    assert out["ts"] == "2026-03-01T10:15:30.123Z"
    assert out["scored_at"] == "2026-03-01T10:15:31.000Z"
    assert out["sentiment"] == "negative" and out["topic"] == "business"
    assert out["sentiment_scores"]["negative"] == pytest.approx(0.8)
    assert out["entities"] == ["ACME"] and out["model_versions"]["topic"] == "t1"
    assert json.loads(json.dumps(out)) == out  # JSON-ready for the scored-events topic


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(load_schema())


SCHEMA_AGREES = [
    GOOD,
    {
        **GOOD,
        "kind": "review",
        "source": "app-store",
        "ts": 1_772_360_130_123,
        "lang": "en",
        "title": "t",
        "url": "https://x",
        "entities": ["ACME"],
        "meta": {"a": 1},
        "extra": 2,
    },
    {**GOOD, "ts": "2026-03-01T10:15:30Z"},
]
SCHEMA_REJECTS = [
    {"text": "x"},
    {"id": "1"},
    {"id": 1, "text": "x"},
    {"id": "1", "text": ""},
    {"id": "1", "text": "  "},
    {**GOOD, "entities": "A"},
    {**GOOD, "meta": []},
    {**GOOD, "ts": "yesterday"},
    {**GOOD, "lang": "english!"},
    {**GOOD, "ts": -5},
    {**GOOD, "kind": "k" * 33},
    [1],
]


def test_schema_and_validator_agree() -> None:
    validator = Draft202012Validator(load_schema(), format_checker=FormatChecker())
    for obj in SCHEMA_AGREES:
        assert validator.is_valid(obj), obj
        ok(obj)
    for obj in SCHEMA_REJECTS:
        assert not validator.is_valid(obj), obj
        assert isinstance(parse_event(enc(obj), BROKER_MS), Rejection), obj


def test_never_raises_on_mutated_input() -> None:
    import random

    rng = random.Random(7)
    seeds = [enc(o) for o in SCHEMA_AGREES] + [b'{"id": "1", "text": "x", "ts": "2026-01-01T00:00:00Z"}']
    outcomes = set()
    for _ in range(3000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.4:
                raw[pos] = rng.randrange(256)
            elif op < 0.7:
                del raw[pos]
            else:
                raw.insert(pos, rng.choice(b'{}[]",:\\0 \xff\xc3e-'))
        result = parse_event(bytes(raw), BROKER_MS)
        assert isinstance(result, ValidEvent | Rejection)
        outcomes.add(type(result).__name__ if isinstance(result, ValidEvent) else result.reason)
    assert {"ValidEvent", "invalid_json", "invalid_utf8"} <= outcomes
