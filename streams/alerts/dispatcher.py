"""The webhook dispatcher: the handler of the agent on the ``alerts`` topic.

For a micro-batch of transition records it POSTs each record's payload to
each of its targets - targets concurrently, one target's messages in order
through its rate limit - and returns only when every delivery has an
outcome: delivered (2xx), rejected (a final 4xx, a refused redirect, a
missing secret) or expired (max age).  Each outcome is recorded in
``alert_deliveries`` as soon as it is known, and pairs already recorded are
skipped, so a transition re-published by the evaluator or re-consumed after
a crash reaches each receiver once.  The agent runtime commits the offsets
after the handler returns (at-least-once consumption).

The agent keeps up to :data:`IN_FLIGHT` batches in flight, so a target that is
down (retried up to its max age) does not hold up deliveries to the others:
a per-target lock keeps each target's messages in order across batches, and a
pair this process has already taken on (being delivered, or done) is not sent
again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from streams.alerts import store
from streams.alerts.rules import Rules, Target
from streams.alerts.webhooks import (
    Delivery,
    Outcome,
    RetryPolicy,
    SecretError,
    TokenBucket,
    decode_secret,
    deliver,
    payload_body,
)
from streams.db import Database
from streams.metrics import METRICS
from streams.pipeline.records import InRecord

log = logging.getLogger("moodwire.dispatcher")

IN_FLIGHT = 16  # batches of the deliver agent in flight at once (offsets still commit in order)
CLAIMED_MAX = 100_000


@dataclass(frozen=True)
class Message:
    transition_id: str
    dedupe_key: str
    kind: str
    targets: tuple[str, ...]
    payload: dict[str, Any]
    created_at: float


def decode_message(rec: InRecord) -> Message | None:
    try:
        value = json.loads(rec.value)
        payload = value["payload"]
        created = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")).timestamp()
        return Message(
            value["transition_id"],
            payload["data"].get("dedupe_key", ""),
            payload["type"].removeprefix("alert."),
            tuple(value["targets"]),
            payload,
            created,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.error("dispatcher=bad_record source=%s error=%s", rec.source, exc)
        return None


class Dispatcher:
    def __init__(
        self, rules: Rules, db: Database, env: Mapping[str, str], policy: RetryPolicy | None = None
    ) -> None:
        self.rules = rules
        self.db = db
        self.env = env
        self.policy = policy or RetryPolicy()
        self.buckets = {name: TokenBucket(t.rate_limit_per_minute) for name, t in rules.targets.items()}
        self._session: aiohttp.ClientSession | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        # (transition id, target) pairs taken on by this process, oldest first; bounded, because
        # after a restart alert_deliveries is what prevents a second delivery.
        self._claimed: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, batch: list[InRecord]) -> dict[str, Any]:
        messages = [m for m in (decode_message(r) for r in batch) if m is not None]
        done = await self.db.run(store.finished_deliveries, sorted({m.transition_id for m in messages}))
        per_target: dict[str, list[Message]] = {}
        skipped = 0
        for m in messages:
            for target in m.targets:
                pair = (m.transition_id, target)
                if pair in done or pair in self._claimed:
                    skipped += 1
                    continue
                self._claimed[pair] = None  # also covers the same transition twice in one batch
                if len(self._claimed) > CLAIMED_MAX:
                    self._claimed.popitem(last=False)
                per_target.setdefault(target, []).append(m)
        results = await asyncio.gather(*(self._target(name, msgs) for name, msgs in per_target.items()))
        counts: dict[str, int] = {}
        for outcomes in results:
            for o in outcomes:
                counts[o] = counts.get(o, 0) + 1
        return {"messages": len(messages), "skipped": skipped, **counts}

    async def _target(self, name: str, messages: list[Message]) -> list[str]:
        async with self._locks.setdefault(name, asyncio.Lock()):
            return await self._in_order(name, messages)

    async def _in_order(self, name: str, messages: list[Message]) -> list[str]:
        outcomes = []
        for m in messages:
            outcome = await self._one(name, self.rules.targets.get(name), m)
            METRICS.alert_deliveries.labels(outcome.outcome).inc()
            await self.db.run(
                store.record_deliveries,
                [
                    store.DeliveryRow(
                        m.transition_id,
                        name,
                        outcome.outcome,
                        outcome.attempts,
                        outcome.status or 0,
                        m.dedupe_key,
                        m.kind,
                    )
                ],
            )
            outcomes.append(outcome.outcome)
        return outcomes

    async def _one(self, name: str, target: Target | None, m: Message) -> Outcome:
        if target is None:
            log.error(
                "dispatcher=rejected target=%s webhook_id=%s error=no such target in the rules",
                name,
                m.transition_id,
            )
            return Outcome("rejected", 0, None, "unknown target")
        secret = self.env.get(target.secret_env, "")
        try:
            decode_secret(secret)
        except SecretError as exc:
            log.error(
                "dispatcher=rejected target=%s webhook_id=%s error=%s (set %s to whsec_<base64>)",
                name,
                m.transition_id,
                exc,
                target.secret_env,
            )
            return Outcome("rejected", 0, None, str(exc))
        d = Delivery(
            target=name,
            url=target.url,
            secret=secret,
            msg_id=m.transition_id,
            body=payload_body(m.payload, target.format),
            created_at=m.created_at,
            max_age_s=target.max_age_s,
            timeout_s=target.timeout_s,
            allow_networks=target.allow_networks,
        )
        t0 = time.monotonic()
        outcome = await deliver(await self.session(), d, self.policy, self.buckets.get(name))
        log.info(
            "dispatcher=%s target=%s webhook_id=%s kind=%s attempts=%d s=%.1f",
            outcome.outcome,
            name,
            m.transition_id,
            m.kind,
            outcome.attempts,
            time.monotonic() - t0,
        )
        return outcome
