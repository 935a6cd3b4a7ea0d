"""ClickHouse side of alerting: window aggregates + baselines per scope value, alert state, deliveries.

Observations come only from ``minute_aggregates`` (the duplicate-proof
``uniqExact`` states the dashboards read): merging the id-sets of the
window's minutes counts each event once however often it was delivered.
A window of W seconds covers the minute buckets from ``toStartOfMinute(now - W)``
to now.  The baseline covers ``baseline`` seconds before the window: its share
is sum(negative) / sum(events); the z-score compares the window's share with
the per-window shares of that period (slots of W seconds).  Every function
takes a clickhouse-connect client first, for :meth:`streams.db.Database.run`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.alerts.evaluate import AlertState, Observation
from streams.alerts.rules import Rule

MIN_Z_SLOTS = 3

_STATE_COLUMNS = (
    "dedupe_key",
    "rule_id",
    "dim",
    "value",
    "state",
    "severity",
    "first_seen",
    "last_seen",
    "resolved_at",
    "window_s",
    "volume",
    "negative",
    "negative_share",
    "baseline_share",
    "zscore",
    "sample_ids",
    "clear_since",
    "seq",
    "transition",
    "transition_id",
    "published",
    "version",
)
_last_version = 0


def _version() -> int:
    """Strictly increasing per process (microseconds): a later write of an episode always wins."""
    global _last_version
    _last_version = max(time.time_ns() // 1000, _last_version + 1)
    return _last_version


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def window_start(now: datetime, window_s: int) -> datetime:
    start = now - timedelta(seconds=window_s)
    return start.replace(second=0, microsecond=0)


def observations(client: Client, rule: Rule, now: datetime) -> dict[str, Observation]:
    """Per scope value seen in the window: volume, negatives, baseline share and z-score."""
    ws = window_start(now, rule.window_s)
    params: dict[str, Any] = {"dim": rule.dim, "ws": _naive(ws), "now": _naive(now)}
    value_filter = ""
    if rule.value != "*":
        value_filter = "AND value = {value:String}"
        params["value"] = rule.value
    rows = client.query(
        "SELECT value, uniqExactMerge(events_state) AS events, uniqExactMerge(negative_state) AS negative "
        "FROM minute_aggregates WHERE dim = {dim:String} AND minute >= {ws:DateTime} "
        f"AND minute <= {{now:DateTime}} {value_filter} GROUP BY value",
        parameters=params,
    ).result_rows
    current = {r[0]: (int(r[1]), int(r[2])) for r in rows}
    base: dict[str, tuple[int, int, float | None]] = {}
    if rule.uses_baseline and current:
        params.update(
            {
                "b0": _naive(ws - timedelta(seconds=rule.baseline_s)),
                "w": rule.window_s,
                "values": list(current),
            }
        )
        brows = client.query(
            "SELECT value, sum(ev), sum(neg), avg(neg / ev), stddevPop(neg / ev), count() FROM ("
            # slot 0 = the W seconds just before the window, 1 = the W before that, ...
            " SELECT value, intDiv(toInt64(toUnixTimestamp({ws:DateTime})) - toInt64(toUnixTimestamp(minute)) - 1,"
            "  {w:Int64}) AS slot, uniqExactMerge(events_state) AS ev, uniqExactMerge(negative_state) AS neg"
            " FROM minute_aggregates WHERE dim = {dim:String} AND minute >= {b0:DateTime}"
            " AND minute < {ws:DateTime} AND has({values:Array(String)}, value) GROUP BY value, slot"
            " HAVING ev > 0) GROUP BY value",
            parameters=params,
        ).result_rows
        for value, ev, neg, mean, std, slots in brows:
            share_now = current[value][1] / current[value][0] if current[value][0] else 0.0
            z = None
            if int(slots) >= MIN_Z_SLOTS and std is not None and std > 1e-9 and not math.isnan(std):
                z = (share_now - float(mean)) / float(std)
            base[value] = (int(ev), int(neg), z)
    out = {}
    for value, (events, negative) in current.items():
        bev, bneg, z = base.get(value, (0, 0, None))
        out[value] = Observation(
            value, events, negative, baseline_share=bneg / bev if bev else None, baseline_volume=bev, zscore=z
        )
    return out


def sample_ids(client: Client, dim: str, value: str, start: datetime, now: datetime, n: int = 5) -> list[str]:
    """A few negative event ids of the scope in the window (drill-down from ``events FINAL``)."""
    match = "has(entities, {value:String})" if dim == "entity" else f"{dim} = {{value:String}}"
    rows = client.query(
        f"SELECT id FROM events FINAL WHERE ts >= {{start:DateTime64(3)}} AND ts <= {{now:DateTime64(3)}} "
        f"AND sentiment = 'negative' AND {match} ORDER BY ts DESC LIMIT {int(n)}",
        parameters={"value": value, "start": _naive(start), "now": _naive(now)},
    ).result_rows
    return [r[0] for r in rows]


def load_states(
    client: Client, rule_ids: Iterable[str] | None = None, *, firing_only: bool = False
) -> dict[tuple[str, str], AlertState]:
    """The latest episode per dedupe key: (rule_id, value) -> state."""
    conditions = []
    params: dict[str, Any] = {}
    if rule_ids is not None:
        conditions.append("has({ids:Array(String)}, rule_id)")
        params["ids"] = list(rule_ids)
    if firing_only:
        conditions.append("state = 'firing'")
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    result = client.query(
        f"SELECT {', '.join(_STATE_COLUMNS)} FROM alerts FINAL {where} ORDER BY dedupe_key, first_seen",
        parameters=params,
    )
    out: dict[tuple[str, str], AlertState] = {}
    for row in result.result_rows:
        state = _row_state(dict(zip(result.column_names, row, strict=True)))
        out[(state.rule_id, state.value)] = state  # later first_seen wins
    return out


def _row_state(r: dict[str, Any]) -> AlertState:
    return AlertState(
        rule_id=r["rule_id"],
        dim=r["dim"],
        value=r["value"],
        state=r["state"],
        severity=r["severity"],
        first_seen=_aware(r["first_seen"]),
        last_seen=_aware(r["last_seen"]),  # type: ignore[arg-type]
        resolved_at=_aware(r["resolved_at"]),
        clear_since=_aware(r["clear_since"]),
        seq=int(r["seq"]),
        volume=int(r["volume"]),
        negative=int(r["negative"]),
        negative_share=float(r["negative_share"]),
        baseline_share=r["baseline_share"],
        zscore=r["zscore"],
        sample_ids=tuple(r["sample_ids"]),
        transition=r["transition"],
        transition_id=r["transition_id"],
        published=bool(r["published"]),
        window_s=int(r["window_s"]),
    )


def write_states(client: Client, states: Sequence[AlertState]) -> None:
    """One INSERT of new state rows (each a newer version of its episode)."""
    if not states:
        return
    rows = []
    for s in states:
        rows.append(
            [
                s.dedupe_key,
                s.rule_id,
                s.dim,
                s.value,
                s.state,
                s.severity,
                _naive(s.first_seen),
                _naive(s.last_seen),
                _naive(s.resolved_at) if s.resolved_at else None,
                s.window_s,
                s.volume,
                s.negative,
                s.negative_share,
                s.baseline_share,
                s.zscore,
                list(s.sample_ids),
                _naive(s.clear_since) if s.clear_since else None,
                s.seq,
                s.transition,
                s.transition_id,
                s.published,
                _version(),
            ]
        )
    client.insert("alerts", rows, column_names=list(_STATE_COLUMNS))


def list_alerts(client: Client, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Latest row per episode, newest first (``moodwire alerts list``)."""
    where = "WHERE state = {state:String}" if state else ""
    result = client.query(
        "SELECT dedupe_key, rule_id, dim, value, state, severity, first_seen, last_seen, resolved_at, "
        "volume, negative_share, baseline_share, sample_ids FROM alerts FINAL "
        f"{where} ORDER BY first_seen DESC LIMIT {int(limit)}",
        parameters={"state": state} if state else {},
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


@dataclass(frozen=True)
class DeliveryRow:
    transition_id: str
    target: str
    outcome: str
    attempts: int
    status: int
    dedupe_key: str
    kind: str


def finished_deliveries(client: Client, transition_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(transition_id, target) pairs that already reached a final outcome."""
    if not transition_ids:
        return set()
    rows = client.query(
        "SELECT DISTINCT transition_id, target FROM alert_deliveries WHERE has({ids:Array(String)}, transition_id)",
        parameters={"ids": list(transition_ids)},
    ).result_rows
    return {(r[0], r[1]) for r in rows}


def record_deliveries(client: Client, rows: Sequence[DeliveryRow]) -> None:
    if not rows:
        return
    cols = ["transition_id", "target", "outcome", "attempts", "status", "dedupe_key", "kind"]
    client.insert(
        "alert_deliveries",
        [[r.transition_id, r.target, r.outcome, r.attempts, r.status, r.dedupe_key, r.kind] for r in rows],
        column_names=cols,
    )
