"""The periodic alert evaluator: a worker side service, active on exactly one worker (the leader).

Leadership: every worker joins the consumer group ``<leader topic>`` on a
1-partition topic; the member that is assigned partition 0 is the leader and
evaluates, the others idle.  A dead leader leaves the group after the session
timeout and another member takes over.  (During a rebalance two members can
briefly both believe they lead; deterministic transition ids plus the
dispatcher's delivered-pairs table make that harmless.)

One round (every ``MOODWIRE_ALERTS_INTERVAL_S``): (0) re-publish transitions
recorded but not yet produced (a crash between the steps below); then per
rule, observations from ClickHouse -> :func:`evaluate.decide`; (1) write the
new state rows, transitions marked unpublished; (2) produce the transitions to
the ``alerts`` topic (acked); (3) mark them published.  A restart therefore
continues from ``alerts`` in ClickHouse: a firing alert is never fired again,
and a transition is produced with the same id however often it is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.alerts import store
from streams.alerts.evaluate import AlertState, decide, retire
from streams.alerts.payload import transition_record
from streams.alerts.rules import Rules
from streams.metrics import METRICS
from streams.pipeline.agents import backoff_s, sleep_unless
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.context import Service, WorkerContext

log = logging.getLogger("moodwire.alerts")


class Leadership:
    """Am I the alert leader?  Membership of a consumer group on a 1-partition topic decides."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.alerts_leader_topic
        self.is_leader = False
        self.changed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        attempt = 0
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                self.topic,
                **s.kafka_client_kwargs(),
                group_id=self.topic,
                client_id="moodwire-alerts-leader",
                enable_auto_commit=False,
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=max(s.kafka_session_timeout_ms // 3, 100),
                max_poll_interval_ms=24 * 3600 * 1000,
            )
            try:
                await consumer.start()
                attempt = 0
                while not stop.is_set():
                    await consumer.getmany(timeout_ms=500)  # nothing is ever written; keeps the member alive
                    self._set(TopicPartition(self.topic, 0) in consumer.assignment())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                self._set(False)
                delay = backoff_s(attempt, s.retry_max_backoff_s, base_s=0.5)
                log.warning(
                    "alerts=leader status=error attempt=%d backoff_s=%.1f error=%s", attempt, delay, exc
                )
                await sleep_unless(stop, delay)
            finally:
                self._set(False)
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info("alerts=leader status=%s", "acquired" if leader else "released")
            self.changed.set()


