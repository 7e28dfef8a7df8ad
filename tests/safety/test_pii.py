"""The pii check: each entity found in its usual formats, and the near-misses that must not be."""

from __future__ import annotations

import pytest

from modelgate.config.safety import ENTITIES
from modelgate.safety.pii import NUMBERS, PLACEHOLDERS, TEXTS, PIIFinder, iban_valid, luhn_valid, ssn_valid

ALL = PIIFinder(ENTITIES)


def labels(text: str) -> list[tuple[str, str]]:
    return [(text[s.start:s.end], s.label) for s in ALL.find(text)]


def test_every_configurable_entity_has_a_finder_and_a_placeholder() -> None:
    assert set(TEXTS) | set(NUMBERS) == set(ENTITIES) == set(PLACEHOLDERS)


@pytest.mark.parametrize(("text", "found"), [
    ("write to jane.doe+news@mail.example.co.uk today", "jane.doe+news@mail.example.co.uk"),
    ("EMAIL: A_B@EXAMPLE.ORG.", "A_B@EXAMPLE.ORG"),
])
def test_emails(text: str, found: str) -> None:
    assert labels(text) == [(found, "email")]


@pytest.mark.parametrize("text", ["user@localhost", "@handle on social", "a@b.c", "name@domain."])
def test_not_emails(text: str) -> None:
    assert labels(text) == []


@pytest.mark.parametrize("phone", ["+1 415 555 0132", "+44 20 7946 0958", "+49 (30) 901820", "+33.1.23.45.67.89",
                                   "(415) 555-0132", "415-555-0132", "415.555.0132", "+14155550132",
                                   "1-800-555-0199", "1 (415) 555-0132"])
def test_phones(phone: str) -> None:
    assert labels(f"call {phone} now") == [(phone, "phone")]


@pytest.mark.parametrize("text", [
    "order 4155550132 shipped",  # a bare run of digits: an order number
    "on 2024-01-15 at 10:30",  # a date and a time
    "invoice INV-415-555-0132",  # part of a reference
    "ref 21-800-555-0199",
    "version 10.2.33.4455",
    "+12 345",  # too few digits
    "ticket 1234-5678",
])
def test_not_phones(text: str) -> None:
    assert [label for _, label in labels(text) if label == "phone"] == []


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559",
                                  "378282246310005", "6011111111111117"])
def test_cards(card: str) -> None:
    assert labels(f"pay with {card}.") == [(card, "credit_card")]


@pytest.mark.parametrize("text", [
    "order 4111 1111 1111 1112",  # fails Luhn
    "tracking 1234567812345678",  # fails Luhn
    "account 9999999999999995",  # passes Luhn, no card network starts with 9
    "id 4111-1111-1111",  # too short
])
def test_not_cards(text: str) -> None:
    assert labels(text) == []


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


@pytest.mark.parametrize("iban", ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
                                  "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300"])
def test_ibans(iban: str) -> None:
    assert labels(f"IBAN {iban} please") == [(iban, "iban")]


@pytest.mark.parametrize("text", ["DE88 3704 0044 0532 0130 00", "GB82WEST12345698765431", "DE89 3704"])
def test_not_ibans(text: str) -> None:
    assert labels(text) == []
    assert not iban_valid(text.replace(" ", ""))


def test_ssns() -> None:
    assert labels("SSN 123-45-6789, or 123 45 6789") == [("123-45-6789", "ssn"), ("123 45 6789", "ssn")]
    assert not ssn_valid("666", "12", "3456") and not ssn_valid("912", "12", "3456")
    for never_issued in ("000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000", "123-45 6789"):
        assert labels(never_issued) == [], never_issued


def test_ip_addresses() -> None:
    assert labels("from 192.168.1.20 and 2001:db8::8a2e:370:7334 and ::ffff:10.0.0.1") == [
        ("192.168.1.20", "ip"), ("2001:db8::8a2e:370:7334", "ip"), ("::ffff:10.0.0.1", "ip")]
    for not_ip in ("999.1.1.1", "1.2.3", "at 12:30:45", "std::vector", "v1.2.3.4.5"):
        assert labels(not_ip) == [], not_ip


@pytest.mark.parametrize("secret", [
    "sk-proj-" + "a1B2" * 12,
    "sk-ant-api03-" + "x" * 40,
    "AKIAIOSFODNN7EXAMPLE",
    "AIza" + "Sy" + "A" * 33,
    "ghp_" + "a" * 36,
    "github_pat_" + "b" * 30,
    "xoxb-1234567890-abcdefghij",
    "sk_live_" + "c" * 24,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
])
def test_secrets(secret: str) -> None:
    assert labels(f"token={secret} end") == [(secret, "secret")]


def test_a_private_key_is_one_secret_even_unfinished() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----"
    assert labels(f"here:\n{key}\nthanks") == [(key, "secret")]
    # Without its END line (a stream cut there, or a paste cut short), all the rest is the key.
    assert labels("x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg") == [
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "secret")]


@pytest.mark.parametrize("text", ["sk-short", "pk_live_" + "c" * 24, "AKIA1234", "ghp_short", "the task-force meeting"])
def test_not_secrets(text: str) -> None:
    assert labels(text) == []


def test_redaction_replaces_each_finding_by_its_placeholder() -> None:
    text = "Mail a@example.com, card 4111 1111 1111 1111, from 10.0.0.1, key AKIAIOSFODNN7EXAMPLE."
    assert ALL.redact(text, ALL.find(text)) == "Mail [EMAIL], card [CREDIT_CARD], from [IP], key [SECRET]."


def test_only_the_entities_asked_for_are_found() -> None:
    emails = PIIFinder(["email"])
    assert [s.label for s in emails.find("a@example.com 4111 1111 1111 1111")] == ["email"]
