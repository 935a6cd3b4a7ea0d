"""``moodwire demo``: the whole embedded stack on one machine, with live progress and results.

Starts the broker (tansu), Triton (bundled tritonserver, CPU) and the worker
(a ``moodwire worker`` subprocess), replays the bundled sample stream with a
scripted negative surge on one topic (and, when the Chinese model is present,
the Chinese sample with a surge of bad news about 云帆科技 at the same time,
which fires its own entity alert), shows live progress from the worker's
stats file (events in, scored, stored, DLQ, per-topic negative share), then
stops the worker and prints per-topic results queried from ClickHouse.
Alerts: the worker evaluates the bundled default rules (every 5 s in the
demo) and delivers to a local webhook receiver that the demo starts on
loopback with a fresh secret (``MOODWIRE_WEBHOOK_URL`` /
``MOODWIRE_WEBHOOK_SECRET``, which the default rules' target reads); each
delivery it receives is signature-checked and printed.  Every
child is stopped on exit, Ctrl-C included; ``--keep-running`` leaves the stack
up until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from streams.cli.errors import fail
from streams.cli.replay import SAMPLE_ZH, TOPICS, Surge, load_sample, schedule, send_schedule
from streams.embedded.processes import stop_process
from streams.settings import Settings, SettingsError, load_settings
from streams.stats import read_stats

DEMO_ALERTS_INTERVAL_S = 5.0  # the service default is 15 s; the demo is short


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def alert_line(rec: Any) -> str:
    """One line per received webhook delivery (rich markup)."""
    from rich.markup import escape

    doc = rec.json()
    d = doc.get("data", {})
    kind = doc.get("type", "?").removeprefix("alert.")
    colour = {"firing": "bold red", "resolved": "bold green", "severity": "bold yellow"}.get(kind, "bold")
    check = "signature verified" if rec.verified else "SIGNATURE INVALID"
    share = d.get("negative_share")
    # Values come from the stream (entity names): escaped, so "[" in a name is text, not markup.
    return (
        f"[{colour}]ALERT {kind.upper()}[/{colour}] "
        + escape(
            f"{d.get('rule_id')} {d.get('dim')}={d.get('value')} severity={d.get('severity')} "
            f"negative share {share:.0%} of {d.get('volume')} events in {d.get('window')} "
            f"(webhook-id {rec.msg_id}, {check})"
        )
        if isinstance(share, int | float)
        else f"[{colour}]{escape(str(doc.get('type')))}[/{colour}] ({check})"
    )


def progress_table(
    produced: int, total: int, stats: dict[str, Any] | None, phase: str, alerts: list[Any] | None = None
) -> Any:
    from rich.table import Table

    stats = stats or {}
    table = Table(title=f"moodwire demo - {phase}", expand=False)
    for col in ("events in", "scored", "DLQ", "stored", "worker RSS"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{produced}/{total}",
        str(stats.get("scored", 0)),
        str(stats.get("dlq", 0)),
        str(stats.get("stored", 0)),
        f"{stats.get('rss', 0) / 2**20:.0f} MiB",
    )
    topics = Table(title="negative share by topic (stored so far)")
    topics.add_column("topic")
    topics.add_column("events", justify="right")
    topics.add_column("negative", justify="right")
    topics.add_column("share", justify="right")
    for topic in TOPICS:
        c = stats.get("topics", {}).get(topic, {"events": 0, "negative": 0})
        share = c["negative"] / c["events"] if c["events"] else 0.0
        bar = "#" * round(share * 20)
        topics.add_row(topic, str(c["events"]), str(c["negative"]), f"{share:5.1%} {bar}")
    from rich.console import Group
    from rich.text import Text

    alerts = alerts or []
    received = Text.from_markup(f"webhook receiver: {len(alerts)} alert deliveries received")
    latest = [Text.from_markup("latest: " + alert_line(alerts[-1]))] if alerts else []
    return Group(table, topics, received, *latest)


def results_table(client: Any, surge: Surge, start: datetime) -> Any:
    from rich.table import Table

    rows = client.query(
        "SELECT value, sum(events), sum(negative), max(negative_share) FROM minute_counts "
        "WHERE dim = 'topic' GROUP BY value ORDER BY value"
    ).result_rows
    s0 = start + timedelta(seconds=surge.start_s)
    s1 = s0 + timedelta(seconds=surge.duration_s)
    window = client.query(
        "SELECT topic, countIf(ts >= {s0:DateTime64(3)} AND ts < {s1:DateTime64(3)}) AS n_in, "
        "countIf(ts >= {s0:DateTime64(3)} AND ts < {s1:DateTime64(3)} AND sentiment = 'negative') AS neg_in, "
        "countIf(NOT (ts >= {s0:DateTime64(3)} AND ts < {s1:DateTime64(3)})) AS n_out, "
        "countIf(NOT (ts >= {s0:DateTime64(3)} AND ts < {s1:DateTime64(3)}) AND sentiment = 'negative') AS neg_out "
        "FROM events FINAL GROUP BY topic",
        parameters={"s0": s0.replace(tzinfo=None), "s1": s1.replace(tzinfo=None)},
    ).result_rows
    surge_share = {r[0]: (r[2] / r[1] if r[1] else 0.0, r[4] / r[3] if r[3] else 0.0) for r in window}
    table = Table(
        title="per-topic results from ClickHouse (minute_counts, events FINAL)",
        caption=f"* scripted negative surge on {surge.topic}; 'surge window' = its {surge.duration_s:.0f} s of event time",
    )
    for col in ("topic", "events", "negative", "share", "peak minute share", "surge window", "outside"):
        table.add_column(col, justify="right" if col != "topic" else "left")
    for value, events, negative, peak in rows:
        inside, outside = surge_share.get(value, (0.0, 0.0))
        mark = " *" if value == surge.topic else ""
        table.add_row(
            value + mark,
            str(events),
            str(negative),
            f"{negative / events:.1%}" if events else "-",
            f"{peak:.1%}",
            f"{inside:.1%}",
            f"{outside:.1%}",
        )
    return table


def _chinese_model() -> bool:
    from inference.serve.artifacts import ARTIFACTS_DIR, model_name

    return (ARTIFACTS_DIR / model_name("zh") / "model.json").is_file()


def _settings(
    data_dir: Path, bootstrap: str, triton_url: str, runner: str, webhook_url: str, webhook_secret: str
) -> tuple[Settings, dict[str, str]]:
    env = {
        "MOODWIRE_DATA_DIR": str(data_dir),
        "MOODWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MOODWIRE_TRITON_URL": triton_url,
        "MOODWIRE_RUNNER": runner,
        "MOODWIRE_WEB_PORT": str(_web_port()),
        # the bundled default rules deliver to this target (streams/alerts/default_rules.yaml)
        "MOODWIRE_WEBHOOK_URL": webhook_url,
        "MOODWIRE_WEBHOOK_SECRET": webhook_secret,
        "MOODWIRE_ALERTS_INTERVAL_S": str(DEMO_ALERTS_INTERVAL_S),
        "MOODWIRE_LANGUAGES": "en,zh" if _chinese_model() else "en",
    }
    os.environ.update(env)
    try:
        return load_settings(clickhouse_dsn=f"chdb://{(data_dir / 'clickhouse').resolve()}"), env
    except SettingsError as exc:
        fail(str(exc))


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--duration", default=90.0, show_default=True, type=click.FloatRange(10, 600), help="Seconds of replay."
)
@click.option(
    "--rate", default=20.0, show_default=True, type=click.FloatRange(1, 2000), help="Base events/s."
)
@click.option("--surge-topic", type=click.Choice(TOPICS), default="tech", show_default=True)
@click.option("--runner", type=click.Choice(["triton", "local"]), default="triton", show_default=True)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Default: a new temporary directory."
)
@click.option("--keep-running", is_flag=True, help="Leave broker, Triton and worker up until Ctrl-C.")
def demo_command(
    duration: float, rate: float, surge_topic: str, runner: str, data_dir: Path | None, keep_running: bool
) -> None:
    """Start broker + Triton + worker, replay the sample stream with a negative surge, show results."""
    from rich.console import Console
    from rich.live import Live

    from streams.alerts.receiver import Receiver
    from streams.alerts.webhooks import new_secret
    from streams.embedded.broker import BrokerError, EmbeddedBroker, free_port

    console = Console()
    receiver = Receiver(new_secret())
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="moodwire-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(port=free_port(), log_path=data_dir / "broker.log")
    server: Any = None
    worker: subprocess.Popen[bytes] | None = None
    t_start = time.monotonic()
    try:
        broker.start()
        console.print(f"broker  ready: {broker.bootstrap_servers}")
        receiver.start()
        console.print(f"webhook receiver ready: {receiver.url} (verifies Standard Webhooks signatures)")
        triton_url = "127.0.0.1:8001"
        if runner == "triton":
            from inference.serve.triton_server import TritonServer, TritonServerError, free_ports

            try:
                server = TritonServer("cpu", None, free_ports()).start()
            except TritonServerError as exc:
                fail(f"cannot start Triton: {exc} (or run with --runner local)")
            triton_url = server.grpc_url
            console.print(f"triton  ready: {triton_url} (CPU, python backend + ONNX Runtime)")
        settings, env = _settings(
            data_dir, broker.bootstrap_servers, triton_url, runner, receiver.url, receiver.secret
        )
        worker_log = (data_dir / "worker.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.worker"],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we stop the worker ourselves
        )
        worker_log.close()
        stats_path = data_dir / "worker-stats.json"
        deadline = time.monotonic() + 120
        while (read_stats(stats_path) or {}).get("status") != "running":
            if worker.poll() is not None or time.monotonic() > deadline:
                fail(f"worker did not start; see {data_dir / 'worker.log'}")
            time.sleep(0.2)
        console.print(f"worker  ready: pid {worker.pid}, log {data_dir / 'worker.log'}")
        dashboard = f"http://{settings.web_host}:{settings.web_port}/"
        console.print(f"dashboard: {dashboard} (live page; API under {dashboard}api/v1)")

        surge = Surge(surge_topic, start_s=duration / 3, duration_s=duration / 3, rate=rate * 0.75, lang="en")
        surges, items, surge_text = [surge], load_sample(), f"NEGATIVE SURGE on {surge_topic}"
        if _chinese_model():  # the Chinese sample too, with its own surge: bad news about 云帆科技
            surges.append(Surge("tech", surge.start_s, surge.duration_s, rate=rate * 0.4, lang="zh"))
            items += load_sample(SAMPLE_ZH)
            surge_text += " and on 云帆科技 (Chinese)"
        start = datetime.now(UTC)
        timed = schedule(items, duration, rate, surges, int(start.timestamp() * 1000))
        produced = 0

        def sent(n: int) -> None:
            nonlocal produced
            produced += n

        with Live(
            progress_table(0, len(timed), None, "replaying"), console=console, refresh_per_second=4
        ) as live:

            async def replay_with_progress() -> None:
                task = asyncio.create_task(send_schedule(settings, timed, sent))
                while not task.done():
                    elapsed = time.monotonic() - t_start
                    phase = "replaying"
                    if surge.start_s <= time.monotonic() - t_replay < surge.start_s + surge.duration_s:
                        phase = f"replaying - {surge_text}"
                    live.update(
                        progress_table(
                            produced,
                            len(timed),
                            read_stats(stats_path),
                            f"{phase} ({elapsed:.0f}s)",
                            receiver.deliveries(),
                        )
                    )
                    await asyncio.wait({task}, timeout=0.25)
                await task

            t_replay = time.monotonic()
            asyncio.run(replay_with_progress())
            drain_deadline = time.monotonic() + 120
            while True:
                stats = read_stats(stats_path) or {}
                live.update(progress_table(produced, len(timed), stats, "draining", receiver.deliveries()))
                if stats.get("consumed", 0) >= len(timed) and stats.get("stored", 0) >= stats.get(
                    "scored", 0
                ):
                    break
                if worker.poll() is not None:
                    fail(f"worker exited with status {worker.returncode}; see {data_dir / 'worker.log'}")
                if time.monotonic() > drain_deadline:
                    console.print("[yellow]not drained after 120 s; showing what is stored[/yellow]")
                    break
                time.sleep(0.5)
            # the last events may still be under evaluation: give the alert evaluator two rounds
            alert_deadline = time.monotonic() + 2 * DEMO_ALERTS_INTERVAL_S + 2
            while not receiver.deliveries("alert.firing") and time.monotonic() < alert_deadline:
                live.update(
                    progress_table(
                        produced,
                        len(timed),
                        read_stats(stats_path),
                        "evaluating alerts",
                        receiver.deliveries(),
                    )
                )
                time.sleep(0.5)
        console.print()
        _print_alerts(console, receiver)
        if keep_running:
            receiver.on_receive = lambda rec: console.print(alert_line(rec))
            console.print(
                f"stack is up (--keep-running): export MOODWIRE_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers} "
                f"MOODWIRE_TOPIC_INPUT={settings.topic_input}; `moodwire produce FILE` adds events. Ctrl-C stops."
            )
            console.print(f"dashboard: {dashboard}")
            while worker.poll() is None:
                time.sleep(1)
        stop_process(worker, 30)
        worker = None
        from streams.clickhouse import connect

        client = connect(settings.effective_clickhouse_dsn, readonly=True)
        try:
            console.print(results_table(client, surge, start))
        finally:
            client.close()
    except _Stop:
        console.print("stopping")
        if worker is not None and keep_running:
            stop_process(worker, 30)
            worker = None
            from streams.clickhouse import connect

            client = connect(settings.effective_clickhouse_dsn, readonly=True)
            with contextlib.closing(client):
                console.print(results_table(client, surge, start))
    except BrokerError as exc:
        fail(str(exc))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if worker is not None:
            stop_process(worker, 30)
        if server is not None:
            server.stop()
        receiver.stop()
        broker.stop()
    console.print(f"demo finished in {time.monotonic() - t_start:.0f}s; data in {data_dir}")


def _web_port(preferred: int = 6066) -> int:
    """The dashboard's usual port when it is free, else any free one (a second demo, a test run)."""
    from streams.embedded.broker import free_port

    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", preferred))
        return preferred
    except OSError:
        return free_port()


def _print_alerts(console: Any, receiver: Any) -> None:
    received = receiver.deliveries()
    if not received:
        console.print("[yellow]no alert was delivered to the local webhook receiver[/yellow]")
        return
    console.print(f"[bold]alerts delivered to the local webhook receiver ({receiver.url}):[/bold]")
    for rec in received:
        console.print(alert_line(rec))
    console.print(
        "(an alert resolves once its window no longer shows the surge, plus its hold time: "
        "5m + 2m with the default rules; --keep-running to watch)"
    )


if __name__ == "__main__":
    demo_command()
