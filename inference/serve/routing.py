"""Each text to the model of its language.

English and Chinese have a model each (docs/models.md): a text whose event
``lang`` is ``zh`` or ``zh-*`` goes to the Chinese model, every other text
(English, another language, or ``und`` when detection was unsure) to the
English one, as before there was a Chinese model.  ``LanguageRouter`` is a
``Runner`` over one runner per route: it splits a batch by route, scores the
parts concurrently and returns the results in the batch's order.  A text's
result depends on its own text and language only, never on its batch-mates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from inference.serve.runner import Classification, Runner

DEFAULT_ROUTE = "en"
ROUTES = ("en", "zh")


def route(lang: str | None) -> str:
    """``zh`` for Chinese language tags (``zh``, ``zh-cn``, ``zh-Hant``...), else ``en``."""
    tag = (lang or "").strip().lower()
    return "zh" if tag == "zh" or tag.startswith("zh-") else DEFAULT_ROUTE


class LanguageRouter:
    """A ``Runner`` that sends each text to the runner of its language's route."""

    def __init__(self, runners: dict[str, Runner]) -> None:
        if DEFAULT_ROUTE not in runners:
            raise ValueError(f"a router needs a runner for {DEFAULT_ROUTE!r}, got {sorted(runners)}")
        unknown = set(runners) - set(ROUTES)
        if unknown:
            raise ValueError(f"unknown route(s) {sorted(unknown)}: expected some of {', '.join(ROUTES)}")
        self.runners = dict(runners)

    @property
    def model_versions(self) -> dict[str, str]:
        """The English model's versions (each result carries the versions of the model that made it)."""
        return self.runners[DEFAULT_ROUTE].model_versions

    def _groups(self, texts: Sequence[str], langs: Sequence[str] | None) -> dict[str, list[int]]:
        if langs is not None and len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        groups: dict[str, list[int]] = {}
        for i in range(len(texts)):
            key = route(langs[i] if langs is not None else None)
            groups.setdefault(key if key in self.runners else DEFAULT_ROUTE, []).append(i)
        return groups

    @staticmethod
    def _merge(n: int, parts: dict[str, tuple[list[int], list[Classification]]]) -> list[Classification]:
        out: list[Classification | None] = [None] * n
        for rows, results in parts.values():
            for i, result in zip(rows, results, strict=True):
                out[i] = result
        return out  # type: ignore[return-value]  # every index is in exactly one group

    def classify(self, texts: Sequence[str], langs: Sequence[str] | None = None) -> list[Classification]:
        groups = self._groups(texts, langs)
        parts = {
            key: (rows, self.runners[key].classify([texts[i] for i in rows])) for key, rows in groups.items()
        }
        return self._merge(len(texts), parts)

    async def aclassify(
        self, texts: Sequence[str], langs: Sequence[str] | None = None
    ) -> list[Classification]:
        groups = self._groups(texts, langs)
        keys = list(groups)
        results = await asyncio.gather(
            *(self.runners[key].aclassify([texts[i] for i in groups[key]]) for key in keys)
        )
        return self._merge(len(texts), {k: (groups[k], r) for k, r in zip(keys, results, strict=True)})

    async def ais_ready(self, timeout_s: float = 2.0) -> bool:
        """Every routed runner that can tell (a Triton client) is ready; in-process ones always are."""
        probes = [p for r in self.runners.values() if (p := getattr(r, "ais_ready", None)) is not None]
        results = await asyncio.gather(*(probe(timeout_s) for probe in probes))
        return all(results)

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()
