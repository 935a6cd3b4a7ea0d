"""The web API, live page and /metrics against the real stack: tansu, Triton, the worker, embedded ClickHouse.

One module-scoped stack (the worker on the real Triton server) is fed a known
stream: 150 events in the 10 minutes before an anchor minute and 30 three
hours earlier (the baseline), with fixed ids, times, sources, kinds and
entities.  Counts by source / kind / entity / total are checked exactly
against the input; the topic and sentiment splits depend on the models, so
they are checked against the events the API lists and, after the worker has
stopped, against a direct recount in ClickHouse.  Alert rows are written into
the data directory before the worker starts (chDB admits one process).
Tests run in file order; the last two stop Triton and then the worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chromium_cdp import Chromium, chromium_binary
from conftest import OUTPUT
from pipeline_harness import (
    ENTITIES,
    SOURCES,
    Worker,
    open_clickhouse,
    produce,
    sample_texts,
    settings_env,
    settings_from,
    wait_drained,
)
from prometheus_client.parser import text_string_to_metric_families

from streams.embedded.broker import EmbeddedBroker, free_port
from streams.settings import Settings

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        importlib.util.find_spec("pytriton") is None or importlib.util.find_spec("tritonclient") is None,
        reason="nvidia-pytriton (bundled tritonserver) and tritonclient are needed: make install-dev",
    ),
]

N_RECENT, N_BASELINE = 150, 30


def rfc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def known_stream(anchor: datetime) -> list[dict[str, Any]]:
    """150 events in [anchor-10m, anchor-1m) and 30 in the baseline, three hours before."""
    texts = sample_texts()
    events = []
    for i in range(N_RECENT + N_BASELINE):
        if i < N_RECENT:
            ts = anchor - timedelta(seconds=600) + timedelta(seconds=i * 3.6)
        else:
            ts = anchor - timedelta(hours=3) + timedelta(seconds=(i - N_RECENT) * 20)
        text = texts[i % len(texts)]
        entities = [ENTITIES[i % 6]] if i % 2 == 0 else []
        if i % 5 == 0:
            entities.append(ENTITIES[(i + 1) % 6])
        events.append(
            {
                "id": f"web-{i:04d}",
                "text": text,
                "title": text[:90] if i % 2 == 0 else None,
                "url": f"https://news.example/{i}" if i % 4 == 0 else None,
                "kind": "review" if i % 3 == 0 else "news",
                "source": SOURCES[i % len(SOURCES)],
                "lang": "en",
                "ts": int(ts.timestamp() * 1000),
                "entities": entities,
            }
        )
    return events


def alert_rows(anchor: datetime) -> list[dict[str, Any]]:
    """Two firing episodes and one that fired and resolved (two versions: FINAL must pick the latest)."""
    base = {
        "resolved_at": None,
        "window_s": 300,
        "baseline_share": 0.2,
        "zscore": 4.5,
        "sample_ids": ["web-0001", "web-0003"],
    }
    return [
        {
            **base,
            "dedupe_key": "neg-spike|topic=tech",
            "rule_id": "neg-spike",
            "dim": "topic",
            "value": "tech",
            "state": "firing",
            "severity": "critical",
            "first_seen": anchor - timedelta(minutes=8),
            "last_seen": anchor - timedelta(minutes=1),
            "volume": 40,
            "negative": 30,
            "negative_share": 0.75,
            "version": 2,
        },
        {
            **base,
            "dedupe_key": "entity-spike|entity=Globex",
            "rule_id": "entity-spike",
            "dim": "entity",
            "value": "Globex",
            "state": "firing",
            "severity": "warning",
            "first_seen": anchor - timedelta(minutes=6),
            "last_seen": anchor - timedelta(minutes=2),
            "volume": 12,
            "negative": 7,
            "negative_share": 0.583333,
            "version": 1,
        },
        *(
            {
                **base,
                "dedupe_key": "neg-spike|source=wire",
                "rule_id": "neg-spike",
                "dim": "source",
                "value": "wire",
                "state": state,
                "severity": "warning",
                "first_seen": anchor - timedelta(hours=2),
                "last_seen": anchor - timedelta(minutes=90),
                "resolved_at": anchor - timedelta(minutes=90) if state == "resolved" else None,
                "volume": 20,
                "negative": 11,
                "negative_share": 0.55,
                "version": version,
            }
            for version, state in ((1, "firing"), (2, "resolved"))
        ),
    ]


def seed_alerts(settings: Settings, rows: list[dict[str, Any]]) -> None:
    from streams.clickhouse import migrate

    client = open_clickhouse(settings)
    try:
        migrate(client)
        columns = list(rows[0])
        client.insert("alerts", [[r[c] for c in columns] for r in rows], column_names=columns)
    finally:
        client.close()


@dataclass
class Stack:
    base: str
    anchor: datetime
    events: list[dict[str, Any]]
    settings: Settings
    worker: Worker
    triton: Any
    ports: Any
    produced: int

    @property
    def recent(self) -> list[dict[str, Any]]:
        return self.events[:N_RECENT]

    @property
    def baseline(self) -> list[dict[str, Any]]:
        return self.events[N_RECENT:]


def get(stack: Stack, path: str, status: int = 200) -> Any:
    code, body = fetch(stack.base + path)
    assert code == status, f"{path}: {code} {body[:500]!r}"
    return json.loads(body)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from inference.serve.triton_server import TritonServer, free_ports

    tmp = tmp_path_factory.mktemp("web-stack")
    anchor = datetime.now(UTC).replace(second=0, microsecond=0)
    events = known_stream(anchor)
    ports = free_ports()
    triton = TritonServer("cpu", None, ports).start()
    broker = EmbeddedBroker(port=free_port()).start()
    web_port = free_port()
    env = settings_env(
        broker.bootstrap_servers,
        tmp / "data",
        "web",
        MOODWIRE_RUNNER="triton",
        MOODWIRE_TRITON_URL=triton.grpc_url,
        MOODWIRE_WEB_PORT=str(web_port),
        MOODWIRE_ALERTS_ENABLED="false",  # the seeded alert rows are the known state
    )
    settings = settings_from(env)
    seed_alerts(settings, alert_rows(anchor))
    worker = Worker(env, tmp / "worker.log").start()
    s = Stack(f"http://127.0.0.1:{web_port}", anchor, events, settings, worker, triton, ports, 0)
    try:
        worker.wait_running()
        s.produced = produce(settings, [json.dumps(e).encode() for e in events])
        wait_drained(settings, worker)
        yield s
    finally:
        try:
            worker.stop()
        finally:
            s.triton.stop()
            broker.stop()


def at(stack: Stack) -> str:
    return rfc(stack.anchor)


# -- exact numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", ["source", "kind", "entity"])
def test_summary_counts_equal_the_input(stack: Stack, dim: str) -> None:
    def count(events: list[dict[str, Any]]) -> Counter[str]:
        if dim == "entity":
            return Counter(x for e in events for x in e["entities"])
        return Counter(e[dim] for e in events)

    body = get(stack, f"/api/v1/summary?window=30m&dim={dim}&at={at(stack)}")
    assert body["from"] == rfc(stack.anchor - timedelta(minutes=30)).replace("Z", ".000Z")
    got = {v["value"]: v["events"] for v in body["values"] if v["events"]}
    base = {v["value"]: v["baseline_events"] for v in body["values"] if v["baseline_events"]}
    assert got == dict(count(stack.recent))
    assert base == dict(count(stack.baseline))
    for v in body["values"]:
        assert v["negative"] + v["neutral"] + v["positive"] == v["events"]
    assert body["totals"]["events"] == N_RECENT
    assert body["totals"]["baseline_events"] == N_BASELINE


def test_timeseries_buckets_equal_the_input(stack: Stack) -> None:
    since = stack.anchor - timedelta(minutes=15)
    body = get(stack, f"/api/v1/timeseries?from={rfc(since)}&to={at(stack)}&step=1m&dim=source&series=20")
    assert len(body["t"]) == 15
    expected: dict[str, list[int]] = {}
    for e in stack.recent:
        minute = (e["ts"] // 60_000 * 60_000 - int(since.timestamp() * 1000)) // 60_000
        expected.setdefault(e["source"], [0] * 15)[minute] += 1
    assert {s["value"]: s["events"] for s in body["series"]} == expected
    # One value, 5-minute buckets aligned to the epoch: whole buckets covering [from, to).
    one = get(stack, f"/api/v1/timeseries?from={rfc(since)}&to={at(stack)}&step=5m&dim=source&value=wire")
    assert [s["value"] for s in one["series"]] == ["wire"]
    assert sum(one["series"][0]["events"]) == sum(1 for e in stack.recent if e["source"] == "wire")
    first = int(since.timestamp()) // 300 * 300
    assert len(one["t"]) == len(range(first, int(stack.anchor.timestamp()), 300))
    assert one["t"][0] == rfc(datetime.fromtimestamp(first, UTC)).replace("Z", ".000Z")


def all_events(stack: Stack) -> list[dict[str, Any]]:
    since = rfc(stack.anchor - timedelta(hours=4))
    body = get(stack, f"/api/v1/events?since={since}&until={at(stack)}&limit=500")
    return body["events"]


def test_events_list_and_topic_split_agree_with_the_aggregates(stack: Stack) -> None:
    listed = all_events(stack)
    assert [e["id"] for e in listed] == [
        e["id"] for e in sorted(stack.events, key=lambda e: (-e["ts"], e["id"]))
    ], "newest first, every event once"
    by_id = {e["id"]: e for e in stack.events}
    for e in listed:
        src = by_id[e["id"]]
        assert (e["source"], e["kind"], e["entities"]) == (src["source"], src["kind"], src["entities"])
        assert e["title"] == (src["title"] or "")
        assert sum(e["sentiment_scores"].values()) == pytest.approx(1, abs=1e-3)
    # The summary (minute aggregates) against the events table, per topic and sentiment.
    cutoff = int((stack.anchor - timedelta(minutes=30)).timestamp() * 1000)
    recent = Counter()
    baseline = Counter()
    for e in listed:
        ts = int(datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() * 1000)
        (recent if ts >= cutoff else baseline)[(e["topic"], e["sentiment"])] += 1
    body = get(stack, f"/api/v1/summary?window=30m&dim=topic&at={at(stack)}")
    for v in body["values"]:
        for s in ("negative", "neutral", "positive"):
            assert v[s] == recent[(v["value"], s)], (v, s)
        assert v["baseline_negative"] == baseline[(v["value"], "negative")]
        n = v["events"]
        assert v["negative_share"] == (round(v["negative"] / n, 6) if n else None)
    assert sum(v["events"] for v in body["values"]) == N_RECENT


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("source=wire", lambda e: e["source"] == "wire"),
        ("entity=Acme%20Corp", lambda e: "Acme Corp" in e["entities"]),
        ("kind=review&source=app-store", lambda e: e["kind"] == "review" and e["source"] == "app-store"),
    ],
)
def test_events_filters(stack: Stack, query: str, keep: Any) -> None:
    since = rfc(stack.anchor - timedelta(hours=4))
    body = get(stack, f"/api/v1/events?{query}&since={since}&until={at(stack)}&limit=500")
    assert sorted(e["id"] for e in body["events"]) == sorted(e["id"] for e in stack.events if keep(e))


def test_negative_events_and_most_negative_order(stack: Stack) -> None:
    listed = all_events(stack)
    negative_ids = {e["id"] for e in listed if e["sentiment"] == "negative"}
    since = rfc(stack.anchor - timedelta(hours=4))
    body = get(stack, f"/api/v1/events?sentiment=negative&since={since}&until={at(stack)}&limit=500")
    assert {e["id"] for e in body["events"]} == negative_ids and negative_ids
    top = get(stack, f"/api/v1/events?sort=negative&since={since}&until={at(stack)}&limit=5")["events"]
    scores = [e["sentiment_scores"]["negative"] for e in top]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == max(e["sentiment_scores"]["negative"] for e in listed)
    limited = get(stack, f"/api/v1/events?since={since}&until={at(stack)}&limit=7")
    assert limited["count"] == 7 == len(limited["events"])


def test_low_confidence_and_models(stack: Stack) -> None:
    listed = all_events(stack)
    since = rfc(stack.anchor - timedelta(hours=4))
    body = get(
        stack,
        f"/api/v1/low-confidence?task=sentiment&threshold=0.7&since={since}&until={at(stack)}&limit=500",
    )
    expected = {e["id"] for e in listed if max(e["sentiment_scores"].values()) < 0.7}
    assert {e["id"] for e in body["events"]} == expected
    confidences = [e["confidence"] for e in body["events"]]
    assert confidences == sorted(confidences) and all(c < 0.7 for c in confidences)
    models = get(stack, f"/api/v1/models?since={since}&until={at(stack)}")["models"]
    # The English model, and the Chinese one for the sample's Han-script texts (routed by script).
    versions = {(e["model_versions"]["sentiment"], e["model_versions"]["topic"]) for e in listed}
    assert len(models) == len(versions) == 2
    assert {(m["sentiment_version"], m["topic_version"]) for m in models} == versions
    assert sum(m["events"] for m in models) == len(stack.events)
    assert sum(m["negative"] for m in models) == sum(e["sentiment"] == "negative" for e in listed)


def test_alerts(stack: Stack) -> None:
    firing = get(stack, "/api/v1/alerts?state=firing")
    assert [(a["dim"], a["value"], a["severity"]) for a in firing["alerts"]] == [
        ("topic", "tech", "critical"),
        ("entity", "Globex", "warning"),
    ]
    assert firing["alerts"][0]["negative_share"] == 0.75 and firing["alerts"][0]["volume"] == 40
    everything = get(stack, "/api/v1/alerts?state=all")
    states = {a["dedupe_key"]: a["state"] for a in everything["alerts"]}
    assert states == {
        "neg-spike|topic=tech": "firing",
        "entity-spike|entity=Globex": "firing",
        "neg-spike|source=wire": "resolved",  # its latest version, not the earlier firing row
    }
    assert get(stack, "/api/v1/alerts?state=resolved")["count"] == 1


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/v1/summary?window=15x", "window"),
        ("/api/v1/summary?window=30d", "window"),
        ("/api/v1/summary?dim=colour", "dim"),
        ("/api/v1/summary?at=yesterday", "at"),
        ("/api/v1/timeseries?from=now-40d", "from"),
        ("/api/v1/timeseries?from=now-30d&step=1m", "step"),
        ("/api/v1/timeseries?step=2m", "step"),
        ("/api/v1/timeseries?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("/api/v1/timeseries?series=0", "series"),
        ("/api/v1/events?limit=501", "limit"),
        ("/api/v1/events?limit=-1", "limit"),
        ("/api/v1/events?sentiment=angry", "sentiment"),
        ("/api/v1/events?since=1e12", "since"),
        ("/api/v1/events?since=99999999999999", "since"),
        ("/api/v1/events?topic=a&topic=b", "topic"),
        ("/api/v1/events?bogus=1", "bogus"),
        ("/api/v1/events?sort=random", "sort"),
        ("/api/v1/low-confidence?threshold=2", "threshold"),
        ("/api/v1/low-confidence?task=mood", "task"),
        ("/api/v1/alerts?state=open", "state"),
        ("/api/v1/models?since=now-40d", "since"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(stack: Stack, path: str, param: str) -> None:
    body = get(stack, path, status=400)
    assert body["param"] == param and body["error"]


def test_probes_and_page(stack: Stack) -> None:
    assert get(stack, "/health") == {"status": "ok"}
    ready = get(stack, "/ready")
    assert ready["ready"] is True
    assert {k: v["ok"] for k, v in ready["components"].items()} == {
        "broker": True,
        "runner": True,
        "clickhouse": True,
    }
    code, page = fetch(stack.base + "/")
    assert code == 200 and b"<title>moodwire" in page
    for asset in ("/static/app.js", "/static/style.css"):
        assert fetch(stack.base + asset)[0] == 200
    assert b"//" not in page.replace(b"http://www.w3.org", b"").split(b"<body>")[0].replace(b"data:,", b""), (
        "no external (CDN) references in <head>"
    )
    assert get(stack, "/nope", status=404)["error"]


# -- browser ---------------------------------------------------------------------------------------


@pytest.mark.skipif(
    chromium_binary() is None, reason="Debian's chromium is not installed (make test installs it)"
)
def test_dashboard_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "dashboard.png"
    shot.unlink(missing_ok=True)

    probe = """(() => ({
        timelines: document.querySelectorAll('#timelines figure.chart svg path.share').length,
        charts: Array.from(document.querySelectorAll('#timelines figure.chart')).map(f => f.dataset.topic),
        alerts: Array.from(document.querySelectorAll('#alerts li.firing')).map(li => li.dataset.rule + ':' + li.textContent),
        compare: document.querySelectorAll('#compare tbody tr[data-topic]').length,
        headlines: document.querySelectorAll('#headlines li[data-id]').length,
        status: document.querySelector('#status')?.textContent ?? '',
    }))()"""

    async def run() -> tuple[dict[str, Any], list[str]]:
        async with Chromium(tmp_path / "profile", tmp_path / "chromium.log") as browser:
            for domain in ("Runtime", "Log", "Page"):
                await browser.send(f"{domain}.enable")
            await browser.send(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=1400,
                deviceScaleFactor=1,
                mobile=False,
            )
            await browser.send("Page.navigate", url=stack.base + "/")
            deadline = time.monotonic() + 45
            state: dict[str, Any] = {}
            while time.monotonic() < deadline:
                state = await browser.evaluate(probe) or {}
                if state.get("timelines") and state.get("alerts") and state.get("headlines"):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.5)  # let the last paint settle before the screenshot
            png = await browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            import base64

            shot.write_bytes(base64.b64decode(png["data"]))
            return state, browser.errors()

    state, errors = asyncio.run(run())
    topics_with_data = {
        s["value"] for s in get(stack, "/api/v1/timeseries?from=now-60m&to=now&dim=topic")["series"]
    }
    assert state["timelines"] == len(topics_with_data) >= 1, state
    assert set(state["charts"]) == topics_with_data
    assert len(state["alerts"]) == 2 and "topic = tech" in state["alerts"][0], state
    assert state["compare"] >= 1 and state["headlines"] >= 1, state
    assert "updated" in state["status"], state
    assert errors == [], errors
    assert shot.stat().st_size > 10_000


# -- metrics ---------------------------------------------------------------------------------------


def scrape(stack: Stack) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    code, body = fetch(stack.base + "/metrics")
    assert code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def total(metrics: dict[str, dict[Any, float]], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for k, v in metrics.get(name, {}).items() if want <= set(k))


def test_metrics_parse_and_counters_move_with_events(stack: Stack) -> None:
    before = scrape(stack)
    for name in (
        "moodwire_events_consumed_total",
        "moodwire_events_stored_total",
        "moodwire_batch_size_bucket",
        "moodwire_inference_seconds_bucket",
        "moodwire_insert_seconds_bucket",
        "moodwire_consumer_position",
        "moodwire_consumer_highwater",
        "moodwire_http_requests_total",
    ):
        assert name in before, f"{name} missing from /metrics"
    assert total(before, "moodwire_events_consumed_total") == stack.produced
    assert total(before, "moodwire_events_stored_total") == len(stack.events)
    # 20 more valid events (two days back: outside every window above) and 2 malformed ones.
    old = int((stack.anchor - timedelta(days=2)).timestamp() * 1000)
    more = [
        json.dumps(
            {"id": f"probe-{i}", "text": f"metrics probe {i}", "source": "metrics-probe", "ts": old + i}
        )
        for i in range(20)
    ] + ['{"id": "probe-bad", "text": ', '{"id": "probe-empty", "text": ""}']
    stack.produced += produce(stack.settings, [m.encode() for m in more])
    deadline = time.monotonic() + 60
    after = before
    while time.monotonic() < deadline:
        after = scrape(stack)
        if total(after, "moodwire_events_stored_total") >= len(stack.events) + 20:
            break
        time.sleep(0.5)
    wait_drained(stack.settings, stack.worker)
    after = scrape(stack)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("moodwire_events_consumed_total") == 22
    assert moved("moodwire_events_scored_total") == 20
    assert moved("moodwire_events_stored_total") == 20
    assert moved("moodwire_events_dlq_total") == 2
    assert moved("moodwire_batch_size_sum", agent="classify") == 22
    assert moved("moodwire_batch_size_sum", agent="store") == 20
    assert moved("moodwire_inference_seconds_count") >= 1
    assert moved("moodwire_insert_seconds_count") >= 1
    assert total(after, "moodwire_http_requests_total", route="/api/v1/summary", status="200") >= 1
    # Consumer position vs high watermark: caught up on every partition that has records.
    positions = after["moodwire_consumer_position"]
    highs = after["moodwire_consumer_highwater"]
    classify = {k: v for k, v in highs.items() if ("agent", "classify") in k}
    assert sum(classify.values()) == stack.produced
    for key, high in classify.items():
        if high > 0:
            assert positions[key] == high, key


# -- readiness under a Triton outage, then a recount after the worker stops -------------------------


def test_ready_is_503_while_triton_is_down(stack: Stack) -> None:
    from inference.serve.triton_server import TritonServer

    stack.triton.stop()
    try:
        deadline = time.monotonic() + 30
        while True:
            code, body = fetch(stack.base + "/ready")
            if code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        report = json.loads(body)
        assert code == 503, report
        assert report["components"]["runner"]["ok"] is False and report["components"]["runner"]["error"]
        assert report["components"]["clickhouse"]["ok"] and report["components"]["broker"]["ok"]
        assert get(stack, "/health") == {"status": "ok"}  # liveness does not depend on neighbours
    finally:
        stack.triton = TritonServer("cpu", None, stack.ports).start()
    deadline = time.monotonic() + 60
    while fetch(stack.base + "/ready")[0] != 200:
        assert time.monotonic() < deadline, "not ready again after Triton came back"
        time.sleep(0.5)


def test_summary_equals_a_direct_recount_after_the_worker_stops(stack: Stack) -> None:
    bodies = {
        dim: get(stack, f"/api/v1/summary?window=30m&dim={dim}&at={at(stack)}") for dim in ("topic", "lang")
    }
    assert stack.worker.stop() == 0
    end = stack.anchor
    start = end - timedelta(minutes=30)
    client = open_clickhouse(stack.settings)
    try:
        for dim, body in bodies.items():
            rows = client.query(
                f"""SELECT {dim},
                    countIf(toStartOfMinute(ts) >= {{s:DateTime('UTC')}}),
                    countIf(toStartOfMinute(ts) >= {{s:DateTime('UTC')}} AND sentiment = 'negative'),
                    countIf(toStartOfMinute(ts) >= {{s:DateTime('UTC')}} AND sentiment = 'neutral'),
                    countIf(toStartOfMinute(ts) >= {{s:DateTime('UTC')}} AND sentiment = 'positive'),
                    countIf(toStartOfMinute(ts) < {{s:DateTime('UTC')}}),
                    countIf(toStartOfMinute(ts) < {{s:DateTime('UTC')}} AND sentiment = 'negative')
                FROM events FINAL
                WHERE toStartOfMinute(ts) >= {{b:DateTime('UTC')}} AND toStartOfMinute(ts) < {{e:DateTime('UTC')}}
                GROUP BY 1""",
                parameters={"s": start, "e": end, "b": start - timedelta(hours=24)},
            ).result_rows
            recount = {r[0]: tuple(r[1:]) for r in rows}
            api = {
                v["value"]: (
                    v["events"],
                    v["negative"],
                    v["neutral"],
                    v["positive"],
                    v["baseline_events"],
                    v["baseline_negative"],
                )
                for v in body["values"]
            }
            assert api == recount, dim
    finally:
        client.close()
