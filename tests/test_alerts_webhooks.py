"""Webhook signing (checked by the independent ``standardwebhooks`` library), URL rules, and delivery
against a real aiohttp receiver on loopback: retries keep the webhook-id, 4xx is final, outages are
waited out, redirects to another host are not followed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import ssl
import subprocess
import time

import aiohttp
import aiohttp.web
import pytest
from standardwebhooks.webhooks import Webhook

from streams.alerts.receiver import Receiver
from streams.alerts.webhooks import (
    Delivery,
    RetryPolicy,
    TargetUrlError,
    TokenBucket,
    address_allowed,
    deliver,
    new_secret,
    parse_allow_private,
    payload_body,
    sign,
    signed_headers,
    validate_target_url,
    verify,
)
from streams.embedded.broker import free_port

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


# -- SSRF: addresses are checked at delivery time, on what the name resolves to -------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # CGNAT
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:169.254.169.254", False),
        ("::ffff:93.184.216.34", True),
    ],
)
def test_public_address_classification(address, public):
    assert address_allowed(address, ()) is public


def _fake_dns(*answers: list[str]):
    """A stand-in for DNS (no DNS server runs here): successive lookups get successive answers."""
    queue = list(answers)
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def _deliver_dns(d: Delivery, resolve):
    async with aiohttp.ClientSession() as session:
        return await deliver(session, d, FAST, None, resolve)


def _named(rx: Receiver, allow=(), path: str = "/hooks") -> Delivery:
    d = _delivery(f"http://hooks.test:{rx.port}{path}")
    return dataclasses.replace(d, allow_networks=parse_allow_private(allow) if allow else ())


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.0.0.7", "::1", "::ffff:127.0.0.1"])
def test_name_resolving_to_a_private_address_is_refused_at_delivery(address, caplog):
    with Receiver(SECRET) as rx, caplog.at_level(logging.WARNING, logger="moodwire.webhooks"):
        out = asyncio.run(_deliver_dns(_named(rx), _fake_dns([address])))
    assert (out.outcome, out.attempts) == ("rejected", 1)
    assert "address refused" in out.detail and address in out.detail
    assert rx.received == []
    assert "error=address_refused" in caplog.text and SECRET not in caplog.text


def test_ip_literal_targets_are_checked_without_dns():
    dns = _fake_dns(["93.184.216.34"])
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/", "http://[fd00::1]/"):
        out = asyncio.run(_deliver_dns(_delivery(url), dns))
        assert out.outcome == "rejected" and "address refused" in out.detail
    assert dns.calls == []  # type: ignore[attr-defined]


def test_any_private_answer_refuses_the_name():
    with Receiver(SECRET) as rx:
        out = asyncio.run(_deliver_dns(_named(rx), _fake_dns(["93.184.216.34", "10.0.0.1"])))
    assert out.outcome == "rejected" and "10.0.0.1" in out.detail


def test_target_that_opts_in_is_delivered_to_the_checked_address():
    with Receiver(SECRET) as rx:
        out = asyncio.run(_deliver_dns(_named(rx, allow=True), _fake_dns(["127.0.0.1"])))
        assert out.outcome == "delivered"
        assert rx.received[0].headers["host"] == f"hooks.test:{rx.port}"  # the name, not the address
        out = asyncio.run(_deliver_dns(_named(rx, allow=["127.0.0.0/8"]), _fake_dns(["127.0.0.1"])))
        assert out.outcome == "delivered"
        # allowed networks are exact: 127/8 does not open 10/8
        out = asyncio.run(_deliver_dns(_named(rx, allow=["127.0.0.0/8"]), _fake_dns(["10.0.0.1"])))
        assert out.outcome == "rejected"
    assert len(rx.deliveries()) == 2 and all(r.verified for r in rx.received)


def test_loopback_url_reaches_loopback_only():
    """A URL naming loopback literally (the demo's receiver) may reach loopback, nothing else."""
    out = asyncio.run(_deliver_dns(_delivery("http://localhost:9/x"), _fake_dns(["10.0.0.1"])))
    assert out.outcome == "rejected" and "10.0.0.1" in out.detail


def test_redirect_to_a_private_address_is_refused():
    with Receiver(SECRET) as rx:
        # another origin (the metadata service): never followed
        rx.responder = lambda r: (307, {"Location": "http://169.254.169.254/latest/meta-data"})
        out = asyncio.run(_deliver_dns(_named(rx, allow=["127.0.0.0/8"]), _fake_dns(["127.0.0.1"])))
        assert out.outcome == "rejected" and out.status == 307
        # the same origin, but the name now resolves elsewhere (DNS rebinding between hops)
        rx.responder = lambda r: (308, {"Location": "/moved"}) if r.path == "/hooks" else 200
        dns = _fake_dns(["127.0.0.1"], ["10.0.0.1"])
        out = asyncio.run(_deliver_dns(_named(rx, allow=["127.0.0.0/8"]), dns))
        assert out.outcome == "rejected" and "10.0.0.1" in out.detail
        assert [r.path for r in rx.received] == ["/hooks", "/hooks"]
        assert dns.calls == ["hooks.test", "hooks.test"]  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary for a test certificate")
def test_https_to_the_checked_address_still_verifies_the_name(tmp_path):
    """Connecting to the pinned address keeps TLS honest: SNI and the certificate check use the name."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    seen: list[str] = []

    async def scenario(name: str) -> str:
        async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
            seen.append(request.host)
            return aiohttp.web.Response(text="ok")

        app = aiohttp.web.Application()
        app.router.add_post("/hooks", handle)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx).start()
        try:
            d = dataclasses.replace(
                _delivery(f"https://{name}:{port}/hooks", max_age_s=1),
                allow_networks=parse_allow_private(["127.0.0.0/8"]),
            )
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
                out = await deliver(session, d, FAST, None, _fake_dns(["127.0.0.1"]))
            return out.outcome
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario("hooks.test")) == "delivered"
    assert seen and seen[0].startswith("hooks.test:")
    # the same address under a name the certificate does not carry: the TLS check fails
    assert asyncio.run(scenario("other.test")) == "expired"
