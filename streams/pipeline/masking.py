"""Data masking (数据脱敏): replace personal data in an event's free text with kind tokens.

:func:`mask_text` is pure: candidates are found by regular expressions and kept only
when a maintained library says they are real (python-stdnum: Luhn for payment cards,
ISO 13616 mod-97 and the country's length for IBANs, GB 11643 for Chinese resident
IDs; phonenumbers, Google's libphonenumber: international numbers with ``+``;
:mod:`ipaddress`: IPv4/IPv6).  A number that fails its checksum is left alone, so
ordinary figures in news and reviews stay as written.  :class:`Masker` applies it to
the fields of a scored event that carry producer-written text (``text``, ``title``,
``url``, ``entities``, string values in ``meta``); the classify stage calls it after
scoring and before the ``scored-events`` record exists (docs/masking.md).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.cn import ric

# The order is the priority when two candidates overlap: an e-mail address contains
# digits, an IBAN or ID number contains phone-like runs, and so on.
KINDS: Final = ("email", "iban", "cn_id", "card", "phone", "ip")
TOKENS: Final[dict[str, str]] = {
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "cn_id": "[CN_ID]",
    "card": "[CARD]",
    "phone": "[PHONE]",
    "ip": "[IP]",
}

_EMAIL: Final = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+'-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# Country code, check digits, then 11-30 letters/digits, printed plain or in groups of four.
_IBAN: Final = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# 6-digit region, birth date (1800-2099), 3-digit sequence, check character (digit or X).
_CN_ID: Final = re.compile(
    r"(?<![A-Za-z0-9])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
    r"(?![A-Za-z0-9])"
)
# 13-19 digits, plain or grouped by one kind of separator (checked by _card_groups), starting
# with an issuer prefix of the big networks (Visa 4, Mastercard 2/5, Amex/Diners/JCB 3, Discover/
# UnionPay 6), and not part of a longer run of digit groups (a broken IBAN, a table of figures).
_CARD: Final = re.compile(
    r"(?<![A-Za-z\d+-])(?<!\d[ -])(?:4|5[1-5]|2[2-7]|3[0-9]|6)\d{2,3}(?:[ -]?\d){9,15}(?![\d]|[ -]\d)"
)
# Chinese mobile: 1[3-9]x xxxx xxxx, optionally +86 / 0086, plain or grouped 3-4-4.
# (The pattern starts with its first digit, which re can search for fast; the lookbehind and the
# optional country code are checked on the few matches by _CN_PREFIX.)
_CN_MOBILE: Final = re.compile(r"1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_CN_PREFIX: Final = re.compile(r"(?:\+|00)86[ -]?$")
_DIGITS_AND_PLUS: Final = frozenset("0123456789+")
_PLUS_DIGIT: Final = re.compile(r"\+ ?\(?\d")
_PHONE_WINDOW: Final = 40
# Cheap pre-scans: a text without 8 digits in a (lightly punctuated) run holds no phone, card,
# IBAN or ID number, and one without "d.d.d" no IPv4; most news and reviews stop here.
_DIGIT_RUN: Final = re.compile(r"\d(?:[ .()/+-]{0,2}\d){7}")
_DOTTED: Final = re.compile(r"\d\.\d{1,3}\.\d")
NUMERIC_KINDS: Final = frozenset({"iban", "cn_id", "card", "phone"})
_IPV4: Final = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)"
)
_IPV6: Final = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![0-9A-Za-z:])"
)


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    kind: str


def _card_groups(raw: str) -> bool:
    """Printed like a card: one run of digits, or groups 4-4-4-4(-3), 4-4-4-1..4, 4-6-5 / 4-6-4."""
    seps = {c for c in raw if not c.isdigit()}
    if not seps:
        return True
    if len(seps) > 1:
        return False
    groups = [len(g) for g in raw.split(seps.pop())]
    if groups in ([4, 6, 5], [4, 6, 4]):
        return True
    return len(groups) >= 4 and all(n == 4 for n in groups[:-1][:4]) and 1 <= groups[-1] <= 4


def _find_email(text: str) -> Iterable[Span]:
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield Span(m.start(), m.end(), "email")


def _find_iban(text: str) -> Iterable[Span]:
    for m in _IBAN.finditer(text):
        raw = m.group()
        # A trailing group may belong to the sentence ("... DE89 ... 3000 for rent"): try shorter.
        parts = raw.split(" ")
        for n in range(len(parts), 1, -1):
            candidate = " ".join(parts[:n])
            if std_iban.is_valid(candidate):
                yield Span(m.start(), m.start() + len(candidate), "iban")
                break
        else:
            if " " not in raw and std_iban.is_valid(raw):
                yield Span(m.start(), m.end(), "iban")


def _cn_id_valid(number: str) -> bool:
    """GB 11643 check character and a real birth date; the region code is not looked up, because
    stdnum's table lags behind re-districting and a real ID must not slip through unmasked."""
    number = number.upper()
    if number[-1] != ric.calc_check_digit(number):
        return False
    try:
        ric.get_birth_date(number)
    except ValueError:
        return False
    return True


