"""ClickHouse storage: connect, migrate, insert scored events, run read-only queries.

One code path for the embedded engine (``chdb://<dir>``) and a server
(``http(s)://user:password@host:port/database``), both through
clickhouse-connect.  ``events`` is a ReplacingMergeTree keyed by ``id``, so a
re-delivered event collapses into one row (read it with ``FINAL`` or the
``events_latest`` view); the per-minute aggregates keep ``uniqExact(id)``
states, so a re-delivered event never changes a count, merged or not.
See docs/pipeline.md for the design and its one caveat.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from streams.settings import chdb_path, redact_dsn

log = logging.getLogger(__name__)


class StorageError(Exception):
    """A ClickHouse failure, with a one-line message."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


SENTIMENT_COUNTS: Final = ("negative", "neutral", "positive")
AGGREGATE_DIMENSIONS: Final = {
    # dim name -> expression producing one value per event (entity: one row per distinct entity)
    "topic": "topic",
    "source": "source",
    "kind": "kind",
    "lang": "lang",
    "entity": "arrayJoin(arrayDistinct(entities))",
}


def _aggregate_view(dim: str, expr: str) -> str:
    states = ",\n    ".join(f"uniqExactIfState(id, sentiment = '{s}') AS {s}_state" for s in SENTIMENT_COUNTS)
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS mv_minute_{dim} TO minute_aggregates AS
SELECT '{dim}' AS dim, {expr} AS value, toStartOfMinute(ts) AS minute,
    uniqExactState(id) AS events_state,
    {states}
FROM events GROUP BY dim, value, minute"""


def _aggregate_view_all() -> str:
    """One view for every dimension: each insert writes one part into minute_aggregates, not five.

    Same rows as the per-dimension views of migration 2 (one per dimension value; one per
    distinct entity); inserting through both at once changes nothing, as the states are
    uniqExact over ids.
    """
    states = ",\n    ".join(f"uniqExactIfState(id, sentiment = '{s}') AS {s}_state" for s in SENTIMENT_COUNTS)
    scalars = ", ".join(
        f"('{dim}', toString({expr}))" for dim, expr in AGGREGATE_DIMENSIONS.items() if dim != "entity"
    )
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS mv_minute_all TO minute_aggregates AS
SELECT dim_value.1 AS dim, dim_value.2 AS value, toStartOfMinute(ts) AS minute,
    uniqExactState(id) AS events_state,
    {states}
FROM events
ARRAY JOIN arrayConcat([{scalars}], arrayMap(e -> ('entity', e), arrayDistinct(entities))) AS dim_value
GROUP BY dim, value, minute"""


