"""Worker counters, written once a second to ``<data dir>/worker-stats.json`` for the demo and bench.

The embedded ClickHouse can be opened by one process only, so the demo and
the pipeline benchmark read progress (events in, scored, DLQ, stored,
per-topic negative share, end-to-end latency) from this file instead.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class WorkerStats:
    def __init__(self, path: Path, latency_window: int = 20_000) -> None:
        self.path = path
        self.started = time.time()
        self.consumed = self.scored = self.dlq = self.stored = 0
        self.topics: dict[str, dict[str, int]] = {}
        self.latencies_ms: deque[float] = deque(maxlen=latency_window)
        self.rss_start = rss_bytes()
        self._status = "starting"

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        if value == "running":
            self.rss_start = rss_bytes()  # models loaded, clients connected: the baseline for leak checks
        self._status = value

    def add_classified(self, consumed: int, scored: int, dlq: int) -> None:
        self.consumed += consumed
        self.scored += scored
        self.dlq += dlq

    def add_stored(self, rows: Sequence[Mapping[str, Any]], input_ts_ms: Sequence[int]) -> None:
        now = time.time() * 1000
        self.stored += len(rows)
        for row in rows:
            counts = self.topics.setdefault(str(row["topic"]), {"events": 0, "negative": 0})
            counts["events"] += 1
            counts["negative"] += row["sentiment"] == "negative"
        self.latencies_ms.extend(now - ts for ts in input_ts_ms)

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "status": self._status,
            "started": self.started,
            "updated": time.time(),
            "consumed": self.consumed,
            "scored": self.scored,
            "dlq": self.dlq,
            "stored": self.stored,
            "topics": self.topics,
            "rss_start": self.rss_start,
            "rss": rss_bytes(),
            "latencies_ms": [round(x, 1) for x in self.latencies_ms],
        }

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        tmp.replace(self.path)


def read_stats(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None
