"""Signed webhook delivery per the Standard Webhooks spec: sign, validate URLs, POST with retries.

Signature: ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``
with the secret given as ``whsec_<base64>``.  One :class:`Delivery` keeps its
``webhook-id`` on every attempt (receivers de-duplicate on it); the timestamp
is re-stamped per attempt, as the spec's replay window expects.  Retries use
capped exponential backoff with full jitter until ``max_age`` has passed
since the alert transition; 4xx answers other than 408/429 are final.
Redirects are not followed automatically: only a redirect to the same
scheme + host + port is followed (up to 3).  Secrets never reach a log line.
SSRF: before every request (each redirect hop too) the host is resolved, every
address must be public unless the target allows its network, and the request
then connects to that checked address (a second DNS answer cannot rebind it);
a refused address is a final ``rejected`` outcome (docs/security.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

log = logging.getLogger("moodwire.webhooks")

RETRYABLE_4XX = frozenset({408, 429})
MAX_REDIRECTS = 3


class TargetUrlError(ValueError):
    """A target URL that moodwire refuses to deliver to."""


class AddressRefused(Exception):
    """A webhook host resolved to an address the target may not reach (SSRF guard): final."""


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ANY_NETWORK: tuple[IPNetwork, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
Resolve = Callable[[str, int], Awaitable[list[str]]]


def is_public_address(ip: IPAddress) -> bool:
    """False for loopback, private, link-local, CGNAT, multicast, unspecified and reserved addresses."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local or ip.is_loopback
    )


def address_allowed(address: str, allow: Sequence[IPNetwork]) -> bool:
    """May a delivery connect to ``address``?  Public addresses always; others only inside ``allow``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if is_public_address(ip):
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in allow)


def parse_allow_private(value: bool | Sequence[str] | None) -> tuple[IPNetwork, ...]:
    """A target's ``allow_private``: true (every network), false/None (none) or a list of CIDRs."""
    if value is None or value is False:
        return ()
    if value is True:
        return ANY_NETWORK
    return tuple(ipaddress.ip_network(str(v), strict=False) for v in value)


def implicit_allow(url: str) -> tuple[IPNetwork, ...]:
    """A URL that names loopback literally (localhost, 127.x, ::1) may reach loopback, and only that."""
    host = urlsplit(url).hostname or ""
    return LOOPBACK_NETWORKS if is_loopback_host(host) else ()


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def checked_address(host: str, port: int, allow: Sequence[IPNetwork], resolve: Resolve) -> str:
    """One address of ``host`` to connect to; AddressRefused if any of its addresses is not allowed.

    Every address must pass (not just the one used), so a name that mixes a public and a
    private answer is refused rather than left to chance.
    """
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = await resolve(host, port)
    if not addresses:
        raise OSError(f"{host} did not resolve")
    refused = [a for a in addresses if not address_allowed(a, allow)]
    if refused:
        raise AddressRefused(
            f"{host} resolves to non-public address {refused[0]} (set allow_private on the target to allow)"
        )
    return addresses[0]


class SecretError(ValueError):
    """A webhook secret that is missing or not ``whsec_<base64>``."""