_STATE = "AggregateFunction(uniqExact, String)"

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "events",
        (
            """CREATE TABLE IF NOT EXISTS events (
    id String,
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    source LowCardinality(String),
    lang LowCardinality(String),
    title String,
    text String,
    url String,
    entities Array(String),
    meta String COMMENT 'JSON object',
    sentiment LowCardinality(String),
    sentiment_scores Map(LowCardinality(String), Float32),
    topic LowCardinality(String),
    topic_scores Map(LowCardinality(String), Float32),
    model_versions Map(LowCardinality(String), String),
    scored_at DateTime64(3, 'UTC'),
    ts_from_broker Bool,
    lang_detected Bool,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX ts_minmax ts TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree(scored_at)
PARTITION BY toYYYYMM(ts)
ORDER BY id""",
            "CREATE VIEW IF NOT EXISTS events_latest AS SELECT * FROM events FINAL",
        ),
    ),
    Migration(
        2,
        "minute_aggregates",
        (
            f"""CREATE TABLE IF NOT EXISTS minute_aggregates (
    dim LowCardinality(String),
    value String,
    minute DateTime('UTC'),
    events_state {_STATE},
    negative_state {_STATE},
    neutral_state {_STATE},
    positive_state {_STATE}
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (dim, value, minute)""",
            *(_aggregate_view(dim, expr) for dim, expr in AGGREGATE_DIMENSIONS.items()),
            """CREATE VIEW IF NOT EXISTS minute_counts AS
SELECT dim, value, minute,
    uniqExactMerge(events_state) AS events,
    uniqExactMerge(negative_state) AS negative,
    uniqExactMerge(neutral_state) AS neutral,
    uniqExactMerge(positive_state) AS positive,
    if(events = 0, 0, negative / events) AS negative_share
FROM minute_aggregates
GROUP BY dim, value, minute""",
        ),
    ),
    Migration(
        3,
        "alerts",
        (
            # One row per alert episode (rule + scope value + first_seen); every update of the
            # episode is a new row with a higher version, so FINAL (or alerts_current) reads
            # its latest state.  An episode goes firing -> (severity changes) -> resolved.
            """CREATE TABLE IF NOT EXISTS alerts (
    dedupe_key String COMMENT 'rule_id|dim=value',
    rule_id LowCardinality(String),
    dim LowCardinality(String) COMMENT 'topic / source / kind / lang / entity',
    value String,
    state LowCardinality(String) COMMENT 'firing / resolved',
    severity LowCardinality(String),
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    window_s UInt32,
    volume UInt64,
    negative UInt64,
    negative_share Float64,
    baseline_share Nullable(Float64),
    zscore Nullable(Float64),
    sample_ids Array(String),
    clear_since Nullable(DateTime64(3, 'UTC')) COMMENT 'firing but inactive since (hold countdown)',
    seq UInt32 COMMENT 'transitions in this episode so far',
    transition LowCardinality(String) COMMENT 'firing / resolved / severity, empty for a plain update',
    transition_id String COMMENT 'webhook-id of that transition (deterministic)',
    published Bool COMMENT 'false: transition recorded, not yet produced to the alerts topic',
    version UInt64 COMMENT 'update counter, microseconds since epoch',
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (dedupe_key, first_seen)""",
            "CREATE VIEW IF NOT EXISTS alerts_current AS SELECT * FROM alerts FINAL",
        ),
    ),
    Migration(
        4,
        "alert_deliveries",
        (
            # One row per (transition, target) that reached a final outcome; the dispatcher skips
            # pairs found here, so a re-published or re-consumed transition is POSTed once.
            """CREATE TABLE IF NOT EXISTS alert_deliveries (
    transition_id String,
    target LowCardinality(String),
    outcome LowCardinality(String) COMMENT 'delivered / rejected / expired',
    attempts UInt32,
    status UInt16,
    dedupe_key String,
    kind LowCardinality(String),
    finished_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(finished_at)
ORDER BY (transition_id, target)""",
        ),
    ),
    Migration(
        5,
        "one_aggregate_view",
        # Five views meant six parts per insert and most of an insert's CPU (40 x 400 rows in chDB:
        # 44 ms of CPU per insert, 26 with one view).  The new view first, then the old ones go:
        # no insert in between is missed, and one seen by both counts once.
        (
            _aggregate_view_all(),
            *(f"DROP VIEW IF EXISTS mv_minute_{dim}" for dim in AGGREGATE_DIMENSIONS),
        ),
    ),
)

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY version"""

EVENT_COLUMNS: Final = (
    "id",
    "ts",
    "kind",
    "source",
    "lang",
    "title",
    "text",
    "url",
    "entities",
    "meta",
    "sentiment",
    "sentiment_scores",
    "topic",
    "topic_scores",
    "model_versions",
    "scored_at",
    "ts_from_broker",
    "lang_detected",
)

READ_ONLY_KEYWORDS: Final = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
_LEADING_COMMENTS: Final = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)


def error_line(exc: BaseException) -> str:
    """First meaningful line of a ClickHouse / chDB error, without the stack trace or version trailer."""
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return re.sub(r"\s*\(version [^)]*\)\.?$", "", line)[:500]
    return type(exc).__name__


def connect(dsn: str, *, readonly: bool = False) -> Client:
    """A clickhouse-connect client for ``dsn``; ``readonly`` makes the server refuse writes and DDL.

    readonly=2 (not 1) because clickhouse-connect sends per-query settings,
    which readonly=1 forbids; 2 still refuses every write, DDL and a change of
    ``readonly`` itself.
    """
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ProgrammingError

    settings: dict[str, Any] = {"readonly": 2} if readonly else {}
    path = chdb_path(dsn)
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(interface="chdb", path=str(path), settings=settings)
        return clickhouse_connect.get_client(dsn=dsn, settings=settings)
    except ProgrammingError as exc:
        if path is not None and _locked_by_another_process(path):
            raise StorageError(
                f"ClickHouse data directory {path} is in use by another process "
                "(chDB allows one process per directory): stop it, or point MOODWIRE_CLICKHOUSE_DSN elsewhere"
            ) from None
        raise StorageError(f"cannot open ClickHouse at {redact_dsn(dsn)}: {error_line(exc)}") from None
    except (ClickHouseError, OSError) as exc:
        raise StorageError(f"cannot connect to ClickHouse at {redact_dsn(dsn)}: {error_line(exc)}") from None


def _locked_by_another_process(path: Path) -> bool:
    """True when another process holds chDB's lock on ``<dir>/status``.

    Checked only after a failed open: the lock is per open file, so probing
    before opening would also trip over this process's own engine.
    """
    import fcntl

    try:
        with open(path / "status", "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def applied_versions(client: Client) -> set[int]:
    client.command(_MIGRATIONS_TABLE)
    return {int(r[0]) for r in client.query("SELECT version FROM schema_migrations FINAL").result_rows}


def migrate(client: Client, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply missing migrations in order; return the versions applied now (empty when up to date).

    Every statement is IF NOT EXISTS, so a migration interrupted half way is
    simply re-run; the version row is written only after all its statements.
    """
    try:
        done = applied_versions(client)
        applied = []
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in done:
                continue
            for statement in migration.statements:
                client.command(statement)
            client.insert(
                "schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
            )
            applied.append(migration.version)
            log.info("migration=applied version=%d name=%s", migration.version, migration.name)
    except ClickHouseError as exc:
        raise StorageError(f"migration failed: {error_line(exc)}") from None
    return applied