def _find_cn_id(text: str) -> Iterable[Span]:
    for m in _CN_ID.finditer(text):
        if _cn_id_valid(m.group()):
            yield Span(m.start(), m.end(), "cn_id")


def _find_card(text: str) -> Iterable[Span]:
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        # 18 digits shaped like a resident ID (region, birth date) whose check failed is a mistyped
        # ID, not a card; masking it would make the ID check pointless.
        if len(digits) == 18 and _CN_ID.fullmatch(raw):
            continue
        if 13 <= len(digits) <= 19 and _card_groups(raw) and luhn.is_valid(digits):
            yield Span(m.start(), m.end(), "card")


def _find_phone(text: str) -> Iterable[Span]:
    for m in _CN_MOBILE.finditer(text):
        start = m.start()
        prefix = _CN_PREFIX.search(text, max(0, start - 5), start)
        if prefix is not None:
            start = prefix.start()
        if start == 0 or text[start - 1] not in _DIGITS_AND_PLUS:
            yield Span(start, m.end(), "phone")
    # libphonenumber's matcher costs ~0.25 ms per KB: run it only on a window after each "+<digit>"
    # (an international number, formatted, fits in _PHONE_WINDOW characters).
    end = -1
    for plus in _PLUS_DIGIT.finditer(text):
        if plus.start() < end:
            continue
        lo = max(0, plus.start() - 1)
        end = plus.start() + _PHONE_WINDOW
        for match in phonenumbers.PhoneNumberMatcher(
            text[lo:end], None, leniency=phonenumbers.Leniency.VALID
        ):
            start = lo + match.start
            # The matcher may take an opening bracket without its partner: "(+33 6 12 34 56 78)".
            if text[start] == "(" and match.raw_string.count("(") > match.raw_string.count(")"):
                start += 1
            yield Span(start, lo + match.end, "phone")
            end = max(end, lo + match.end)


def _find_ip(text: str) -> Iterable[Span]:
    if _DOTTED.search(text):
        for m in _IPV4.finditer(text):
            yield Span(m.start(), m.end(), "ip")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            raw = m.group()
            if sum(c.isalnum() for c in raw) < 2:
                continue
            try:
                ipaddress.IPv6Address(raw)
            except ValueError:
                continue
            yield Span(m.start(), m.end(), "ip")


_FINDERS: Final = {
    "email": _find_email,
    "iban": _find_iban,
    "cn_id": _find_cn_id,
    "card": _find_card,
    "phone": _find_phone,
    "ip": _find_ip,
}


def find_spans(text: str, kinds: Iterable[str] = KINDS) -> list[Span]:
    """Non-overlapping personal-data spans in ``text``, in order; on overlap the earlier kind wins."""
    wanted = set(kinds)
    if not wanted.isdisjoint(NUMERIC_KINDS) and not _DIGIT_RUN.search(text):
        wanted -= NUMERIC_KINDS
    taken: list[Span] = []
    for kind in KINDS:
        if kind not in wanted:
            continue
        for span in _FINDERS[kind](text):
            if all(span.end <= t.start or span.start >= t.end for t in taken):
                taken.append(span)
    return sorted(taken, key=lambda s: s.start)


def mask_text(text: str, kinds: Iterable[str] = KINDS) -> str:
    """``text`` with every personal-data span replaced by its token (``[EMAIL]``, ``[PHONE]``, ...)."""
    spans = find_spans(text, kinds)
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos : span.start])
        out.append(TOKENS[span.kind])
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True)
class Masker:
    """Masks the producer-written fields of an event dict; ``id``, ``source``, ``kind``, ``lang`` stay.

    ``id`` is the dedupe key (masking it would merge distinct events) and ``source``,
    ``kind``, ``lang`` are short codes the producer chooses; docs/masking.md says so.
    """

    kinds: tuple[str, ...] = KINDS

    @classmethod
    def from_settings(cls, settings: Any) -> Masker | None:
        """None when ``MOODWIRE_MASKING=off``: the stage then costs nothing."""
        if settings.masking != "on":
            return None
        kinds = (k.strip() for k in settings.masking_kinds.split(","))  # the pattern checked each name
        return cls(tuple(dict.fromkeys(k for k in kinds if k)))

    def text(self, value: str) -> str:
        return mask_text(value, self.kinds)

    def _any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._any(v) for v in value]
        return value

    def event(self, event: Any) -> Any:
        """A copy of a :class:`streams.pipeline.events.ValidEvent` with its free-text fields masked."""
        return replace(
            event,
            text=self.text(event.text),
            title=self.text(event.title),
            url=self.text(event.url),
            entities=tuple(dict.fromkeys(self.text(e) for e in event.entities)),
            meta=self._any(event.meta),
        )
