"""Signed metadata documents for tests, made from real bytes with real keys."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

from marketplace.metadata import document, model, signature
from marketplace.metadata.identifier import sha1_to_identifier
from marketplace.metadata.keys import Credentials


def appliance(image: bytes | None = None, **fields) -> model.Appliance:
    """An unsigned entry describing ``image`` (random bytes by default) with ``fields`` set."""
    image = os.urandom(64) if image is None else image
    sha1 = hashlib.sha1(image).hexdigest()
    now = datetime.now(UTC).replace(microsecond=0)
    values = {"type": "base", "kind": "machine", "os": "ubuntu", "os_version": "24.04",
              "os_arch": "x86_64", "format": "raw", "hypervisor": "kvm",
              "title": "Test image", "created": now, "valid": now + timedelta(days=365),
              "locations": ["http://127.0.0.1:1/image.img"], **fields}
    return model.Appliance(
        identifier=sha1_to_identifier(sha1), bytes=len(image),
        checksums={"SHA-1": sha1, "SHA-256": hashlib.sha256(image).hexdigest()}, **values)


def signed(signer, entry: model.Appliance | None = None, now: datetime | None = None,
           profile: str = "default", email: str | None = None) -> bytes:
    """The entry (a fresh one by default) as a document signed by ``signer`` (pki.Issued)."""
    root = model.to_document(entry or appliance())
    credentials = Credentials(signer.key, signer.certificate)
    signature.sign(root, credentials, profile=profile, email=email,
                   now=now or datetime.now(UTC).replace(microsecond=0))
    return document.serialize(root)
