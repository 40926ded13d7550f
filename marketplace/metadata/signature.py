"""Signing and verifying metadata documents: enveloped XML-DSig over the whole document.

A signature is accepted only in the one shape the profile allows: a single ``Signature``,
last child of ``rdf:RDF``, with a single ``Reference URI=""`` whose only transform is
``enveloped-signature`` (optionally followed by a canonicalization), and the signer's
certificate in ``KeyInfo/X509Data``. Anything else (a second signature, a reference to part
of the document, extra objects) is refused before any cryptography runs, so no element
outside the signed content can be slipped in. libxmlsec1 does the cryptography; it
canonicalizes ``SignedInfo`` as a document subset, as the original Java tools did.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from marketplace.metadata import document as doc
from marketplace.metadata import model as m
from marketplace.metadata.dn import same_dn
from marketplace.metadata.keys import Credentials, certificate_emails
from marketplace.metadata.problems import MetadataError, Problem, fail

T = xmlsec.Transform
CANONICALIZATIONS = (T.C14N, T.C14N_COMMENTS, T.EXCL_C14N, T.EXCL_C14N_COMMENTS,
                     T.C14N11, T.C14N11_COMMENTS)
SIGNATURE_METHODS = (T.RSA_SHA1, T.RSA_SHA256, T.RSA_SHA384, T.RSA_SHA512, T.DSA_SHA1,
                     T.ECDSA_SHA1, T.ECDSA_SHA256, T.ECDSA_SHA384, T.ECDSA_SHA512)
DIGEST_METHODS = (T.SHA1, T.SHA256, T.SHA384, T.SHA512)
_HREFS = {t.href for t in CANONICALIZATIONS + SIGNATURE_METHODS + DIGEST_METHODS}
_DS = f"{{{doc.DSIG}}}"


@dataclass(frozen=True)
class Profile:
    """The algorithms a signature is made with."""

    name: str
    canonicalization: xmlsec.constants.__Transform
    digest: xmlsec.constants.__Transform
    methods: dict[type, xmlsec.constants.__Transform]


PROFILES = {
    "default": Profile("default", T.EXCL_C14N, T.SHA256, {
        rsa.RSAPrivateKey: T.RSA_SHA256, ec.EllipticCurvePrivateKey: T.ECDSA_SHA256}),
    "stratuslab": Profile("stratuslab", T.C14N_COMMENTS, T.SHA1, {
        rsa.RSAPrivateKey: T.RSA_SHA1, ec.EllipticCurvePrivateKey: T.ECDSA_SHA1,
        dsa.DSAPrivateKey: T.DSA_SHA1}),
}


def sign(root: etree._Element, credentials: Credentials, profile: str = "default",
         email: str | None = None, now: datetime | None = None) -> etree._Element:
    """Fill the endorsement from the certificate and append an enveloped signature, in place.

    The email comes from the certificate's SubjectAltName, else from ``email``.
    """
    method = _method(PROFILES[profile], credentials)
    endorsement = prepare_endorsement(root)
    _fill_endorsement(endorsement, credentials.certificate, email, now or datetime.now(UTC))
    signature = xmlsec.template.create(root, PROFILES[profile].canonicalization, method)
    root.append(signature)
    reference = xmlsec.template.add_reference(signature, PROFILES[profile].digest, uri="")
    xmlsec.template.add_transform(reference, T.ENVELOPED)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    key = xmlsec.Key.from_memory(credentials.key_pem(), xmlsec.KeyFormat.PEM, None)
    key.load_cert_from_memory(credentials.certificate_pem(), xmlsec.KeyFormat.CERT_PEM)
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(signature)
    return root


def _method(profile: Profile, credentials: Credentials):
    for key_type, method in profile.methods.items():
        if isinstance(credentials.key, key_type):
            return method
    raise fail("credentials", "key-type", f"the {profile.name} profile cannot sign with a "
                                          f"{type(credentials.key).__name__}")


def prepare_endorsement(root: etree._Element) -> etree._Element:
    """Make a document ready to sign: xml:base set, old signatures gone, one empty endorsement.

    The last endorsement is kept (emptied) in its place; without one, a new one follows
    the checksums.
    """
    if root.get(doc.BASE) is None:
        root.set(doc.BASE, doc.XML_BASE)
    for old in doc.signatures_of(root):
        old.getparent().remove(old)
    description = doc.description_of(root)
    endorsements = description.findall(m.ENDORSEMENT)
    for extra in endorsements[:-1]:
        description.remove(extra)
    if endorsements:
        endorsement = endorsements[-1]
        endorsement.clear(keep_tail=True)
    else:
        endorsement = etree.Element(m.ENDORSEMENT)
        anchors = description.findall(m.CHECKSUM) or description.findall(m.BYTES)
        position = description.index(anchors[-1]) + 1 if anchors else len(description)
        description.insert(position, endorsement)
    endorsement.set(doc.PARSE_TYPE, "Resource")
    return endorsement


def _fill_endorsement(endorsement: etree._Element, certificate: x509.Certificate,
                      email: str | None, now: datetime) -> None:
    emails = certificate_emails(certificate)
    address = emails[0] if emails else email
    if not address:
        raise fail("slreq:email", "endorser-email", "the certificate carries no email "
                   "address: give the endorser's email (--email)")
    _child(endorsement, m.CREATED).text = m.format_date(now)
    endorser = _child(endorsement, m.ENDORSER)
    endorser.set(doc.PARSE_TYPE, "Resource")
    _child(endorser, m.EMAIL).text = address
    _child(endorser, m.SUBJECT).text = certificate.subject.rfc4514_string()
    _child(endorser, m.ISSUER).text = certificate.issuer.rfc4514_string()


def _child(parent: etree._Element, tag: str) -> etree._Element:
    namespace = etree.QName(tag).namespace
    in_scope = namespace in parent.nsmap.values()
    nsmap = None if in_scope else {doc.PREFIXES[namespace]: namespace}
    return etree.SubElement(parent, tag, nsmap=nsmap)


def is_signed(root: etree._Element) -> bool:
    """True when the document carries a signature (an empty placeholder does not count)."""
    return any(len(s) for s in doc.signatures_of(root))


def verify(root: etree._Element) -> x509.Certificate:
    """Check the signature's shape and value and that the endorser named in the document is
    the certificate's owner; return the certificate. Raises MetadataError.

    Whether that certificate is to be trusted (when, chain, CRLs, lists) is the verdict's
    business (:mod:`marketplace.metadata.verdict`), not this module's.
    """
    signature = _only_signature(root)
    certificate = _certificate_of(signature)
    _check_signature_value(signature, certificate)
    check_endorser(m.read_endorsement(doc.description_of(root)), certificate)
    return certificate


def _only_signature(root: etree._Element) -> etree._Element:
    signatures = doc.signatures_of(root)
    if not signatures:
        raise fail("Signature", "signed", "the document is not signed")
    if len(signatures) > 1:
        raise fail("Signature", "one-signature", f"the document has {len(signatures)} "
                   "signatures; exactly one is allowed")
    signature = signatures[0]
    if signature.getparent() is not root or doc.elements(root)[-1] is not signature:
        raise fail("Signature", "signature-last", "the signature must be the last child "
                   "of rdf:RDF")
    _check_shape(signature)
    return signature


def _check_shape(signature: etree._Element) -> None:
    layout = [c.tag for c in doc.elements(signature)]
    if layout != [f"{_DS}SignedInfo", f"{_DS}SignatureValue", f"{_DS}KeyInfo"]:
        raise fail("Signature", "signature-shape", "a signature must hold exactly SignedInfo, "
                   "SignatureValue and KeyInfo")
    references = signature.findall(f"{_DS}SignedInfo/{_DS}Reference")
    if len(references) != 1 or references[0].get("URI") != "":
        raise fail("Reference", "whole-document", "the signature must have exactly one "
                   "Reference, with URI=\"\" (the whole document)")
    transforms = [t.get("Algorithm") for t in references[0].iter(f"{_DS}Transform")]
    if not transforms or transforms[0] != T.ENVELOPED.href or len(transforms) > 2 or \
            (len(transforms) == 2 and transforms[1] not in {c.href for c in CANONICALIZATIONS}):
        raise fail("Transforms", "enveloped", "the reference must use the enveloped-signature "
                   f"transform only, found {transforms}")
    for method in signature.iter(f"{_DS}CanonicalizationMethod", f"{_DS}SignatureMethod",
                                 f"{_DS}DigestMethod"):
        if method.get("Algorithm") not in _HREFS:
            raise fail(etree.QName(method).localname, "algorithm",
                       f"algorithm {method.get('Algorithm')!r} is not accepted")


def _certificate_of(signature: etree._Element) -> x509.Certificate:
    found = signature.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
    if len(found) != 1:
        raise fail("X509Certificate", "one-certificate", "KeyInfo must hold exactly one "
                   f"X509Certificate, found {len(found)}")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(found[0].text.split())))
    except (ValueError, TypeError, AttributeError):
        raise fail("X509Certificate", "certificate", "the certificate in KeyInfo cannot be "
                   "read") from None


def _check_signature_value(signature: etree._Element, certificate: x509.Certificate) -> None:
    context = xmlsec.SignatureContext()
    for transform in CANONICALIZATIONS + SIGNATURE_METHODS:
        context.enable_signature_transform(transform)
    for transform in (*CANONICALIZATIONS, T.ENVELOPED, *DIGEST_METHODS):
        context.enable_reference_transform(transform)
    context.key = xmlsec.Key.from_memory(certificate.public_bytes(Encoding.PEM),
                                         xmlsec.KeyFormat.CERT_PEM, None)
    try:
        context.verify(signature)
    except xmlsec.Error as exc:
        raise fail("Signature", "signature-value", "the signature does not match the document "
                   f"(it was changed after signing, or signed with another key): {exc}") from None


def check_endorser(endorsement: m.Endorsement, certificate: x509.Certificate) -> None:
    """The endorser named in the document must be the certificate's owner and issuer."""
    subject, issuer = certificate.subject, certificate.issuer
    emails = [e.lower() for e in certificate_emails(certificate)]
    mismatches = []
    if not same_dn(endorsement.subject, subject):
        mismatches.append(("slreq:subject", endorsement.subject, subject.rfc4514_string()))
    if not any(same_dn(i, issuer) for i in endorsement.issuers):
        mismatches.append(("slreq:issuer", list(endorsement.issuers), issuer.rfc4514_string()))
    if emails and (endorsement.email or "").lower() not in emails:
        mismatches.append(("slreq:email", endorsement.email, ", ".join(emails)))
    if mismatches:
        raise MetadataError([
            Problem(element, "endorser-certificate",
                    f"the endorser's {element} {found!r} does not match the certificate's "
                    f"{expected!r}")
            for element, found, expected in mismatches])
