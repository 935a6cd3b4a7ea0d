"""The agents' work without a broker: classify stage (real local runner), store stage (real chDB), batching."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from inference.serve.contract import LABELS
from streams.clickhouse import StorageError, connect, migrate
from streams.db import Database
from streams.pipeline.agents import backoff_s
from streams.pipeline.classify import classify_batch, split_batch
from streams.pipeline.records import H_DETAIL, H_INPUT_TS, H_REASON, H_SOURCE, InRecord
from streams.pipeline.store import ClickHouseSink, decode_scored


def rec(value: bytes, offset: int, partition: int = 0, key: bytes | None = b"k") -> InRecord:
    return InRecord("text-events", partition, offset, 1_767_268_800_000 + offset, key, value)


GOOD = [
    rec(json.dumps({"id": "a", "text": "Shares plunge after profit warning", "source": "wire"}).encode(), 0),
    rec(json.dumps({"id": "b", "text": "Great app, works perfectly", "lang": "en"}).encode(), 1),
]
BAD = [
    rec(b"{nope", 2),
    rec(json.dumps({"id": "c", "text": ""}).encode(), 3),
    rec(b'{"id":"d","text":"\xff"}', 4),
]


@pytest.fixture(scope="module")
def runner():
    from inference.serve.runner import LocalRunner

    r = LocalRunner()
    yield r
    r.close()


class CountingRunner:
    """The real local runner, counting calls (the stage must make exactly one per batch)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    async def aclassify(self, texts, langs=None):
        self.calls += 1
        return await self.inner.aclassify(texts, langs)


def test_split_batch_routes_bad_records_with_reason_and_source() -> None:
    valid, out = split_batch(GOOD + BAD)
    assert [e.id for _, e in valid] == ["a", "b"]
    assert [r.value for r in out.dlq] == [b.value for b in BAD]  # original bytes
    reasons = [dict(r.headers)[H_REASON] for r in out.dlq]
    assert reasons == [b"invalid_json", b"empty_text", b"invalid_utf8"]
    assert [dict(r.headers)[H_SOURCE] for r in out.dlq] == [
        b"text-events/0/2",
        b"text-events/0/3",
        b"text-events/0/4",
    ]
    assert all(dict(r.headers)[H_DETAIL] for r in out.dlq)
    assert out.reasons == {"invalid_json": 1, "empty_text": 1, "invalid_utf8": 1}


def test_classify_batch_one_runner_call_per_batch(runner) -> None:
    counting = CountingRunner(runner)
    out = asyncio.run(classify_batch(GOOD + BAD, counting))  # type: ignore[arg-type]
    assert counting.calls == 1
    assert len(out.scored) == 2 and len(out.dlq) == 3
    first = json.loads(out.scored[0].value)
    assert first["id"] == "a" and first["sentiment"] in ("negative", "neutral", "positive")
    assert list(first["topic_scores"]) == list(LABELS["topic"])  # all six, "other" included
    assert out.scored[0].key == b"k"
    assert dict(out.scored[0].headers)[H_INPUT_TS] == str(GOOD[0].timestamp_ms).encode()


def test_all_bad_batch_makes_no_runner_call(runner) -> None:
    counting = CountingRunner(runner)
    out = asyncio.run(classify_batch(BAD, counting))  # type: ignore[arg-type]
    assert counting.calls == 0 and len(out.dlq) == 3 and not out.scored


def test_store_stage_one_insert_and_fault_file(runner, tmp_path: Path) -> None:
    scored = asyncio.run(classify_batch(GOOD, runner)).scored
    records = [InRecord("scored-events", 0, i, 0, None, r.value, r.headers) for i, r in enumerate(scored)]
    decoded = decode_scored([*records, InRecord("scored-events", 0, 9, 0, None, b"garbage")])
    assert len(decoded.rows) == 2 and [why for _, why in decoded.bad] == ["invalid_scored_json"]
    assert len(decoded.times_ms) == 2
    client = connect(f"chdb://{tmp_path / 'ch'}")
    try:
        migrate(client)
        fault = tmp_path / "fail-inserts"
        sink = ClickHouseSink(Database(client), fault)
        fault.touch()
        with pytest.raises(StorageError, match="fault injection"):
            asyncio.run(sink.write(decoded.rows))
        fault.unlink()
        assert asyncio.run(sink.write(decoded.rows)) == 2
        assert asyncio.run(sink.write(decoded.rows)) == 2  # a redelivered batch
        assert client.query("SELECT count() FROM events FINAL").result_rows[0][0] == 2
    finally:
        client.close()


def test_backoff_is_capped_and_grows() -> None:
    assert 0.2 <= backoff_s(1, 5) <= 0.3
    assert 0.8 * 5 <= backoff_s(20, 5) <= 1.2 * 5


def test_dlq_detail_header_is_cut_on_a_character_boundary() -> None:
    from streams.pipeline.classify import dlq_record, utf8_prefix
    from streams.pipeline.events import Rejection
    from streams.pipeline.records import H_DETAIL, InRecord

    assert utf8_prefix("股市", 4) == "股".encode()  # 6 bytes: the second character does not fit
    assert utf8_prefix("abc", 10) == b"abc" and utf8_prefix("", 1) == b""
    rec = InRecord("text-events", 0, 0, 1, b"k", b"{}")
    detail = "xy" + "大跌" * 600  # 3,602 bytes; byte 1,000 is inside a character
    headers = dict(dlq_record(rec, Rejection("bad_lang", detail)).headers)
    assert headers[H_DETAIL].decode("utf-8") == detail[:334]  # 2 + 332 x 3 = 998 bytes