def decode_secret(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise SecretError("the webhook secret is not whsec_<base64>") from None
    if len(key) < 16:
        raise SecretError("the webhook secret is shorter than 16 bytes")
    return key


def new_secret() -> str:
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = int(now if now is not None else time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "content-type": "application/json",
        "user-agent": "moodwire-webhooks/1",
    }


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """Receiver side: is this delivery signed with ``secret`` and recent?  (Constant-time compare.)"""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts = h["webhook-id"], int(h["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body).encode()
    return any(hmac.compare_digest(expected, sig.encode()) for sig in h.get("webhook-signature", "").split())


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_target_url(url: str, allow_http: bool = False) -> str:
    """``url`` if moodwire may POST to it: https, or http for loopback / ``allow_http``; no credentials."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise TargetUrlError(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise TargetUrlError(f"{url!r}: scheme must be https (or http for loopback)")
    if not parts.hostname:
        raise TargetUrlError(f"{url!r} has no host")
    if parts.username or parts.password:
        raise TargetUrlError("credentials in the URL are refused: the signature authenticates deliveries")
    if parts.scheme == "http" and not (allow_http or is_loopback_host(parts.hostname)):
        raise TargetUrlError(
            f"plain http to {parts.hostname} is refused: use https, or set allow_http: true on the target"
        )
    return url


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)


class TokenBucket:
    """Per-target rate limit: ``rate_per_minute`` deliveries, bursts up to ``burst``."""

    def __init__(self, rate_per_minute: float, burst: float | None = None) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, min(rate_per_minute, 10.0))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [base/2, min(cap, base * 2^(attempt-1))]."""
        top = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return random.uniform(min(top, self.base_s / 2), top)


@dataclass(frozen=True)
class Delivery:
    """One message to one target: same ``msg_id`` and body on every attempt."""

    target: str
    url: str
    secret: str
    msg_id: str
    body: bytes
    created_at: float  # epoch seconds of the transition; max age counts from here
    max_age_s: float
    timeout_s: float = 10.0
    # Non-public networks this target may reach, besides loopback for a URL that names it (SSRF guard).
    allow_networks: tuple[IPNetwork, ...] = ()


@dataclass
class Outcome:
    outcome: str  # delivered / rejected / expired
    attempts: int
    status: int | None
    detail: str = ""


Sleep = Callable[[float], Awaitable[None]]


async def post_once(
    session: aiohttp.ClientSession, d: Delivery, resolve: Resolve = system_resolve
) -> tuple[int, str]:
    """One signed POST; follows same-origin redirects only.  Returns (status, detail).

    Each hop connects to an address checked by :func:`checked_address` (raises AddressRefused);
    the original host name still goes in ``Host`` and in TLS (SNI and certificate check).
    """
    url = d.url
    allow = (*d.allow_networks, *implicit_allow(d.url))
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await checked_address(host, port, allow, resolve)
        pinned = address if ":" not in address else f"[{address}]"
        headers = signed_headers(d.secret, d.msg_id, d.body)
        headers["host"] = parts.netloc.rpartition("@")[2]
        async with session.post(
            urlunsplit(parts._replace(netloc=f"{pinned}:{port}")),
            data=d.body,
            headers=headers,
            allow_redirects=False,
            server_hostname=host if parts.scheme == "https" else None,
            timeout=aiohttp.ClientTimeout(total=d.timeout_s),
        ) as resp:
            await resp.read()
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location", "")
                nxt = urljoin(url, location)
                if not location or _origin(nxt) != _origin(d.url):
                    return resp.status, f"redirect to another origin not followed: {_origin(nxt)[1]}"
                url = nxt
                continue
            return resp.status, ""
    return 310, "too many redirects"


async def deliver(
    session: aiohttp.ClientSession,
    d: Delivery,
    policy: RetryPolicy | None = None,
    bucket: TokenBucket | None = None,
    resolve: Resolve = system_resolve,
) -> Outcome:
    """Deliver ``d`` until a 2xx, a final 4xx, or ``max_age``; never raises for HTTP/network errors."""
    policy = policy or RetryPolicy()
    attempt = 0
    last_status: int | None = None
    detail = ""
    while True:
        age = time.time() - d.created_at
        if age > d.max_age_s:
            log.warning(
                "webhook=expired target=%s webhook_id=%s attempts=%d age_s=%.0f last_status=%s detail=%s",
                d.target,
                d.msg_id,
                attempt,
                age,
                last_status,
                detail,
            )
            return Outcome("expired", attempt, last_status, detail)
        if bucket is not None:
            await bucket.take()
        attempt += 1
        t0 = time.perf_counter()
        try:
            status, detail = await post_once(session, d, resolve)
        except AddressRefused as exc:
            log.warning(
                "webhook=rejected target=%s webhook_id=%s attempts=%d error=address_refused detail=%s",
                d.target,
                d.msg_id,
                attempt,
                exc,
            )
            return Outcome("rejected", attempt, None, f"address refused: {exc}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status, detail = 0, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        ms = (time.perf_counter() - t0) * 1000
        last_status = status or last_status
        if 200 <= status < 300:
            log.info(
                "webhook=delivered target=%s webhook_id=%s attempts=%d status=%d ms=%.1f",
                d.target,
                d.msg_id,
                attempt,
                status,
                ms,
            )
            return Outcome("delivered", attempt, status)
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            log.warning(
                "webhook=rejected target=%s webhook_id=%s attempts=%d status=%d (no retry on 4xx)",
                d.target,
                d.msg_id,
                attempt,
                status,
            )
            return Outcome("rejected", attempt, status)
        if 300 <= status < 400 or status == 310:
            log.warning(
                "webhook=rejected target=%s webhook_id=%s attempts=%d status=%d detail=%s",
                d.target,
                d.msg_id,
                attempt,
                status,
                detail,
            )
            return Outcome("rejected", attempt, status, detail)
        delay = policy.delay(attempt)
        left = d.max_age_s - (time.time() - d.created_at)
        log.warning(
            "webhook=retrying target=%s webhook_id=%s attempt=%d status=%s backoff_s=%.2f error=%s",
            d.target,
            d.msg_id,
            attempt,
            status or "-",
            delay,
            detail or "-",
        )
        if left <= 0:
            continue
        delay = min(delay, left + 0.01)
        await asyncio.sleep(delay)


def payload_body(payload: dict[str, Any], fmt: str) -> bytes:
    """The POST body: the Standard Webhooks payload, or for ``slack`` the same plus a ``text`` line."""
    if fmt == "slack":
        payload = {**payload, "text": slack_text(payload)}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def slack_text(payload: dict[str, Any]) -> str:
    d = payload.get("data", {})
    kind = payload.get("type", "alert").removeprefix("alert.")
    icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "severity": ":warning:"}.get(
        kind, ":bell:"
    )
    share = d.get("negative_share")
    share_s = f"{share:.0%}" if isinstance(share, int | float) else "-"
    return (
        f"{icon} moodwire {kind}: {d.get('rule_id', '?')} {d.get('dim', '?')}={d.get('value', '?')} "
        f"severity={d.get('severity', '-')} negative share {share_s} of {d.get('volume', 0)} events "
        f"in {d.get('window', '?')}"
    )
