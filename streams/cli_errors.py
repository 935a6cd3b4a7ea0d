"""How every ``moodwire`` command reports failure: one line on stderr, non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"moodwire: error: {message}", err=True)
    sys.exit(code)
