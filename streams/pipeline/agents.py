"""Faust agents that take micro-batches, retry until durable, and ack in take order (at-least-once).

Every agent is a faust-streaming agent (``@app.agent`` on a Faust topic, ``concurrency=1``)
run by Faust's consumer and producer.  What this module adds is the batch contract the
stages rely on; a handler is an async function ``handler(batch) -> log fields``:

1. take a micro-batch with ``Stream.noack_take(batch_size, within)``: up to ``batch_size``
   events or ``max_wait_ms``, and Faust does NOT ack them when they are yielded;
2. call the handler until it succeeds - any exception means "not durable", so the SAME
   batch is retried with capped exponential backoff, forever; nothing is skipped and
   the worker stays up;
3. only then ack the batch's events, batches strictly in the order they were taken.
   Faust's consumer commits, per partition, the highest *contiguous* acked offset
   (every ``broker_commit_interval``, on rebalance and on stop), so a commit never passes
   an event whose outputs are not durable.

Agents keep ``concurrency=1`` (faust-streaming issue 606: with more, commits can pass
in-flight events).  Overlap comes from inside the agent instead: with ``in_flight`` > 1
the next batch is taken while earlier ones are still in their handler (at Triton), and
acks still follow take order.  Handlers send with :meth:`App.send`, which returns when
the broker has acknowledged every record (acks=all).  A crash anywhere before step 3
means the events are delivered again; idempotent storage makes the results exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.sensors import Sensor
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP

from streams.metrics import METRICS, Position
from streams.pipeline.records import MAX_RECORD_BYTES, PRODUCER_BATCH_BYTES, InRecord, OutRecord
from streams.settings import Settings

log = logging.getLogger("moodwire.agents")

Handler = Callable[[list[InRecord]], Awaitable[dict[str, Any] | None]]
STOP_TIMEOUT_S = 15.0  # each of: stopping the agents, stopping Faust
_PARTITIONER = DefaultPartitioner()


@dataclass(frozen=True)
class Agent:
    name: str
    topic: str
    handler: Handler
    batch_size: int
    max_wait_ms: int
    in_flight: int = 1  # batches whose handlers may run at once (acks stay in take order)


@dataclass
class Batch:
    events: list[Any]  # faust Events, acked once the handler has succeeded
    records: list[InRecord]
    taken: float
    task: asyncio.Task[tuple[dict[str, Any] | None, int]] = field(repr=False)


def backoff_s(attempt: int, cap_s: float, base_s: float = 0.25) -> float:
    """Capped exponential backoff with +-20% jitter; ``attempt`` counts from 1."""
    return min(cap_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def in_record(message: Any) -> InRecord:
    """A Faust message (raw bytes in and out) as the stages' record type."""
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    return InRecord(
        message.topic,
        message.partition,
        message.offset,
        int(message.timestamp * 1000),
        message.key,
        message.value if message.value is not None else b"",
        tuple((k, v if v is not None else b"") for k, v in headers),
    )


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer with our fetch wait instead of its hard-coded 1,500 ms.

    A fetch with no data waits up to that long at the broker.  Kafka answers as soon as data
    arrives; tansu does not (it always waits the full time: docs/pipeline.md), so every hop
    of the embedded pipeline cost up to 1.5 s.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app: FaustApp = self.app  # type: ignore[assignment]
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms  # read when the consumer starts its fetcher
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class FaustApp(faust.App):
    fetch_max_wait_ms = 500

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def on_init_dependencies(self) -> Any:
        # Faust's Monitor sensor records every event, message and send (timestamps, counters per
        # topic) for its web views and sensors, which we do not run: our metrics come from
        # streams.metrics.  A plain Sensor (no-op hooks) takes its place, so Faust's rebalance
        # bookkeeping still finds a sensor state; Faust still calls the Monitor directly for end
        # offsets and commits.
        deps = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        self.sensors.add(Sensor())
        return deps


