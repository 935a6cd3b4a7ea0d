"""The Faust agent runtime on the real tansu broker: batches in flight at once, acks strictly in take order."""

from __future__ import annotations

import asyncio
import itertools

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.embedded.broker import EmbeddedBroker
from streams.pipeline.agents import App
from streams.pipeline.records import InRecord, OutRecord
from streams.settings import load_settings

N_RECORDS = 120
BATCH = 10
_groups = itertools.count()


async def _seed(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(N_RECORDS):
            await producer.send(topic, b"%d" % i)
        await producer.flush()
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def _run_agent(bootstrap: str, topic: str, in_flight: int) -> dict[str, list[int]]:
    """What happened: batches' first offsets in finish order and in ack order, offsets seen, ..."""
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap, kafka_session_timeout_ms=3000, kafka_commit_interval_ms=100
    )
    group = f"agents-test-{next(_groups)}"
    app = App(group, settings)
    finished: list[int] = []
    acked: list[int] = []
    running = 0
    overlap = [0]
    seen: list[int] = []
    violations: list[int] = []
    stop = asyncio.Event()

    @app.agent(topic, batch_size=BATCH, max_wait_ms=50, in_flight=in_flight)
    async def slow_then_fast(batch: list[InRecord]) -> None:
        nonlocal running
        running += 1
        overlap[0] = max(overlap[0], running)
        first = batch[0].offset
        # Every other batch is slow, so later batches finish before earlier ones.
        await asyncio.sleep(0.15 if (first // BATCH) % 2 == 0 else 0.0)
        # Nothing from a later batch may have been acked while this one was unfinished.
        if acked and acked[-1] > first:
            violations.append(first)
        seen.extend(r.offset for r in batch)
        finished.append(first)
        running -= 1

    original = app._ack

    def recording_ack(agent, batch):  # type: ignore[no-untyped-def]
        original(agent, batch)
        acked.append(batch.records[0].offset)
        if batch.records[-1].offset + 1 >= N_RECORDS:
            stop.set()

    app._ack = recording_ack  # type: ignore[method-assign]
    await asyncio.wait_for(app.run(stop), timeout=90)
    committed = await _committed(bootstrap, group, topic)
    return {
        "finished": finished,
        "acked": acked,
        "overlap": overlap,
        "seen": seen,
        "bad": violations,
        "committed": [-1 if committed is None else committed],
    }


def test_batches_overlap_but_acks_follow_take_order(broker: EmbeddedBroker) -> None:
    topic = "agents-in-flight"
    asyncio.run(_seed(broker.bootstrap_servers, topic))
    got = asyncio.run(_run_agent(broker.bootstrap_servers, topic, in_flight=3))
    assert got["overlap"][0] >= 2, "handlers never ran concurrently: the test would prove nothing"
    assert got["finished"] != sorted(got["finished"]), "finished in order: the test would prove nothing"
    assert got["bad"] == [], "an ack covered a batch taken after one whose handler had not finished"
    assert got["acked"] == sorted(got["acked"]), f"acks followed finish order: {got['acked']}"
    assert sorted(got["seen"]) == list(range(N_RECORDS))
    # Faust committed what was acked before it left the group: a restart resumes after the last record.
    assert got["committed"] == [N_RECORDS]


def test_in_flight_one_runs_one_batch_at_a_time(broker: EmbeddedBroker) -> None:
    topic = "agents-one-at-a-time"
    asyncio.run(_seed(broker.bootstrap_servers, topic))
    got = asyncio.run(_run_agent(broker.bootstrap_servers, topic, in_flight=1))
    assert got["overlap"][0] == 1 and got["bad"] == []
    assert got["finished"] == sorted(got["finished"]) == got["acked"]
    assert sorted(got["seen"]) == list(range(N_RECORDS)) and got["committed"] == [N_RECORDS]


async def _send_and_read(
    bootstrap: str,
) -> tuple[dict[bytes, set[int]], dict[bytes, set[int]], dict[int, list[int]]]:
    """App.send 300 keyed ~600-byte records (several full batches per partition, one record
    bigger than a batch) and a plain aiokafka per-record send of the same keys; read both back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=4, replication_factor=1) for t in ("send-batched", "send-plain")]
        )
    finally:
        await admin.close()
    keys = [b"source-%d" % (i % 13) for i in range(300)]
    # Record 7 is bigger than a whole batch (16 KiB): it must still go, in its own batch.
    records = [
        OutRecord(b"%d:" % i + b"x" * (100_000 if i == 7 else 600), k, (("h", b"%d" % i),))
        for i, k in enumerate(keys)
    ]
    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    app = App(f"send-test-{next(_groups)}", settings)  # no agents: a send-only App
    stop = asyncio.Event()
    runner = asyncio.create_task(app.run(stop))
    await asyncio.wait_for(app.ready.wait(), 30)
    await app.send("send-batched", records)
    stop.set()
    await runner
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await plain.start()
    try:
        for k in set(keys):
            await plain.send_and_wait("send-plain", b"-", key=k)
    finally:
        await plain.stop()

    async def read(topic: str, n: int) -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        got: list = []
        try:
            while len(got) < n:
                for recs in (await consumer.getmany(timeout_ms=1000)).values():
                    got.extend(recs)
        finally:
            await consumer.stop()
        return got

    by_key: dict[bytes, set[int]] = {}
    order: dict[int, list[int]] = {}
    for m in await read("send-batched", len(records)):
        i = int(m.value.split(b":")[0])
        assert dict(m.headers)["h"] == b"%d" % i
        by_key.setdefault(m.key, set()).add(m.partition)
        order.setdefault(m.partition, []).append(i)
    plain_by_key: dict[bytes, set[int]] = {}
    for m in await read("send-plain", len(set(keys))):
        plain_by_key.setdefault(m.key, set()).add(m.partition)
    return by_key, plain_by_key, order


def test_send_batches_per_partition_like_a_per_record_send(broker: EmbeddedBroker) -> None:
    by_key, plain_by_key, order = asyncio.run(_send_and_read(broker.bootstrap_servers))
    assert by_key == plain_by_key, "a key went to another partition than a per-record send puts it"
    assert len(order) > 1, "all keys on one partition: the test would prove nothing"
    assert sorted(i for seq in order.values() for i in seq) == list(range(300))  # each record once
    for seq in order.values():
        assert seq == sorted(seq), "records of one partition came back out of send order"
