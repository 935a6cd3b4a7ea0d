"""End-to-end: no configured secret appears in any log line, stdout/stderr or HTTP error.

A real tansu broker, the worker as a subprocess (local runner, chDB), a real
webhook receiver on loopback.  The worker runs with an API token, a webhook
secret and SASL credentials (the embedded tansu broker speaks PLAINTEXT only,
so the SASL settings are loaded and held but not used on the wire); a second,
short worker run gets an http ClickHouse DSN with a password and an
unreachable host, so its retry lines print the DSN.  Every captured byte is then
searched for each secret.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pipeline_harness import Worker, make_stream, produce, settings_env, settings_from, wait_drained

from streams.alerts.receiver import Receiver
from streams.alerts.webhooks import new_secret
from streams.embedded.broker import free_port

pytestmark = pytest.mark.slow

API_TOKEN = "apitok-7Qz93kLmW2"
SASL_PASSWORD = "saslpw-Vb81xQ0rTe"
SSL_KEY_PASSWORD = "keypw-Hh32nDd9Ls"
CH_PASSWORD = "chpw-Zx6Pq0Lm4R"


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _alert_message(transition_id: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    payload = {"type": "alert.firing", "timestamp": now, "data": {"dedupe_key": "sec-test", "rule_id": "r"}}
    return json.dumps({"transition_id": transition_id, "targets": ["local"], "payload": payload}).encode()


def _produce_to(settings, topic: str, values: list[bytes]) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(**settings.kafka_client_kwargs())
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(topic, v)
        finally:
            await producer.stop()

    asyncio.run(go())


def test_no_secret_in_any_log_or_error(broker, tmp_path: Path, capfd) -> None:
    webhook_secret = new_secret()
    secrets = {
        "api token": API_TOKEN,
        "webhook secret": webhook_secret,
        "webhook key (base64 body)": webhook_secret.removeprefix("whsec_"),
        "sasl password": SASL_PASSWORD,
        "ssl key password": SSL_KEY_PASSWORD,
        "clickhouse password": CH_PASSWORD,
    }
    logs: dict[str, str] = {}
    with Receiver(webhook_secret) as rx:
        env = settings_env(
            broker.bootstrap_servers,
            tmp_path / "data",
            "sec",
            MOODWIRE_API_TOKEN=API_TOKEN,
            MOODWIRE_WEBHOOK_SECRET=webhook_secret,
            MOODWIRE_WEBHOOK_URL=rx.url,
            MOODWIRE_TOPIC_ALERTS="alerts-sec",
            MOODWIRE_ALERTS_LEADER_TOPIC="alerts-leader-sec",
            MOODWIRE_KAFKA_SASL_MECHANISM="PLAIN",
            MOODWIRE_KAFKA_SASL_USERNAME="moodwire",
            MOODWIRE_KAFKA_SASL_PASSWORD=SASL_PASSWORD,
            MOODWIRE_KAFKA_SSL_KEY_PASSWORD=SSL_KEY_PASSWORD,
        )
        settings = settings_from(env)
        assert settings.api_token is not None and SASL_PASSWORD not in repr(settings)
        worker = Worker(env, tmp_path / "worker.log").start()
        try:
            worker.wait_running()
            stream = make_stream(n_total=120, n_bad=50, prefix="sec")
            assert produce(settings, stream.lines) == 120
            wait_drained(settings, worker)
            base = f"http://127.0.0.1:{settings.web_port}/api/v1"
            status, body = _get(f"{base}/summary", API_TOKEN)
            assert status == 200, body
            for wrong in (None, API_TOKEN[:-1], API_TOKEN + "x", "tök"):
                status, body = _get(f"{base}/summary", wrong)
                assert status == 401 and API_TOKEN.encode() not in body
            status, body = _get(f"{base}/summary?window=bogus&token={API_TOKEN[:4]}", API_TOKEN)
            assert status == 400 and API_TOKEN.encode() not in body
            # a webhook delivery signed with the secret, and one refused (unknown target)
            _produce_to(settings, "alerts-sec", [_alert_message("sec-tr-1")])
            deadline = time.monotonic() + 60
            while not rx.deliveries() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert [r.verified for r in rx.deliveries()] == [True]
            assert worker.stop() == 0
        finally:
            worker.stop()
        logs["worker (token, webhook, sasl)"] = worker.log_text()

    # a ClickHouse server DSN with a password, unreachable: the worker retries and logs the DSN
    dsn = f"http://moodwire:{CH_PASSWORD}@127.0.0.1:{free_port()}/moodwire"
    env2 = settings_env(broker.bootstrap_servers, tmp_path / "data2", "sec2", MOODWIRE_CLICKHOUSE_DSN=dsn)
    worker2 = Worker(env2, tmp_path / "worker2.log").start()
    try:
        deadline = time.monotonic() + 30
        while "clickhouse" not in worker2.log_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # at least one retry line
    finally:
        worker2.stop()
    logs["worker (clickhouse dsn)"] = worker2.log_text()
    assert "moodwire:***@127.0.0.1" in logs["worker (clickhouse dsn)"]

    captured = capfd.readouterr()
    logs["test stdout"], logs["test stderr"] = captured.out, captured.err
    assert "webhook=delivered" in logs["worker (token, webhook, sasl)"]
    assert "auth=bearer scope=read-only" in logs["worker (token, webhook, sasl)"]
    leaks = [(what, where) for what, s in secrets.items() for where, text in logs.items() if s in text]
    assert leaks == [], f"secrets in logs: {leaks}"
    print(
        f"\nno-secrets: searched {sum(len(t) for t in logs.values())} chars of logs for {len(secrets)} secrets"
    )
