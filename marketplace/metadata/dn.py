"""Distinguished names written as text (RFC 2253), compared as names, not as strings.

Java (the original tools), OpenSSL and Python write the same DN differently: spaces after
commas, keyword case, ``emailAddress`` as ``1.2.840.113549.1.9.1=#16...`` (hex DER). Both
sides are reduced to a list of RDNs, each a set of (OID, value folded for case and spaces).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # standard library only at run time: a node's cache hit compares DNs
    from cryptography import x509

KEYWORDS = {  # the attribute types' OIDs (cryptography's NameOID values)
    "CN": "2.5.4.3", "L": "2.5.4.7", "ST": "2.5.4.8", "O": "2.5.4.10", "OU": "2.5.4.11",
    "C": "2.5.4.6", "STREET": "2.5.4.9", "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1", "EMAILADDRESS": "1.2.840.113549.1.9.1",
    "E": "1.2.840.113549.1.9.1", "SERIALNUMBER": "2.5.4.5", "GIVENNAME": "2.5.4.42",
    "SN": "2.5.4.4", "SURNAME": "2.5.4.4", "TITLE": "2.5.4.12",
}
_SEPARATORS = ",;+"

Key = list[frozenset[tuple[str, str]]]


def same_dn(a: str | x509.Name | None, b: str | x509.Name | None) -> bool:
    """True when ``a`` and ``b`` name the same DN: THE DN equality of the project.

    Either side is RFC 2253 text (most specific RDN first) or a certificate's name; text
    that is not a DN equals nothing.
    """
    first, second = key(a), key(b)
    return first is not None and first == second


def key(name: str | x509.Name | None) -> tuple | None:
    """The comparable form of a DN given as text or as a name; None for no DN or bad text."""
    if name is not None and not isinstance(name, str):
        return tuple(name_key(name))
    try:
        return tuple(parse(name)) if name else None
    except ValueError:
        return None


def name_key(name: x509.Name) -> Key:
    """A certificate name in the comparable form, in the textual (reversed) order."""
    return [frozenset((a.oid.dotted_string, _fold(str(a.value))) for a in rdn)
            for rdn in reversed(name.rdns)]


def parse(text: str) -> Key:
    """Parse an RFC 2253 DN into the comparable form; ValueError when it is not one."""
    rdns: Key = []
    current: set[tuple[str, str]] = set()
    position = 0
    while True:
        oid, position = _keyword(text, position)
        value, position = _value(text, position)
        current.add((oid, _fold(value)))
        position = _skip_spaces(text, position)
        if position >= len(text):
            rdns.append(frozenset(current))
            return rdns
        if text[position] != "+":
            rdns.append(frozenset(current))
            current = set()
        position += 1


def _keyword(text: str, position: int) -> tuple[str, int]:
    end = text.find("=", position)
    if end < 0:
        raise ValueError(f"no '=' after position {position} in {text!r}")
    keyword = text[position:end].strip()
    if keyword.upper() in KEYWORDS:
        return KEYWORDS[keyword.upper()], end + 1
    if keyword.upper().startswith("OID."):
        keyword = keyword[4:]
    if not keyword.replace(".", "").isdigit():
        raise ValueError(f"unknown attribute type {keyword!r}")
    return keyword, end + 1


def _value(text: str, position: int) -> tuple[str, int]:
    position = _skip_spaces(text, position)
    if text.startswith("#", position):
        end = position + 1
        while end < len(text) and text[end] not in _SEPARATORS and not text[end].isspace():
            end += 1
        return _der_string(bytes.fromhex(text[position + 1:end])), end
    if text.startswith('"', position):
        return _quoted(text, position + 1)
    return _plain(text, position)


def _quoted(text: str, position: int) -> tuple[str, int]:
    chars = []
    while position < len(text) and text[position] != '"':
        if text[position] == "\\":
            position += 1
        chars.append(text[position])
        position += 1
    if position >= len(text):
        raise ValueError("unterminated quoted value")
    return "".join(chars), position + 1


def _plain(text: str, position: int) -> tuple[str, int]:
    raw = bytearray()
    while position < len(text) and text[position] not in _SEPARATORS:
        if text[position] == "\\":
            pair = text[position + 1:position + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                raw.append(int(pair, 16))
                position += 3
                continue
            position += 1
        raw += text[position].encode()
        position += 1
    return raw.decode("utf-8", errors="replace").strip(), position


def _der_string(data: bytes) -> str:
    """The text of a DER-encoded string value (tag, length, content)."""
    if len(data) < 2:
        raise ValueError("hex value too short")
    length, start = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(data[2:2 + count], "big"), 2 + count
    content = data[start:start + length]
    return content.decode("utf-16-be" if data[0] == 0x1E else "utf-8", errors="replace")


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _fold(value: str) -> str:
    return " ".join(value.split()).casefold()
