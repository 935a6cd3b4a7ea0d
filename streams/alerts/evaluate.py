"""Alert decisions as a pure function: observations + current state + rule -> new states and transitions.

No I/O here: :mod:`streams.alerts.store` supplies the observations (window
aggregates and baselines from ClickHouse) and the current state
(``alerts_current``); :mod:`streams.alerts.service` writes what this returns.

Per scope value: *active* = volume >= min_volume and the rule's conditions
hold (conditions on a baseline that has too little volume are skipped; with
nothing left to judge, the rule is not active).  Firing -> resolved only
after being inactive for ``hold`` without a break; resolved -> firing again
only after ``cooldown``.  While firing, a change of severity level is a
``severity`` transition.  A state that says firing is never fired again.
An alert whose rule was removed from the rules file or disabled resolves at
the next round (:func:`retire`) instead of staying firing for ever.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from streams.alerts.rules import Rule


@dataclass(frozen=True)
class Observation:
    """One scope value over the rule's window, with its trailing baseline."""

    value: str
    volume: int
    negative: int
    baseline_share: float | None = None  # None: no baseline data
    baseline_volume: int = 0
    zscore: float | None = None  # None: fewer than 3 baseline windows or zero spread

    @property
    def share(self) -> float:
        return self.negative / self.volume if self.volume else 0.0


@dataclass(frozen=True)
class AlertState:
    """The latest row of one dedupe key (rule + scope value) in ``alerts_current``."""

    rule_id: str
    dim: str
    value: str
    state: str  # firing / resolved
    severity: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None = None
    clear_since: datetime | None = None  # firing but inactive since (hold countdown)
    seq: int = 0  # transitions in this episode so far
    volume: int = 0
    negative: int = 0
    negative_share: float = 0.0
    baseline_share: float | None = None
    zscore: float | None = None
    sample_ids: tuple[str, ...] = ()
    transition: str = ""  # the kind of the transition this row records ("" = a plain update)
    transition_id: str = ""
    published: bool = True  # False: transition written but not yet produced to the alerts topic
    window_s: int = 0

    @property
    def dedupe_key(self) -> str:
        return dedupe_key(self.rule_id, self.dim, self.value)


@dataclass(frozen=True)
class Decision:
    """The new state row for one dedupe key; ``state.transition`` says whether it is a transition."""

    state: AlertState


def dedupe_key(rule_id: str, dim: str, value: str) -> str:
    return f"{rule_id}|{dim}={value}"


def transition_id(key: str, first_seen: datetime, kind: str, severity: str, seq: int) -> str:
    """Deterministic: the same transition re-published after a crash keeps its id (= webhook-id)."""
    raw = f"{key}|{first_seen.isoformat()}|{kind}|{severity}|{seq}".encode()
    return "msg_" + hashlib.sha256(raw).hexdigest()[:32]


def conditions_hold(rule: Rule, obs: Observation) -> bool:
    """The rule's conditions on ``obs`` (volume not included); unjudgeable baseline conditions are skipped."""
    results: list[bool] = []
    if rule.negative_share is not None:
        results.append(obs.share >= rule.negative_share)
    baseline_ok = obs.baseline_share is not None and obs.baseline_volume >= rule.min_baseline_volume
    if rule.baseline_factor is not None and baseline_ok:
        assert obs.baseline_share is not None
        results.append(obs.share >= rule.baseline_factor * obs.baseline_share and obs.share > 0)
    if rule.zscore is not None and baseline_ok and obs.zscore is not None:
        results.append(obs.zscore >= rule.zscore)
    if not results:
        return False
    return all(results) if rule.match == "all" else any(results)


def severity_of(rule: Rule, obs: Observation) -> str:
    level = rule.severity
    for step in rule.escalate:
        if obs.share >= step.negative_share:
            level = step.severity
    return level


def decide(
    rule: Rule,
    observations: dict[str, Observation],
    states: dict[str, AlertState],
    now: datetime,
) -> list[Decision]:
    """New state rows for ``rule``: transitions, and updates of firing alerts (last_seen, hold countdown).

    ``observations`` holds the values seen in the window; a firing value with no
    events in the window counts as inactive.  ``states`` maps value -> latest state.
    """
    out: list[Decision] = []
    values = set(observations) | {v for v, s in states.items() if s.state == "firing"}
    if rule.value != "*":
        values &= {rule.value}
    for value in sorted(values):
        obs = observations.get(value, Observation(value, 0, 0))
        state = states.get(value)
        active = obs.volume >= rule.min_volume and conditions_hold(rule, obs)
        severity = severity_of(rule, obs)
        key = dedupe_key(rule.id, rule.dim, value)
        observed = {
            "volume": obs.volume,
            "negative": obs.negative,
            "negative_share": obs.share,
            "baseline_share": obs.baseline_share,
            "zscore": obs.zscore,
            "window_s": rule.window_s,
        }
        if state is not None and state.state == "firing":
            if active:
                if severity != state.severity:
                    seq = state.seq + 1
                    tid = transition_id(key, state.first_seen, "severity", severity, seq)
                    new = replace(
                        state,
                        severity=severity,
                        last_seen=now,
                        clear_since=None,
                        seq=seq,
                        transition="severity",
                        transition_id=tid,
                        published=False,
                        **observed,
                    )
                else:
                    new = replace(state, last_seen=now, clear_since=None, transition="", **observed)
                out.append(Decision(new))
                continue
            clear_since = state.clear_since or now
            if now - clear_since >= timedelta(seconds=rule.hold_s):
                new = replace(retire(replace(state, clear_since=clear_since), now), **observed)
            else:
                # Observed values keep the episode's last active numbers (what the alert was about).
                new = replace(state, clear_since=clear_since, transition="")
            out.append(Decision(new))
            continue
        if not active:
            continue
        in_cooldown = state is not None and state.resolved_at is not None
        if in_cooldown and now - state.resolved_at < timedelta(seconds=rule.cooldown_s):  # type: ignore[operator,union-attr]
            continue
        tid = transition_id(key, now, "firing", severity, 1)
        out.append(
            Decision(
                AlertState(
                    rule_id=rule.id,
                    dim=rule.dim,
                    value=value,
                    state="firing",
                    severity=severity,
                    first_seen=now,
                    last_seen=now,
                    seq=1,
                    transition="firing",
                    transition_id=tid,
                    published=False,
                    **observed,
                )
            )
        )
    return out


def retire(state: AlertState, now: datetime) -> AlertState:
    """The ``resolved`` transition of a firing alert (after its hold, or when its rule is gone)."""
    seq = state.seq + 1
    return replace(
        state,
        state="resolved",
        resolved_at=now,
        clear_since=state.clear_since or now,
        seq=seq,
        transition="resolved",
        transition_id=transition_id(state.dedupe_key, state.first_seen, "resolved", state.severity, seq),
        published=False,
    )
