"""The appliance identifier: the SHA-1 checksum written as 27 base-64 digits.

The SHA-1 value, read as a 160-bit big-endian integer, is written most significant digit
first in the alphabet ``A-Z a-z 0-9 - _``, always 27 digits. This is not base64url of the
digest bytes. Comparisons go through the integer, so leading zeros in the hex are harmless.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote

from marketplace.metadata.problems import fail

ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
LENGTH = 27
_DIGIT = {c: i for i, c in enumerate(ALPHABET)}
_SHA1_BITS = 160
_HEX = re.compile(r"[0-9A-Fa-f]+")


def sha1_to_identifier(sha1_hex: str) -> str:
    """Encode a SHA-1 hex value (leading zeros allowed) as the 27-character identifier."""
    value = _sha1_int(sha1_hex)
    digits = []
    for _ in range(LENGTH):
        value, digit = divmod(value, 64)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def identifier_to_sha1(identifier: str) -> str:
    """Decode an identifier to its 40-digit lower-case SHA-1 hex value."""
    if len(identifier) != LENGTH or any(c not in _DIGIT for c in identifier):
        raise fail("dcterms:identifier", "identifier-syntax",
                   f"{identifier!r} is not {LENGTH} characters of A-Z a-z 0-9 - _")
    value = 0
    for c in identifier:
        value = value * 64 + _DIGIT[c]
    if value >> _SHA1_BITS:
        raise fail("dcterms:identifier", "identifier-syntax",
                   f"{identifier!r} encodes more than 160 bits")
    return f"{value:040x}"


def is_identifier(text: str) -> bool:
    """True when ``text`` is a well-formed identifier."""
    try:
        identifier_to_sha1(text)
    except ValueError:
        return False
    return True


def path_segment(text: str) -> str:
    """A part of a marketplace path, percent-encoded one way everywhere: ``@``, ``+`` and
    ``:`` stay as they are (the server reads them either way), the rest as RFC 3986 says."""
    return quote(text, safe="@+:")


def metadata_path(*parts: str) -> str:
    """``metadata/<identifier>[/<email>[/<created>]]``, relative to a marketplace's address
    (which may have a path of its own); the one place these paths are written, for the
    server's links and the clients' requests alike. ``created`` is the endorsement date as
    an entry's key writes it."""
    return "/".join(["metadata", *(path_segment(part) for part in parts)])


def entry_path(identifier: str, email: str, created: str) -> str:
    """The absolute path of one stored entry: ``/metadata/<id>/<email>/<created>``."""
    return "/" + metadata_path(identifier, email, created)


def same_sha1(a_hex: str, b_hex: str) -> bool:
    """Compare two SHA-1 hex values as integers (so leading zeros do not matter)."""
    return _sha1_int(a_hex) == _sha1_int(b_hex)


def _sha1_int(sha1_hex: str) -> int:
    text = sha1_hex.strip()
    if not _HEX.fullmatch(text):
        raise fail("slreq:checksum", "checksum-hex",
                   f"SHA-1 value {sha1_hex!r} is not hexadecimal")
    value = int(text, 16)
    if value >> _SHA1_BITS:
        raise fail("slreq:checksum", "checksum-hex",
                   f"SHA-1 value {sha1_hex!r} is longer than 160 bits")
    return value
