"""The worker's latency bins: percentiles over a window are the difference of two snapshots."""

from __future__ import annotations

import json
import math
from pathlib import Path

from streams.stats import BIN_MS, WorkerStats, bins_count, bins_percentile, read_stats

ROW = {"topic": "tech", "sentiment": "negative"}


def test_percentiles_cover_only_the_window_between_snapshots(tmp_path: Path) -> None:
    stats = WorkerStats(tmp_path / "s.json")
    stats.add_stored([ROW] * 3, [(0, 0)] * 3)  # huge latencies (epoch 0) before the window
    stats.write()
    first = read_stats(tmp_path / "s.json")
    assert first is not None
    before, cls0 = first["latency_bins"]["total"], first["latency_bins"]["classify"]
    for ms in range(1, 101):  # 1..100 ms of classify time, inserted just now
        stats.latency["classify"].add(ms)
    after = json.loads(json.dumps(stats.snapshot()))["latency_bins"]
    assert bins_count(after["total"], before) == 0
    assert math.isnan(bins_percentile(after["total"], before, 50))
    # 1..100 ms in 10 ms bins: the median (50th value) lies in [50, 60), reported as the bin's upper edge
    assert bins_percentile(after["classify"], cls0, 50) == 60 == 6 * BIN_MS
    assert bins_percentile(after["classify"], cls0, 99) == 110 - BIN_MS  # the 99th value, 99 ms -> [90, 100)
    assert bins_count(after["classify"], cls0) == 100


def test_parts_are_measured_from_record_timestamps(tmp_path: Path) -> None:
    stats = WorkerStats(tmp_path / "s.json")
    import time

    now = time.time() * 1000
    stats.add_stored([ROW], [(int(now - 900), int(now - 400))], taken_ms=now - 100)
    bins = stats.snapshot()["latency_bins"]
    assert bins_percentile(bins["classify"], None, 50) == 510  # 500 ms -> bin [500, 510)
    assert bins_percentile(bins["store_wait"], None, 50) == 310
    assert 100 <= bins_percentile(bins["insert"], None, 50) <= 200
    assert 900 <= bins_percentile(bins["total"], None, 50) <= 1000
    assert stats.stored == 1 and stats.topics == {"tech": {"events": 1, "negative": 1}}


def test_rss_growth_reads_the_trend_not_the_swing_of_one_sample() -> None:
    from streams.cli.bench import rss_growth

    mib = 2**20
    # Flat at 500 MiB with a 150 MiB spike every minute (a batch in flight); the window's first
    # sample is a spike, its last is not, so one sample per end would read -150 MiB.
    flat = [(t, (650 if t % 60 == 0 else 500) * mib, 1000, 10 * mib) for t in range(0, 900, 5)]
    g = rss_growth(flat, 300)
    assert g is not None and g["first_last_sample_mib"] == (650, 500)
    assert g["rss1_mib"] - g["rss0_mib"] == 0 and abs(g["trend_mib"]) < 1
    assert (g["min_mib"], g["max_mib"]) == (500, 650)
    # Real growth of 2 MiB per minute over the last 10 minutes (+ the same spikes) is measured as such.
    growing = [(t, r + int(t / 30 * mib), b, c) for t, r, b, c in flat]
    g = rss_growth(growing, 300)
    assert g is not None and 17 < g["rss1_mib"] - g["rss0_mib"] < 21 and 19 < g["trend_mib"] < 21
    assert rss_growth(flat[:3], 0) is None
