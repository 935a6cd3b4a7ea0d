"""Validation of the web API's query parameters: pure functions, each bad value a :class:`BadParam`.

Every endpoint reads its parameters through these helpers, so a bad value is
always a 400 with the parameter's name and a reason, and every query is
bounded (time range, buckets, rows) before it reaches ClickHouse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

MAX_RANGE: Final = timedelta(days=31)  # any from..to / since..until
MAX_POINTS: Final = 2000  # buckets of one time series
MAX_SERIES: Final = 20  # values of one dimension in one timeseries answer
MAX_LIMIT: Final = 500  # rows of a list endpoint
MAX_WINDOW: Final = timedelta(days=7)  # summary window
MAX_TEXT: Final = 256  # a filter value (the event contract's longest field is 256 for source/entity)

DIMENSIONS: Final = ("topic", "source", "kind", "lang", "entity")
SENTIMENTS: Final = ("negative", "neutral", "positive")
STEPS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_RELATIVE = re.compile(r"^now(?:-(\d{1,6}[smhd]))?$")
_EPOCH_MS = re.compile(r"^\d{1,15}$")
_MIN_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)


class BadParam(ValueError):
    """A query parameter is invalid: ``param`` names it, the message says why."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(reason)
        self.param = param
        self.reason = reason


@dataclass(frozen=True)
class Params:
    """The query string of one request (name -> every value given) and the request's 'now'."""

    raw: Mapping[str, list[str]]
    now: datetime

    def get(self, name: str) -> str | None:
        """The parameter's one value (None when absent or empty); given twice is an error."""
        values = self.raw.get(name) or []
        if len(values) > 1:
            raise BadParam(name, "given more than once")
        return values[0] if values and values[0] != "" else None

    def getall(self, name: str) -> list[str]:
        return [v for v in self.raw.get(name) or [] if v != ""]

    def reject_unknown(self, known: Iterable[str]) -> None:
        allowed = set(known)
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            raise BadParam(unknown[0], f"unknown parameter (allowed: {', '.join(sorted(allowed)) or 'none'})")


def parse_duration(param: str, raw: str, *, minimum: timedelta, maximum: timedelta) -> timedelta:
    """``30s``, ``15m``, ``6h``, ``7d`` -> timedelta, within [minimum, maximum]."""
    m = _DURATION.match(raw.strip())
    if not m:
        raise BadParam(param, f"{raw!r} is not a duration like 15m, 6h or 7d")
    value = timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if value < minimum or value > maximum:
        raise BadParam(param, f"{raw} is outside {_fmt(minimum)}..{_fmt(maximum)}")
    return value


def parse_time(param: str, raw: str, now: datetime) -> datetime:
    """RFC 3339 (no offset = UTC), epoch milliseconds, ``now`` or ``now-15m`` -> aware UTC datetime."""
    text = raw.strip()
    rel = _RELATIVE.match(text)
    if rel:
        back = rel.group(1)
        delta = (
            parse_duration(param, back, minimum=timedelta(0), maximum=timedelta(days=3650)) if back else None
        )
        return now - delta if delta else now
    try:
        if _EPOCH_MS.match(text):
            value = datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise BadParam(param, f"{raw!r} is not RFC 3339, epoch milliseconds or now[-15m]") from None
    if not _MIN_TIME <= value < _MAX_TIME:
        raise BadParam(param, f"{raw!r} lies outside 1970..2200 (seconds or nanoseconds sent as ms?)")
    return value


def time_range(
    p: Params, start: str, end: str, default_span: timedelta, max_span: timedelta = MAX_RANGE
) -> tuple[datetime, datetime]:
    """``[start, end)`` from two parameters; end defaults to now, start to ``end - default_span``."""
    end_raw, start_raw = p.get(end), p.get(start)
    until = parse_time(end, end_raw, p.now) if end_raw else p.now
    since = parse_time(start, start_raw, p.now) if start_raw else until - default_span
    if since >= until:
        raise BadParam(start, f"{start} must be before {end}")
    if until - since > max_span:
        raise BadParam(start, f"range {_fmt(until - since)} exceeds the maximum of {_fmt(max_span)}")
    return since, until


def parse_limit(p: Params, name: str = "limit", default: int = 50, maximum: int = MAX_LIMIT) -> int:
    raw = p.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise BadParam(name, f"{raw!r} is not an integer in 1..{maximum}")
    return int(raw)


def parse_choice(p: Params, name: str, choices: Iterable[str], default: str | None = None) -> str:
    allowed = tuple(choices)
    raw = p.get(name)
    if raw is None:
        if default is None:
            raise BadParam(name, f"required (one of {', '.join(allowed)})")
        return default
    if raw not in allowed:
        raise BadParam(name, f"{raw!r} is not one of {', '.join(allowed)}")
    return raw


def parse_text(p: Params, name: str) -> str:
    """An optional filter value ('' = no filter)."""
    raw = p.get(name)
    if raw is None:
        return ""
    if len(raw) > MAX_TEXT or any(ord(c) < 32 for c in raw):
        raise BadParam(name, f"must be at most {MAX_TEXT} printable characters")
    return raw


def parse_float(p: Params, name: str, default: float, lo: float, hi: float) -> float:
    raw = p.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadParam(name, f"{raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise BadParam(name, f"{raw} is outside {lo}..{hi}")
    return value


def buckets(since: datetime, until: datetime, step_s: int) -> list[datetime]:
    """Bucket starts covering ``[since, until)``: the first aligned down to the step (UTC epoch)."""
    first = int(since.timestamp()) // step_s * step_s
    end = until.timestamp()
    out = []
    t = first
    while t < end:
        out.append(datetime.fromtimestamp(t, tz=UTC))
        t += step_s
    return out


def check_points(since: datetime, until: datetime, step_s: int) -> None:
    n = len(range(int(since.timestamp()) // step_s * step_s, int(-(-until.timestamp() // 1)), step_s))
    if n > MAX_POINTS:
        raise BadParam("step", f"{n} points exceed the maximum of {MAX_POINTS}: use a larger step")


def _fmt(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"
