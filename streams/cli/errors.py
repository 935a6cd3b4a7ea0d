"""How every ``moodwire`` command reports failure: one line on stderr, non-zero exit."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from streams.settings import Settings


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"moodwire: error: {message}", err=True)
    sys.exit(code)


def settings_or_fail(**overrides: Any) -> Settings:
    """:func:`streams.settings.load_settings`, with a bad setting as a one-line CLI error."""
    from streams.settings import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc))
