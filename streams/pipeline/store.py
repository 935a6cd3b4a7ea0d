"""The store stage: a micro-batch of ``scored-events`` records becomes ONE ClickHouse insert.

A sink is a small class with one method, ``write(rows)`` (as in Quix Streams);
batching, retries and offset commits live once in :mod:`streams.pipeline.agents`, so the
sink only has to raise when the batch is not durable.  :func:`decode_scored`
is pure and tested without ClickHouse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.clickhouse import StorageError, insert_scored
from streams.db import Database
from streams.metrics import METRICS
from streams.pipeline.records import H_INPUT_TS, InRecord

REQUIRED = ("id", "text", "ts", "sentiment", "sentiment_scores", "topic", "topic_scores", "model_versions")


@dataclass
class DecodedBatch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    # per row, when known: (input record ts, scored record ts), for end-to-end latency and its parts
    times_ms: list[tuple[int, int]] = field(default_factory=list)
    bad: list[tuple[InRecord, str]] = field(default_factory=list)


def decode_scored(records: Sequence[InRecord]) -> DecodedBatch:
    """Scored-event JSON to row dicts; anything undecodable is returned in ``bad`` with a reason."""
    out = DecodedBatch()
    for rec in records:
        try:
            row = json.loads(rec.value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            out.bad.append((rec, "invalid_scored_json"))
            continue
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            out.bad.append((rec, f"invalid_scored_event:{missing[0]}"))
            continue
        out.rows.append(row)
        raw_ts = rec.header(H_INPUT_TS)
        if raw_ts is not None and raw_ts.isdigit():
            out.times_ms.append((int(raw_ts), rec.timestamp_ms))
    return out


class ClickHouseSink:
    """One INSERT per batch into ``events``; raises StorageError when the batch did not land.

    ``fault_file``: fault injection for the outage test only.  While that file
    exists every write raises StorageError, exactly as a failed insert does
    (chDB runs in-process and as root here, so nothing outside the worker can
    make its inserts fail for real).
    """

    def __init__(self, db: Database, fault_file: Path | None = None) -> None:
        self.db = db
        self.fault_file = fault_file

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> int:
        try:
            if self.fault_file is not None and self.fault_file.exists():
                raise StorageError(f"insert refused: fault injection file {self.fault_file} exists")
            # chDB has no async client: the insert runs in a worker thread (Database serializes it).
            return await self.db.run(insert_scored, rows)
        except Exception:
            METRICS.insert_failures.inc()
            raise
