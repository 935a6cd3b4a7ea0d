"""Failed inference and insert attempts are counted where they happen (the alerting rules read them).

The Triton failure is a named fake (a runner whose request raises ``TritonUnavailable``):
starting and killing a real server costs seconds and is covered by tests/test_triton_server.py.
The insert failure is the real sink with its fault-injection file, as the outage test uses it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from inference.serve.triton_client import TritonUnavailable
from streams.clickhouse import StorageError
from streams.metrics import METRICS
from streams.pipeline.classify import classify_batch
from streams.pipeline.records import InRecord
from streams.pipeline.store import ClickHouseSink


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return METRICS.registry.get_sample_value(name, labels or {}) or 0.0


class UnavailableTritonFake:
    """Stands in for a Triton that cannot be reached (the real client raises the same error)."""

    async def aclassify(self, texts: list[str], langs: list[str] | None = None) -> list[object]:
        raise TritonUnavailable("triton at 127.0.0.1:1 unavailable (fake)")


def test_inference_failure_is_counted_by_error_class() -> None:
    record = InRecord(
        "text-events", 0, 0, 1_767_268_800_000, b"k", json.dumps({"id": "a", "text": "x"}).encode()
    )
    before = sample("moodwire_inference_failures_total", {"error": "TritonUnavailable"})
    with pytest.raises(TritonUnavailable):
        asyncio.run(classify_batch([record], UnavailableTritonFake()))  # type: ignore[arg-type]
    assert sample("moodwire_inference_failures_total", {"error": "TritonUnavailable"}) == before + 1


def test_insert_failure_is_counted(tmp_path: Path) -> None:
    fault = tmp_path / "fail-inserts"
    fault.touch()
    sink = ClickHouseSink(db=None, fault_file=fault)  # type: ignore[arg-type]  # never reached: the fault fires first
    before = sample("moodwire_insert_failures_total")
    with pytest.raises(StorageError):
        asyncio.run(sink.write([{"id": "a"}]))
    assert sample("moodwire_insert_failures_total") == before + 1
