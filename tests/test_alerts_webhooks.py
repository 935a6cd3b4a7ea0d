"""Webhook signing (checked by the independent ``standardwebhooks`` library), URL rules, and delivery
against a real aiohttp receiver on loopback: retries keep the webhook-id, 4xx is final, outages are
waited out, redirects to another host are not followed."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from streams.alerts.receiver import Receiver
from streams.alerts.webhooks import (
    Delivery,
    RetryPolicy,
    TargetUrlError,
    TokenBucket,
    deliver,
    new_secret,
    payload_body,
    sign,
    signed_headers,
    validate_target_url,
    verify,
)
from streams.broker import free_port

SECRET = new_secret()
FAST = RetryPolicy(base_s=0.2, cap_s=1.0)


def test_signature_verifies_with_standardwebhooks():
    body = payload_body(
        {"type": "alert.firing", "timestamp": "2026-01-01T00:00:00.000Z", "data": {"x": 1}}, "standard"
    )
    headers = signed_headers(SECRET, "msg_abc", body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, body + b" ")
    assert not verify(new_secret(), headers, body)
    with pytest.raises(Exception):  # noqa: B017 - the library's own verification error
        Webhook(new_secret()).verify(body, headers)
    # The spec's test vector (Standard Webhooks README)
    vector = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert vector == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_slack_body_has_text_and_is_signed():
    payload = {"type": "alert.firing", "timestamp": "t", "data": {"rule_id": "r", "dim": "topic", "value": "tech",
               "severity": "warning", "negative_share": 0.72, "volume": 120, "window": "5m"}}  # fmt: skip
    body = payload_body(payload, "slack")
    doc = json.loads(body)
    assert "topic=tech" in doc["text"] and "72%" in doc["text"] and doc["data"] == payload["data"]
    assert Webhook(SECRET).verify(body, signed_headers(SECRET, "m", body))


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://hooks.example.com/x", False, True),
        ("http://127.0.0.1:8080/x", False, True),
        ("http://[::1]:8080/x", False, True),
        ("http://localhost/x", False, True),
        ("http://hooks.example.com/x", False, False),
        ("http://hooks.example.com/x", True, True),
        ("ftp://hooks.example.com/x", True, False),
        ("https://user:pw@hooks.example.com/x", False, False),
        ("https:///nohost", False, False),
        ("https://h.example:99999/x", False, False),
    ],
)
def test_target_url_validation(url, allow_http, ok):
    if ok:
        assert validate_target_url(url, allow_http) == url
    else:
        with pytest.raises(TargetUrlError):
            validate_target_url(url, allow_http)


def _delivery(url: str, max_age_s: float = 60, msg_id: str = "msg_test") -> Delivery:
    body = payload_body({"type": "alert.firing", "timestamp": "t", "data": {}}, "standard")
    return Delivery("t", url, SECRET, msg_id, body, time.time(), max_age_s, timeout_s=2)


async def _deliver(d: Delivery, policy: RetryPolicy = FAST, bucket: TokenBucket | None = None):
    async with aiohttp.ClientSession() as session:
        return await deliver(session, d, policy, bucket)


def test_400_is_not_retried_and_is_logged(caplog):
    with Receiver(SECRET) as rx:
        rx.responder = lambda r: 400
        with caplog.at_level(logging.WARNING, logger="moodwire.webhooks"):
            out = asyncio.run(_deliver(_delivery(rx.url)))
    assert (out.outcome, out.attempts, out.status) == ("rejected", 1, 400)
    assert len(rx.received) == 1
    assert "webhook=rejected" in caplog.text and "status=400" in caplog.text
    assert SECRET not in caplog.text


def test_429_and_5xx_are_retried_with_the_same_id():
    answers = iter([429, 503, 408, 500, 200])
    with Receiver(SECRET) as rx:
        rx.responder = lambda r: next(answers)
        out = asyncio.run(_deliver(_delivery(rx.url)))
    assert (out.outcome, out.attempts) == ("delivered", 5)
    assert {r.msg_id for r in rx.received} == {"msg_test"} and all(r.verified for r in rx.received)
    assert len(rx.deliveries()) == 1


def test_gives_up_at_max_age():
    with Receiver(SECRET) as rx:
        rx.responder = lambda r: 503
        t0 = time.monotonic()
        out = asyncio.run(_deliver(_delivery(rx.url, max_age_s=2)))
    assert out.outcome == "expired" and out.status == 503 and out.attempts >= 2
    assert time.monotonic() - t0 < 4


def test_redirect_to_another_host_is_not_followed():
    with Receiver(SECRET, host="127.0.0.2") as other, Receiver(SECRET) as rx:
        rx.responder = lambda r: (307, {"Location": other.url})
        out = asyncio.run(_deliver(_delivery(rx.url)))
        assert out.outcome == "rejected" and out.status == 307 and out.attempts == 1
        assert other.received == []
        # the same origin is followed
        rx.responder = lambda r: (308, {"Location": "/moved"}) if r.path == "/hooks" else 200
        out = asyncio.run(_deliver(_delivery(rx.url)))
        assert out.outcome == "delivered"
        assert [r.path for r in rx.received[-2:]] == ["/hooks", "/moved"]


def test_rate_limit_spaces_deliveries():
    bucket = TokenBucket(rate_per_minute=120, burst=1)  # one every 0.5 s

    async def three(url: str) -> float:
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                await deliver(session, _delivery(url, msg_id=f"m{i}"), FAST, bucket)
        return time.monotonic() - t0

    with Receiver(SECRET) as rx:
        elapsed = asyncio.run(three(rx.url))
    assert len(rx.deliveries()) == 3 and elapsed >= 0.95


def test_receiver_down_for_30s_then_delivered_once():
    """503 twice, then nothing listening for the rest of 30 s, then back: one delivery, one webhook-id."""
    port = free_port()
    seen: list = []
    first = Receiver(SECRET, port=port).start()
    first.responder = lambda r: 503
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)

    async def scenario():
        task = asyncio.create_task(_deliver(_delivery(first.url, max_age_s=300, msg_id="msg_outage"), policy))
        while len(first.received) < 2:
            await asyncio.sleep(0.05)
        down_at = time.monotonic()
        await asyncio.to_thread(first.stop)
        seen.extend(first.received)
        await asyncio.sleep(30 - (time.monotonic() - down_at))
        second = await asyncio.to_thread(Receiver(SECRET, port=port).start)
        try:
            out = await asyncio.wait_for(task, 30)
        finally:
            await asyncio.to_thread(second.stop)
        return out, second, time.monotonic() - down_at

    out, second, elapsed = asyncio.run(scenario())
    assert out.outcome == "delivered" and elapsed >= 30
    assert len(second.deliveries()) == 1
    assert {r.msg_id for r in seen + second.received} == {"msg_outage"}
    assert out.attempts > len(seen) + 1  # connection-refused attempts in between
