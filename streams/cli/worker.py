"""``moodwire worker``: run the agents, alert evaluator and web API until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from streams.cli.errors import fail
from streams.settings import SettingsError, load_settings


@click.command("worker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--runner",
    type=click.Choice(["triton", "local"]),
    help="Where to classify (default: MOODWIRE_RUNNER, else triton at MOODWIRE_TRITON_URL).",
)
@click.option("--batch-size", type=click.IntRange(1, 10_000), help="Micro-batch size (MOODWIRE_BATCH_SIZE).")
@click.option(
    "--batch-max-wait-ms",
    type=click.IntRange(1, 60_000),
    help="Micro-batch wait (MOODWIRE_BATCH_MAX_WAIT_MS).",
)
@click.option(
    "--agents",
    metavar="LIST",
    help="Agents to run, comma-separated: classify, store, deliver (MOODWIRE_WORKER_AGENTS; default all).",
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO", show_default=True
)
def worker_command(
    runner: str | None,
    batch_size: int | None,
    batch_max_wait_ms: int | None,
    agents: str | None,
    log_level: str,
) -> None:
    """Run the pipeline: text-events -> Triton -> scored-events -> ClickHouse, plus alerts and the web API.

    At-least-once: a batch's offsets are committed only after its outputs are
    durable; an unavailable Triton or ClickHouse pauses the stream with backoff.
    Alert rules are evaluated every MOODWIRE_ALERTS_INTERVAL_S and delivered to
    webhooks; the dashboard and API listen on MOODWIRE_WEB_HOST:MOODWIRE_WEB_PORT.
    Workers share the load through one consumer group: e.g. several
    `--agents classify` workers beside one that stores into the embedded chDB.
    """
    from streams.worker import run_worker

    try:
        settings = load_settings(
            runner=runner, batch_size=batch_size, batch_max_wait_ms=batch_max_wait_ms, worker_agents=agents
        )
    except SettingsError as exc:
        fail(str(exc))
    from streams.web.access import exposure_problem

    if (problem := exposure_problem(settings)) is not None:
        fail(problem)
    if settings.alerts_enabled:
        from streams.alerts.rules import RulesError
        from streams.worker import load_alert_rules

        try:
            load_alert_rules(settings)
        except RulesError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            n = len(exc.problems)
            fail(
                f"invalid alert rules: {n} problem{'s' if n != 1 else ''} (listed above; see moodwire rules check)"
            )
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # its rebalance chatter; our lines say what matters
    logging.getLogger("faust").setLevel(max(logging.WARNING, logging.getLevelName(log_level)))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())
    logging.getLogger("moodwire.worker").info("worker=stopped")


if __name__ == "__main__":
    worker_command()