def _as_datetime(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def event_columns(events: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Scored events (``streams.pipeline.events.scored_event`` dicts) as column lists in EVENT_COLUMNS order."""
    cols: list[list[Any]] = [[] for _ in EVENT_COLUMNS]
    (
        c_id,
        c_ts,
        c_kind,
        c_source,
        c_lang,
        c_title,
        c_text,
        c_url,
        c_entities,
        c_meta,
        c_sent,
        c_sent_scores,
        c_topic,
        c_topic_scores,
        c_versions,
        c_scored,
        c_ts_broker,
        c_lang_det,
    ) = cols
    for ev in events:
        c_id.append(ev["id"])
        c_ts.append(_as_datetime(ev["ts"]))
        c_kind.append(ev.get("kind") or "other")
        c_source.append(ev.get("source") or "unknown")
        c_lang.append(ev.get("lang") or "und")
        c_title.append(ev.get("title") or "")
        c_text.append(ev["text"])
        c_url.append(ev.get("url") or "")
        c_entities.append(list(ev.get("entities") or ()))
        c_meta.append(json.dumps(ev.get("meta") or {}, ensure_ascii=False, separators=(",", ":")))
        c_sent.append(ev["sentiment"])
        c_sent_scores.append(dict(ev["sentiment_scores"]))
        c_topic.append(ev["topic"])
        c_topic_scores.append(dict(ev["topic_scores"]))
        c_versions.append(dict(ev["model_versions"]))
        c_scored.append(_as_datetime(ev["scored_at"]))
        c_ts_broker.append(bool(ev.get("ts_from_broker", False)))
        c_lang_det.append(bool(ev.get("lang_detected", False)))
    return cols


def insert_scored(client: Client, events: Sequence[Mapping[str, Any]]) -> int:
    """Insert one batch of scored events with a single INSERT; return the row count.

    Safe to repeat after a crash: re-inserted ids collapse in ``events`` and
    leave every aggregate count unchanged.  chDB has no async client: call this
    from a worker thread in async code.
    """
    if not events:
        return 0
    t0 = time.perf_counter()
    try:
        client.insert("events", event_columns(events), column_names=list(EVENT_COLUMNS), column_oriented=True)
    except ClickHouseError as exc:
        raise StorageError(f"insert of {len(events)} events failed: {error_line(exc)}") from None
    log.info("stage=store rows=%d ms=%.1f", len(events), (time.perf_counter() - t0) * 1000)
    return len(events)


def check_read_only_sql(sql: str) -> str:
    """The statement without leading comments, or StorageError if it is not a read-only statement.

    A courtesy check for a clear message; the real guard is the readonly
    session setting of the client that runs it.
    """
    body = _LEADING_COMMENTS.sub("", sql, count=1).strip().rstrip(";").strip()
    if not body:
        raise StorageError("empty query")
    keyword = re.split(r"[\s(]", body, maxsplit=1)[0].upper()
    if keyword not in READ_ONLY_KEYWORDS:
        allowed = "/".join(sorted(READ_ONLY_KEYWORDS))
        raise StorageError(f"read-only: {keyword or body[:20]!r} statements are refused (allowed: {allowed})")
    return body


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def query_readonly(client: Client, sql: str) -> QueryResult:
    """Run one read-only statement (``client`` should come from ``connect(..., readonly=True)``)."""
    body = check_read_only_sql(sql)
    try:
        result = client.query(body)
    except ClickHouseError as exc:
        raise StorageError(error_line(exc)) from None
    return QueryResult(tuple(result.column_names), [tuple(r) for r in result.result_rows])
