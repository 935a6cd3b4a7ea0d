"""The evaluator's backlog probe on the real broker: the age of the oldest event the pipeline has not processed."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.alerts.service import Backlog
from streams.embedded.broker import EmbeddedBroker
from streams.settings import load_settings


def test_backlog_age_follows_the_groups_commits(broker: EmbeddedBroker) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_input="backlog-in",
        topic_scored="backlog-scored",
        kafka_group_id="backlog-group",
    )

    async def scenario() -> list[float]:
        bs = broker.bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=bs)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(t, num_partitions=2, replication_factor=1)
                    for t in ("backlog-in", "backlog-scored")
                ]
            )
        finally:
            await admin.close()
        probe = Backlog(settings)
        ages = [await probe.age_s()]  # nothing produced yet
        producer = AIOKafkaProducer(bootstrap_servers=bs)
        await producer.start()
        now_ms = int(time.time() * 1000)
        await producer.send_and_wait("backlog-in", b"old", partition=0, timestamp_ms=now_ms - 60_000)
        await producer.send_and_wait("backlog-in", b"new", partition=0, timestamp_ms=now_ms)
        await producer.send_and_wait("backlog-scored", b"x", partition=1, timestamp_ms=now_ms - 20_000)
        await producer.stop()
        ages.append(await probe.age_s())  # no commits: the oldest record counts (60 s)
        # The group processes the first input record and the scored one: commit past them.
        consumer = AIOKafkaConsumer(bootstrap_servers=bs, group_id="backlog-group", enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition("backlog-in", 0), TopicPartition("backlog-scored", 1)])
            await consumer.commit(
                {TopicPartition("backlog-in", 0): 1, TopicPartition("backlog-scored", 1): 1}
            )
            ages.append(await probe.age_s())  # the "new" input record is next: about 0 s
            await consumer.commit({TopicPartition("backlog-in", 0): 2})
            ages.append(await probe.age_s())  # caught up everywhere
        finally:
            await consumer.stop()
            await probe.close()
        return ages

    empty, uncommitted, one_left, caught_up = asyncio.run(scenario())
    assert empty == 0.0
    assert 59 <= uncommitted <= 70, uncommitted
    assert one_left < 5, one_left
    assert caught_up == 0.0
