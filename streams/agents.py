"""The agent runtime: micro-batches from Kafka, at-least-once, with retry and backoff.

This is the small part of Faust that the pipeline needs, written on aiokafka
so that delivery semantics live in one place and are explicit (see
docs/streaming.md for why not faust-streaming).  An agent is an async function
``handler(batch) -> log fields`` registered with :meth:`App.agent`; the
runtime, per agent:

1. takes a micro-batch: up to ``batch_size`` records or ``batch_max_wait_ms``;
2. calls the handler until it succeeds - any exception means "not durable",
   so the SAME batch is retried with capped exponential backoff, forever;
   nothing is skipped and the worker stays up;
3. only then commits, per partition, the offset after the batch's last record.

An agent may run its handler on several batches at once (``in_flight``, to
keep Triton busy while the previous batch's outputs are produced); commits
still follow the order the batches were taken in.

Handlers send with :meth:`App.send`, which returns only when the broker has
acknowledged every record (acks=all).  A crash anywhere before step 3 means
the batch is delivered again; idempotent storage turns that into
exactly-once results.  Offsets are never auto-committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from streams.metrics import METRICS, Position
from streams.records import MAX_RECORD_BYTES, InRecord, OutRecord
from streams.settings import Settings

log = logging.getLogger("moodwire.agents")

Handler = Callable[[list[InRecord]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Agent:
    name: str
    topic: str
    group: str
    handler: Handler
    batch_size: int
    max_wait_ms: int
    in_flight: int = 1  # batches whose handlers may run at once (commits stay in order)


def next_offsets(batch: Sequence[InRecord]) -> dict[TopicPartition, int]:
    """Per partition, the offset to commit after ``batch``: its last offset + 1."""
    out: dict[TopicPartition, int] = {}
    for rec in batch:
        tp = TopicPartition(rec.topic, rec.partition)
        out[tp] = max(out.get(tp, 0), rec.offset + 1)
    return out


def backoff_s(attempt: int, cap_s: float, base_s: float = 0.25) -> float:
    """Capped exponential backoff with +-20% jitter; ``attempt`` counts from 1."""
    return min(cap_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


async def take_batch(consumer: AIOKafkaConsumer, max_records: int, max_wait_ms: int) -> list[InRecord]:
    """Up to ``max_records`` records, waiting at most ``max_wait_ms`` from the first poll."""
    deadline = time.monotonic() + max_wait_ms / 1000
    batch: list[InRecord] = []
    while len(batch) < max_records:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0 and batch:
            break
        polled = await consumer.getmany(timeout_ms=max(left_ms, 0), max_records=max_records - len(batch))
        for records in polled.values():
            batch.extend(InRecord.from_consumer(r) for r in records)
        if left_ms <= 0:
            break
    return batch


class App:
    """Topics, agents and one shared producer; :meth:`run` runs every agent until ``stop`` is set."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.agents: list[Agent] = []
        self.producer: AIOKafkaProducer | None = None
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self.ready = asyncio.Event()  # set once the producer is up (App.send works)
        self._next: dict[tuple[str, str, int], int] = {}  # (agent, topic, partition) -> next offset

    def positions(self) -> list[Position]:
        """Per agent and assigned partition: next offset to process and the fetch high watermark.

        The high watermark comes from fetch responses (tansu's ListOffsets is
        wrong, its fetch high watermark is right); -1 until the first fetch.
        """
        out: list[Position] = []
        for name, consumer in self._consumers.items():
            for tp in sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition)):
                hw = consumer.highwater(tp)
                pos = self._next.get((name, tp.topic, tp.partition), -1)
                out.append((name, tp.topic, tp.partition, pos, -1 if hw is None else hw))
        return out

    # -- topology -------------------------------------------------------------------------------

    def agent(
        self,
        topic: str,
        *,
        group: str | None = None,
        batch_size: int | None = None,
        max_wait_ms: int | None = None,
        in_flight: int = 1,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``topic``; batch limits default to MOODWIRE_BATCH_SIZE / _MAX_WAIT_MS."""

        def register(handler: Handler) -> Handler:
            name = handler.__name__
            self.agents.append(
                Agent(
                    name,
                    topic,
                    group or f"{self.name}-{name}",
                    handler,
                    batch_size or self.settings.batch_size,
                    max_wait_ms or self.settings.batch_max_wait_ms,
                    max(1, in_flight),
                )
            )
            return handler

        return register

    async def send(self, topic: str, records: Sequence[OutRecord]) -> None:
        """Produce ``records`` and return when the broker has acknowledged all of them."""
        if not records:
            return
        assert self.producer is not None, "App.send called before App.run started the producer"
        futures = [
            await self.producer.send(topic, r.value, key=r.key, headers=list(r.headers)) for r in records
        ]
        await asyncio.gather(*futures)

    # -- runtime --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self.settings.kafka_client_kwargs()
        self.producer = AIOKafkaProducer(
            **kafka,
            acks="all",
            enable_idempotence=False,  # tansu cannot init idempotent producers; ids make redelivery harmless
            max_request_size=MAX_RECORD_BYTES,
            linger_ms=5,
        )
        await self.producer.start()
        self.ready.set()
        tasks = [asyncio.create_task(self._consume(a, stop), name=f"agent-{a.name}") for a in self.agents]
        try:
            await stop.wait()
        finally:
            # An unfinished batch is simply not committed: it is delivered again on restart.
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.ready.clear()
            await self.producer.stop()
            self.producer = None

    def _consumer(self, agent: Agent) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            agent.topic,
            **s.kafka_client_kwargs(),
            group_id=agent.group,
            client_id=f"{self.name}-{agent.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(s.kafka_session_timeout_ms // 3, 100),
            # Liveness is the heartbeat; a batch may legitimately wait out a long outage.
            max_poll_interval_ms=24 * 3600 * 1000,
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            fetch_max_bytes=4 * MAX_RECORD_BYTES,
        )

    async def _consume(self, agent: Agent, stop: asyncio.Event) -> None:
        """Take batches and run the handler on up to ``agent.in_flight`` of them at once.

        Offsets are committed strictly in batch order: a batch that finishes
        early waits for every batch taken before it, so a commit never covers a
        record whose outputs are not durable yet (the hazard of Faust's
        ``concurrency``), whatever order the handlers finish in.
        """
        consumer = self._consumer(agent)
        await self._retry(agent, "start", consumer.start, stop)
        self._consumers[agent.name] = consumer
        log.info(
            "agent=%s status=started topic=%s group=%s batch_size=%d max_wait_ms=%d in_flight=%d",
            agent.name,
            agent.topic,
            agent.group,
            agent.batch_size,
            agent.max_wait_ms,
            agent.in_flight,
        )
        pending: deque[tuple[list[InRecord], float, asyncio.Task[tuple[dict[str, Any] | None, int]]]] = (
            deque()
        )
        try:
            while not stop.is_set():
                while pending and pending[0][2].done():
                    await self._finish(agent, consumer, *pending.popleft())
                if len(pending) >= agent.in_flight:
                    await asyncio.wait([pending[0][2]])
                    continue
                # With batches in flight, poll briefly so a finished one is committed promptly.
                wait_ms = min(agent.max_wait_ms, 20) if pending else agent.max_wait_ms
                batch = await take_batch(consumer, agent.batch_size, wait_ms)
                if not batch:
                    continue
                METRICS.batch_size.labels(agent.name).observe(len(batch))
                task = asyncio.create_task(self._until_done(agent, batch, stop))
                pending.append((batch, time.perf_counter(), task))
        finally:
            # Unfinished batches are not committed: they are delivered again next time.
            for _, _, task in pending:
                task.cancel()
            for _, _, task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._consumers.pop(agent.name, None)
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _finish(
        self,
        agent: Agent,
        consumer: AIOKafkaConsumer,
        batch: list[InRecord],
        t0: float,
        task: asyncio.Task[tuple[dict[str, Any] | None, int]],
    ) -> None:
        fields, attempts = task.result()  # _until_done only ends by success or cancellation
        t1 = time.perf_counter()
        await self._commit(agent, consumer, batch)
        if not log.isEnabledFor(logging.INFO):
            return
        extra = " ".join(f"{k}={v}" for k, v in (fields or {}).items())
        log.info(
            "agent=%s records=%d attempts=%d ms=%.1f commit_ms=%.1f %s",
            agent.name,
            len(batch),
            attempts,
            (t1 - t0) * 1000,
            (time.perf_counter() - t1) * 1000,
            extra,
        )

    async def _until_done(
        self, agent: Agent, batch: list[InRecord], stop: asyncio.Event
    ) -> tuple[dict[str, Any] | None, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await agent.handler(batch), attempt
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                METRICS.batch_retries.labels(agent.name).inc()
                delay = backoff_s(attempt, self.settings.retry_max_backoff_s)
                log.warning(
                    "agent=%s status=retrying records=%d attempt=%d backoff_s=%.2f error=%s: %s",
                    agent.name,
                    len(batch),
                    attempt,
                    delay,
                    type(exc).__name__,
                    " ".join(str(exc).split())[:300],
                )
                await sleep_unless(stop, delay)
                if stop.is_set():
                    raise asyncio.CancelledError from None

    async def _retry(
        self, agent: Agent, what: str, action: Callable[[], Awaitable[Any]], stop: asyncio.Event
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await action()
                return
            except KafkaError as exc:
                delay = backoff_s(attempt, self.settings.retry_max_backoff_s)
                log.warning("agent=%s status=%s_failed attempt=%d error=%s", agent.name, what, attempt, exc)
                await sleep_unless(stop, delay)
                if stop.is_set():
                    raise asyncio.CancelledError from None

    async def _commit(self, agent: Agent, consumer: AIOKafkaConsumer, batch: list[InRecord]) -> None:
        offsets = next_offsets(batch)
        try:
            await consumer.commit(offsets)
            for tp, offset in offsets.items():
                self._next[(agent.name, tp.topic, tp.partition)] = offset
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved to another member (rebalance): it re-reads from the last
            # commit, so this batch is delivered once more - harmless, outputs are idempotent.
            log.warning("agent=%s status=commit_failed records=%d error=%s", agent.name, len(batch), exc)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
