"""moodwire's streaming topology, top to bottom: topics, then the agents.

``text-events`` --classify--> ``scored-events`` (+ ``text-events-dlq``) --store--> ClickHouse ``events``;
``alerts`` (transitions from the alert evaluator, a side service) --deliver--> webhooks.

Each agent receives a micro-batch (``classify``: up to MOODWIRE_BATCH_SIZE
records or MOODWIRE_BATCH_MAX_WAIT_MS; ``store``: the bigger
MOODWIRE_STORE_BATCH_*) and returns only when its outputs are durable; the
runtime (:mod:`streams.pipeline.agents`) then commits the batch's offsets, in order, and
retries the same batch with backoff when the agent raises.  ``classify`` keeps
MOODWIRE_CLASSIFY_IN_FLIGHT batches in flight so Triton always has the next
request queued while the previous batch's results are produced.  The work itself
lives in :mod:`streams.pipeline.classify`, :mod:`streams.pipeline.store` and
:mod:`streams.alerts.dispatcher`.
"""

from __future__ import annotations

import time
from typing import Any

from inference.serve.runner import Runner
from streams.alerts.dispatcher import IN_FLIGHT, Dispatcher
from streams.metrics import METRICS
from streams.pipeline.agents import App
from streams.pipeline.classify import classify_batch
from streams.pipeline.masking import Masker
from streams.pipeline.records import H_REASON, H_SOURCE, InRecord, OutRecord
from streams.pipeline.store import ClickHouseSink, decode_scored
from streams.settings import Settings
from streams.stats import WorkerStats


def build_app(
    settings: Settings,
    runner: Runner | None,
    sink: ClickHouseSink | None,
    stats: WorkerStats,
    dispatcher: Dispatcher | None = None,
) -> App:
    """The topology; the worker runs the agents in ``settings.agents`` (each needs its dependency)."""
    app = App(settings.kafka_group_id, settings, only=settings.agents)
    masker = Masker.from_settings(settings)  # None unless MOODWIRE_MASKING=on

    # -- topics -----------------------------------------------------------------------------------
    text_events = settings.topic_input  # producers' JSON events, key = source or entity
    scored_events = settings.topic_scored  # input + labels (streams.pipeline.events.scored_event)
    dead_letters = settings.topic_dlq  # original bytes + reason/detail/source headers
    alerts = settings.topic_alerts  # alert transitions (firing / resolved / severity), key = dedupe key

    # -- agents -----------------------------------------------------------------------------------
    @app.agent(text_events, in_flight=settings.classify_in_flight)
    async def classify(batch: list[InRecord]) -> dict[str, Any]:
        """Validate, ONE runner request for the valid events, mask, then scored + DLQ records (acked)."""
        assert runner is not None, "classify runs only in a worker that opened a runner"
        result = await classify_batch(batch, runner, masker)
        await app.send(dead_letters, result.dlq)
        await app.send(scored_events, result.scored)
        stats.add_classified(len(batch), len(result.scored), len(result.dlq))
        METRICS.events_consumed.inc(len(batch))
        METRICS.events_scored.inc(len(result.scored))
        for reason, n in result.reasons.items():
            METRICS.events_dlq.labels(reason).inc(n)
        if result.infer_s is not None:
            METRICS.inference_seconds.observe(result.infer_s)
        if result.mask_s is not None:
            METRICS.masking_seconds.observe(result.mask_s)
        return {"scored": len(result.scored), "dlq": len(result.dlq)}

    @app.agent(
        scored_events, batch_size=settings.store_batch_size, max_wait_ms=settings.store_batch_max_wait_ms
    )
    async def store(batch: list[InRecord]) -> dict[str, Any]:
        """ONE insert into ClickHouse per batch (ids deduplicate redeliveries)."""
        assert sink is not None, "store runs only in a worker that opened ClickHouse"
        taken_ms = time.time() * 1000
        decoded = decode_scored(batch)
        t0 = time.perf_counter()
        await sink.write(decoded.rows)
        METRICS.insert_seconds.observe(time.perf_counter() - t0)
        await app.send(dead_letters, [_undecodable(rec, why) for rec, why in decoded.bad])
        stats.add_stored(decoded.rows, decoded.times_ms, taken_ms)
        METRICS.events_stored.inc(len(decoded.rows))
        for _, why in decoded.bad:
            METRICS.events_dlq.labels(why.partition(":")[0]).inc()
        return {"rows": len(decoded.rows), "bad": len(decoded.bad)}

    if dispatcher is not None:

        @app.agent(alerts, in_flight=IN_FLIGHT)
        async def deliver(batch: list[InRecord]) -> dict[str, Any]:
            """POST each transition to its targets (signed); returns once each is delivered/rejected/expired."""
            return await dispatcher.handle(batch)

    return app


def _undecodable(rec: InRecord, reason: str) -> OutRecord:
    return OutRecord(rec.value, rec.key, ((H_REASON, reason.encode()), (H_SOURCE, rec.source.encode())))
