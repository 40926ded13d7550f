"""The HEPiX image list format's shared rules, for the publisher and the node alike.

One place for what both sides must agree on: distinguished names in OpenSSL's slash form
(``/C=EU/O=Example/CN=Jane``, what ``hv:dn`` and ``hv:ca`` hold and what vmcatcher and atrope
compare the signer's certificate against), the list's date format, the RFC 4122 identifier
of one of our images, and how list versions compare.
"""

from __future__ import annotations

import uuid

from cryptography import x509
from cryptography.x509.oid import NameOID

from marketplace.metadata.identifier import ALPHABET, LENGTH

DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The name of our own identifier in a list image, beside the UUID that HEPiX requires.
OUR_IDENTIFIER = "sl:identifier"
# UUID namespace of the identifiers of this format: uuid5(NAMESPACE, our identifier).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:stratuslab:marketplace")
# OpenSSL's short names where they differ from RFC 4514's (the slash form is OpenSSL's).
_SHORT_NAMES = {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.SERIAL_NUMBER: "serialNumber",
                NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN", NameOID.TITLE: "title",
                NameOID.USER_ID: "UID", NameOID.DOMAIN_COMPONENT: "DC"}


def slash_dn(name: x509.Name) -> str:
    """A certificate name as OpenSSL prints it in the slash form, most general RDN first."""
    parts = []
    for rdn in name.rdns:
        parts.append("+".join(f"{_SHORT_NAMES.get(a.oid, a.rfc4514_attribute_name)}={a.value}"
                              for a in rdn))
    return "/" + "/".join(parts)


def image_uuid(identifier: str) -> str:
    """The RFC 4122 identifier of one of our images in a list: name-based (v5), stable."""
    return str(uuid.uuid5(NAMESPACE, identifier))


def cache_identifier(image_id: str) -> str:
    """The node's cache key of a list image: its UUID's 128 bits written in our identifier's
    alphabet (27 digits), so that images of any list live in the same cache as the
    marketplace's, apart from them (a list only vouches for its SHA-512, never for the SHA-1
    our identifiers are). ValueError for a non-UUID."""
    value = uuid.UUID(image_id).int
    digits = []
    for _ in range(LENGTH):
        value, digit = divmod(value, 64)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def version_key(version: str) -> tuple[int, ...]:
    """``hv:version`` as numbers to compare (``"12.3.0"`` → (12, 3, 0)); ValueError when it
    is not dotted decimal numbers."""
    parts = str(version).strip().split(".")
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"hv:version {version!r} is not dotted decimal numbers")
    return tuple(int(p) for p in parts)
