"""Masking end to end: real tansu broker, the worker subprocess (local ONNX runner, chDB), the web
API and a signature-verifying webhook receiver, with ``MOODWIRE_MASKING=on``.

2,000 generated personal-data cases go in as text, title, url and entity.  No raw value may
come out in a stored row, in ``/api/v1/events`` (paged through every event), in the
``scored-events`` topic, or in a webhook payload (a rule on the entity dimension fires for
the masked entity); and every stored label equals the local model's label for the original,
unmasked text (classification reads the original).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pii_cases import make_cases
from pipeline_harness import (
    Worker,
    open_clickhouse,
    produce,
    read_topic,
    settings_env,
    settings_from,
    wait_drained,
)

from streams.alerts.receiver import Receiver
from streams.alerts.webhooks import new_secret

N = 2000


@pytest.fixture(scope="module")
def local_runner():
    """What the worker serves by default: the Chinese model for zh events, the English one for others."""
    from inference.serve.artifacts import model_name
    from inference.serve.routing import LanguageRouter
    from inference.serve.runner import LocalRunner

    r = LanguageRouter({lang: LocalRunner(name=model_name(lang)) for lang in ("en", "zh")})
    yield r
    r.close()


RULES = """\
targets:
  rx:
    url: ${RX_URL}
    secret_env: RX_SECRET
    max_age: 10m
rules:
  - id: entity-watch
    scope: {dim: entity}
    window: 5m
    min_volume: 20
    conditions: {negative_share: 0.0}
    hold: 0s
    targets: [rx]
"""


def make_events(now_ms: int) -> tuple[list[bytes], dict[str, dict[str, Any]], list[str]]:
    """Events carrying PII in text, title, url and entities; returns lines, originals by id, raw values."""
    cases = make_cases(N, seed=21)
    lines, originals, raws = [], {}, []
    for i, case in enumerate(cases):
        other = cases[(i + 7) % N]  # a second value, of another kind, in the title
        email = cases[(i // 6) * 6].raw  # every 6th case is an e-mail address: 334 distinct ones
        event = {
            "id": f"mask-{i:05d}",
            "text": case.sentence,
            "title": other.sentence,
            "url": f"https://shop.example.com/orders?contact={email}",
            "entities": ["Acme", email],
            "ts": now_ms - i * 10,  # distinct times, all inside the rule's window
            "source": "reviews",
        }
        lines.append(json.dumps(event, ensure_ascii=False).encode())
        originals[event["id"]] = event
        raws += [case.raw, other.raw, email]
    return lines, originals, sorted(set(raws))


def leaked(text: str, raws: list[str]) -> list[str]:
    return [r for r in raws if r in text]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def api_events(base: str, since_ms: int) -> list[dict[str, Any]]:
    """Every event through /api/v1/events, newest first, paged by ``until``."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since_ms / 1000))
    out: list[dict[str, Any]] = []
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    while True:
        query = urllib.parse.urlencode({"since": since, "until": until, "limit": 500})
        page = get_json(f"{base}/api/v1/events?{query}")["events"]
        if not page:
            return out
        out += page
        until = page[-1]["ts"]


def test_masking_on_keeps_personal_data_out_of_rows_api_and_webhooks(
    broker, local_runner, tmp_path: Path
) -> None:
    secret = new_secret()
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    now_ms = int(time.time() * 1000)
    lines, originals, raws = make_events(now_ms)
    with Receiver(secret) as rx:
        env = settings_env(
            broker.bootstrap_servers,
            tmp_path / "data",
            "mask",
            MOODWIRE_MASKING="on",
            MOODWIRE_TOPIC_ALERTS="alerts-mask",
            MOODWIRE_ALERTS_LEADER_TOPIC="alerts-leader-mask",
            MOODWIRE_ALERTS_RULES_FILE=str(rules_file),
            MOODWIRE_ALERTS_INTERVAL_S="2",
            RX_URL=rx.url,
            RX_SECRET=secret,
        )
        settings = settings_from(env)
        worker = Worker(env, tmp_path / "worker.log").start()
        try:
            worker.wait_running()
            assert produce(settings, lines) == N
            wait_drained(settings, worker)
            base = f"http://127.0.0.1:{env['MOODWIRE_WEB_PORT']}"
            served = api_events(base, now_ms - N * 10 - 60_000)
            deadline = time.monotonic() + 60
            while not rx.deliveries("alert.firing") and time.monotonic() < deadline:
                time.sleep(0.5)
            metrics = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
            assert worker.stop() == 0
        finally:
            worker.stop()
        webhooks = rx.received

    # The API served every event, masked.
    assert sorted(e["id"] for e in served) == sorted(originals)
    served_body = json.dumps(served, ensure_ascii=False)
    assert not leaked(served_body, raws), leaked(served_body, raws)[:5]
    assert "[EMAIL]" in served_body and "[CN_ID]" in served_body

    # The scored-events topic (what every downstream reader sees) holds only masked text.
    scored = read_topic(settings, settings.topic_scored)
    assert len(scored) >= N
    scored_body = "\n".join(r.value.decode() for r in scored)
    assert not leaked(scored_body, raws), leaked(scored_body, raws)[:5]

    # A webhook fired for the masked entity, and no payload holds a raw value.
    firing = [w.json() for w in webhooks if w.json()["type"] == "alert.firing"]
    assert firing, f"no webhook delivered:\n{worker.tail()}"
    assert {(f["data"]["dim"], f["data"]["value"]) for f in firing} >= {("entity", "[EMAIL]")}
    for w in webhooks:
        assert not leaked(w.body.decode(), raws)

    # Stored rows: masked, and labelled as the model labels the original text.
    client = open_clickhouse(settings)
    try:
        rows = client.query(
            "SELECT id, text, title, url, entities, sentiment, topic, lang FROM events FINAL"
        ).named_results()
        rows = list(rows)
    finally:
        client.close()
    assert sorted(r["id"] for r in rows) == sorted(originals)
    for r in rows:
        stored = "\n".join([r["text"], r["title"], r["url"], *r["entities"]])
        assert not leaked(stored, raws), (r["id"], leaked(stored, raws))
        assert "[EMAIL]" in r["url"] and r["entities"] == ["Acme", "[EMAIL]"]
    ids = sorted(originals)
    lang = {r["id"]: r["lang"] for r in rows}
    expected = local_runner.classify([originals[i]["text"] for i in ids], [lang[i] for i in ids])
    labels = {r["id"]: (r["sentiment"], r["topic"]) for r in rows}
    same = sum(labels[i] == (e.sentiment.label, e.topic.label) for i, e in zip(ids, expected, strict=True))
    assert same == N, f"{N - same} stored labels differ from the unmasked text's"
    assert "moodwire_masking_seconds_count" in metrics
    print(f"\nmasking e2e: {N} events, {len(served)} served, {len(firing)} firing webhook(s), 0 leaks")
