"""Worker counters, written once a second to ``<data dir>/worker-stats.json`` for the demo and bench.

The embedded ClickHouse can be opened by one process only, so the demo and
the pipeline benchmark read progress (events in, scored, DLQ, stored,
per-topic negative share, end-to-end latency) from this file instead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BIN_MS = 10  # latency histogram resolution
SEGMENTS = ("total", "classify", "store_wait", "insert")


class LatencyBins:
    """Cumulative counts per ``BIN_MS`` bin: exact enough for p50/p99 over any window (diff two snapshots).

    Unlike a list of recent values it covers a whole run in constant memory, and its JSON stays small.
    """

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, ms: float) -> None:
        b = max(0, int(ms // BIN_MS))
        self.counts[b] = self.counts.get(b, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return {str(b): n for b, n in sorted(self.counts.items())}


def bins_percentile(after: Mapping[str, int], before: Mapping[str, int] | None, q: float) -> float:
    """The q-th percentile (ms, bin upper edge) of the values added between two snapshots."""
    diff = {int(b): n - (before or {}).get(b, 0) for b, n in after.items()}
    total = sum(n for n in diff.values() if n > 0)
    if total == 0:
        return float("nan")
    rank, seen = q / 100 * total, 0
    for b in sorted(diff):
        seen += max(diff[b], 0)
        if seen >= rank:
            return (b + 1) * BIN_MS
    return (max(diff) + 1) * BIN_MS


def bins_count(after: Mapping[str, int], before: Mapping[str, int] | None) -> int:
    return sum(n - (before or {}).get(b, 0) for b, n in after.items())


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class WorkerStats:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.time()
        self.consumed = self.scored = self.dlq = self.stored = 0
        self.topics: dict[str, dict[str, int]] = {}
        # End-to-end latency (input record timestamp -> insert returned) and its parts:
        # classify = input ts -> scored record ts (Kafka hop, batching, inference, produce);
        # store_wait = scored ts -> store batch taken; insert = batch taken -> insert returned.
        self.latency = {name: LatencyBins() for name in SEGMENTS}
        self.rss_start = rss_bytes()
        self.memory: dict[str, int] = {}  # py_blocks (Python objects), chdb_tracked (bytes): see worker
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

    def add_stored(
        self,
        rows: Sequence[Mapping[str, Any]],
        times_ms: Sequence[tuple[int, int]] = (),
        taken_ms: float | None = None,
    ) -> None:
        """Count stored ``rows``; ``times_ms``: (input ts, scored ts) per row where known."""
        now = time.time() * 1000
        self.stored += len(rows)
        for row in rows:
            counts = self.topics.setdefault(str(row["topic"]), {"events": 0, "negative": 0})
            counts["events"] += 1
            counts["negative"] += row["sentiment"] == "negative"
        lat = self.latency
        for input_ts, scored_ts in times_ms:
            lat["total"].add(now - input_ts)
            lat["classify"].add(scored_ts - input_ts)
            if taken_ms is not None:
                lat["store_wait"].add(taken_ms - scored_ts)
                lat["insert"].add(now - taken_ms)

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
            "memory": self.memory,
            "latency_bins": {name: bins.snapshot() for name, bins in self.latency.items()},
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
