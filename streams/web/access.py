"""Who may read the web API: the bind-address rule and the bearer-token check (docs/security.md).

The API is read-only (every route is a GET; there are no admin endpoints), so
``MOODWIRE_API_TOKEN`` is a read-only token.  Listening on anything but
loopback without one is refused unless ``MOODWIRE_WEB_ALLOW_UNAUTHENTICATED``
says so on purpose; that opt-out is logged at WARNING whenever the API starts.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.settings import Settings

TOKEN_SCOPE = "read-only"


def is_loopback_bind(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; empty, wildcard and other names are not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(settings: Settings) -> str | None:
    """Why the API must not start as configured (one line, no secret), or None."""
    if settings.web_port == 0:
        return None
    if settings.api_token is not None:
        if not settings.api_token.get_secret_value().strip():
            return "MOODWIRE_API_TOKEN is empty: set a real token or unset it"
        return None
    if is_loopback_bind(settings.web_host):
        return None
    if settings.web_allow_unauthenticated:
        return None
    return (
        f"MOODWIRE_WEB_HOST={settings.web_host} is not loopback and MOODWIRE_API_TOKEN is not set: "
        "set a token, bind 127.0.0.1, or set MOODWIRE_WEB_ALLOW_UNAUTHENTICATED=true on purpose"
    )


def open_on_purpose(settings: Settings) -> bool:
    """The deliberate opt-out is in effect (non-loopback, no token): worth a WARNING at start."""
    return settings.api_token is None and not is_loopback_bind(settings.web_host)


def token_matches(header: str, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (as bytes: any header is safe)."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode()
    )