def faust_app(app_id: str, settings: Settings) -> faust.App:
    """The Faust app: raw bytes, acks=all, no Faust web server (ours is streams.web), no tables."""
    s = settings
    session_s = s.kafka_session_timeout_ms / 1000
    app = FaustApp(
        app_id,
        broker=[f"kafka://{server.strip()}" for server in s.kafka_bootstrap_servers.split(",")],
        broker_credentials=_credentials(s),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=s.topic_partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,  # no tables, so no use for Faust's leader topic
        # No tables, so no standbys: Faust then uses aiokafka's round-robin assignor, which gives a
        # worker that joins a share of the partitions (Faust's sticky table assignor left it idle).
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(session_s / 3, 0.1),
        broker_request_timeout=max(90.0, session_s + 5),
        broker_rebalance_timeout=max(2 * session_s, 10.0),
        # Liveness is the heartbeat (Faust's consumer runs in its own thread); a batch may
        # legitimately wait out a long outage of Triton or ClickHouse.
        broker_max_poll_interval=24 * 3600.0,
        broker_commit_interval=s.kafka_commit_interval_ms / 1000,
        # Per partition and fetch.  Not MAX_RECORD_BYTES: with a backlog, aiokafka hands Faust all
        # it fetched at once, and Faust feeds it to the streams in one pass, so 16 MiB per partition
        # meant ~30k buffered events and no event for the store agent until the classify agent had
        # worked through them (20 s and more).  A record bigger than this still comes whole.
        consumer_max_fetch_size=s.kafka_max_partition_fetch_bytes,
        producer_acks=-1,
        producer_max_request_size=MAX_RECORD_BYTES,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_linger=0.005,
        stream_buffer_maxsize=4 * max(s.batch_size, s.store_batch_size),
    )
    app.fetch_max_wait_ms = s.kafka_fetch_max_wait_ms
    return app


