"""The appliance identifier: a SHA-1 value as 27 base-64 digits (FORMAT.md, "Rules").

Expected identifiers are computed here independently of marketplace.metadata.identifier:
with the standard library's base64 (the 160-bit value, left-padded to 168 bits, is 28
base64url digits whose first one is always 'A') and with bit shifts instead of divmod.
"""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from marketplace.metadata import identifier
from marketplace.metadata.problems import MetadataError

EXAMPLE_SHA1 = "c319bbd5afc0a22ba3eaed0507c39383ec28eeff"
EXAMPLE_ID = "MMZu9WvwKIro-rtBQfDk4PsKO7_"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def by_base64(sha1_hex: str) -> str:
    """Identifier via base64url: 21 bytes = 168 bits = 28 digits, drop the leading 'A'."""
    text = base64.urlsafe_b64encode(int(sha1_hex, 16).to_bytes(21, "big")).decode()
    assert text[0] == "A" and len(text) == 28
    return text[1:]


def by_shifts(sha1_hex: str) -> str:
    """Identifier via 6-bit groups taken from the top of the 162-bit padded value."""
    value = int(sha1_hex, 16)
    return "".join(ALPHABET[(value >> shift) & 0x3F] for shift in range(156, -1, -6))


def sha1_of(identifier_text: str) -> str:
    """Decode with a positional sum, most significant digit first."""
    total = sum(ALPHABET.index(c) * 64 ** (26 - i) for i, c in enumerate(identifier_text))
    return format(total, "040x")


