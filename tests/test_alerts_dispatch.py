"""Evaluator round + dispatcher with real parts (tansu broker, chDB, loopback receiver), no worker process.

Covers the crash windows of the transition protocol: a transition recorded but not marked published is
re-produced with the SAME id, and the dispatcher's delivered pairs make the receiver see it once; a
firing alert is never fired again; 400 is final and recorded; a missing secret is refused without
leaking anything.  Also ``moodwire alerts test TARGET``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pipeline_harness import ROOT, read_topic, settings_env, settings_from

from streams.alerts import store
from streams.alerts.dispatcher import IN_FLIGHT, Dispatcher
from streams.alerts.receiver import Receiver
from streams.alerts.rules import load_rules
from streams.alerts.service import Evaluator
from streams.alerts.webhooks import RetryPolicy, new_secret
from streams.clickhouse import connect, insert_scored, migrate
from streams.context import WorkerContext
from streams.db import Database
from streams.embedded.broker import EmbeddedBroker, free_port
from streams.pipeline.agents import App
from streams.pipeline.records import InRecord, OutRecord

RULES = """\
targets:
  rx: {url: "${RX_URL}", secret_env: RX_SECRET, max_age: 1m}
  strict: {url: "${RX_URL}", secret_env: RX_SECRET}
  nosecret: {url: "${RX_URL}", secret_env: RX_MISSING_SECRET}
rules:
  - id: surge
    scope: {dim: topic}
    window: 5m
    min_volume: 10
    conditions: {negative_share: 0.5}
    targets: [rx]
