"""The Grafana provisioning parses and every dashboard query runs on the real schema (embedded chDB).

Each panel's SQL and each template variable's query is run with Grafana's
macros and variables substituted as the ClickHouse plugin would expand them
(``$__timeFilter``, ``$__fromTime``, ``$__toTime``, ``$__interval_s``,
``${var:singlequote}``), against a chDB with every migration applied and a
few scored events in it, so a panel naming a missing table or column fails here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "moodwire.json"
NOW = datetime.now(UTC).replace(microsecond=0)


def expand(sql: str, variables: dict[str, list[str]], start: datetime, end: datetime) -> str:
    """Grafana + ClickHouse plugin macro expansion, enough for this dashboard."""
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    sql = re.sub(r"\$__timeFilter\(([\w.]+)\)", rf"\1 >= toDateTime({t0}) AND \1 <= toDateTime({t1})", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({t0})").replace("$__toTime", f"toDateTime({t1})")
    sql = sql.replace("$__interval_s", "60")
    for name, values in variables.items():
        sql = sql.replace(f"${{{name}:singlequote}}", ", ".join(f"'{v}'" for v in values))
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"unexpanded Grafana variables/macros {leftover} in:\n{sql}"
    return sql


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    from streams.clickhouse import connect, insert_scored, migrate

    c = connect(f"chdb://{tmp_path_factory.mktemp('grafana') / 'ch'}")
    migrate(c)
    events = []
    for i in range(30):
        sentiment = ("negative", "neutral", "positive")[i % 3]
        events.append(
            {
                "id": f"g-{i}",
                "ts": NOW - timedelta(minutes=i),
                "text": f"text {i}",
                "title": f"title {i}" if i % 2 else "",
                "kind": "news" if i % 2 else "review",
                "source": ("wire", "app-store")[i % 2],
                "lang": "en",
                "entities": ["Acme Corp"] if i % 3 == 0 else [],
                "sentiment": sentiment,
                "sentiment_scores": {"negative": 0.4, "neutral": 0.35, "positive": 0.25},
                "topic": ("tech", "business")[i % 2],
                "topic_scores": {"tech": 0.45, "business": 0.55},
                "model_versions": {"sentiment": "s1", "topic": "t1"},
                "scored_at": NOW,
            }
        )
    insert_scored(c, events)
    c.insert(
        "alerts",
        [["r|topic=tech", "r", "topic", "tech", "firing", "critical", NOW, NOW, 300, 10, 6, 0.6, 0.3, 1]],
        column_names=[
            "dedupe_key", "rule_id", "dim", "value", "state", "severity", "first_seen", "last_seen",
            "window_s", "volume", "negative", "negative_share", "baseline_share", "version",
        ],
    )  # fmt: skip
    yield c
    c.close()


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_provisioning_files_parse_and_agree() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "moodwire.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    dash = dashboard()
    uids = {p["datasource"]["uid"] for p in dash["panels"]} | {
        t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]
    }
    uids |= {v["datasource"]["uid"] for v in dash["templating"]["list"]}
    assert uids == {source["uid"]}
    assert {v["name"] for v in dash["templating"]["list"]} == {"topic", "source", "entity"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_template_variable_queries_run(client: Any) -> None:
    for var in dashboard()["templating"]["list"]:
        values = [r[0] for r in client.query(var["query"]).result_rows]
        assert values, var["name"]


@pytest.mark.parametrize(
    "variables",
    [
        {"topic": ["__all"], "source": ["__all"], "entity": ["__all"]},
        {"topic": ["tech", "business"], "source": ["wire"], "entity": ["Acme Corp"]},
    ],
    ids=["all", "selected"],
)
def test_every_panel_query_runs_on_the_schema(client: Any, variables: dict[str, list[str]]) -> None:
    dash = dashboard()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            sql = expand(target["rawSql"], variables, NOW - timedelta(hours=6), NOW + timedelta(minutes=1))
            result = client.query(sql)
            if variables["topic"] == ["__all"]:
                assert result.result_rows, f"panel {panel['title']!r} returned no rows on known data"
            if target["format"] == 0:  # time series: a time column first
                assert result.column_names[0] == "time", panel["title"]


def test_dashboard_panels_reuse_the_documented_queries() -> None:
    docs = (ROOT / "docs" / "queries.md").read_text()
    from streams.web import queries

    for name, sql in queries.ALL.items():
        assert f"## `{name}`" in docs, f"{name} is not documented in docs/queries.md"
        assert f"```sql\n{sql.strip()}\n```" in docs, f"docs/queries.md has a different SQL for {name}"
    for panel in dashboard()["panels"]:
        sql = panel["targets"][0]["rawSql"]
        named = re.search(r"docs/queries\.md (\w+)", sql)
        assert named and named.group(1) in queries.ALL, f"panel {panel['title']!r} does not name its query"