def _credentials(s: Settings) -> Any:
    ssl_context = s.kafka_ssl_context()
    if s.kafka_security_protocol.startswith("SASL_"):
        assert s.kafka_sasl_password is not None  # checked by Settings
        return faust.SASLCredentials(
            username=s.kafka_sasl_username,
            password=s.kafka_sasl_password.get_secret_value(),
            ssl_context=ssl_context,
            mechanism=s.kafka_sasl_mechanism,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


class App:
    """Topics, agents and Faust's producer; :meth:`run` runs the agents until ``stop`` is set.

    ``only``: the agents this process runs (None: all).  All of them join ONE consumer group,
    ``app_id``; each worker subscribes to the topics of the agents it runs, and Faust's
    assignor spreads each topic's partitions over the workers that subscribe to it.
    """

    def __init__(self, app_id: str, settings: Settings, only: Collection[str] | None = None) -> None:
        self.name = app_id
        self.settings = settings
        self.only = None if only is None else frozenset(only)
        self.faust = faust_app(app_id, settings)
        self.agents: list[Agent] = []
        self.ready = asyncio.Event()  # set once Faust (producer, consumer) is up: App.send works
        self._topics: dict[str, faust.TopicT] = {}
        self._next: dict[tuple[str, str, int], int] = {}  # (agent, topic, partition) -> next offset
        self._rebalance_started: float | None = None
        self._pending: dict[Agent, deque[Batch]] = {}  # per running agent: batches in flight, in take order
        self._stopping = False
        self.faust.on_partitions_revoked.connect(self._on_revoked)
        self.faust.on_partitions_assigned.connect(self._on_assigned)

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.faust.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
        return self._topics[name]

    @property
    def producer(self) -> Any:
        """The underlying aiokafka producer (for health probes), or None before start."""
        if not self.ready.is_set():
            return None
        return getattr(self.faust.producer, "_producer", None)

    def positions(self) -> list[Position]:
        """Per agent and assigned partition: next offset to process and the fetch high watermark.

        The high watermark comes from fetch responses (tansu's ListOffsets is wrong, its
        fetch high watermark is right); -1 until the first fetch.
        """
        if not self.ready.is_set():
            return []
        consumer = self.faust.consumer
        out: list[Position] = []
        for agent in self.agents:
            if not self.runs(agent.name):
                continue
            for tp in sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition)):
                if tp.topic != agent.topic:
                    continue
                hw = consumer.highwater(tp)
                pos = self._next.get((agent.name, tp.topic, tp.partition))
                if pos is None:
                    committed = consumer._committed_offset.get(tp)  # what the group resumes from
                    pos = -1 if committed is None else committed
                out.append((agent.name, tp.topic, tp.partition, pos, -1 if hw is None else hw))
        return out

    def runs(self, agent: str) -> bool:
        return self.only is None or agent in self.only

    # -- topology -------------------------------------------------------------------------------

    def agent(
        self,
        topic: str,
        *,
        batch_size: int | None = None,
        max_wait_ms: int | None = None,
        in_flight: int = 1,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``topic``; batch limits default to MOODWIRE_BATCH_SIZE / _MAX_WAIT_MS."""

        def register(handler: Handler) -> Handler:
            spec = Agent(
                handler.__name__,
                topic,
                handler,
                batch_size or self.settings.batch_size,
                max_wait_ms or self.settings.batch_max_wait_ms,
                max(1, in_flight),
            )
            self.agents.append(spec)
            if self.runs(spec.name):

                async def consume(stream: faust.StreamT) -> None:
                    await self._consume(spec, stream)

                self.faust.agent(self.topic(topic), name=f"{self.name}.{spec.name}", concurrency=1)(consume)
            return handler

        return register

    async def send(self, topic: str, records: Sequence[OutRecord]) -> None:
        """Produce ``records`` and return when the broker has acknowledged all of them.

        On Faust's producer, as whole record batches: one per partition (more if one is full),
        partitioned by key like a per-record send (murmur2, Kafka's default), in order within a
        partition.  A per-record ``Topic.send`` costs a message future, sensor calls and a
        callback per record.
        """
        if not records:
            return
        assert self.ready.is_set(), "App.send called before App.run started Faust"
        producer = self.faust.producer._producer  # the aiokafka producer Faust started (acks=all)
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[OutRecord]] = {}
        for r in records:
            p = _PARTITIONER(r.key, partitions, partitions)
            by_partition.setdefault(p, []).append(r)
        futures = []
        for p, recs in by_partition.items():
            batch = producer.create_batch()
            for r in recs:
                record = {"key": r.key, "value": r.value, "timestamp": None, "headers": list(r.headers)}
                if batch.append(**record) is None:  # full: send it, start the next one
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(**record)  # an empty batch takes any record, whatever its size
            futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)

    # -- runtime --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start Faust (consumer, producer, agents), run until ``stop``; raise if Faust crashed.

        Shutdown: no new batch is started; batches in flight get ``shutdown_grace_s`` to finish
        (Faust still up, so their sends work and their acks are committed); then the agents are
        stopped, which drops what is unfinished (not acked, so delivered again), and Faust
        commits the acked offsets and leaves the group.  Without the agents stopped first,
        Faust would wait for every taken event to be acked, for ever during an outage.
        """
        app = self.faust
        if not any(self.runs(a.name) for a in self.agents):
            # Nothing to consume (a send-only App): Faust's consumer would have no topic to
            # subscribe to, so only the producer runs.
            await app.maybe_start_producer()
            self.ready.set()
            try:
                await stop.wait()
            finally:
                self.ready.clear()
                await app.producer.stop()
            return
        self._stopping = False
        await app.start()
        self.ready.set()
        stopped = asyncio.ensure_future(app.wait_until_stopped())
        asked = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([stopped, asked], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (stopped, asked):
                fut.cancel()
            self._stopping = True
            with contextlib.suppress(Exception):
                await self._drain(self.settings.shutdown_grace_s)
            # Bounded: with the broker gone, Faust's final commit would retry for ever; what is
            # not committed is delivered again, so giving up keeps at-least-once.
            for agent in list(app.agents.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(agent.stop(), STOP_TIMEOUT_S)
            self.ready.clear()
            try:
                await asyncio.wait_for(app.stop(), STOP_TIMEOUT_S)
            except Exception as exc:
                log.warning(
                    "shutdown=incomplete error=%s: %s (uncommitted events are delivered again)",
                    type(exc).__name__,
                    exc,
                )
        if app.crash_reason is not None:
            raise RuntimeError(f"faust crashed: {app.crash_reason!r}") from app.crash_reason

    async def _drain(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the batches in flight to finish (and be acked)."""
        tasks = [b.task for pending in self._pending.values() for b in pending]
        if tasks:
            done, left = await asyncio.wait(tasks, timeout=grace_s)
            for agent, pending in self._pending.items():
                self._ack_done(agent, pending)
            log.info("shutdown=drained batches=%d unfinished=%d", len(done), len(left))

    async def _consume(self, agent: Agent, stream: faust.StreamT) -> None:
        """Take batches; run the handler on up to ``agent.in_flight`` of them; ack in take order."""
        log.info(
            "agent=%s status=started topic=%s group=%s batch_size=%d max_wait_ms=%d in_flight=%d",
            agent.name,
            agent.topic,
            self.name,
            agent.batch_size,
            agent.max_wait_ms,
            agent.in_flight,
        )
        pending: deque[Batch] = deque()
        self._pending[agent] = pending
        try:
            async for events in stream.noack_take(agent.batch_size, within=agent.max_wait_ms / 1000):
                if self._stopping:  # taken but never started: not acked, delivered again
                    break
                records = [in_record(e.message) for e in events]
                METRICS.batch_size.labels(agent.name).observe(len(records))
                batch = Batch(
                    list(events),
                    records,
                    time.perf_counter(),
                    asyncio.create_task(self._until_done(agent, records)),
                )
                pending.append(batch)
                # Acks happen as soon as the oldest batch is done, also while no new event arrives.
                batch.task.add_done_callback(lambda _: self._ack_done(agent, pending))
                while len(pending) >= agent.in_flight:
                    await asyncio.wait([pending[0].task])
                    self._ack_done(agent, pending)
        finally:
            # Unfinished batches are not acked, so not committed: they are delivered again.
            self._pending.pop(agent, None)
            for batch in pending:
                batch.task.cancel()
            for batch in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await batch.task

    def _ack_done(self, agent: Agent, pending: deque[Batch]) -> None:
        """Ack the leading run of finished batches, oldest first; stop at the first unfinished one."""
        while pending and pending[0].task.done() and not pending[0].task.cancelled():
            batch = pending.popleft()
            fields, attempts = batch.task.result()  # _until_done only ends by success or cancellation
            self._ack(agent, batch)
            if log.isEnabledFor(logging.INFO):
                extra = " ".join(f"{k}={v}" for k, v in (fields or {}).items())
                log.info(
                    "agent=%s records=%d attempts=%d ms=%.1f %s",
                    agent.name,
                    len(batch.records),
                    attempts,
                    (time.perf_counter() - batch.taken) * 1000,
                    extra,
                )

    def _ack(self, agent: Agent, batch: Batch) -> None:
        for event in batch.events:
            event.ack()
        for rec in batch.records:
            key = (agent.name, rec.topic, rec.partition)
            self._next[key] = max(self._next.get(key, 0), rec.offset + 1)

    async def _until_done(self, agent: Agent, batch: list[InRecord]) -> tuple[dict[str, Any] | None, int]:
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
                await asyncio.sleep(delay)

    # -- rebalances -----------------------------------------------------------------------------

    async def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        self._rebalance_started = time.monotonic()
        for agent, topic, partition in list(self._next):
            if TP(topic, partition) in revoked:
                del self._next[(agent, topic, partition)]

    async def _on_assigned(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        if self._rebalance_started is None:
            return
        pause = time.monotonic() - self._rebalance_started
        self._rebalance_started = None
        METRICS.rebalance_seconds.observe(pause)
        log.info(
            "rebalance=done pause_ms=%.0f partitions=%s",
            pause * 1000,
            ",".join(f"{tp.topic}/{tp.partition}" for tp in sorted(assigned)),
        )


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
