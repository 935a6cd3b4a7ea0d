"""Real chDB in a temporary directory: migrations, duplicate-proof storage and aggregates, read-only queries."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from pipeline_harness import aggregate_counts, recount_from_events

from streams.clickhouse import (
    MIGRATIONS,
    StorageError,
    check_read_only_sql,
    connect,
    insert_scored,
    migrate,
    query_readonly,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('ch') / 'data'}"


@pytest.fixture(scope="module")
def client(dsn: str) -> Iterator[Client]:
    c = connect(dsn)
    assert migrate(c) == [m.version for m in MIGRATIONS]
    yield c
    c.close()


@pytest.fixture
def fresh(client: Client) -> Client:
    client.command("TRUNCATE TABLE events")
    client.command("TRUNCATE TABLE minute_aggregates")
    return client


def scored(
    i: int,
    *,
    sentiment: str = "neutral",
    topic: str = "tech",
    entities: list[str] | None = None,
    minute: int = 0,
    scored_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": f"ev-{i}",
        "text": f"text {i}",
        "kind": "news",
        "source": "wire",
        "lang": "en",
        "ts": (T0 + timedelta(minutes=minute, seconds=i % 60)).isoformat().replace("+00:00", "Z"),
        "title": "",
        "url": "",
        "entities": entities if entities is not None else ["ACME"],
        "meta": {"n": i},
        "sentiment": sentiment,
        "sentiment_scores": {"negative": 0.1, "neutral": 0.8, "positive": 0.1},
        "topic": topic,
        "topic_scores": {"tech": 0.9, "business": 0.1},
        "model_versions": {"sentiment": "s1", "topic": "t1"},
        "scored_at": scored_at or T0 + timedelta(minutes=5),
        "ts_from_broker": False,
        "lang_detected": True,
        **extra,
    }


def test_migrations_twice_are_a_no_op(client: Client, dsn: str) -> None:
    tables = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ).result_rows
    assert migrate(client) == []
    again = connect(dsn)  # a second client (same process) also sees everything applied
    assert migrate(again) == []
    again.close()
    assert (
        client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
        ).result_rows
        == tables
    )
    names = {t[0] for t in tables}
    assert {
        "events",
        "events_latest",
        "minute_aggregates",
        "minute_counts",
        "schema_migrations",
        "mv_minute_all",
    } <= names
    assert not {
        n for n in names if n.startswith("mv_minute_") and n != "mv_minute_all"
    }  # replaced by migration 5
    assert client.query("SELECT count() FROM schema_migrations").result_rows[0][0] == len(MIGRATIONS)


def test_duplicate_event_is_one_row_and_counts_do_not_change(fresh: Client) -> None:
    batch = [
        scored(
            i,
            sentiment="negative" if i % 3 == 0 else "neutral",
            topic="tech" if i < 6 else "sport",
            entities=["ACME", "Globex"] if i % 2 else ["ACME"],
            minute=i // 5,
        )
        for i in range(10)
    ]
    assert insert_scored(fresh, batch) == 10
    first = aggregate_counts(fresh)
    assert first == recount_from_events(fresh)
    assert first[("topic", "tech", "2026-01-01 12:00:00")] == (5, 2, 3, 0)
    assert first[("entity", "Globex", "2026-01-01 12:01:00")] == (3, 1, 2, 0)

    # At-least-once: the same batch again, and one event a third time in another batch.
    insert_scored(fresh, batch)
    insert_scored(fresh, [batch[3]])
    assert fresh.query("SELECT count() FROM events FINAL").result_rows[0][0] == 10
    assert fresh.query("SELECT count() FROM events_latest").result_rows[0][0] == 10
    assert aggregate_counts(fresh) == first  # before any background merge
    fresh.command("OPTIMIZE TABLE events FINAL")
    fresh.command("OPTIMIZE TABLE minute_aggregates FINAL")
    assert fresh.query("SELECT count() FROM events").result_rows[0][0] == 10  # physically merged
    assert aggregate_counts(fresh) == first == recount_from_events(fresh)


def test_rescored_event_keeps_latest_version(fresh: Client) -> None:
    insert_scored(fresh, [scored(1, sentiment="neutral", scored_at=T0 + timedelta(minutes=1))])
    insert_scored(fresh, [scored(1, sentiment="negative", scored_at=T0 + timedelta(minutes=2))])
    insert_scored(
        fresh, [scored(1, sentiment="positive", scored_at=T0 + timedelta(seconds=30))]
    )  # older, late
    assert fresh.query("SELECT sentiment FROM events FINAL").result_rows == [("negative",)]
    assert aggregate_counts(fresh)[("topic", "tech", "2026-01-01 12:00:00")][0] == 1


def test_columns_round_trip(fresh: Client) -> None:
    ev = scored(7, entities=["ACME", "Ünïcødé Corp"], meta={"rating": 2, "nested": {"a": [1, 2]}})
    insert_scored(fresh, [ev])
    row = fresh.query(
        "SELECT id, ts, entities, meta, sentiment_scores['neutral'], model_versions['topic'], lang_detected FROM events"
    ).result_rows[0]
    assert row[0] == "ev-7"
    assert row[1].replace(tzinfo=UTC) == datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)
    assert row[2] == ["ACME", "Ünïcødé Corp"]
    assert row[3] == '{"rating":2,"nested":{"a":[1,2]}}'
    assert row[4] == pytest.approx(0.8)
    assert (row[5], row[6]) == ("t1", True)


def test_empty_batch_inserts_nothing(fresh: Client) -> None:
    assert insert_scored(fresh, []) == 0
    assert fresh.query("SELECT count() FROM events").result_rows[0][0] == 0


def test_read_only_query(fresh: Client, dsn: str) -> None:
    insert_scored(fresh, [scored(1), scored(2)])
    ro = connect(dsn, readonly=True)
    res = query_readonly(ro, "-- comment\nSELECT id FROM events_latest ORDER BY id;")
    assert res.columns == ("id",) and res.rows == [("ev-1",), ("ev-2",)]
    for sql in (
        "INSERT INTO events (id) VALUES ('x')",
        "DROP TABLE events",
        "/* x */ truncate events",
        "ALTER TABLE events DELETE WHERE 1",
        "OPTIMIZE TABLE events",
        "SET readonly = 0",
        "",
    ):
        with pytest.raises(StorageError):
            query_readonly(ro, sql)
    # The readonly session setting refuses writes even past the statement check.
    for sql in ("INSERT INTO events (id) VALUES ('x')", "DROP TABLE events", "SET readonly = 0"):
        with pytest.raises(Exception, match=r"readonly|READONLY"):
            ro.command(sql)
    with pytest.raises(StorageError, match="UNKNOWN_TABLE"):
        query_readonly(ro, "SELECT * FROM no_such_table")
    assert fresh.query("SELECT count() FROM events").result_rows[0][0] == 2
    ro.close()


def test_statement_check() -> None:
    assert (
        check_read_only_sql("  with x as (select 1) select * from x ;")
        == "with x as (select 1) select * from x"
    )
    assert check_read_only_sql("/* a */ -- b\nSHOW TABLES") == "SHOW TABLES"
    with pytest.raises(StorageError, match="'INSERT' statements are refused"):
        check_read_only_sql("insert into t values (1)")


def test_second_process_gets_one_line_lock_error(client: Client, dsn: str) -> None:
    code = (
        "import sys\nfrom streams.clickhouse import connect, StorageError\n"
        f"try:\n    connect({dsn!r})\nexcept StorageError as e:\n    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 3, proc.stderr
    assert "is in use by another process" in proc.stdout and proc.stdout.count("\n") == 1


def test_event_listing_cuts_long_chinese_text_on_a_character(fresh: Client) -> None:
    from streams.web import queries as q

    text = "贵州茅台股价大跌，" * 150  # 1,350 characters, 4,050 bytes in UTF-8
    insert_scored(fresh, [scored(1, text=text, entities=["贵州茅台"])])
    params = {
        "since": T0 - timedelta(hours=1),
        "until": T0 + timedelta(hours=1),
        "limit": 5,
        **dict.fromkeys(("sentiment", "topic", "source", "kind", "lang", "entity"), ""),
    }
    rows = fresh.query(q.EVENTS_RECENT, parameters=params).named_results()
    (row,) = list(rows)
    assert row["text"] == text[:1000]  # 1,000 characters, not 1,000 bytes
    assert row["text_truncated"]
    assert row["entities"] == ["贵州茅台"]
    insert_scored(fresh, [scored(2, text="短文本")])
    short = [r for r in fresh.query(q.EVENTS_RECENT, parameters=params).named_results() if r["id"] == "ev-2"]
    assert short[0]["text"] == "短文本" and not short[0]["text_truncated"]
