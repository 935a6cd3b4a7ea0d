"""Leader election for the alert evaluator on the real tansu broker: of two members of the leader group
exactly one holds partition 0 of the 1-partition topic (a join may move it: the range assignor is not
sticky); when the leader leaves, the other takes over.  Both flags are sampled throughout: never two."""

from __future__ import annotations

import asyncio
import time

from pipeline_harness import settings_env, settings_from

from streams.alerts.service import Leadership
from streams.embedded.broker import EmbeddedBroker, free_port


async def _until(predicate, timeout: float) -> float:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def test_exactly_one_leader_and_failover(tmp_path):
    with EmbeddedBroker(port=free_port()) as broker:
        settings = settings_from(
            settings_env(
                broker.bootstrap_servers, tmp_path, "leader", MOODWIRE_ALERTS_LEADER_TOPIC="leader-t"
            )
        )

        async def scenario() -> tuple[float, float]:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
            await admin.start()
            await admin.create_topics([NewTopic("leader-t", num_partitions=1, replication_factor=1)])
            await admin.close()
            a, b = Leadership(settings), Leadership(settings)
            stops = {a: asyncio.Event(), b: asyncio.Event()}
            both = 0

            async def watch() -> None:
                nonlocal both
                while True:
                    both += a.is_leader and b.is_leader
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            tasks = {a: asyncio.create_task(a.run(stops[a]))}
            first = await _until(lambda: a.is_leader, 30)
            tasks[b] = asyncio.create_task(b.run(stops[b]))
            await asyncio.sleep(8)  # b joins (tansu: half the session timeout); the group settles
            assert a.is_leader != b.is_leader
            leader, other = (a, b) if a.is_leader else (b, a)
            stops[leader].set()
            await tasks[leader]
            assert not leader.is_leader
            takeover = await _until(lambda: other.is_leader, 30)
            stops[other].set()
            await tasks[other]
            watcher.cancel()
            assert both == 0, "two leaders at the same time"
            return first, takeover

        first, takeover = asyncio.run(scenario())
        print(f"\nleader after {first:.1f}s; takeover {takeover:.1f}s after the leader left")
