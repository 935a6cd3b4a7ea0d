"""Start-up and shutdown of the worker: open the runner and ClickHouse, create topics, run the agents.

A worker runs the agents named by MOODWIRE_WORKER_AGENTS (``moodwire worker --agents``) and
opens only what they need: the runner for ``classify``, ClickHouse for ``store`` and
``deliver`` (and then the alert evaluator and the dashboard's data routes).  So with the
embedded chDB, which one process may open, several ``--agents classify`` workers share the
scoring load beside one worker that stores.

Every dependency is waited for with backoff instead of failing: a worker
started before Triton, ClickHouse or the broker simply waits for them
(logging one line per attempt), so ``moodwire worker`` never dies because a
neighbour is slow to come up.  SIGINT/SIGTERM set the stop event; whatever
batch is unfinished then is not committed and is delivered again next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from inference.serve.runner import Runner
from streams.app import build_app
from streams.clickhouse import connect, migrate
from streams.context import Service, WorkerContext
from streams.db import Database
from streams.metrics import METRICS
from streams.pipeline.agents import backoff_s, sleep_unless
from streams.pipeline.store import ClickHouseSink
from streams.settings import Settings, redact_dsn
from streams.stats import WorkerStats

if TYPE_CHECKING:
    from streams.alerts.dispatcher import Dispatcher
    from streams.alerts.rules import Rules

log = logging.getLogger("moodwire.worker")
T = TypeVar("T")


def services(settings: Settings) -> list[Service]:
    """The side services this worker runs (each decides from ``settings`` whether it is enabled)."""
    from streams.web import web_service

    out: list[Service] = [web_service]
    if settings.alerts_enabled and needs_clickhouse(settings):
        from streams.alerts.service import alert_evaluator

        out.append(alert_evaluator(load_alert_rules(settings)))
    return out


def load_alert_rules(settings: Settings) -> Rules:
    """The alert rules (MOODWIRE_ALERTS_RULES_FILE or the bundled defaults); RulesError if invalid.

    Target URLs may refer to environment variables and secrets live in them,
    so this is where the process environment is handed to the rules.
    """
    import os

    from streams.alerts.rules import load_rules

    return load_rules(settings.alerts_rules_file, os.environ)


def needs_clickhouse(settings: Settings) -> bool:
    return bool(settings.agents & {"store", "deliver"})


def make_dispatcher(settings: Settings, db: Database | None) -> Dispatcher | None:
    if not settings.alerts_enabled or db is None or "deliver" not in settings.agents:
        return None
    import os

    from streams.alerts.dispatcher import Dispatcher
    from streams.alerts.webhooks import RetryPolicy

    policy = RetryPolicy(base_s=1.0, cap_s=settings.alerts_retry_max_backoff_s)
    return Dispatcher(load_alert_rules(settings), db, os.environ, policy)


def make_runner(settings: Settings) -> Runner:
    """One runner per language of MOODWIRE_LANGUAGES, behind a router on the event's lang."""
    from inference.serve.artifacts import model_name
    from inference.serve.routing import LanguageRouter

    languages = [lang.strip() for lang in settings.languages.split(",")]
    if settings.runner == "local":
        from inference.serve.runner import LocalRunner

        return LanguageRouter({lang: LocalRunner(name=model_name(lang)) for lang in languages})
    from inference.serve.triton_client import RetryPolicy, TritonRunner

    # Short attempts: an outage surfaces quickly as TritonUnavailable and the agent
    # runtime's own backoff takes over (pausing the stream instead of piling up calls).
    policy = RetryPolicy(timeout_s=30, attempts=2, ready_timeout_s=10)
    return LanguageRouter(
        {lang: TritonRunner(settings.triton_url, policy, language=lang) for lang in languages}
    )


async def wait_for(what: str, open_fn: Callable[[], T], stop: asyncio.Event, cap_s: float) -> T | None:
    """``open_fn()`` in a thread, retried with backoff until it works; None if stopped first."""
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return await asyncio.to_thread(open_fn)
        except Exception as exc:
            delay = backoff_s(attempt, cap_s, base_s=0.5)
            log.warning(
                "dependency=%s status=waiting attempt=%d backoff_s=%.1f error=%s: %s",
                what,
                attempt,
                delay,
                type(exc).__name__,
                " ".join(str(exc).split())[:300],
            )
            await sleep_unless(stop, delay)
    return None


