"""Chinese and mixed-language events end to end: tansu, Triton with both language models, the worker,
chDB, the web API and a signed webhook.

Every Chinese string that goes in (text, title, source, entity) must come back unchanged, as the
same UTF-8 bytes, from the stored rows, the API and the alert payload; a 1,350-character Chinese
text comes back from the API cut at 1,000 characters, never inside one.  Han-script events are
scored by the Chinese model (its version on the row), the others by the English one, whatever
their lang: the 320 hand-written texts of tests/routing_cases.jsonl (English; simplified,
traditional, Cantonese and mixed Chinese; Japanese; Korean; others) land on the model their label
names, exactly as ``moodwire classify`` routes them.  A negative surge on a Chinese entity fires an
entity alert whose payload names it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import Worker, open_clickhouse, produce, settings_env, settings_from

from inference.serve.artifacts import ARTIFACTS_DIR, load_artifact, model_name
from streams.alerts.receiver import Receiver
from streams.alerts.webhooks import new_secret
from streams.embedded.broker import EmbeddedBroker, free_port

pytestmark = [
    pytest.mark.triton,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pytriton") is None,
        reason="nvidia-pytriton (bundled tritonserver) not installed: make install-dev",
    ),
    pytest.mark.skipif(
        not (ARTIFACTS_DIR / model_name("zh") / "model.json").is_file(),
        reason="no Chinese model in inference/artifacts (moodwire train/export --language zh)",
    ),
]

ENTITY = "云帆科技"
# Our own sentences (fictional company): unambiguous bad news for it.
NEGATIVE = [
    "云帆科技新款手机电池过热起火，多地用户投诉",
    "云帆科技被曝泄露上千万用户数据，监管部门介入调查",
    "云帆科技宣布召回全部问题手机，股价暴跌百分之二十",
    "云帆科技应用商店大面积崩溃，用户无法登录长达一天",
    "云帆科技客服对投诉置之不理，消费者愤怒维权",
    "云帆科技因虚假宣传被罚款五千万元",
]
RULES = f"""\
targets:
  rx:
    url: ${{RX_URL}}
    secret_env: RX_SECRET
    max_age: 10m
rules:
  - id: zh-entity
    scope: {{dim: entity, value: {ENTITY}}}
    window: 5m
    min_volume: 12
    conditions: {{negative_share: 0.5}}
    hold: 0s
    targets: [rx]
