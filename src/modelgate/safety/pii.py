"""Personal data and secrets in text: emails, phone numbers, payment cards, IBANs, US SSNs, IP
addresses and credentials.

Each entity is a regular expression compiled once, and where the format has a checksum or
reserved values, a validation of the candidate: a card number must pass Luhn and start as a card
network's do, an IBAN must pass ISO 13616's mod-97, an SSN must not use the area, group or serial
numbers the SSA never issues. That is what keeps order numbers, dates and version strings from
being flagged. Phone numbers need a leading ``+`` or the separators of the US format, so that a
bare run of digits (an order or invoice number) is not one.

Secrets are the key formats of the major providers and clouds (OpenAI, Anthropic, AWS, Google,
GitHub, Slack, Stripe), PEM private keys and JWTs. A PEM key whose END line has not (yet) come is
taken to run to the end of the text, so that a stream never releases its middle.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection

from modelgate.safety.spans import Span, replaced, without_overlaps

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "credit_card": "[CREDIT_CARD]",
    "iban": "[IBAN]",
    "ssn": "[SSN]",
    "ip": "[IP]",
    "secret": "[SECRET]",
}

_EMAIL = re.compile(r"[A-Za-z0-9](?<![\w.%+-][A-Za-z0-9])[A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,63}(?![\w-])")
# International (E.164 written with spaces, dots, dashes or a bracketed area code), or the US
# format with its separators and, optionally, its country code 1: (415) 555-0132, 415-555-0132,
# 415.555.0132, 1-800-555-0199.
_PHONE = re.compile(
    r"\+(?<![\w+]\+)\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,5}(?![\w-]|[.]\d)"
    r"|(?:1(?<![\w(+.-]1)[ .-](?:\(\d{3}\) ?|\d{3}[ .-])|\((?<![\w(+.-]\()\d{3}\) ?|\d(?<![\w(+.-]\d)\d\d[ .-])"
    r"\d{3}[ .-]\d{4}(?![\w-]|[.]\d)")
_CARD = re.compile(r"\d(?<![\w-]\d)(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"[A-Z](?<![\w-][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w-])")
_SSN = re.compile(r"(\d(?<![\w-]\d)\d\d)([- ])(\d{2})\2(\d{4})(?![\w-])")
_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:.])")
# Three groups of an IPv6 address without "::": a search that jumps from colon to colon.
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_SECRET = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:ant-(?:api|admin)\d\d-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key ids
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub tokens
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe secret and restricted keys
    r"|eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # JWTs
    r")(?![A-Za-z0-9_-])"
    r"|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)",
    re.DOTALL)
# What every secret above contains: substring searches in C rule most texts out at once.
_SECRET_MARKERS = ("sk-", "sk_", "rk_", "AKIA", "ASIA", "ABIA", "ACCA", "AIza", "ghp_", "gho_", "ghu_", "ghs_",
                   "ghr_", "github_pat_", "xox", "eyJ", "-----BEGIN")
# The first digits of the card networks' numbers: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9]|2)|35|3(?:0[0-5]|[68])")
_SEPARATORS = str.maketrans("", "", " -")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: the country and check digits moved to the end, letters as 10..35, mod 97 is 1."""
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """Numbers the SSA never issues: area 000, 666 or 900-999, group 00, serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _emails(text: str) -> list[Span]:
    if "@" not in text:
        return []
    return [Span(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]


# Numbers (cards, SSNs, phone numbers, IPv4 addresses) are looked for only in the runs of digits
# and separators that could hold one, and only where a run has the digits the entity needs: one
# scan that skips ahead to digits, so that prose pays almost nothing for four expressions.
# Each is called with the run (``pos``, ``endpos``), two characters past it for its lookaheads.
_NUMBER_RUN = re.compile(r"[0-9(+][0-9 ().+-]*[0-9]")
NumberFinder = Callable[[str, int, int], list[Span]]


def _phones(text: str, pos: int, endpos: int) -> list[Span]:
    if text.count("+", pos, endpos) == 0 and endpos - pos < 12:  # the US format has 10 digits, 2 separators
        return []
    spans = []
    for match in _PHONE.finditer(text, pos, endpos):
        digits = sum(c.isdigit() for c in match.group())
        if 8 <= digits <= 15:
            spans.append(Span(match.start(), match.end(), "phone"))
    return spans


def _cards(text: str, pos: int, endpos: int) -> list[Span]:
    spans = []
    for match in _CARD.finditer(text, pos, endpos):
        digits = match.group().translate(_SEPARATORS)
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_valid(digits):
            spans.append(Span(match.start(), match.end(), "credit_card"))
    return spans


def _ssns(text: str, pos: int, endpos: int) -> list[Span]:
    return [Span(m.start(), m.end(), "ssn") for m in _SSN.finditer(text, pos, endpos)
            if ssn_valid(m[1], m[3], m[4])]


def _ipv4s(text: str, pos: int, endpos: int) -> list[Span]:
    if text.count(".", pos, endpos) < 3:
        return []
    return [Span(m.start(), m.end(), "ip") for m in _IPV4.finditer(text, pos, endpos)
            if all(int(octet) < 256 and (octet == "0" or octet[0] != "0") for octet in m.group().split("."))]


# Each number entity's finder and the fewest digits a run must hold for it.
NUMBERS: dict[str, tuple[NumberFinder, int]] = {
    "credit_card": (_cards, 13),
    "ssn": (_ssns, 9),
    "phone": (_phones, 8),
    "ip": (_ipv4s, 4),
}


def _ibans(text: str) -> list[Span]:
    spans = []
    for match in _IBAN.finditer(text):
        found = match.group()
        # The last group may be a word that follows the IBAN: try without it too.
        for candidate in (found, found.rsplit(" ", 1)[0]) if " " in found else (found,):
            if iban_valid(candidate.replace(" ", "")):
                spans.append(Span(match.start(), match.start() + len(candidate), "iban"))
                break
    return spans


def _ipv6s(text: str) -> list[Span]:
    if "::" not in text and not _IPV6_HINT.search(text):
        return []
    spans = []
    for match in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(match.group())
        except ValueError:
            continue
        if match.group() != "::":
            spans.append(Span(match.start(), match.end(), "ip"))
    return spans


def _secrets(text: str) -> list[Span]:
    if not any(marker in text for marker in _SECRET_MARKERS):
        return []
    return [Span(m.start(), m.end(), "secret") for m in _SECRET.finditer(text)]


# The entities found in the text as a whole, by the entity each belongs to.
TEXTS: dict[str, Callable[[str], list[Span]]] = {
    "secret": _secrets,
    "iban": _ibans,
    "email": _emails,
    "ip": _ipv6s,
}
_DIGITS = str.maketrans("", "", "0123456789")


class PIIFinder:
    """Finds the given entities in text; built once per check, called per text."""

    __slots__ = ("_least", "_numbers", "_texts")

    def __init__(self, entities: Collection[str]) -> None:
        self._texts = [finder for name, finder in TEXTS.items() if name in entities]
        self._numbers = [number for name, number in NUMBERS.items() if name in entities]
        self._least = min((least for _, least in self._numbers), default=0)

    def find(self, text: str) -> list[Span]:
        """Every entity found, in order; where two overlap, the one that starts first wins, then
        the longer (spans.py)."""
        spans: list[Span] = []
        for finder in self._texts:
            spans.extend(finder(text))
        if self._numbers:
            for run in _NUMBER_RUN.finditer(text):
                digits = len(run.group()) - len(run.group().translate(_DIGITS))
                if digits < self._least:
                    continue
                end = min(len(text), run.end() + 2)
                for number, least in self._numbers:
                    if digits >= least:
                        spans.extend(number(text, run.start(), end))
        return without_overlaps(spans) if len(spans) > 1 else spans

    @staticmethod
    def redact(text: str, spans: list[Span]) -> str:
        return replaced(text, spans, PLACEHOLDERS)
