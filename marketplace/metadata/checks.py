"""The one pipeline from bytes to a trusted entry: parse, validate, verify, read the model.

Every consumer (the validate command, the marketplace's upload, the node's fetcher) calls
:func:`check_document`, so they agree on what an acceptable document is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from lxml import etree

from marketplace.metadata import model, signature, validation
from marketplace.metadata.problems import fail
from marketplace.metadata.trust import TrustStore


@dataclass(frozen=True)
class Checked:
    """A document that passed every check, with its entry and (if signed) the signer."""

    root: etree._Element
    appliance: model.Appliance
    certificate: x509.Certificate | None


def check_document(data: bytes, require_signature: bool = True, at: datetime | None = None,
                   trust_store: TrustStore | None = None) -> Checked:
    """Parse, validate and (when signed, or required to be) verify a document.

    ``at`` is the moment the certificate must have been valid (default: the endorsement
    date). Raises MetadataError naming every problem.
    """
    root = validation.check(data)
    certificate = None
    if signature.is_signed(root):
        certificate = signature.verify(root, at=at, trust_store=trust_store)
    elif require_signature:
        raise fail("Signature", "signed", "the document is not signed")
    return Checked(root, model.from_document(root), certificate)
