"""Replay the bundled sample stream over time, with scripted negative surges.

``streams/samples/stream.jsonl`` holds a few hundred English news headlines and
product/app reviews written for this project (five topics, several sources,
with entities; ``meta.topic_hint`` / ``meta.tone_hint`` say what each was
written as); ``stream_zh.jsonl`` holds 140 Chinese ones, also our own writing
about fictional companies (50 of them bad news about 云帆科技).  :func:`schedule`
turns a sample into timed events: a steady base rate drawn from the whole
sample, plus, inside each surge window, extra events drawn from the surge
topic's negative items (of one language, if the surge names one) only.  Every replayed event gets a fresh
id and ``ts`` = its scheduled wall-clock time.  ``python -m streams.cli.replay``
prints the schedule as JSON Lines (pipe it into ``moodwire produce -``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from streams.settings import Settings

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "stream.jsonl"
SAMPLE_ZH = SAMPLE.with_name("stream_zh.jsonl")
TOPICS = ("business", "entertainment", "politics", "sport", "tech")
# A few broken records so the DLQ has something to show.
MALFORMED = (b'{"id": "broken-1", "text": ', b'{"id": "broken-2", "text": ""}', b'{"id": "broken-3"}')


@dataclass(frozen=True)
class Surge:
    topic: str = "tech"
    start_s: float = 30.0
    duration_s: float = 30.0
    rate: float = 15.0  # extra negative events per second during the window
    lang: str | None = None  # only items of this language (None: any)


def load_sample(path: Path = SAMPLE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def schedule(
    items: Sequence[dict[str, Any]],
    duration_s: float,
    rate: float,
    surge: Surge | Sequence[Surge] | None,
    start_ms: int,
    seed: int = 11,
    malformed: Sequence[bytes] = MALFORMED,
) -> list[tuple[float, bytes]]:
    """(seconds from start, record bytes), sorted by time."""
    rng = random.Random(seed)
    out: list[tuple[float, bytes]] = []
    n = 0

    def event(at: float, item: dict[str, Any]) -> tuple[float, bytes]:
        nonlocal n
        n += 1
        body = {**item, "id": f"replay-{start_ms}-{n:06d}", "ts": start_ms + int(at * 1000)}
        body["meta"] = {**item.get("meta", {}), "sample_id": item["id"]}
        return at, json.dumps(body, ensure_ascii=False).encode()

    pool = list(items)
    for i in range(int(duration_s * rate)):
        out.append(event(i / rate, rng.choice(pool)))
    surges = [] if surge is None else [surge] if isinstance(surge, Surge) else list(surge)
    for s in surges:
        negatives = [
            it
            for it in items
            if it.get("meta", {}).get("topic_hint") == s.topic
            and it.get("meta", {}).get("tone_hint") == "neg"
            and (s.lang is None or it.get("lang") == s.lang)
        ]
        if not negatives:
            raise ValueError(f"the sample has no negative items for topic {s.topic!r} (lang {s.lang})")
        for i in range(int(s.duration_s * s.rate)):
            at = s.start_s + i / s.rate
            if at < duration_s:
                out.append(event(at, rng.choice(negatives)))
    for j, raw in enumerate(malformed):
        out.append(((j + 1) * duration_s / (len(malformed) + 1), raw))
    out.sort(key=lambda pair: pair[0])
    return out


async def send_schedule(
    settings: Settings, timed: Sequence[tuple[float, bytes]], on_sent: Callable[[int], None] | None = None
) -> int:
    """Publish each record at its scheduled time (relative to now); returns when all are acknowledged."""
    from aiokafka import AIOKafkaProducer

    from streams.cli.produce import record_key
    from streams.pipeline.records import MAX_RECORD_BYTES

    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        acks="all",
        enable_idempotence=False,
        max_request_size=MAX_RECORD_BYTES,
    )
    await producer.start()
    t0 = time.monotonic()
    pending = []
    try:
        for at, raw in timed:
            wait = t0 + at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pending.append(await producer.send(settings.topic_input, raw, key=record_key(raw)))
            if on_sent:
                on_sent(1)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(timed)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--duration", default=90.0, show_default=True, type=click.FloatRange(1), help="Seconds of stream."
)
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(0.1), help="Base events/s.")
@click.option("--surge-topic", type=click.Choice(TOPICS), default="tech", show_default=True)
def main(duration: float, rate: float, surge_topic: str) -> None:
    """Print the replay schedule as JSON Lines (event time = now + offset)."""
    surge = Surge(surge_topic, duration / 3, duration / 3)
    for _, raw in schedule(load_sample(), duration, rate, surge, int(time.time() * 1000)):
        sys.stdout.buffer.write(raw + b"\n")


if __name__ == "__main__":
    main()