class Backlog:
    """How far behind the pipeline is: the age of the oldest record it has not processed yet.

    Per partition of ``text-events`` and ``scored-events``: the consumer group's committed
    offset, and the timestamp of the record there if there is one (fetch high watermarks;
    tansu's ListOffsets is wrong).  While that age is above MOODWIRE_ALERTS_MAX_LAG_S, the
    windows the rules would judge are incomplete - after a restart, during an outage, while a
    backlog drains partition by partition - so the evaluator waits instead of firing or
    resolving on part of the data.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def age_s(self) -> float:
        """Seconds since the oldest unprocessed record was produced; 0 when caught up."""
        s = self.settings
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **s.kafka_client_kwargs(),
                group_id=s.kafka_group_id,  # only to read its committed offsets: never subscribes
                enable_auto_commit=False,
                fetch_max_wait_ms=10,
                client_id="moodwire-alerts-backlog",
            )
            await consumer.start()
            self._consumer = consumer
        consumer = self._consumer
        await consumer.topics()  # metadata: partitions may have been added
        tps = [
            TopicPartition(topic, p)
            for topic in (s.topic_input, s.topic_scored)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return 0.0
        consumer.assign(tps)
        oldest: int | None = None
        try:
            for tp in tps:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
            pending = set(tps)
            deadline = time.monotonic() + 2.0
            while pending and time.monotonic() < deadline:
                batch = await consumer.getmany(*pending, timeout_ms=50, max_records=1)
                for tp, records in batch.items():
                    if records:
                        ts = records[0].timestamp
                        oldest = ts if oldest is None else min(oldest, ts)
                        pending.discard(tp)
                for tp in list(pending):
                    hw = consumer.highwater(tp)
                    if hw is not None and await consumer.position(tp) >= hw:
                        pending.discard(tp)  # caught up on this partition
        finally:
            # Assigned, its fetcher would keep fetching (every 10 ms) until the next round.
            consumer.unsubscribe()
        if oldest is None:
            return 0.0
        return max(0.0, time.time() - oldest / 1000)

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None


class Evaluator:
    """One evaluation round at a time over ``ctx.db``; transitions go to the alerts topic."""

    def __init__(self, ctx: WorkerContext, rules: Rules) -> None:
        self.ctx = ctx
        self.rules = rules

    async def publish(self, states: list[AlertState]) -> None:
        """Produce each transition (acked), then mark it published in ClickHouse."""
        if not states:
            return
        records = []
        for s in states:
            rule = self.rules.rule(s.rule_id)
            records.append(transition_record(s, rule.targets if rule else ()))
        await self.ctx.app.send(self.ctx.settings.topic_alerts, records)
        await self.ctx.db.run(store.write_states, [replace(s, published=True) for s in states])

    async def republish(self) -> tuple[dict[tuple[str, str], AlertState], list[AlertState]]:
        """Step 0: produce transitions recorded but not produced (a crash between the steps)."""
        rules = [r for r in self.rules.rules if r.enabled]
        states = await self.ctx.db.run(store.load_states, [r.id for r in rules])
        pending = [s for s in states.values() if not s.published and s.transition]
        if pending:
            log.warning(
                "alerts=republish transitions=%d (recorded before a crash, not yet produced)", len(pending)
            )
            await self.publish(pending)
            states.update({(s.rule_id, s.value): replace(s, published=True) for s in pending})
        return states, pending

    async def round(self, now: datetime | None = None) -> list[AlertState]:
        """One round; returns the transitions it produced (re-published ones included)."""
        db = self.ctx.db
        rules = [r for r in self.rules.rules if r.enabled]
        states, pending = await self.republish()
        now = now or datetime.now(UTC)
        rows: list[AlertState] = await self.orphans(now)
        for rule in rules:
            obs = await db.run(store.observations, rule, now)
            mine = {value: s for (rid, value), s in states.items() if rid == rule.id}
            for decision in decide(rule, obs, mine, now):
                s = decision.state
                if s.transition in ("firing", "severity"):
                    ids = await db.run(
                        store.sample_ids, rule.dim, s.value, store.window_start(now, rule.window_s), now
                    )
                    s = replace(s, sample_ids=tuple(ids))
                rows.append(s)
        transitions = [s for s in rows if s.transition]
        await db.run(store.write_states, rows)
        await self.publish(transitions)
        METRICS.alert_evaluations.inc()
        for s in transitions:
            METRICS.alert_transitions.labels(s.transition).inc()
            log.info(
                "alerts=transition kind=%s key=%s severity=%s volume=%d negative_share=%.3f id=%s",
                s.transition,
                s.dedupe_key,
                s.severity,
                s.volume,
                s.negative_share,
                s.transition_id,
            )
        return pending + transitions

    async def orphans(self, now: datetime) -> list[AlertState]:
        """Resolved transitions for firing alerts whose rule was removed or disabled.

        A disabled rule's targets still hear that its alerts resolved; a removed
        rule has no targets left, so its resolution is only recorded.
        """
        enabled = {r.id for r in self.rules.rules if r.enabled}
        firing = await self.ctx.db.run(store.load_states, None, firing_only=True)
        gone = [s for s in firing.values() if s.state == "firing" and s.rule_id not in enabled]
        for s in gone:
            log.info(
                "alerts=retire key=%s reason=rule_%s",
                s.dedupe_key,
                "disabled" if self.rules.rule(s.rule_id) else "removed",
            )
        return [retire(s, now) for s in gone]


def alert_evaluator(rules: Rules) -> Service:
    """The worker side service (see :data:`streams.context.Service`) for ``rules``."""

    async def alert_evaluator(ctx: WorkerContext, stop: asyncio.Event) -> None:
        settings: Settings = ctx.settings
        leadership = Leadership(settings)
        leader_task = asyncio.create_task(leadership.run(stop), name="alerts-leader")
        evaluator = Evaluator(ctx, rules)
        backlog = Backlog(settings)
        attempt = 0
        try:
            await ctx.app.ready.wait()
            while not stop.is_set():
                t0 = time.monotonic()
                if leadership.is_leader:
                    try:
                        age = await backlog.age_s()
                        if age > settings.alerts_max_lag_s:
                            METRICS.alert_rounds_deferred.inc()
                            log.warning(
                                "alerts=round status=deferred backlog_s=%.1f max_lag_s=%.0f "
                                "(unprocessed events: the windows are incomplete)",
                                age,
                                settings.alerts_max_lag_s,
                            )
                            await evaluator.republish()
                        else:
                            produced = await evaluator.round()
                            log.debug(
                                "alerts=round transitions=%d ms=%.1f",
                                len(produced),
                                (time.monotonic() - t0) * 1000,
                            )
                        attempt = 0
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        await backlog.close()  # a broken connection is opened again next round
                        attempt += 1
                        log.warning(
                            "alerts=round status=failed attempt=%d error=%s: %s",
                            attempt,
                            type(exc).__name__,
                            " ".join(str(exc).split())[:300],
                        )
                leadership.changed.clear()
                wait = max(0.0, settings.alerts_interval_s - (time.monotonic() - t0))
                # Wake early when leadership is acquired, so a new leader evaluates at once.
                waiters = {
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(leadership.changed.wait()),
                }
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
        finally:
            await backlog.close()
            leader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await leader_task

    return alert_evaluator
