"""Input parsing and output rendering for ``moodwire classify``.

Each input becomes a dict: either ``{"line", "text", ...}`` ready to classify
or ``{"line", "error"}``.  Bad lines never stop the stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def parse_line(number: int, raw: str, jsonl: bool) -> dict[str, Any]:
    line = raw.rstrip("\r\n")
    if not jsonl:
        return {"line": number, "text": line} if line.strip() else {"line": number, "error": "empty text"}
    if not line.strip():
        return {"line": number, "error": "empty line"}
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"line": number, "error": f"invalid JSON: {exc.msg} at column {exc.colno}"}
    if not isinstance(obj, dict):
        return {"line": number, "error": "expected a JSON object"}
    text = obj.get("text")
    if not isinstance(text, str):
        return {"line": number, "error": 'missing "text" string'}
    if not text.strip():
        return {"line": number, "error": "empty text"}
    item: dict[str, Any] = {"line": number}
    if "id" in obj:
        item["id"] = obj["id"]
    item["text"] = text
    lang = obj.get("lang")
    if lang is not None:
        if not isinstance(lang, str) or not lang.strip():
            return {"line": number, "error": '"lang" must be a non-empty string'}
        item["lang"] = lang.strip().lower()
    return item


def parse_lines(
    lines: Iterable[tuple[int, str]], jsonl: bool, as_arguments: bool = False, chunk: int = 64
) -> Iterator[list[dict[str, Any]]]:
    """Yield parsed items in chunks so stdin is classified as it streams in.

    Arguments are always plain texts; "line" is then the argument's position.
    """
    batch: list[dict[str, Any]] = []
    for number, raw in lines:
        item = parse_line(number, raw, jsonl and not as_arguments)
        batch.append(item)
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def render_table(rows: list[dict[str, Any]]) -> None:
    """A rich table: label, confidence and the text, coloured by sentiment."""
    from rich.console import Console
    from rich.table import Table

    colour = {"negative": "red", "neutral": "yellow", "positive": "green"}
    table = Table(show_lines=False)
    for col in ("sentiment", "p", "topic", "p", "text"):
        table.add_column(col, overflow="fold")
    for row in rows:
        if "error" in row:
            table.add_row("-", "", "-", "", f"[dim]line {row.get('line')}: {row['error']}[/dim]")
            continue
        s, t = row["sentiment"], row["topic"]
        table.add_row(
            f"[{colour.get(s, 'white')}]{s}[/]",
            f"{row['sentiment_scores'][s]:.2f}",
            t,
            f"{row['topic_scores'][t]:.2f}",
            row.get("text", ""),
        )
    Console().print(table)
