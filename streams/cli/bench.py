"""``moodwire bench pipeline``: sustained throughput, latency at 70% load, RSS over time, vs the model ceiling.

One run, on the embedded stack (tansu + bundled Triton on CPU + a worker
subprocess), one phase at a time so phases never compete for the cores:

0. masking: µs per event of the masking stage (streams.pipeline.masking), in-process;
1. ceiling: the Triton path alone - sequential one-request-per-micro-batch
   calls, exactly what the classify agent does, on the same texts; and the
   naive baseline: one request per message;
2. sustained: a backlog of events produced as fast as possible; events/s from
   ``text-events`` to rows visible in ClickHouse (the insert has returned),
   measured between 10% and 90% of the rows to leave out ramp-up and tail;
3. live capacity: events offered at 1.2x the sustained rate for ``--live-seconds``
   while the pipeline consumes them, on the same cores as the producer and the
   broker's produce path; rows/s stored from a third of the window to its end
   (what the pipeline holds when the input is live, not a backlog);
4. latency: events produced at 70% of the live capacity (or ``--load-rate``)
   for ``--minutes``; per-event latency = insert returned - input record
   timestamp (p50/p99); worker RSS when it became ready and at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from streams.cli.errors import fail
from streams.cli.model import language_option
from streams.cli.replay import load_sample
from streams.embedded.processes import stop_process
from streams.settings import Settings, load_settings
from streams.stats import BIN_MS, read_stats


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def events(n: int, tag: str) -> list[bytes]:
    sample = load_sample()
    now = int(time.time() * 1000)
    return [
        json.dumps({**sample[i % len(sample)], "id": f"bench-{tag}-{i:07d}", "ts": now}).encode()
        for i in range(n)
    ]


def measure_masking(seconds: float = 1.0) -> dict[str, float]:
    """µs per event of the masking stage (all kinds) on the bench events and on 1 KB texts.

    Measured in-process, where the classify stage runs it: one scored event's fields per call.
    """
    from streams.pipeline.events import ValidEvent, parse_event
    from streams.pipeline.masking import Masker

    masker = Masker()
    sample = [parse_event(raw, 0) for raw in events(256, "mask")]
    valid = [e for e in sample if isinstance(e, ValidEvent)]
    kb = [" ".join([e.text] * (1024 // len(e.text) + 1))[:1024] for e in valid]

    def per_call_us(items: list[Any], fn: Any) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for item in items:
                fn(item)
            n += len(items)
        return (time.perf_counter() - t0) / n * 1e6

    return {"event_us": per_call_us(valid, masker.event), "text_1kb_us": per_call_us(kb, masker.text)}


def measure_ceiling(url: str, batch_size: int, seconds: float) -> float:
    from inference.serve.triton_client import TritonRunner

    texts = [it["text"] for it in load_sample()]
    batch = [texts[i % len(texts)] for i in range(batch_size)]
    with TritonRunner(url) as runner:
        runner.classify(batch)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            runner.classify(batch)
            n += len(batch)
        return n / (time.perf_counter() - t0)


def wait_stats(path: Path, cond: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = read_stats(path) or {}
        if cond(stats):
            return stats
        time.sleep(0.1)
    raise TimeoutError(f"worker stats condition not met within {timeout:.0f}s: {read_stats(path)}")


def stored(path: Path) -> int:
    """Rows the worker has stored so far (0 before its first stats file)."""
    return int((read_stats(path) or {}).get("stored", 0))


def sustained_rate(settings: Settings, stats_path: Path, n: int) -> float:
    from streams.cli.produce import produce_lines

    base = stored(stats_path)
    asyncio.run(produce_lines(settings, events(n, "sustained")))
    marks: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = stored(stats_path) - base
        now = time.monotonic()
        if "p10" not in marks and done >= 0.1 * n:
            marks["p10"], marks["n10"] = now, done
        if done >= 0.9 * n:
            return (done - marks["n10"]) / (now - marks["p10"])
        time.sleep(0.05)
    raise TimeoutError("backlog not stored within 600 s")


def live_capacity(settings: Settings, stats_path: Path, rate: float, seconds: float, linger_ms: int) -> float:
    """Rows/s stored while events are offered at ``rate`` (more than the pipeline holds).

    Measured from a third of the window to its end, then the backlog is drained.
    """
    import threading

    from streams.cli.produce import produce_lines

    base = stored(stats_path)
    n = int(rate * seconds)
    producer = threading.Thread(
        target=lambda: asyncio.run(
            produce_lines(settings, events(n, "live"), rate=rate, linger_ms=linger_ms)
        ),
        daemon=True,
    )
    t0 = time.monotonic()
    producer.start()
    time.sleep(seconds / 3)
    s0, m0 = stored(stats_path), time.monotonic()
    producer.join()
    s1, m1 = stored(stats_path), time.monotonic()
    if m1 - t0 > seconds * 1.1:
        raise TimeoutError(f"the producer could not offer {rate:.0f} events/s")
    wait_stats(stats_path, lambda s: s.get("stored", 0) >= base + n, 600)
    return (s1 - s0) / (m1 - m0)


def latency_phase(
    settings: Settings, stats_path: Path, rate: float, seconds: float, linger_ms: int
) -> dict[str, Any]:
    """Produce at ``rate`` for ``seconds``: latency percentiles per segment, and worker RSS every 5 s."""
    import threading

    from streams.cli.produce import produce_lines
    from streams.stats import SEGMENTS, bins_count, bins_percentile

    start = read_stats(stats_path) or {}
    before, bins0 = start.get("stored", 0), start.get("latency_bins", {})
    n = int(rate * seconds)
    rss: list[tuple[float, int, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.wait(5.0):
            now = read_stats(stats_path)
            if now:
                mem = now.get("memory", {})
                rss.append(
                    (
                        time.monotonic() - t0,
                        int(now["rss"]),
                        int(mem.get("py_blocks", 0)),
                        int(mem.get("chdb_tracked", 0)),
                    )
                )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        asyncio.run(produce_lines(settings, events(n, "latency"), rate=rate, linger_ms=linger_ms))
        stats = wait_stats(stats_path, lambda s: s.get("stored", 0) >= before + n, 120)
    finally:
        done.set()
        sampler.join()
    bins1 = stats["latency_bins"]
    parts = {
        name: {
            "p50_ms": bins_percentile(bins1.get(name, {}), bins0.get(name), 50),
            "p99_ms": bins_percentile(bins1.get(name, {}), bins0.get(name), 99),
        }
        for name in SEGMENTS
    }
    return {
        "rate": rate,
        "events": n,
        "measured": bins_count(bins1.get("total", {}), bins0.get("total")),
        "p50_ms": parts["total"]["p50_ms"],
        "p99_ms": parts["total"]["p99_ms"],
        "parts": parts,
        "rss_start": stats["rss_start"],
        "rss_end": stats["rss"],
        "rss_timeline": rss,
        "elapsed_s": time.time() - stats["started"],
    }


def rss_growth(
    timeline: list[tuple[float, int, int, int]], from_s: float, edge_s: float = 60.0
) -> dict[str, Any] | None:
    """RSS growth from ``from_s`` to the end of the timeline (seconds, RSS, Python blocks, chDB).

    RSS sampled every 5 s swings by tens of MiB with the batches in flight, so one sample at
    each end measures the swing, not growth: each end is the median of its first / last
    ``edge_s``, and ``trend_mib`` is the robust (Theil-Sen) slope times the window.
    """
    from statistics import median

    later = [row for row in timeline if row[0] >= from_s]
    if len(later) < 4:
        return None
    t0, t1 = later[0][0], later[-1][0]
    head = [row for row in later if row[0] < t0 + edge_s]
    tail = [row for row in later if row[0] > t1 - edge_s]

    def mid(rows: list[tuple[float, int, int, int]], i: int) -> float:
        return float(median(row[i] for row in rows))

    rss = [row[1] / 2**20 for row in later]
    # Theil-Sen: the median of the pairwise slopes, which the spikes do not drag.
    slope = median(
        (b[1] - a[1]) / 2**20 / (b[0] - a[0])
        for i, a in enumerate(later)
        for b in later[i + 1 :]
        if b[0] > a[0]
    )
    return {
        "seconds": t1 - t0,
        "rss0_mib": mid(head, 1) / 2**20,
        "rss1_mib": mid(tail, 1) / 2**20,
        "trend_mib": slope * (t1 - t0),
        "min_mib": min(rss),
        "max_mib": max(rss),
        "first_last_sample_mib": (later[0][1] / 2**20, later[-1][1] / 2**20),
        "py_blocks": int(mid(tail, 2) - mid(head, 2)),
        "chdb_tracked_mib": (mid(tail, 3) - mid(head, 3)) / 2**20,
    }


@click.command("pipeline", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--runner", type=click.Choice(["triton", "local"]), default="triton", show_default=True)
@click.option(
    "--events", "n_events", default=12000, show_default=True, type=click.IntRange(100), help="Backlog size."
)
@click.option(
    "--minutes", default=10.0, show_default=True, type=click.FloatRange(0.1), help="Latency/soak phase."
)
@click.option("--ceiling-seconds", default=10.0, show_default=True, type=click.FloatRange(1))
@click.option(
    "--partitions",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Partitions per topic (one worker needs one; each costs the embedded broker CPU per fetch).",
)
@click.option(
    "--producer-linger-ms",
    default=200,
    show_default=True,
    type=click.IntRange(0, 5000),
    help="The load producer's linger in the latency phase (counted in the latency; fewer batches "
    "keep the embedded broker's per-fetch cost down).",
)
@click.option(
    "--live-seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(10),
    help="Live-capacity phase: events offered at 1.2x the sustained rate while consumed.",
)
@click.option(
    "--load-rate",
    type=click.FloatRange(1),
    help="Events/s for the latency phase (default: 70% of the live capacity).",
)
@click.option(
    "--json-out", type=click.Path(dir_okay=False, path_type=Path), help="Also write results as JSON."
)
def bench_pipeline_command(
    runner: str,
    n_events: int,
    minutes: float,
    ceiling_seconds: float,
    partitions: int,
    producer_linger_ms: int,
    live_seconds: float,
    load_rate: float | None,
    json_out: Path | None,
) -> None:
    """Pipeline events/s, latency p50/p99 at 70% load, worker RSS, and the ratio to the Triton ceiling."""
    from streams.embedded.broker import EmbeddedBroker, free_port

    data_dir = Path(tempfile.mkdtemp(prefix="moodwire-bench-"))
    server: Any = None
    worker: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {
        "runner": runner,
        "partitions": partitions,
        "producer_linger_ms": producer_linger_ms,
    }
    results["masking"] = measure_masking()
    click.echo(
        f"masking (MOODWIRE_MASKING=on, all kinds): {results['masking']['event_us']:.1f} µs per event, "
        f"{results['masking']['text_1kb_us']:.1f} µs per 1 KB text"
    )
    with EmbeddedBroker(port=free_port()) as broker:
        try:
            env = {
                "MOODWIRE_DATA_DIR": str(data_dir),
                "MOODWIRE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "MOODWIRE_RUNNER": runner,
                "MOODWIRE_TOPIC_PARTITIONS": str(partitions),
            }
            if runner == "triton":
                from inference.serve.triton_server import TritonServer, free_ports

                server = TritonServer("cpu", None, free_ports()).start()
                env["MOODWIRE_TRITON_URL"] = server.grpc_url
            os.environ.update(env)
            settings = load_settings()
            if runner == "triton":
                results["ceiling_eps"] = measure_ceiling(
                    server.grpc_url, settings.batch_size, ceiling_seconds
                )
                click.echo(
                    f"ceiling (Triton path, batch {settings.batch_size}): {results['ceiling_eps']:.1f} events/s"
                )
                results["naive_eps"] = measure_ceiling(server.grpc_url, 1, min(ceiling_seconds, 5.0))
                click.echo(f"naive baseline (one request per message): {results['naive_eps']:.1f} events/s")
            log = (data_dir / "worker.log").open("ab")
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.worker", "--log-level", "WARNING"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            stats_path = data_dir / "worker-stats.json"
            wait_stats(stats_path, lambda s: s.get("status") == "running", 120)
            click.echo(f"one worker, topics with {partitions} partition(s) each")
            results["sustained_eps"] = sustained_rate(settings, stats_path, n_events)
            click.echo(
                f"sustained: {results['sustained_eps']:.1f} events/s (text-events -> rows in ClickHouse)"
            )
            offered = 1.2 * results["sustained_eps"]
            results["live_eps"] = live_capacity(
                settings, stats_path, offered, live_seconds, producer_linger_ms
            )
            kept_up = " (kept up: a lower bound)" if results["live_eps"] > 0.97 * offered else ""
            click.echo(
                f"live capacity: {results['live_eps']:.1f} events/s stored while offered {offered:.0f} "
                f"events/s{kept_up} (producer, broker and pipeline on the same cores)"
            )
            rate = load_rate or 0.7 * results["live_eps"]
            lat = latency_phase(settings, stats_path, rate, minutes * 60, producer_linger_ms)
            results["latency"] = lat
            share = f"{rate / results['live_eps']:.0%} of live capacity"
            click.echo(
                f"latency at {lat['rate']:.1f} events/s ({share}) over {minutes:g} min "
                f"({lat['measured']} events, {BIN_MS} ms bins, producer linger {producer_linger_ms} ms): p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms"
            )
            click.echo(
                "  parts p50/p99: "
                + ", ".join(
                    f"{name} {p['p50_ms']:.0f}/{p['p99_ms']:.0f} ms"
                    for name, p in lat["parts"].items()
                    if name != "total"
                )
            )
            click.echo(
                f"worker RSS: {lat['rss_start'] / 2**20:.0f} MiB at start, {lat['rss_end'] / 2**20:.0f} MiB "
                f"after {lat['elapsed_s'] / 60:.1f} min"
            )
            # Growth after warm-up: from a third of the phase (minute 5 of 15) to its end.
            growth = rss_growth(lat["rss_timeline"], minutes * 60 / 3)
            if growth:
                results["rss_growth"] = growth
                click.echo(
                    f"worker RSS growth over the last {growth['seconds'] / 60:.1f} min of the phase "
                    f"(median of its first and last minute): {growth['rss0_mib']:.0f} -> "
                    f"{growth['rss1_mib']:.0f} MiB ({growth['rss1_mib'] - growth['rss0_mib']:+.1f} MiB; "
                    f"trend {growth['trend_mib']:+.1f} MiB; samples {growth['min_mib']:.0f}-"
                    f"{growth['max_mib']:.0f} MiB; chDB tracked {growth['chdb_tracked_mib']:+.1f} MiB, "
                    f"Python objects {growth['py_blocks']:+d})"
                )
            if "ceiling_eps" in results:
                results["ratio_to_ceiling"] = results["sustained_eps"] / results["ceiling_eps"]
                results["ratio_to_naive"] = results["sustained_eps"] / results["naive_eps"]
                click.echo(f"pipeline / Triton-path ceiling: {results['ratio_to_ceiling']:.1%}")
                click.echo(f"pipeline / naive per-message baseline: {results['ratio_to_naive']:.2f}x")
            # Masking runs on the classify agent's event loop: the core it would take at this rate.
            core = results["masking"]["event_us"] * 1e-6 * results["sustained_eps"]
            results["masking"]["core_share_at_sustained"] = core
            click.echo(f"masking at the sustained rate: {core:.2%} of one core")
        except TimeoutError as exc:
            fail(f"{exc}; worker log: {data_dir / 'worker.log'}")
        finally:
            if worker is not None:
                stop_process(worker, 30)
            if server is not None:
                server.stop()
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    bench_pipeline_command()


@click.group()
def bench() -> None:
    """Benchmarks that print throughput numbers and ratios."""


bench.add_command(bench_pipeline_command)


@bench.command("inference")
@click.option(
    "--backend",
    type=click.Choice(["local", "triton"]),
    default="local",
    show_default=True,
    help="triton: starts the bundled server (or uses MOODWIRE_TRITON_URL) and measures local beside it.",
)
@click.option("--batch-sizes", default="1,8,32,128", show_default=True)
@click.option(
    "--seconds", default=3.0, show_default=True, type=click.FloatRange(0.1), help="Time per measurement."
)
@click.option(
    "--artifacts", type=click.Path(file_okay=False), help="Artefact root (default: the committed models)."
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False),
    help="Root of the pre-multi-task artefacts (sentiment/, topic/) to measure beside (local only).",
)
@language_option("Which model, on which texts: en (headlines, reviews) or zh (headlines, article leads).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write results as JSON.")
def bench_inference(
    backend: str,
    batch_sizes: str,
    seconds: float,
    artifacts: str | None,
    baseline: str | None,
    language: str,
    json_out: str | None,
) -> None:
    """Texts/s and tokens/s per batch size on headline- and review-length texts."""
    from inference.evaluation.bench import run_local_bench
    from inference.serve.artifacts import ArtifactError

    try:
        sizes = [int(x) for x in batch_sizes.split(",") if x.strip()]
    except ValueError:
        fail(f"--batch-sizes must be comma-separated integers, got {batch_sizes!r}")
    if backend == "triton":
        from streams.cli.triton import run_triton_bench

        results = run_triton_bench(sizes, seconds, artifacts, language)
    else:
        try:
            results = run_local_bench(sizes, seconds, artifacts, baseline, language)
        except ArtifactError as exc:
            fail(str(exc))
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2))
