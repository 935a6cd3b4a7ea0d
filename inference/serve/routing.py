"""Each text to the model that can read it: Han-script text to the Chinese model, the rest to English.

The route depends on the **text's script**, never on the language tag alone:
py3langid tags some Chinese ``wuu``, ``yue`` or ``ja`` (traditional script
above all), and producers send ``cmn``, ``zh-Hant``, ``lzh``... A text whose
main script is Han goes to the Chinese model (simplified or traditional,
Mandarin, Cantonese or classical: the Chinese model is the only one that
reads Han); Japanese (any hiragana, or katakana for a fifth of the CJK
characters: katakana alone may be a brand quoted in Chinese) and every other
script go to the English model, as does a text with no letters at all unless
its tag is a Chinese one.  Mixed Chinese-English text goes by its main
script, counting each Latin-script word as two Han characters (a Chinese
word is about two characters): ``苹果iPhone销量下滑`` is Chinese, ``Shares of
贵州茅台 fell 3% after the report`` English.  The stored ``lang`` is never
changed by routing.  ``LanguageRouter`` is a ``Runner`` over one runner per
route: it splits a batch by route, scores the parts concurrently and returns
the results in the batch's order.  A text's result depends on its own text
only, never on its batch-mates.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Sequence

from inference.serve.runner import Classification, Runner

DEFAULT_ROUTE = "en"
ROUTES = ("en", "zh")
# ISO 639 codes of Chinese languages (macrolanguage zh and its members); only
# consulted for a text without letters, where the script cannot tell.
CHINESE_TAGS = frozenset(
    ["zh", "cmn", "yue", "wuu", "lzh", "nan", "hak", "gan", "hsn", "cjy", "cdo", "cpx", "czh", "czo", "mnp"]
)
# Kana that Chinese text borrows on its own: the middle dot and the long-vowel mark.
_NOT_JAPANESE_KANA = frozenset("\u30fb\u30fc")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def _is_han(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= cp <= 0x4DBF  # Extension A
        or 0x20000 <= cp <= 0x3134F  # Extensions B-G
        or 0xF900 <= cp <= 0xFAFF  # Compatibility Ideographs
        or cp == 0x3007  # ideographic number zero
    )


def script_counts(text: str) -> dict[str, int]:
    """Han characters, kana (and of them hiragana), Hangul, Latin-script words and other letters."""
    counts = {
        "han": 0,
        "hiragana": 0,
        "kana": 0,
        "hangul": 0,
        "latin": len(_LATIN_WORD.findall(text)),
        "other": 0,
    }
    for ch in text:
        cp = ord(ch)
        if _is_han(ch):
            counts["han"] += 1
        elif 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9D:
            counts["kana"] += ch not in _NOT_JAPANESE_KANA
            counts["hiragana"] += 0x3041 <= cp <= 0x309F
        elif 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
            counts["hangul"] += 1
        elif ch.isalpha() and "LATIN" not in unicodedata.name(ch, ""):  # also FULLWIDTH LATIN
            counts["other"] += 1
    return counts


def main_script(text: str) -> str:
    """``han``, ``japanese``, ``hangul``, ``latin``, ``other`` or ``none`` (no letters)."""
    c = script_counts(text)
    if c["hiragana"] or c["kana"] >= 0.2 * (c["han"] + c["kana"]) > 0:
        # Hiragana is Japanese grammar (の, は, を, た); katakana alone may be a brand name
        # quoted in Chinese (ユニクロ), so it counts only when it is a fifth of the CJK text.
        return "japanese"
    weights = {
        "han": c["han"] + c["kana"],
        "hangul": c["hangul"],
        "latin": 2 * c["latin"],
        "other": c["other"],
    }
    best = max(weights, key=lambda k: weights[k])
    return best if weights[best] else "none"


def is_chinese_tag(lang: str | None) -> bool:
    tag = (lang or "").strip().lower().replace("_", "-")
    return tag.split("-")[0] in CHINESE_TAGS


def route(text: str, lang: str | None = None) -> str:
    """``zh`` for a text written mainly in Han characters (any tag), else ``en``.

    ``lang`` decides only for a text without letters (numbers, emoji): ``zh`` if
    it is a Chinese tag (``zh``, ``zh-*``, ``cmn``, ``yue``, ``wuu``, ...).
    """
    script = main_script(text)
    if script == "none":
        return "zh" if is_chinese_tag(lang) else DEFAULT_ROUTE
    return "zh" if script == "han" else DEFAULT_ROUTE


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

    def routes(self, texts: Sequence[str], langs: Sequence[str] | None = None) -> list[str]:
        """The runner each text goes to: its route, or English where there is no runner for it."""
        if langs is not None and len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        keys = [route(t, langs[i] if langs is not None else None) for i, t in enumerate(texts)]
        return [k if k in self.runners else DEFAULT_ROUTE for k in keys]

    def _groups(
        self, texts: Sequence[str], langs: Sequence[str] | None, force: str | None = None
    ) -> dict[str, list[int]]:
        if force is not None:
            if force not in self.runners:
                raise ValueError(f"no {force!r} model here: have {', '.join(sorted(self.runners))}")
            return {force: list(range(len(texts)))} if texts else {}
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(self.routes(texts, langs)):
            groups.setdefault(key, []).append(i)
        return groups

    @staticmethod
    def _merge(n: int, parts: dict[str, tuple[list[int], list[Classification]]]) -> list[Classification]:
        out: list[Classification | None] = [None] * n
        for rows, results in parts.values():
            for i, result in zip(rows, results, strict=True):
                out[i] = result
        return out  # type: ignore[return-value]  # every index is in exactly one group

    def classify(
        self, texts: Sequence[str], langs: Sequence[str] | None = None, force: str | None = None
    ) -> list[Classification]:
        """Score each text with its route's model; ``force`` sends every text to one route."""
        groups = self._groups(texts, langs, force)
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
