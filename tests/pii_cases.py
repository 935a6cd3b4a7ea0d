"""Generated personal-data cases for the masking tests: valid checksums, realistic sentences.

Each case is ``(sentence, raw value, kind, expected masked sentence)``.  Values are
built from the rules the masker checks (Luhn, ISO 13616 mod-97, GB 11643, E.164
numbers libphonenumber calls valid), so a case the masker misses is a real miss.
"""

from __future__ import annotations

import ipaddress
import random
import string
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn

from streams.pipeline.masking import TOKENS

EN_TEMPLATES = (
    "Please contact me at {x} about the refund, the blender broke after two days.",
    "Customer service told me to send the receipt to {x} but nobody answered.",
    "Worst delivery ever. My details: {x}. Still waiting for a reply!",
    "The leaked file lists {x} next to the name of the chief executive.",
    "I paid with {x} and was charged twice for the same order.",
    "Support asked for {x} over chat, which felt unsafe.",
    "({x}) was shown on the screen during the live broadcast, viewers said.",
    "Great hotel, but reception read {x} out loud in the lobby.",
)
# Full-width punctuation on purpose: it is what Chinese reviews use, and it must not stop a match.
ZH_TEMPLATES = (
    "我的联系方式是{x}，请尽快处理退款。",
    "快递员打电话到{x}，说包裹已经丢失了。",
    "客服要求提供{x}，感觉很不安全。",
    "订单信息：{x}，商品质量很差，不推荐购买。",
)

NAMES = ("anna.schmidt", "j.doe", "li_wei88", "o'brien", "support+orders", "mary-jane", "x", "wang.fang")
DOMAINS = ("example.com", "mail.example.co.uk", "qq.com", "163.com", "example.de", "sub.example.org")
PHONE_REGIONS = ("GB", "DE", "FR", "US", "IN", "BR", "JP", "AU", "ES", "IT", "NL", "ZA", "SG", "CN")
CN_REGIONS = ("110101", "310104", "440305", "510107", "330106", "420102", "610113", "320102")
# Countries whose BBAN the generator can build: (country, layout), n = digit, a = capital letter.
IBAN_LAYOUTS = (
    ("DE", "n" * 18),
    ("AT", "n" * 16),
    ("PL", "n" * 24),
    ("SE", "n" * 20),
    ("CH", "n" * 17),
    ("GB", "aaaa" + "n" * 14),
    ("NL", "aaaa" + "n" * 10),
    ("FR", "n" * 23),
)


@dataclass(frozen=True)
class Case:
    sentence: str
    raw: str
    kind: str
    expected: str


def email(rng: random.Random) -> str:
    return f"{rng.choice(NAMES)}{rng.randint(0, 99) if rng.random() < 0.4 else ''}@{rng.choice(DOMAINS)}"


def _random_national(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    for _ in range(50):  # vary the subscriber digits while the number stays valid
        tail = "".join(rng.choice(string.digits) for _ in range(4))
        num = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(national[:-4] + tail)
        )
        if phonenumbers.is_valid_number(num):
            return num
    return example


def phone(rng: random.Random) -> str:
    if rng.random() < 0.4:  # Chinese mobile without country code, as written in China
        digits = "1" + rng.choice("3456789") + "".join(rng.choice(string.digits) for _ in range(9))
        sep = rng.choice(("", " ", "-"))
        return f"{digits[:3]}{sep}{digits[3:7]}{sep}{digits[7:]}"
    num = _random_national(rng, rng.choice(PHONE_REGIONS))
    fmt = rng.choice((phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    return phonenumbers.format_number(num, fmt)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice((("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15), ("6011", 16)))
    if prefix == "4" and rng.random() < 0.3:
        length = rng.choice((13, 19))
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = body + luhn.calc_check_digit(body)
    assert luhn.is_valid(digits)
    sep = rng.choice(("", " ", "-"))
    if length == 15:
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def iban(rng: random.Random) -> str:
    country, layout = rng.choice(IBAN_LAYOUTS)
    bban = "".join(rng.choice(string.digits if c == "n" else string.ascii_uppercase) for c in layout)
    compact = country + std_iban.calc_check_digits(country + "00" + bban) + bban
    assert std_iban.is_valid(compact), compact
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def gb11643_check(first17: str) -> str:
    """The check character of GB 11643-1999, written out here independently of stdnum."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    check = (12 - total % 11) % 11
    return "X" if check == 10 else str(check)


def cn_id(rng: random.Random) -> str:
    year = rng.randint(1940, 2008)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    first = f"{rng.choice(CN_REGIONS)}{year}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    return first + gb11643_check(first)


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return str(ipaddress.IPv4Address(rng.getrandbits(32)))
    addr = ipaddress.IPv6Address(rng.getrandbits(128) & ~((1 << rng.choice((0, 32, 64))) - 1))
    return addr.compressed if rng.random() < 0.7 else addr.exploded


GENERATORS = {"email": email, "phone": phone, "card": card, "iban": iban, "cn_id": cn_id, "ip": ip}


def make_cases(n: int = 2000, seed: int = 13) -> list[Case]:
    """``n`` cases, the kinds in turn, each value in an English or Chinese sentence."""
    rng = random.Random(seed)
    kinds = list(GENERATORS)
    cases = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        raw = GENERATORS[kind](rng)
        template = rng.choice(ZH_TEMPLATES if rng.random() < 0.3 else EN_TEMPLATES)
        cases.append(Case(template.format(x=raw), raw, kind, template.format(x=TOKENS[kind])))
    return cases


def near_misses(rng: random.Random, n: int = 300) -> list[str]:
    """Numbers shaped like a card, IBAN or ID number whose checksum is wrong: must stay unmasked."""
    out = []
    for i in range(n):
        kind = ("card", "iban", "cn_id")[i % 3]
        value = GENERATORS[kind](rng)
        # Change the last digit (a check digit of cards and IDs, an account digit of IBANs).
        last = value[-1]
        wrong = str((int(last) + rng.randint(1, 9)) % 10) if last.isdigit() else "0"
        out.append(value[:-1] + wrong)
    return out