def random_sha1s(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    values = [hashlib.sha1(rng.randbytes(rng.randrange(0, 64))).hexdigest()
              for _ in range(count)]
    # values with many leading zero bits, which a careless encoder drops
    values += [format(rng.getrandbits(bits), "040x") for bits in range(0, 161, 4)]
    return values


def test_independent_helpers_agree_on_the_format_example():
    assert by_base64(EXAMPLE_SHA1) == EXAMPLE_ID
    assert by_shifts(EXAMPLE_SHA1) == EXAMPLE_ID
    assert sha1_of(EXAMPLE_ID) == EXAMPLE_SHA1


def test_format_example_encodes():
    assert identifier.sha1_to_identifier(EXAMPLE_SHA1) == EXAMPLE_ID


def test_format_example_decodes():
    assert identifier.identifier_to_sha1(EXAMPLE_ID) == EXAMPLE_SHA1


def test_identifier_is_not_base64url_of_the_digest_bytes():
    plain = base64.urlsafe_b64encode(bytes.fromhex(EXAMPLE_SHA1)).decode().rstrip("=")
    assert identifier.sha1_to_identifier(EXAMPLE_SHA1) != plain


def test_upper_case_hex_is_the_same_value():
    assert identifier.sha1_to_identifier(EXAMPLE_SHA1.upper()) == EXAMPLE_ID


@pytest.mark.parametrize("sha1_hex", [
    "0" + EXAMPLE_SHA1,          # 41 digits, as in valid-minimal-leading-zero-sha1.xml
    "000000" + EXAMPLE_SHA1,
])
def test_leading_zeros_in_the_hex_do_not_change_the_identifier(sha1_hex):
    assert identifier.sha1_to_identifier(sha1_hex) == EXAMPLE_ID
    assert identifier.same_sha1(sha1_hex, EXAMPLE_SHA1)


@pytest.mark.parametrize(("sha1_hex", "expected"), [
    ("0" * 40, "A" * 27),
    ("0" * 39 + "1", "A" * 26 + "B"),
    ("0" * 39 + "3f", "A" * 26 + "_"),
    ("0" * 38 + "40", "A" * 25 + "BA"),
    ("f" * 40, "P" + "_" * 26),
    ("1", "A" * 26 + "B"),
])
def test_edge_values(sha1_hex, expected):
    assert identifier.sha1_to_identifier(sha1_hex) == expected
    assert identifier.identifier_to_sha1(expected) == format(int(sha1_hex, 16), "040x")


def test_short_values_decode_to_forty_digits_with_leading_zeros():
    sha1_hex = "00000000ab" + "0" * 30
    decoded = identifier.identifier_to_sha1(identifier.sha1_to_identifier(sha1_hex))
    assert decoded == sha1_hex
    assert len(decoded) == 40


def test_round_trip_over_many_random_values():
    for sha1_hex in random_sha1s(2000, seed=20140401):
        encoded = identifier.sha1_to_identifier(sha1_hex)
        assert encoded == by_base64(sha1_hex) == by_shifts(sha1_hex), sha1_hex
        assert len(encoded) == 27
        assert identifier.is_identifier(encoded)
        assert identifier.identifier_to_sha1(encoded) == sha1_hex == sha1_of(encoded)


def test_decoding_random_identifiers_matches_independent_decoder():
    rng = random.Random(7)
    for _ in range(1000):
        text = rng.choice(ALPHABET[:16]) + "".join(rng.choice(ALPHABET) for _ in range(26))
        assert identifier.identifier_to_sha1(text) == sha1_of(text)
        assert identifier.sha1_to_identifier(sha1_of(text)) == text


def test_same_sha1_compares_values():
    assert identifier.same_sha1(EXAMPLE_SHA1, EXAMPLE_SHA1.upper())
    assert not identifier.same_sha1(EXAMPLE_SHA1, EXAMPLE_SHA1[:-1] + "0")


@pytest.mark.parametrize("text", [
    "",
    EXAMPLE_ID[:-1],                 # 26 digits
    EXAMPLE_ID + "A",                # 28 digits
    "A" * 40,
    EXAMPLE_ID[:-1] + "+",           # base64, not base64url
    EXAMPLE_ID[:-1] + "/",
    EXAMPLE_ID[:-1] + "=",
    EXAMPLE_ID[:-1] + " ",
    " " + EXAMPLE_ID[1:],
    EXAMPLE_ID[:-1] + "\u00e9",      # non-ASCII letter
    EXAMPLE_ID[:-1] + "\uff3f",      # full-width low line
    "Q" + "A" * 26,                  # 2**160: more than 160 bits
    "_" * 27,
])
def test_rejects_malformed_identifiers(text):
    with pytest.raises(MetadataError) as caught:
        identifier.identifier_to_sha1(text)
    assert [(p.element, p.rule) for p in caught.value.problems] == [
        ("dcterms:identifier", "identifier-syntax")]
    assert not identifier.is_identifier(text)


def test_largest_identifier_is_accepted():
    assert identifier.identifier_to_sha1("P" + "_" * 26) == "f" * 40


@pytest.mark.parametrize("sha1_hex", [
    "",
    "   ",
    "g" * 40,
    EXAMPLE_SHA1[:-1] + "z",
    "f" * 41,                         # 164 bits
    "1" + "0" * 40,                   # 2**160
    "-" + EXAMPLE_SHA1[1:],
])
def test_sha1_to_identifier_rejects_values_that_are_not_sha1_hex(sha1_hex):
    with pytest.raises(MetadataError) as caught:
        identifier.sha1_to_identifier(sha1_hex)
    assert [(p.element, p.rule) for p in caught.value.problems] == [
        ("slreq:checksum", "checksum-hex")]


@pytest.mark.parametrize("sha1_hex", [
    "0x" + EXAMPLE_SHA1[2:],                      # Python literal prefix
    EXAMPLE_SHA1[:4] + "_" + EXAMPLE_SHA1[4:],     # Python digit separator
    "+" + EXAMPLE_SHA1[1:],                       # sign
    "\u0661\u0662\u0663",                         # Arabic-Indic digits 1 2 3
], ids=["0x-prefix", "underscore", "plus-sign", "arabic-indic-digits"])
def test_sha1_to_identifier_rejects_what_int_accepts_but_is_not_hex(sha1_hex):
    """A checksum is hex digits only; int(text, 16) is more lenient than that."""
    with pytest.raises(MetadataError) as caught:
        identifier.sha1_to_identifier(sha1_hex)
    assert caught.value.problems[0].rule == "checksum-hex"