async def ensure_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic_input, settings.topic_scored, settings.topic_dlq, settings.topic_alerts]
        missing = [t for t in wanted if t not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(t, num_partitions=settings.topic_partitions, replication_factor=1) for t in missing]
            )
            log.info("topics=created names=%s partitions=%d", ",".join(missing), settings.topic_partitions)
        if settings.alerts_enabled and settings.alerts_leader_topic not in existing:
            # One partition: whoever is assigned it is the alert leader (streams.alerts.service).
            await admin.create_topics(
                [NewTopic(settings.alerts_leader_topic, num_partitions=1, replication_factor=1)]
            )
            log.info("topics=created names=%s partitions=1", settings.alerts_leader_topic)
    finally:
        await admin.close()


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    cap = settings.retry_max_backoff_s
    stats = WorkerStats(settings.data_dir / "worker-stats.json")
    dsn = settings.effective_clickhouse_dsn
    agents = settings.agents

    def open_clickhouse() -> Any:
        client = connect(dsn)
        migrate(client)
        return client

    client = runner = None
    db: Database | None = None
    try:
        if needs_clickhouse(settings):
            client = await wait_for(f"clickhouse({redact_dsn(dsn)})", open_clickhouse, stop, cap)
            if client is None:
                return
        if "classify" in agents:
            runner = await wait_for(f"runner({settings.runner})", lambda: make_runner(settings), stop, cap)
            if runner is None:
                return
        await _until(stop, lambda: ensure_topics(settings), "kafka", cap)
        if stop.is_set():
            return
        db = Database(client) if client is not None else None
        sink = ClickHouseSink(db, settings.fault_store_file) if db is not None else None
        dispatcher = make_dispatcher(settings, db)
        app = build_app(settings, runner, sink, stats, dispatcher)
        METRICS.consumer_lag.source = app.positions
        ctx = WorkerContext(settings, db, app, runner, stats)
        log.info(
            "worker=ready agents=%s group=%s runner=%s clickhouse=%s bootstrap=%s batch_size=%d "
            "batch_max_wait_ms=%d",
            ",".join(a.name for a in app.agents if app.runs(a.name)),
            settings.kafka_group_id,
            settings.runner if runner is not None else "none",
            redact_dsn(dsn) if db is not None else "none",
            settings.kafka_bootstrap_servers,
            settings.batch_size,
            settings.batch_max_wait_ms,
        )
        stats.status = "running"
        writer = asyncio.create_task(_write_stats(stats, stop, db))
        side = [asyncio.create_task(_side(service, ctx, stop)) for service in services(settings)]
        try:
            await app.run(stop)
        finally:
            stats.status = "stopped"
            for task in (writer, *side):
                task.cancel()
            for task in (writer, *side):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stats.write()
            METRICS.consumer_lag.source = None
            if dispatcher is not None:
                await dispatcher.close()
    finally:
        if runner is not None:
            runner.close()
        # Through the lock: a store or stats call that a cancelled task left running in a thread
        # finishes first (closing chDB under a running query could hang the shutdown).
        if db is not None:
            db.close()
        elif client is not None:
            client.close()


async def _side(service: Service, ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Run a side service; if it crashes, log it and start it again (the agents go on regardless)."""
    name = getattr(service, "__name__", repr(service))
    attempt = 0
    while not stop.is_set():
        try:
            await service(ctx, stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            attempt += 1
            log.exception("service=%s status=crashed attempt=%d", name, attempt)
            await sleep_unless(stop, backoff_s(attempt, ctx.settings.retry_max_backoff_s))


async def _until(stop: asyncio.Event, action: Callable[[], Any], what: str, cap: float) -> None:
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            await action()
            return
        except Exception as exc:
            delay = backoff_s(attempt, cap, base_s=0.5)
            log.warning(
                "dependency=%s status=waiting attempt=%d error=%s: %s", what, attempt, type(exc).__name__, exc
            )
            await sleep_unless(stop, delay)


async def _write_stats(
    stats: WorkerStats, stop: asyncio.Event, db: Database | None = None, every_s: float = 1.0
) -> None:
    """The stats file once a second; every 10 s also where memory goes (for the soak bench)."""
    import sys

    n = 0
    while not stop.is_set():
        t0 = time.monotonic()
        if n % 10 == 0:
            stats.memory["py_blocks"] = sys.getallocatedblocks()
            if db is not None:
                with contextlib.suppress(Exception):
                    stats.memory["chdb_tracked"] = await db.run(
                        lambda c: int(
                            c.command("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
                        )
                    )
        n += 1
        with contextlib.suppress(OSError):
            stats.write()
        await sleep_unless(stop, max(0.0, every_s - (time.monotonic() - t0)))
