"""``moodwire produce FILE|-``: publish JSON Lines to ``text-events``, optionally at a fixed rate.

Each non-empty line is sent as-is (its original bytes: a malformed line is
the worker's to reject into the DLQ, not ours to drop).  The key is the
event's ``source``, else its first entity, else none.  Exits after every
record is acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import click

from streams.cli.errors import fail
from streams.pipeline.records import MAX_RECORD_BYTES, PRODUCER_BATCH_BYTES
from streams.settings import Settings, SettingsError, load_settings

COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")


def record_key(line: bytes) -> bytes | None:
    """``source``, else the first entity, else None (also for lines that are not JSON objects)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("source"), str) and obj["source"]:
        return str(obj["source"]).encode()
    entities = obj.get("entities")
    if isinstance(entities, list) and entities and isinstance(entities[0], str):
        return entities[0].encode()
    return None


def read_lines(stream: BinaryIO) -> Iterable[bytes]:
    for raw in stream:
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield line


async def paced(lines: Iterable[bytes], rate: float | None) -> AsyncIterator[bytes]:
    """Yield lines at ``rate`` per second (no pacing when None), without drift."""
    t0 = time.monotonic()
    for i, line in enumerate(lines):
        if rate:
            wait = t0 + i / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        yield line


async def produce_lines(
    settings: Settings,
    lines: Iterable[bytes],
    rate: float | None = None,
    compression: str = "none",
    on_sent: Callable[[int], None] | None = None,
    linger_ms: int = 50,
) -> int:
    """Send every line to the input topic; return the count once all are acknowledged.

    ``linger_ms``: how long a batch waits for more records.  tansu's memory engine keeps every
    produced batch and spends CPU per stored batch on each fetch (docs/streaming.md), so on the
    embedded broker fewer, fuller batches keep it cheap; 1-record batches slow it down.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        acks="all",
        enable_idempotence=False,
        compression_type=None if compression == "none" else compression,
        max_request_size=MAX_RECORD_BYTES,
        max_batch_size=PRODUCER_BATCH_BYTES,
        linger_ms=linger_ms,
    )
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[object]] = []
    try:
        async for line in paced(lines, rate):
            pending.append(await producer.send(settings.topic_input, line, key=record_key(line)))
            sent += 1
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                if on_sent:
                    on_sent(len(pending))
                pending.clear()
            elif rate and on_sent:
                on_sent(0)
        await asyncio.gather(*pending)
        if on_sent:
            on_sent(len(pending))
    finally:
        await producer.stop()
    return sent


@click.command("produce", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option(
    "--rate", type=click.FloatRange(min=0.001), help="Events per second (default: as fast as possible)."
)
@click.option("--compression", type=click.Choice(COMPRESSION), default="none", show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in scripts).")
def produce_command(source: Path, rate: float | None, compression: str, no_progress: bool) -> None:
    """Publish JSON Lines from SOURCE (a file, or - for stdin) to MOODWIRE_TOPIC_INPUT."""
    from aiokafka.errors import KafkaError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(str(exc))
    if str(source) == "-":
        lines: list[bytes] | Iterable[bytes] = read_lines(sys.stdin.buffer)
        total = None
    else:
        if not source.is_file():
            fail(f"{source}: no such file")
        with source.open("rb") as fh:
            lines = list(read_lines(fh))
        total = len(lines)
    progress = Progress(
        TextColumn("producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        disable=no_progress,
        transient=False,
    )
    t0 = time.perf_counter()
    with progress:
        task = progress.add_task("produce", total=total, rate="")

        def advance(n: int) -> None:
            done = progress.tasks[0].completed + n
            speed = done / max(time.perf_counter() - t0, 1e-6)
            progress.update(task, completed=done, rate=f"{speed:,.0f} ev/s")

        try:
            sent = asyncio.run(produce_lines(settings, lines, rate, compression, advance))
        except KafkaError as exc:
            fail(f"cannot publish to {settings.kafka_bootstrap_servers}: {exc}")
        except OSError as exc:
            fail(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}")
    elapsed = time.perf_counter() - t0
    click.echo(
        f"produced {sent} events to {settings.topic_input} in {elapsed:.1f}s ({sent / max(elapsed, 1e-6):,.0f}/s)"
    )


if __name__ == "__main__":
    produce_command()