"""


def ev(i: int, ts: datetime, sentiment: str) -> dict:
    return {
        "id": f"d-{i}",
        "text": "t",
        "ts": ts,
        "sentiment": sentiment,
        "topic": "tech",
        "sentiment_scores": {"negative": 1.0},
        "topic_scores": {"tech": 1.0},
        "model_versions": {},
        "scored_at": ts,
    }


@pytest.fixture
def parts(tmp_path: Path):
    secret = new_secret()
    with EmbeddedBroker(port=free_port()) as broker, Receiver(secret) as rx:
        env = settings_env(
            broker.bootstrap_servers, tmp_path / "data", "disp", MOODWIRE_TOPIC_ALERTS="alerts-disp"
        )
        settings = settings_from(env)
        (tmp_path / "rules.yaml").write_text(RULES)
        rules = load_rules(tmp_path / "rules.yaml", {"RX_URL": rx.url, "RX_SECRET": secret})
        client = connect(settings.effective_clickhouse_dsn)
        migrate(client)
        db = Database(client)
        try:
            yield settings, rules, db, rx, secret, tmp_path
        finally:
            db.close()


def as_in(records) -> list[InRecord]:
    return [InRecord.from_consumer(r) for r in records]


def test_republished_transition_is_delivered_once_and_firing_never_refires(parts):
    settings, rules, db, rx, secret, _ = parts
    now = datetime.now(UTC)
    insert_scored(
        db.client, [ev(i, now - timedelta(seconds=i), "negative" if i % 5 else "neutral") for i in range(20)]
    )

    async def scenario():
        app = App("t", settings)
        stop = asyncio.Event()
        runner = asyncio.create_task(app.run(stop))
        await app.ready.wait()
        ev_ = Evaluator(WorkerContext(settings, db, app, None, None), rules)  # type: ignore[arg-type]
        try:
            first = await ev_.round()
            assert [s.transition for s in first] == ["firing"]
            # crash between "produce" and "mark published": the row says unpublished again
            state = (await db.run(store.load_states))[("surge", "tech")]
            await db.run(
                store.write_states,
                [replace(state, published=False, transition="firing", transition_id=first[0].transition_id)],
            )
            again = await ev_.round(now + timedelta(seconds=15))
            assert [s.transition_id for s in again] == [first[0].transition_id]  # same id, re-produced
            assert await ev_.round(now + timedelta(seconds=30)) == []  # firing: never fired again
            return first[0].transition_id
        finally:
            stop.set()
            await runner

    tid = asyncio.run(scenario())
    records = read_topic(settings, settings.topic_alerts)
    assert len(records) == 2 and {json.loads(r.value)["transition_id"] for r in records} == {tid}
    assert records[0].key == b"surge|topic=tech"

    dispatcher = Dispatcher(rules, db, {"RX_SECRET": secret}, RetryPolicy(0.1, 0.5))

    async def dispatch(batch):
        try:
            return await dispatcher.handle(batch)
        finally:
            await dispatcher.close()

    out = asyncio.run(dispatch(as_in(records)))  # the duplicate in one batch
    assert out == {"messages": 2, "skipped": 1, "delivered": 1}
    # re-consumed after a crash before commit: a new process, only alert_deliveries remembers
    dispatcher = Dispatcher(rules, db, {"RX_SECRET": secret}, RetryPolicy(0.1, 0.5))
    out = asyncio.run(dispatch(as_in(records)))
    assert out == {"messages": 2, "skipped": 2}
    (got,) = rx.deliveries()
    assert (
        got.msg_id == tid and got.json()["type"] == "alert.firing" and got.json()["data"]["value"] == "tech"
    )


def test_rejections_are_final_and_recorded(parts, caplog):
    _, rules, db, rx, secret, _ = parts
    payload = {
        "type": "alert.firing",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"dedupe_key": "k"},
    }

    def record(tid: str, targets: list[str]) -> InRecord:
        value = {"transition_id": tid, "targets": targets, "payload": payload}
        return InRecord("alerts", 0, 0, 0, b"k", json.dumps(value).encode())

    dispatcher = Dispatcher(rules, db, {"RX_SECRET": secret}, RetryPolicy(0.1, 0.5))
    rx.responder = lambda r: 400

    async def dispatch(batch):
        try:
            return await dispatcher.handle(batch)
        finally:
            await dispatcher.close()

    with caplog.at_level(logging.INFO):
        out = asyncio.run(
            dispatch([record("m1", ["strict", "nosecret"]), InRecord("alerts", 0, 1, 0, None, b"{bad")])
        )
    assert out == {"messages": 1, "skipped": 0, "rejected": 2}
    assert len(rx.received) == 1 and rx.received[0].status == 400  # one attempt, no retry
    assert "status=400" in caplog.text and "RX_MISSING_SECRET" in caplog.text and "bad_record" in caplog.text
    assert secret not in caplog.text
    dispatcher = Dispatcher(rules, db, {"RX_SECRET": secret}, RetryPolicy(0.1, 0.5))  # a restart
    assert asyncio.run(dispatch([record("m1", ["strict", "nosecret"])])) == {"messages": 1, "skipped": 2}


def test_a_target_that_is_down_does_not_hold_up_another(parts):
    """The deliver agent's batches are in flight at once: a target answering 503 (retried up to its
    max age) does not delay a later alert to another target."""
    settings, _, db, rx, secret, tmp_path = parts
    with Receiver(secret) as down:
        down.responder = lambda r: 503
        (tmp_path / "two.yaml").write_text(
            RULES.replace(
                "targets:\n",
                "targets:\n  down: {url: '${DOWN_URL}', secret_env: RX_SECRET, max_age: 1m}\n",
                1,
            )
        )
        two = load_rules(tmp_path / "two.yaml", {"RX_URL": rx.url, "DOWN_URL": down.url, "RX_SECRET": secret})
        payload = {
            "type": "alert.firing",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"dedupe_key": "k"},
        }

        def record(tid: str, targets: list[str]) -> OutRecord:
            value = {"transition_id": tid, "targets": targets, "payload": payload}
            return OutRecord(json.dumps(value).encode(), b"k")

        async def wait_until(cond, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if cond():
                    return True
                await asyncio.sleep(0.05)
            return False

        async def scenario() -> float:
            dispatcher = Dispatcher(two, db, {"RX_SECRET": secret}, RetryPolicy(0.2, 1.0))
            app = App("t", settings)
            app.agent(settings.topic_alerts, in_flight=IN_FLIGHT)(dispatcher.handle)
            stop = asyncio.Event()
            runner = asyncio.create_task(app.run(stop))
            try:
                await app.ready.wait()
                await app.send(settings.topic_alerts, [record("m-down", ["down"])])
                assert await wait_until(lambda: len(down.received) >= 1, 30), "the first alert was not tried"
                t0 = time.monotonic()
                await app.send(settings.topic_alerts, [record("m-live", ["rx"])])
                assert await wait_until(lambda: rx.deliveries(), 10), (
                    "the live target waited for the dead one"
                )
                took = time.monotonic() - t0
                # ... while the first one still has no outcome: it is being retried, not given up
                assert await db.run(store.finished_deliveries, ["m-down"]) == set()
                return took
            finally:
                stop.set()
                await runner
                await dispatcher.close()

        took = asyncio.run(scenario())
        assert took < 5, took
        assert [d.msg_id for d in rx.deliveries()] == ["m-live"]
        assert {r.msg_id for r in down.received} == {"m-down"}


def test_cli_alerts_test_sends_a_signed_delivery(tmp_path: Path):
    secret = new_secret()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with Receiver(secret) as rx:
        env = {"RX_URL": rx.url, "RX_SECRET": secret, "MOODWIRE_ALERTS_RULES_FILE": str(rules)}

        def cli(*args):
            return subprocess.run(
                [sys.executable, "-m", "streams.cli.main", "alerts", "test", *args],
                cwd=ROOT,
                env={**__import__("os").environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )

        ok = cli("rx")
        assert ok.returncode == 0, ok.stderr
        (got,) = rx.deliveries("alert.test")
        assert got.verified and got.msg_id in ok.stdout
        rx.responder = lambda r: 400
        bad = cli("rx")
        assert bad.returncode == 1 and "rejected: status 400" in bad.stderr
        missing = cli("nope")
        assert missing.returncode == 1 and "no target 'nope'" in missing.stderr
        nosecret = cli("nosecret")
        assert nosecret.returncode == 1 and "RX_MISSING_SECRET" in nosecret.stderr


def test_alerts_of_a_removed_or_disabled_rule_resolve(parts):
    """A firing alert whose rule left the rules file resolves at the next round, once."""
    settings, rules, db, _, _, tmp_path = parts
    now = datetime.now(UTC)
    insert_scored(db.client, [ev(i, now - timedelta(seconds=i), "negative") for i in range(20)])
    (tmp_path / "other.yaml").write_text(RULES.replace("id: surge", "id: other"))
    other_rules = load_rules(tmp_path / "other.yaml", {"RX_URL": "http://127.0.0.1:1/x", "RX_SECRET": "x"})

    async def scenario():
        app = App("t", settings)
        stop = asyncio.Event()
        runner = asyncio.create_task(app.run(stop))
        await app.ready.wait()
        ctx = WorkerContext(settings, db, app, None, None)  # type: ignore[arg-type]
        try:
            fired = await Evaluator(ctx, rules).round(now)
            assert [(s.rule_id, s.transition) for s in fired] == [("surge", "firing")]
            # the rules file now has "other" instead of "surge" (which would still be active)
            later = await Evaluator(ctx, other_rules).round(now + timedelta(seconds=15))
            retired = [s for s in later if s.rule_id == "surge"]
            assert [(s.transition, s.state, s.seq) for s in retired] == [("resolved", "resolved", 2)]
            assert [
                s.transition for s in await Evaluator(ctx, other_rules).round(now + timedelta(seconds=30))
            ] == []
        finally:
            stop.set()
            await runner

    asyncio.run(scenario())
    states = db.call(store.load_states)
    assert states[("surge", "tech")].state == "resolved"
