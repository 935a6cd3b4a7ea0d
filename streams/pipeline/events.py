"""Validate raw input events and build scored events (the event contract).

:func:`parse_event` turns the raw bytes of one Kafka record into a
:class:`ValidEvent` or a :class:`Rejection` whose ``reason`` is a stable,
machine-readable code that goes to the DLQ with the original bytes.  It never
raises on bad input.  The published JSON Schema is
``streams/schemas/text-event.schema.json``; this module is the executable
version of it (plus the checks a schema cannot express: UTF-8, sizes in bytes,
timestamp parsing, language detection).  See docs/pipeline.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

SCHEMA_PATH: Final = Path(__file__).resolve().parent.parent / "schemas" / "text-event.schema.json"

# A whole record larger than this is rejected before decoding (Kafka's default
# message.max.bytes is 1 MiB, so bigger records only arrive from a tuned broker).
MAX_EVENT_BYTES: Final = 1_048_576
# Texts longer than this are rejected, not truncated: the classifier reads only
# 256 tokens (head and tail) anyway, and a silently shortened text would be stored as
# if the producer had sent it.  The DLQ keeps the original for the producer to fix.
MAX_TEXT_CHARS: Final = 100_000
MAX_LEN: Final[dict[str, int]] = {
    "id": 256,
    "kind": 32,
    "source": 256,
    "lang": 35,
    "title": 2_000,
    "url": 4_096,
    "entity": 256,
}
MAX_ENTITIES: Final = 100
# Language detection reads only the opening of a text: cost stays flat for long texts.
LANG_DETECT_CHARS: Final = 1_000
# Below this normalized probability the detector is guessing: store "und" (BCP 47 undetermined).
LANG_MIN_CONFIDENCE: Final = 0.3
UNDETERMINED: Final = "und"
DEFAULT_KIND: Final = "other"
DEFAULT_SOURCE: Final = "unknown"
KNOWN_FIELDS: Final = frozenset(
    {"id", "text", "kind", "source", "ts", "lang", "title", "url", "entities", "meta"}
)

_LANG_RE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
# Timestamps outside this range are producer bugs (e.g. seconds sent as ms, or
# nanoseconds): ClickHouse DateTime64 and dashboards cannot place them.
_MIN_TS_MS: Final = 0
_MAX_TS_MS: Final = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event goes to the DLQ: ``reason`` is a stable code, ``detail`` is for humans."""

    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ValidEvent:
    """An input event that passed validation, with defaults filled in."""

    id: str
    text: str
    ts: datetime  # timezone-aware UTC, millisecond precision
    kind: str = DEFAULT_KIND
    source: str = DEFAULT_SOURCE
    lang: str = UNDETERMINED
    title: str = ""
    url: str = ""
    entities: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    ts_from_broker: bool = False
    lang_detected: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``ts`` as RFC 3339 UTC with milliseconds."""
        return {
            "id": self.id,
            "text": self.text,
            "kind": self.kind,
            "source": self.source,
            "ts": format_ts(self.ts),
            "lang": self.lang,
            "title": self.title,
            "url": self.url,
            "entities": list(self.entities),
            "meta": self.meta,
            "ts_from_broker": self.ts_from_broker,
            "lang_detected": self.lang_detected,
        }


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.rejection = Rejection(reason, detail)


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_event(raw: bytes, broker_ts_ms: int) -> ValidEvent | Rejection:
    """Validate one raw record; ``broker_ts_ms`` is the record timestamp (the default ``ts``).

    Pure and total: any input gives a ValidEvent or a Rejection, never an exception.
    """
    try:
        return _parse(raw, broker_ts_ms)
    except _Reject as exc:
        return exc.rejection
    except RecursionError:
        return Rejection("invalid_json", "JSON nested too deeply")


def _parse(raw: bytes, broker_ts_ms: int) -> ValidEvent:
    if len(raw) > MAX_EVENT_BYTES:
        raise _Reject("event_too_large", f"record is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject("invalid_utf8", f"byte {exc.start} is not valid UTF-8") from None
    try:
        obj = json.loads(decoded, parse_constant=_no_constants)
    except ValueError as exc:  # JSONDecodeError and NaN/Infinity
        raise _Reject("invalid_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise _Reject("not_an_object", f"top-level JSON is {_json_type(obj)}, expected an object")

    event_id = _required_str(obj, "id")
    if not event_id.strip():
        raise _Reject("empty_id", "id is empty")
    _check_len("id", event_id)
    text = _required_str(obj, "text")
    if not text.strip():
        raise _Reject("empty_text", "text is empty or whitespace only")
    if len(text) > MAX_TEXT_CHARS:
        raise _Reject("text_too_large", f"text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")

    kind = (_optional_str(obj, "kind") or "").strip().lower() or DEFAULT_KIND
    _check_len("kind", kind)
    source = (_optional_str(obj, "source") or "").strip() or DEFAULT_SOURCE
    _check_len("source", source)
    title = _optional_str(obj, "title") or ""
    _check_len("title", title)
    url = _optional_str(obj, "url") or ""
    _check_len("url", url)

    ts, ts_from_broker = _parse_ts(obj.get("ts"), broker_ts_ms)

    lang_given = _optional_str(obj, "lang")
    if lang_given is not None and lang_given.strip():
        lang = lang_given.strip()
        if not _LANG_RE.match(lang) or len(lang) > MAX_LEN["lang"]:
            raise _Reject("bad_lang", f"lang {lang[:40]!r} is not a language tag like 'en' or 'pt-BR'")
        lang, lang_detected = lang.lower(), False
    else:
        lang, lang_detected = detect_lang(text), True

    entities = _parse_entities(obj.get("entities"))

    meta = obj.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise _Reject("wrong_type:meta", f"meta is {_json_type(meta)}, expected an object")
    unknown = {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
    if unknown:
        # Unknown fields are kept, not rejected; a key already in meta wins.
        meta = {**unknown, **meta}

    # JSON "\ud800" escapes decode to lone surrogates that no UTF-8 sink accepts.
    for name, value in (
        ("id", event_id),
        ("text", text),
        ("kind", kind),
        ("source", source),
        ("title", title),
        ("url", url),
        ("lang", lang),
    ):
        _check_encodable(name, value)
    for entity in entities:
        _check_encodable("entities", entity)
    if meta:
        _check_encodable("meta", json.dumps(meta, ensure_ascii=False))

    return ValidEvent(
        id=event_id,
        text=text,
        ts=ts,
        kind=kind,
        source=source,
        lang=lang,
        title=title,
        url=url,
        entities=entities,
        meta=meta,
        ts_from_broker=ts_from_broker,
        lang_detected=lang_detected,
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _required_str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise _Reject(f"missing_field:{name}", f"{name} is required")
    if not isinstance(value, str):
        raise _Reject(f"wrong_type:{name}", f"{name} is {_json_type(value)}, expected a string")
    return value


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise _Reject(f"wrong_type:{name}", f"{name} is {_json_type(value)}, expected a string")
    return value


def _check_len(name: str, value: str) -> None:
    if len(value) > MAX_LEN[name]:
        raise _Reject(
            f"field_too_long:{name}", f"{name} has {len(value)} characters; the limit is {MAX_LEN[name]}"
        )


def _check_encodable(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Reject(
            f"invalid_unicode:{name}", f"{name} contains a lone surrogate escape (\\ud800-\\udfff)"
        ) from None


def _parse_ts(value: Any, broker_ts_ms: int) -> tuple[datetime, bool]:
    if value is None:
        return _from_ms(broker_ts_ms), True
    if isinstance(value, bool):
        raise _Reject("wrong_type:ts", "ts is a boolean, expected an RFC 3339 string or epoch milliseconds")
    if isinstance(value, int | float):
        # compared as is (a huge int does not fit a float), and never printed whole (Python
        # refuses to turn an int of over 4300 digits into a string)
        if (isinstance(value, float) and not math.isfinite(value)) or not _MIN_TS_MS <= value < _MAX_TS_MS:
            shown = repr(value) if isinstance(value, float) or abs(value) < 10**30 else "a huge number"
            raise _Reject("bad_timestamp", f"epoch milliseconds {shown} are outside 1970..2200")
        return _from_ms(round(value)), False
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Reject("bad_timestamp", f"ts {value[:64]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # RFC 3339 requires an offset; naive means UTC
        ms = parsed.timestamp() * 1000
        if not _MIN_TS_MS <= ms < _MAX_TS_MS:
            raise _Reject("bad_timestamp", f"ts {value[:64]!r} is outside 1970..2200")
        return _from_ms(round(ms)), False
    raise _Reject(
        "wrong_type:ts", f"ts is {_json_type(value)}, expected an RFC 3339 string or epoch milliseconds"
    )


def _parse_entities(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Reject("wrong_type:entities", f"entities is {_json_type(value)}, expected an array of strings")
    if len(value) > MAX_ENTITIES:
        raise _Reject("too_many_entities", f"{len(value)} entities; the limit is {MAX_ENTITIES}")
    seen: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            raise _Reject("wrong_type:entities", f"an entity is {_json_type(item)}, expected a string")
        name = item.strip()
        if name:
            _check_len("entity", name)
            seen.setdefault(name, None)  # de-duplicate, keep order: one event counts once per entity
    return tuple(seen)


@cache
def _lang_identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_lang(text: str) -> str:
    """ISO 639-1 code of the text's language (py3langid, offline model), or ``und``."""
    lang, prob = _lang_identifier().classify(text[:LANG_DETECT_CHARS])
    return str(lang) if prob >= LANG_MIN_CONFIDENCE and lang != "zxx" else UNDETERMINED


def scored_event(event: ValidEvent, classification: dict[str, Any], scored_at: datetime) -> dict[str, Any]:
    """The scored-events record: the validated input plus both labels (``Classification.to_dict()``)."""
    out = event.to_dict()
    out.update(
        sentiment=classification["sentiment"],
        sentiment_scores={str(k): float(v) for k, v in classification["sentiment_scores"].items()},
        topic=classification["topic"],
        topic_scores={str(k): float(v) for k, v in classification["topic_scores"].items()},
        model_versions=dict(classification["model_versions"]),
        scored_at=format_ts(scored_at),
    )
    return out


def load_schema() -> dict[str, Any]:
    """The published JSON Schema of input events."""
    return json.loads(SCHEMA_PATH.read_text())
