"""Hostile Kafka records for tests/test_fuzz_e2e.py: values of every bad shape, keys and headers of every shape.

Each generated record says whether it is meant to be valid; the test checks the
generator against :func:`streams.pipeline.events.parse_event` before sending, so a
hostile record that is accidentally valid is a generator bug, not a pass.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

ONE_MIB = 1024 * 1024


@dataclass(frozen=True)
class FuzzRecord:
    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    valid: bool
    kind: str


def _keys(rng: random.Random) -> bytes | None:
    return rng.choice(
        [
            None,
            b"",
            b"\x00",
            b"k",
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
            "ключ-鍵-🔑".encode(),
            b"\xff\xfe\xfd",
            b"x" * 10_000,
        ]
    )


def _headers(rng: random.Random) -> tuple[tuple[str, bytes], ...]:
    shapes: list[tuple[tuple[str, bytes], ...]] = [
        (),
        (("", b""),),
        (("moodwire-reason", b"spoofed"), ("moodwire-source", b"x/0/0")),
        (("h", b"\x00\xff\xfe"),),
        (("dup", b"1"), ("dup", b"2"), ("dup", b"3")),
        tuple((f"h{i}", b"v" * i) for i in range(50)),
        (("ключ\x00\n", "значение".encode()),),
        (("big", b"z" * 20_000),),
    ]
    return rng.choice(shapes)


def _nested(depth: int, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _wrong_types(rng: random.Random, i: int) -> bytes:
    """Valid JSON of every wrong type: a top level that is not an object, or a field of the wrong type."""
    odd = rng.choice(
        [None, True, 0, -1, 1.5, 10**400, "", "s", [], [1], {}, {"a": 1}, float("1e308"), ["text"], [None]]
    )
    field = rng.choice(["id", "text", "kind", "source", "ts", "lang", "entities", "title", "url"])
    base = {"id": f"fz-bad-{i}", "text": "A perfectly fine sentence about a company."}
    if rng.random() < 0.25:
        return json.dumps(odd).encode() if not isinstance(odd, int) or odd < 10**300 else str(odd).encode()
    base[field] = odd
    if field in ("id", "text") and isinstance(odd, str) and odd:
        base[field] = 7  # a string id or text would be valid: make it a number
    if field in ("kind", "source", "lang", "title", "url") and (odd is None or isinstance(odd, str)):
        base[field] = 123
    if field == "entities" and (odd is None or odd == [] or odd == ["text"]):
        base[field] = "not a list"
    if field == "ts" and (odd is None or odd in (0, 1.5)):
        base[field] = "yesterday-ish"
    if isinstance(odd, int) and not isinstance(odd, bool) and abs(odd) > 10**300:
        return json.dumps(base).replace(str(odd), "1" + "0" * 400).encode()
    return json.dumps(base).encode()


def hostile_value(rng: random.Random, i: int) -> tuple[bytes, str]:
    kind = rng.choice(
        [
            "random_bytes",
            "invalid_utf8",
            "nested",
            "huge_number",
            "control_chars",
            "wrong_type",
            "wrong_type",
            "truncated",
            "empty",
            "bom",
            "nan",
            "duplicate_keys",
            "lone_surrogate",
        ]
    )
    if kind == "random_bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))), kind
    if kind == "invalid_utf8":
        bad = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"])
        return b'{"id": "fz-u8-%d", "text": "caf' % i + bad + b'"}', kind
    if kind == "nested":
        return _nested(rng.choice([50, 1_000, 20_000]), rng), kind
    if kind == "huge_number":
        n = rng.choice(["1" + "0" * 5000, "-" + "9" * 4000, "1e999999", "123456789" * 400])
        where = rng.choice(["ts", "text", "id"])
        return b'{"id": "fz-num-%d", "text": "Fine text.", "%s": %s}' % (i, where.encode(), n.encode()), kind
    if kind == "control_chars":
        # The contract accepts NUL and other controls inside strings (JSON escapes them): these
        # are valid events, stored once, NULs and all; see fuzz_stream
        ctl = "".join(chr(rng.randrange(0, 32)) for _ in range(rng.randrange(1, 40)))
        return json.dumps({"id": f"fz\x00ctl-{i}{ctl}"[:200], "text": f"Fine\x00{ctl} text."}).encode(), kind
    if kind == "wrong_type":
        return _wrong_types(rng, i), kind
    if kind == "truncated":
        full = json.dumps({"id": f"fz-tr-{i}", "text": "Shares rose after the report."}).encode()
        return full[: rng.randrange(1, len(full) - 1)], kind
    if kind == "empty":
        return rng.choice([b"", b" ", b"\n", b"\x00"]), kind
    if kind == "bom":
        return b"\xef\xbb\xbf" + json.dumps({"id": f"fz-bom-{i}", "text": "x"}).encode() + b"\x00", kind
    if kind == "nan":
        return b'{"id": "fz-nan-%d", "text": "Fine.", "ts": %s}' % (
            i,
            rng.choice([b"NaN", b"Infinity"]),
        ), kind
    if kind == "duplicate_keys":
        return b'{"id": "fz-dup-%d", "text": "Fine.", "text": 5}' % i, kind
    return b'{"id": "fz-sur-%d", "text": "\\ud800 lone"}' % i, kind


def fuzz_stream(
    n_hostile: int = 10_000, n_valid: int = 200, n_huge: int = 6, seed: int = 13
) -> list[FuzzRecord]:
    rng = random.Random(seed)
    out: list[FuzzRecord] = []
    for i in range(n_hostile - n_huge):
        value, kind = hostile_value(rng, i)
        out.append(FuzzRecord(value, _keys(rng), _headers(rng), kind == "control_chars", kind))
    for i in range(n_huge):  # a handful of 1 MiB texts, and JSON nested 400,000 deep
        if i % 3 == 2:
            value, kind = _nested(400_000, rng), "deep_nested"
        else:
            text = "A" * (ONE_MIB + i) if i % 3 == 0 else "word " * (ONE_MIB // 5)
            value, kind = json.dumps({"id": f"fz-huge-{i}", "text": text}).encode(), "huge_text"
        out.append(FuzzRecord(value, _keys(rng), _headers(rng), False, kind))
    for i in range(n_valid):  # valid values, with keys and headers of every shape
        text = rng.choice(
            [
                "Acme shares rallied after strong quarterly results.",
                "The new phone's battery life is disappointing.",
                "Unicode is fine: café, naïve, 東京, emoji 🎉.",
                "Tabs\tand\nnewlines are fine inside a text.",
            ]
        )
        value = json.dumps({"id": f"fz-ok-{i:04d}", "text": f"{text} ({i})", "source": "fuzz"}).encode()
        out.append(FuzzRecord(value, _keys(rng), _headers(rng), True, "valid"))
    rng.shuffle(out)
    return out
