"""The ``moodwire`` command group: each command group lives in a module of its own (docs/layout.md).

Every command has ``--help``; failures print one line to stderr and exit
non-zero.  Heavy libraries are imported inside commands so ``--help`` and
``classify`` stay fast.
"""

from __future__ import annotations

import click

from streams.cli.alerts import alerts_group, rules_group
from streams.cli.bench import bench
from streams.cli.classify import classify
from streams.cli.data import data
from streams.cli.demo import demo_command
from streams.cli.model import distil, evaluate, export, refit_head, train
from streams.cli.pipeline import broker_command, query_command
from streams.cli.produce import produce_command
from streams.cli.triton import triton as triton_group
from streams.cli.worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """moodwire: real-time sentiment and topic analytics for news and reviews."""


main.add_command(triton_group)
main.add_command(broker_command)
main.add_command(query_command)
main.add_command(worker_command)
main.add_command(produce_command)
main.add_command(demo_command)
main.add_command(rules_group)
main.add_command(alerts_group)
for command in (train, distil, refit_head, evaluate, export, data, classify, bench):
    main.add_command(command)


if __name__ == "__main__":
    main()
