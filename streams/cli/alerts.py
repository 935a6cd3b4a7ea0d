"""``moodwire rules check`` and ``moodwire alerts list|test``: the alerting commands."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from streams.cli.errors import fail, settings_or_fail


@click.group("rules", context_settings={"help_option_names": ["-h", "--help"]})
def rules_group() -> None:
    """Alert rules files (YAML): check them before deploying."""


@rules_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def rules_check(file: Path | None) -> None:
    """Validate FILE (default: MOODWIRE_ALERTS_RULES_FILE, else the bundled rules); list every problem.

    Each problem is one line, FILE:LINE: rule[id].field: message; exit status 1 if there is any.
    """
    from streams.alerts.rules import DEFAULT_RULES, RulesError, load_rules

    path = file or settings_or_fail().alerts_rules_file or DEFAULT_RULES
    try:
        rules = load_rules(path, os.environ)
    except RulesError as exc:
        for problem in exc.problems:
            click.echo(problem)
        fail(f"{path}: {len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}")
    click.echo(f"{path}: OK, {len(rules.rules)} rules, {len(rules.targets)} targets")


@click.group("alerts", context_settings={"help_option_names": ["-h", "--help"]})
def alerts_group() -> None:
    """Alerts stored in ClickHouse, and test deliveries to webhook targets."""


@alerts_group.command("list")
@click.option("--state", type=click.Choice(["firing", "resolved"]), help="Only alerts in this state.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1))
def alerts_list(state: str | None, fmt: str, limit: int) -> None:
    """Show alert episodes, newest first (embedded ClickHouse: only while the worker is stopped)."""
    from streams.alerts.store import list_alerts
    from streams.clickhouse import StorageError, connect, error_line

    settings = settings_or_fail()
    try:
        client = connect(settings.effective_clickhouse_dsn, readonly=True)
        try:
            rows = list_alerts(client, state, limit)
        finally:
            client.close()
    except StorageError as exc:
        hint = " (alerts list reads the embedded ClickHouse itself: stop the worker first)"
        fail(str(exc) + (hint if "in use by another process" in str(exc) else ""))
    except Exception as exc:  # e.g. the alerts table does not exist yet (no worker has run)
        fail(f"cannot read alerts: {error_line(exc)} (has a worker run migrations?)")
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, default=str, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"alerts{f' ({state})' if state else ''}")
    for col in (
        "rule",
        "scope",
        "state",
        "severity",
        "first seen",
        "last seen",
        "resolved",
        "volume",
        "share",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["rule_id"],
            f"{r['dim']}={r['value']}",
            r["state"],
            r["severity"],
            str(r["first_seen"]),
            str(r["last_seen"]),
            str(r["resolved_at"] or "-"),
            str(r["volume"]),
            f"{r['negative_share']:.1%}",
        )
    Console().print(table)
    click.echo(f"{len(rows)} alert{'s' if len(rows) != 1 else ''}")


@alerts_group.command("test")
@click.argument("target")
@click.option(
    "--max-age", default=30.0, show_default=True, type=click.FloatRange(1), help="Seconds of retries."
)
def alerts_test(target: str, max_age: float) -> None:
    """Send a signed ``alert.test`` delivery to TARGET (a target name of the rules file)."""
    import secrets

    import aiohttp

    from streams.alerts.payload import test_payload
    from streams.alerts.rules import RulesError, load_rules
    from streams.alerts.webhooks import (
        Delivery,
        RetryPolicy,
        SecretError,
        decode_secret,
        deliver,
        payload_body,
    )

    settings = settings_or_fail()
    try:
        rules = load_rules(settings.alerts_rules_file, os.environ)
    except RulesError as exc:
        fail(f"invalid alert rules: {exc.problems[0]}")
    t = rules.targets.get(target)
    if t is None:
        fail(f"no target {target!r} in {rules.path} (targets: {', '.join(sorted(rules.targets)) or 'none'})")
    secret = os.environ.get(t.secret_env, "")
    try:
        decode_secret(secret)
    except SecretError as exc:
        fail(f"{exc}: set {t.secret_env}")
    now = datetime.now(UTC)
    body = payload_body(test_payload(target, now), t.format)
    d = Delivery(
        target, t.url, secret, "msg_test_" + secrets.token_hex(8), body, now.timestamp(), max_age, t.timeout_s
    )

    async def run() -> Any:
        async with aiohttp.ClientSession() as session:
            return await deliver(session, d, RetryPolicy(base_s=1.0, cap_s=5.0))

    outcome = asyncio.run(run())
    if outcome.outcome != "delivered":
        fail(
            f"test delivery to {target} {outcome.outcome}: status {outcome.status} after {outcome.attempts} attempts"
        )
    click.echo(f"delivered to {target} ({t.url}): status {outcome.status}, webhook-id {d.msg_id}")