"""


ROUTING_CASES = [
    json.loads(line) for line in (Path(__file__).parent / "routing_cases.jsonl").open(encoding="utf-8")
]


def cli_versions(texts: list[str]) -> list[str]:
    """The sentiment model version ``moodwire classify`` gives each text (language detected)."""
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "classify", "--jsonl", "--no-text"],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return [json.loads(line)["model_versions"]["sentiment"] for line in done.stdout.splitlines()]


def events(now_ms: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(24):  # the surge
        out.append(
            {
                "id": f"zh-neg-{i:02d}",
                "text": NEGATIVE[i % len(NEGATIVE)],
                "title": f"快讯：{ENTITY}",
                "source": "财经快报",
                "entities": [ENTITY],
                "ts": now_ms - 1000 * i,
            }
        )
    out += [
        {
            "id": "zh-given",
            "text": "青川银行三季度净利润同比增长一成",
            "lang": "zh-CN",
            "entities": ["青川银行"],
        },
        {
            "id": "mixed-1",
            "text": "Nimbus Cloud 在华发布新版本，用户好评如潮 👍",
            "entities": ["Nimbus Cloud"],
        },
        {
            "id": "mixed-2",
            "text": "Globex shares fall after 云帆科技 wins the contract",
            "lang": "en",
            "entities": ["Globex", ENTITY],
        },
        {
            "id": "zh-trad",
            "text": "星河影業新片票房創新高，觀眾口碑極佳",
            "source": "新聞晨報",
            "entities": ["星河影業"],
        },
        {"id": "en-1", "text": "Northwind Traders names a new chief financial officer", "lang": "en"},
        {"id": "zh-long", "text": "云帆科技股价大跌，投资者恐慌抛售。" * 80, "entities": [ENTITY]},
    ]
    for n, case in enumerate(ROUTING_CASES):  # lang left to detection, as most producers do
        out.append({"id": f"route-{n:03d}", "text": case["text"], "source": f"routing-{case['kind']}"})
    for e in out:
        e.setdefault("ts", now_ms)
        e.setdefault("kind", "news")
    return out


def get_json(url: str) -> tuple[bytes, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    return body, json.loads(body.decode("utf-8"))  # strict UTF-8: no half characters


def wait_for(predicate: Any, timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        worker.assert_alive()
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{worker.tail(60)}")


def test_chinese_strings_survive_every_door_byte_for_byte(tmp_path: Path) -> None:
    from inference.serve.routing import LanguageRouter, route
    from inference.serve.runner import LocalRunner
    from inference.serve.triton_server import TritonServer, free_ports

    zh_version = load_artifact(ARTIFACTS_DIR, model_name("zh")).version
    en_version = load_artifact(ARTIFACTS_DIR).version
    router = LanguageRouter({lang: LocalRunner(name=model_name(lang)) for lang in ("en", "zh")})
    labels = router.classify(NEGATIVE, ["zh"] * len(NEGATIVE))
    router.close()
    # precondition of the alert: the Chinese model reads these texts as negative
    assert sum(c.sentiment.label == "negative" for c in labels) >= 5, [c.sentiment.label for c in labels]

    secret = new_secret()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    sent = events(int(time.time() * 1000))
    by_id = {e["id"]: e for e in sent}
    with (
        EmbeddedBroker(port=free_port()) as broker,
        TritonServer("cpu", None, free_ports()) as triton,
        Receiver(secret) as rx,
    ):
        web_port = free_port()
        env = settings_env(
            broker.bootstrap_servers,
            tmp_path / "data",
            "zh",
            MOODWIRE_RUNNER="triton",
            MOODWIRE_TRITON_URL=triton.grpc_url,
            MOODWIRE_LANGUAGES="en,zh",
            MOODWIRE_TOPIC_ALERTS="alerts-zh",
            MOODWIRE_ALERTS_LEADER_TOPIC="alerts-leader-zh",
            MOODWIRE_ALERTS_RULES_FILE=str(rules),
            MOODWIRE_ALERTS_INTERVAL_S="2",
            MOODWIRE_WEB_PORT=str(web_port),
            RX_URL=rx.url,
            RX_SECRET=secret,
        )
        settings = settings_from(env)
        worker = Worker(env, tmp_path / "worker.log").start()
        try:
            worker.wait_running()
            lines = [json.dumps(e, ensure_ascii=False).encode("utf-8") for e in sent]
            assert produce(settings, lines) == len(sent)
            wait_for(lambda: worker.stats().get("stored", 0) >= len(sent), 120, "all events stored", worker)
            wait_for(lambda: rx.deliveries("alert.firing"), 60, "the entity alert", worker)

            (firing,) = rx.deliveries("alert.firing")
            data = firing.json()["data"]
            assert (data["dim"], data["value"]) == ("entity", ENTITY)
            assert ENTITY.encode("utf-8") in firing.body  # raw UTF-8 in the signed body, not \\u escapes
            assert set(data["sample_ids"]) <= set(by_id)

            base = f"http://127.0.0.1:{web_port}/api/v1/events"
            span = "since=now-1h&limit=500"
            body, listed = get_json(f"{base}?{span}&entity={urllib.parse.quote(ENTITY)}")
            got = {e["id"]: e for e in listed["events"]}
            assert set(got) == {e["id"] for e in sent if ENTITY in e.get("entities", [])}
            for i, e in got.items():
                want = by_id[i]
                if i == "zh-long":
                    assert e["text"] == want["text"][:1000] and e["text_truncated"] is True
                    assert e["text"].encode("utf-8") == want["text"][:1000].encode("utf-8")
                else:
                    assert e["text"].encode("utf-8") == want["text"].encode("utf-8")
                assert e["entities"] == want["entities"]
                assert e.get("title") in (want.get("title"), None, "")
            assert ENTITY.encode("utf-8") in body
        finally:
            worker.stop()

    client = open_clickhouse(settings)
    rows = client.query(
        "SELECT id, text, title, source, entities, lang, model_versions['sentiment'] FROM events FINAL"
    ).result_rows
    client.close()
    stored = {r[0]: r for r in rows}
    assert set(stored) == set(by_id)
    for i, (_, text, title, source, entities, lang, version) in stored.items():
        want = by_id[i]
        assert text.encode("utf-8") == want["text"].encode("utf-8")
        assert (title or None) == want.get("title") and entities == want.get("entities", [])
        assert source == want.get("source", source)
        assert version == (zh_version if route(text) == "zh" else en_version), (i, lang, version)
    # The labelled routing set: every Han-script Chinese text on the Chinese model, no English text
    # there, whatever lang detection stored (wuu, yue, ja, ...), and the same route in the CLI.
    want_model = {"zh": zh_version, "en": en_version}
    routed = [stored[f"route-{n:03d}"] for n in range(len(ROUTING_CASES))]
    wrong = [
        (c["kind"], c["text"], r[5])
        for c, r in zip(ROUTING_CASES, routed, strict=True)
        if r[6] != want_model[c["expected"]]
    ]
    assert wrong == []
    assert [r[6] for r in routed] == cli_versions([c["text"] for c in ROUTING_CASES])
    detected = {r[5] for c, r in zip(ROUTING_CASES, routed, strict=True) if c["expected"] == "zh"}
    assert detected - {"zh"}, "the set should hold Chinese that detection does not tag zh"
    assert stored["zh-given"][5] == "zh-cn" and stored["mixed-2"][5] == "en"
    assert stored["mixed-1"][6] == zh_version  # "Nimbus Cloud 在华发布新版本…": mainly Han
    assert stored["zh-neg-00"][5] == "zh"  # detected
