"""The alert transition record (``alerts`` topic) and the webhook payload built from it.

Webhook payload (Standard Webhooks shape): ``{"type": "alert.firing" |
"alert.resolved" | "alert.severity" | "alert.test", "timestamp", "data": {...}}``.
The ``alerts`` topic record wraps it with the rule's target names and the
transition id, keyed by the dedupe key so one alert's transitions stay in order.
Everything in a record is derived from the stored state, so a transition
re-published after a crash is byte-for-byte the same message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from streams.alerts.evaluate import AlertState
from streams.pipeline.records import OutRecord


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def window_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def transition_time(s: AlertState) -> datetime:
    if s.transition == "firing":
        return s.first_seen
    if s.transition == "resolved" and s.resolved_at is not None:
        return s.resolved_at
    return s.last_seen


def alert_payload(s: AlertState) -> dict[str, Any]:
    return {
        "type": f"alert.{s.transition}",
        "timestamp": iso(transition_time(s)),
        "data": {
            "transition_id": s.transition_id,
            "rule_id": s.rule_id,
            "dedupe_key": s.dedupe_key,
            "dim": s.dim,
            "value": s.value,
            "state": s.state,
            "severity": s.severity,
            "window": window_text(s.window_s),
            "volume": s.volume,
            "negative": s.negative,
            "negative_share": round(s.negative_share, 4),
            "baseline_share": None if s.baseline_share is None else round(s.baseline_share, 4),
            "zscore": None if s.zscore is None else round(s.zscore, 3),
            "first_seen": iso(s.first_seen),
            "last_seen": iso(s.last_seen),
            "resolved_at": iso(s.resolved_at),
            "sample_ids": list(s.sample_ids),
        },
    }


def transition_record(s: AlertState, targets: tuple[str, ...]) -> OutRecord:
    value = {"transition_id": s.transition_id, "targets": list(targets), "payload": alert_payload(s)}
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
    return OutRecord(body, s.dedupe_key.encode())


def test_payload(target: str, now: datetime) -> dict[str, Any]:
    return {
        "type": "alert.test",
        "timestamp": iso(now),
        "data": {
            "target": target,
            "message": "moodwire test delivery: your receiver verified this signature",
        },
    }
