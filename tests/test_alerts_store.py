"""Alert queries on real chDB: window aggregates from the duplicate-proof minute states, baselines and
z-scores, alert state round trip, delivered pairs; plus one evaluation round end to end through ``decide``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from streams.alerts import store
from streams.alerts.evaluate import decide
from streams.alerts.rules import Rule
from streams.clickhouse import connect, insert_scored, migrate

NOW = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path_factory.mktemp('ch-alerts') / 'data'}")
    migrate(c)
    yield c
    c.close()


@pytest.fixture
def fresh(client: Client) -> Client:
    for table in ("events", "minute_aggregates", "alerts", "alert_deliveries"):
        client.command(f"TRUNCATE TABLE {table}")
    return client


def ev(
    i: int, ts: datetime, sentiment: str, topic: str = "tech", entities: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "id": f"ev-{i}", "text": f"t{i}", "kind": "news", "source": "wire", "lang": "en", "ts": ts,
        "entities": list(entities), "sentiment": sentiment,
        "sentiment_scores": {"negative": 0.1, "neutral": 0.8, "positive": 0.1}, "topic": topic,
        "topic_scores": {topic: 1.0}, "model_versions": {"sentiment": "s", "topic": "t"}, "scored_at": ts,
    }  # fmt: skip


def rule(**kw: Any) -> Rule:
    base: dict[str, Any] = dict(
        id="r", dim="topic", value="*", window_s=300, min_volume=10, targets=("t",), negative_share=0.5,
        baseline_s=3600, min_baseline_volume=10,
    )  # fmt: skip
    base.update(kw)
    return Rule(**base)


def test_window_counts_ignore_redelivery_and_old_minutes(fresh):
    window = [ev(i, NOW - timedelta(seconds=10 * i), "negative" if i % 4 else "neutral") for i in range(20)]
    old = [ev(100 + i, NOW - timedelta(minutes=20, seconds=i), "negative", topic="sport") for i in range(30)]
    insert_scored(fresh, window + old)
    insert_scored(fresh, window[:10])  # re-delivered: must not change any count
    obs = store.observations(fresh, rule(), NOW)
    assert set(obs) == {"tech"}  # sport is outside the 5-minute window
    assert (obs["tech"].volume, obs["tech"].negative) == (20, 15)
    assert obs["tech"].baseline_share is None
    # window = minute buckets from toStartOfMinute(now - 5m): 12:25:00 .. now
    assert store.window_start(NOW, 300) == datetime(2026, 1, 1, 12, 25, tzinfo=UTC)


def test_baseline_share_and_zscore(fresh):
    rows, n = [], 0
    # 11 earlier 5-minute slots in the hour before the window: share alternating 0.2 / 0.3
    for slot in range(1, 12):
        start = store.window_start(NOW, 300) - timedelta(minutes=5 * slot)
        neg = 2 if slot % 2 else 3
        for k in range(10):
            n += 1
            rows.append(ev(n, start + timedelta(seconds=20 * k), "negative" if k < neg else "positive"))
    for k in range(20):  # the current window: 0.8
        n += 1
        rows.append(ev(n, NOW - timedelta(seconds=5 * k), "negative" if k < 16 else "positive"))
    insert_scored(fresh, rows)
    o = store.observations(fresh, rule(baseline_factor=2.0, zscore=3.0), NOW)["tech"]
    assert (o.volume, o.negative) == (20, 16)
    assert o.baseline_volume == 110 and o.baseline_share == pytest.approx(27 / 110)
    # per-slot shares: six of 0.2, five of 0.3 -> mean 0.24545, population std 0.04979
    assert o.zscore == pytest.approx((0.8 - 27 / 110) / 0.049793, rel=1e-3)
    # entity dimension + fixed value scope + sample ids
    insert_scored(
        fresh, [ev(900 + k, NOW - timedelta(seconds=k), "negative", entities=("Acme",)) for k in range(3)]
    )
    ent = store.observations(fresh, rule(dim="entity", value="Acme"), NOW)
    assert ent["Acme"].volume == 3
    ids = store.sample_ids(fresh, "entity", "Acme", NOW - timedelta(minutes=5), NOW)
    assert sorted(ids) == ["ev-900", "ev-901", "ev-902"]
    assert len(store.sample_ids(fresh, "topic", "tech", NOW - timedelta(minutes=5), NOW)) == 5


def test_state_round_trip_and_latest_row_wins(fresh):
    insert_scored(fresh, [ev(i, NOW - timedelta(seconds=i), "negative") for i in range(12)])
    r = rule()
    (fire,) = decide(r, store.observations(fresh, r, NOW), {}, NOW)
    store.write_states(fresh, [fire.state])
    loaded = store.load_states(fresh)[("r", "tech")]
    assert loaded.state == "firing" and not loaded.published and loaded.first_seen == NOW
    assert loaded.transition_id == fire.state.transition_id
    store.write_states(fresh, [replace(loaded, published=True)])
    again = store.load_states(fresh, ["r"])[("r", "tech")]
    assert again.published and again == replace(fire.state, published=True)
    # the next round sees it firing: no second firing
    (update,) = decide(
        r,
        store.observations(fresh, r, NOW + timedelta(seconds=15)),
        {"tech": again},
        NOW + timedelta(seconds=15),
    )
    assert update.state.transition == "" and update.state.state == "firing"
    assert [a["state"] for a in store.list_alerts(fresh, "firing")] == ["firing"]
    assert store.list_alerts(fresh, "resolved") == []


def test_finished_deliveries(fresh):
    store.record_deliveries(fresh, [store.DeliveryRow("msg_1", "ops", "delivered", 3, 200, "k", "firing")])
    store.record_deliveries(fresh, [store.DeliveryRow("msg_1", "ops", "delivered", 1, 200, "k", "firing")])
    assert store.finished_deliveries(fresh, ["msg_1", "msg_2"]) == {("msg_1", "ops")}
    assert store.finished_deliveries(fresh, []) == set()
