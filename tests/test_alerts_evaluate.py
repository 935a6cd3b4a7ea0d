"""The alert decision table (pure): thresholds, baselines, min volume, hold, cooldown, severity, no re-fire."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from streams.alerts.evaluate import AlertState, Observation, conditions_hold, decide, transition_id
from streams.alerts.rules import Escalation, Rule

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def rule(**kw) -> Rule:
    base = dict(
        id="r", dim="topic", value="*", window_s=300, min_volume=20, targets=("t",), negative_share=0.5,
        hold_s=60, cooldown_s=600, min_baseline_volume=100,
    )  # fmt: skip
    base.update(kw)
    return Rule(**base)


def obs(value="tech", volume=100, negative=60, **kw) -> Observation:
    return Observation(value, volume, negative, **kw)


def one(decisions):
    assert len(decisions) == 1, decisions
    return decisions[0].state


def test_threshold_fires_once_and_only_over_min_volume():
    r = rule()
    s = one(decide(r, {"tech": obs()}, {}, T0))
    assert (s.state, s.transition, s.severity, s.seq) == ("firing", "firing", "warning", 1)
    assert s.first_seen == T0 and s.volume == 100 and s.negative_share == 0.6 and not s.published
    assert decide(r, {"tech": obs(volume=19, negative=19)}, {}, T0) == []  # 100% negative, below min volume
    assert decide(r, {"tech": obs(negative=49)}, {}, T0) == []  # 0.49 < 0.5


def test_each_value_separately_and_fixed_value_scope():
    both = {"tech": obs(), "sport": obs("sport", negative=10)}
    assert [d.state.value for d in decide(rule(), both, {}, T0)] == ["tech"]
    assert decide(rule(value="sport"), both, {}, T0) == []


def test_baseline_factor_and_zscore():
    r = rule(negative_share=None, baseline_factor=2.0)
    assert conditions_hold(r, obs(baseline_share=0.25, baseline_volume=500))  # 0.6 >= 2 x 0.25
    assert not conditions_hold(r, obs(baseline_share=0.35, baseline_volume=500))
    assert not conditions_hold(
        r, obs(baseline_share=0.1, baseline_volume=50)
    )  # baseline too thin: unjudgeable
    rz = rule(negative_share=None, zscore=3.0)
    assert conditions_hold(rz, obs(baseline_share=0.3, baseline_volume=500, zscore=3.5))
    assert not conditions_hold(rz, obs(baseline_share=0.3, baseline_volume=500, zscore=2.0))
    assert not conditions_hold(rz, obs(baseline_share=0.3, baseline_volume=500, zscore=None))


def test_match_all_any_and_skipped_baseline():
    r_all = rule(negative_share=0.5, baseline_factor=2.0)
    assert not conditions_hold(r_all, obs(baseline_share=0.4, baseline_volume=500))  # share ok, factor not
    assert conditions_hold(r_all, obs(baseline_share=0.2, baseline_volume=500))
    assert conditions_hold(r_all, obs())  # no baseline yet: judged on the share alone
    r_any = rule(negative_share=0.9, baseline_factor=2.0, match="any")
    assert conditions_hold(r_any, obs(baseline_share=0.2, baseline_volume=500))
    assert not conditions_hold(r_any, obs(baseline_share=0.4, baseline_volume=500))


def firing(**kw) -> AlertState:
    base = dict(
        rule_id="r", dim="topic", value="tech", state="firing", severity="warning", first_seen=T0,
        last_seen=T0, seq=1, transition="firing", transition_id="x", published=True, window_s=300,
    )  # fmt: skip
    base.update(kw)
    return AlertState(**base)


def test_no_refire_while_firing_and_last_seen_moves():
    s = one(decide(rule(), {"tech": obs()}, {"tech": firing()}, T0 + timedelta(seconds=15)))
    assert s.transition == "" and s.state == "firing" and s.last_seen == T0 + timedelta(seconds=15)
    assert s.first_seen == T0 and s.published


def test_hold_before_resolving():
    r = rule(hold_s=60)
    t1 = T0 + timedelta(seconds=30)
    s1 = one(decide(r, {"tech": obs(negative=10)}, {"tech": firing()}, t1))
    assert s1.transition == "" and s1.state == "firing" and s1.clear_since == t1
    # active again inside the hold: the countdown restarts
    s2 = one(decide(r, {"tech": obs()}, {"tech": s1}, t1 + timedelta(seconds=30)))
    assert s2.clear_since is None and s2.state == "firing"
    s3 = one(decide(r, {}, {"tech": s2}, t1 + timedelta(seconds=40)))  # no events at all = inactive
    assert s3.clear_since == t1 + timedelta(seconds=40) and s3.state == "firing"
    s4 = one(decide(r, {}, {"tech": s3}, t1 + timedelta(seconds=99)))
    assert s4.state == "firing"
    s5 = one(decide(r, {}, {"tech": s4}, t1 + timedelta(seconds=100)))
    assert (s5.state, s5.transition, s5.resolved_at, s5.seq) == (
        "resolved",
        "resolved",
        t1 + timedelta(seconds=100),
        2,
    )
    assert s5.first_seen == T0


def test_cooldown_after_resolving():
    r = rule(cooldown_s=600)
    resolved = firing(state="resolved", resolved_at=T0 + timedelta(minutes=5), seq=2, transition="resolved")
    assert decide(r, {"tech": obs()}, {"tech": resolved}, T0 + timedelta(minutes=14)) == []
    s = one(decide(r, {"tech": obs()}, {"tech": resolved}, T0 + timedelta(minutes=15)))
    assert s.transition == "firing" and s.first_seen == T0 + timedelta(minutes=15) and s.seq == 1
    assert s.transition_id != resolved.transition_id


def test_severity_levels_and_changes():
    r = rule(escalate=(Escalation("critical", 0.8),))
    assert one(decide(r, {"tech": obs(negative=85)}, {}, T0)).severity == "critical"
    up = one(decide(r, {"tech": obs(negative=85)}, {"tech": firing()}, T0 + timedelta(seconds=15)))
    assert (up.transition, up.severity, up.seq, up.state) == ("severity", "critical", 2, "firing")
    same = one(decide(r, {"tech": obs(negative=90)}, {"tech": up}, T0 + timedelta(seconds=30)))
    assert same.transition == ""
    down = one(
        decide(
            r, {"tech": obs(negative=60)}, {"tech": replace(same, published=True)}, T0 + timedelta(seconds=45)
        )
    )
    assert (down.transition, down.severity, down.seq) == ("severity", "warning", 3)
    assert len({up.transition_id, down.transition_id}) == 2


def test_transition_ids_are_deterministic():
    a = one(decide(rule(), {"tech": obs()}, {}, T0))
    b = one(decide(rule(), {"tech": obs(negative=70)}, {}, T0))
    assert a.transition_id == b.transition_id == transition_id("r|topic=tech", T0, "firing", "warning", 1)
    assert a.transition_id.startswith("msg_")
