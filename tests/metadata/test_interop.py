"""The StratusLab project's own test documents and keys (tests/data/stratuslab, docs/format.md).

Valid documents validate; each invalid document is rejected for the fault its name
describes (checked by hand against valid-minimal.xml, see INVALID); the two signed
originals verify with our code AND with the ``xmlsec1`` command, which also confirms the
certificate dates independently; the signer inputs (partial-*, autogen-*) are handled as
the original signer handled them; the original PKCS#12 keys sign documents that verify.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from marketplace.metadata import document, keys, model, signature, trust, validation, verdict
from marketplace.metadata.problems import MetadataError
from tests.data import STRATUSLAB as INTEROP

SLREQ = "http://mp.stratuslab.eu/slreq#"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
PASSWORD = b"XYZXYZ"
JANE = "CN=Jane Tester,OU=Testing Department,O=StratusLab Project,C=EU"
JIM = "CN=Jim Tester,OU=Testing Department,O=StratusLab Project,C=EU"
TEST_CA = "CN=Certificate Authority,OU=Testing Department,O=StratusLab Project,C=EU"
XMLSEC1 = shutil.which("xmlsec1") or "xmlsec1"

# Each invalid document -> the problems that say why it is invalid: (element, rule, a piece
# of the message). Faults read off `diff valid-minimal.xml invalid-*.xml`.
INVALID = {
    "invalid-bad-about-id.xml": [
        ("rdf:Description", "schema", "#MMZu9WvwKIro-rtBQ"),
        ("rdf:Description", "about-identifier", "#MMZu9WvwKIro-rtBQ"),
    ],
    "invalid-bad-checksum-parsetype.xml": [("slreq:checksum", "rdf-xml", "'BAD'")],
    "invalid-bad-element-for-signature.xml": [("rdf:Description", "one-description", "2")],
    "invalid-bad-endorsement-parsetype.xml": [("slreq:endorsement", "rdf-xml", "'BAD'")],
    "invalid-bad-endorser-parsetype.xml": [("slreq:endorser", "rdf-xml", "'BAD'")],
    "invalid-bad-icmp-value.xml": [("slterms:icmp", "schema", "65536")],
    "invalid-bad-inbound-port.xml": [("slterms:inbound-port", "schema", "65536")],
    "invalid-bad-outbound-port.xml": [("slterms:outbound-port", "schema", "65536")],
    "invalid-bad-serial-number.xml": [("slterms:serial-number", "schema", "'X'")],
    "invalid-bad-xml-base.xml": [("rdf:RDF", "xml-base", "http://mp.stratuslab.eu/BAD")],
    "invalid-checksum-value.xml": [("slreq:value", "schema", "'XYZ'")],
    "invalid-created-date-1.xml": [("dcterms:created", "schema", "2011-01-24X09:59:42Z")],
    "invalid-created-date-2.xml": [("dcterms:created", "schema", "2011-01-24T99:59:42Z")],
    "invalid-dcterms-type.xml": [("dcterms:type", "rdf-xml", "dcterms:type")],
    "invalid-email.xml": [("slreq:email", "schema", "jane.tester_at_example.org")],
    "invalid-inconsistent-checksum.xml": [
        ("dcterms:identifier", "identifier-sha1", "c319bbd5afc0a22ba3eaed0507c39383ec28eefe")],
    "invalid-inconsistent-identifiers.xml": [
        ("rdf:Description", "about-identifier", "#MMZu9WvwKIro-rtBQfDk4PsKO77"),
        ("dcterms:identifier", "identifier-sha1", "MMZu9WvwKIro-rtBQfDk4PsKO77"),
    ],
    "invalid-multiple-deprecated.xml": [("slterms:deprecated", "at-most-one", "2 times")],
    "invalid-multiple-os-arch.xml": [("slterms:os-arch", "at-most-one", "2 times")],
    "invalid-multiple-os-version.xml": [("slterms:os-version", "at-most-one", "2 times")],
    "invalid-multiple-os.xml": [("slterms:os", "at-most-one", "2 times")],
    "invalid-multiple-serial-numbers.xml": [("slterms:serial-number", "at-most-one", "2 times")],
    "invalid-multiple-versions.xml": [("slterms:version", "at-most-one", "2 times")],
    "invalid-no-content.xml": [("rdf:Description", "one-description", "0")],
    "invalid-no-endorsement.xml": [("slreq:endorsement", "exactly-one", "found 0")],
    "invalid-no-endorser.xml": [("slreq:endorsement", "schema", "slreq:endorser")],
    "invalid-no-xml-base.xml": [("rdf:RDF", "xml-base", "required")],
    "invalid-rdf-attribute.xml": [("ex:dummy", "rdf-xml", "badrdf")],
    "invalid-rdf-resource.xml": [("ex:dummy", "rdf-xml", "ex:dummy")],
    "invalid-valid-date-1.xml": [("dcterms:valid", "schema", "2011-01-24X09:59:42Z")],
    "invalid-valid-date-2.xml": [("dcterms:valid", "schema", "2011-01-24T99:59:42Z")],
}
# Most invalid originals also lack dcterms:type, which the profile requires exactly once.
MISSING_TYPE = ("dcterms:type", "one-type")


def verify(root: etree._Element, at: datetime | None = None,
           trust_store: trust.TrustStore | None = None) -> x509.Certificate:
    """The signer's certificate by the trust decision, as of the endorsement (or ``at``)."""
    moment = verdict.Moment.endorsement(None, at)
    return verdict.judge_signed(root, moment, trust_store).certificate


def names(pattern: str) -> list[str]:
    return sorted(p.name for p in INTEROP.glob(pattern))


def load(interop: Path, name: str) -> etree._Element:
    return document.parse((interop / name).read_bytes())


def reparse(root: etree._Element) -> etree._Element:
    return document.parse(document.serialize(root))


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def embedded_certificate(data: bytes) -> x509.Certificate:
    """The KeyInfo certificate, read with a regular expression rather than our code."""
    found = re.search(rb"<X509Certificate>(.*?)</X509Certificate>", data, re.S)
    return x509.load_der_x509_certificate(base64.b64decode(b"".join(found.group(1).split())))


def xmlsec1(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([XMLSEC1, "--verify", "--enabled-reference-uris", "empty", *args],
                          capture_output=True, text=True, check=False)


# --- valid and invalid documents ----------------------------------------------------------

def test_the_interop_directory_is_where_the_fixture_says(interop):
    assert interop == INTEROP
    assert names("valid-*.xml") and names("invalid-*.xml")
    assert (interop / "test.p12").is_file() and (interop / "test-ca-signed.p12").is_file()


@pytest.mark.parametrize("name", names("valid-*.xml"))
def test_valid_documents_validate(interop, name):
    assert validation.validate(load(interop, name)) == []
    assert validation.check((interop / name).read_bytes()) is not None


def test_every_invalid_document_has_an_expected_reason():
    assert set(names("invalid-*.xml")) == set(INVALID), \
        "add each new invalid-* document to INVALID with the reason it must be rejected for"


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_documents_are_rejected_for_their_reason(interop, name):
    data = (interop / name).read_bytes()
    problems = validation.validate(document.parse(data))
    for element, rule, fragment in INVALID[name]:
        assert any(p.element == element and p.rule == rule and fragment in p.message
                   for p in problems), (name, element, rule, problems)
    allowed = {(e, r) for e, r, _ in INVALID[name]}
    if b"<dcterms:type" not in data:
        allowed.add(MISSING_TYPE)
    assert {(p.element, p.rule) for p in problems} <= allowed, problems
    with pytest.raises(MetadataError) as caught:
        validation.check(data)
    assert caught.value.problems == problems


def test_leading_zero_sha1_document_keeps_its_value(interop):
    appliance = model.from_document(load(interop, "valid-minimal-leading-zero-sha1.xml"))
    assert appliance.checksums["SHA-1"] == "0c319bbd5afc0a22ba3eaed0507c39383ec28eeff"
    assert appliance.identifier == "MMZu9WvwKIro-rtBQfDk4PsKO7_"


# --- the signed originals ------------------------------------------------------------------

def test_ca_signed_original_verifies_as_of_its_endorsement(interop):
    root = load(interop, "valid-ca-signed.xml")
    certificate = verify(root)
    assert certificate.subject.rfc4514_string() == JIM
    assert certificate.issuer.rfc4514_string() == TEST_CA
    assert model.from_document(root).endorsement.created == at("2012-02-01T17:02:02Z")


def test_ca_signed_original_is_rejected_after_its_certificate_expired(interop):
    with pytest.raises(MetadataError) as caught:
        verify(load(interop, "valid-ca-signed.xml"), at=at("2014-01-01T00:00:00Z"))
    assert caught.value.problems[0].rule == "certificate-validity"
    assert "expired" in caught.value.problems[0].message


def test_full_signature_original_was_endorsed_before_its_certificate_began(interop):
    """Endorsed 2011-01-24, certificate valid from 2011-02-13: a fact of the test data."""
    data = (interop / "valid-full-signature.xml").read_bytes()
    certificate = embedded_certificate(data)
    assert certificate.not_valid_before_utc == at("2011-02-13T23:20:10Z")
    with pytest.raises(MetadataError) as caught:
        verify(document.parse(data))
    assert [p.rule for p in caught.value.problems] == ["certificate-validity"]
    assert "not yet valid" in caught.value.problems[0].message


def test_full_signature_original_verifies_inside_its_certificate_validity(interop):
    certificate = verify(load(interop, "valid-full-signature.xml"),
                                   at=at("2011-06-01T00:00:00Z"))
    assert certificate.subject.rfc4514_string() == JANE


@pytest.mark.parametrize("name", ["valid-full-signature.xml", "valid-ca-signed.xml"])
def test_xmlsec1_verifies_the_originals_with_their_keyinfo_certificate(interop, name):
    result = xmlsec1("--insecure", str(interop / name))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["valid-full-signature.xml", "valid-ca-signed.xml"])
def test_xmlsec1_verifies_the_originals_with_the_extracted_certificate(interop, name,
                                                                       tmp_path):
    data = (interop / name).read_bytes()
    pem = tmp_path / "cert.pem"
    pem.write_bytes(embedded_certificate(data).public_bytes(Encoding.PEM))
    assert xmlsec1("--pubkey-cert-pem", str(pem), str(interop / name)).returncode == 0
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(data.replace(b">100</slreq:bytes>", b">101</slreq:bytes>", 1)
                         .replace(b">128</slreq:bytes>", b">129</slreq:bytes>", 1))
    assert tampered.read_bytes() != data
    assert xmlsec1("--pubkey-cert-pem", str(pem), str(tampered)).returncode != 0


@pytest.mark.parametrize(("moment", "verified"), [
    ("2011-01-24 09:59:42", False),   # the endorsement date: before notBefore
    ("2011-06-01 00:00:00", True),
    ("2012-03-01 00:00:00", False),   # after notAfter
])
def test_xmlsec1_confirms_the_certificate_dates_of_the_full_signature(interop, tmp_path,
                                                                      moment, verified):
    data = (interop / "valid-full-signature.xml").read_bytes()
    pem = tmp_path / "jane.pem"   # self-signed: trust it as its own root
    pem.write_bytes(embedded_certificate(data).public_bytes(Encoding.PEM))
    result = xmlsec1("--trusted-pem", str(pem), "--verification-time", moment,
                     str(interop / "valid-full-signature.xml"))
    assert (result.returncode == 0) is verified, result.stderr


def test_minimal_signature_placeholder_is_not_a_signature(interop):
    root = load(interop, "valid-minimal-signature.xml")
    assert not signature.is_signed(root)
    with pytest.raises(MetadataError):
        verify(root)


# --- signer inputs -----------------------------------------------------------------------

def shape(element: etree._Element) -> tuple:
    """Tag, attributes and child shapes, ignoring whitespace and comments."""
    children = tuple(shape(c) for c in element if isinstance(c.tag, str))
    text = (element.text or "").strip()
    return element.tag, dict(element.attrib), text, children


def test_prepare_endorsement_does_what_the_original_signer_did(interop):
    root = load(interop, "autogen-endorsement-not-done.xml")
    assert root.get(XML_BASE) is None
    signature.prepare_endorsement(root)
    assert shape(reparse(root)) == shape(load(interop, "autogen-endorsement-done.xml"))
    endorsements = root.findall(f".//{{{SLREQ}}}endorsement")
    assert len(endorsements) == 1 and len(endorsements[0]) == 0


@pytest.fixture(scope="module")
def jane(interop) -> keys.Credentials:
    return keys.load_pkcs12(interop / "test.p12", PASSWORD)


@pytest.fixture(scope="module")
def jim(interop) -> keys.Credentials:
    return keys.load_pkcs12(interop / "test-ca-signed.p12", PASSWORD)


def test_signing_partial_multiple_signatures_leaves_one_valid_signature(interop, jane):
    root = load(interop, "partial-multiple-signatures.xml")
    assert len(document.signatures_of(root)) == 4
    signature.sign(root, jane, "stratuslab", now=at("2011-06-01T00:00:00Z"))
    signed = reparse(root)
    assert len(signed.findall(f".//{{{DSIG}}}Signature")) == 1
    assert signed.findall(f"{{{DSIG}}}Signature")[0] is document.elements(signed)[-1]
    assert validation.validate(signed) == []
    assert verify(signed).subject.rfc4514_string() == JANE


def test_signing_partial_multiple_endorsements_leaves_one_endorsement(interop, jane):
    root = load(interop, "partial-multiple-endorsements.xml")
    assert len(root.findall(f".//{{{SLREQ}}}endorsement")) == 5
    signature.sign(root, jane, "stratuslab", now=at("2011-06-01T00:00:00Z"))
    signed = reparse(root)
    assert len(signed.findall(f".//{{{SLREQ}}}endorsement")) == 1
    assert len(signed.findall(f".//{{{DSIG}}}Signature")) == 1
    signature.verify(signed)  # a partial entry: the signature only, no verdict on an entry


# --- the original keys ---------------------------------------------------------------------

def test_original_pkcs12_files_load(jane, jim):
    assert jane.certificate.subject.rfc4514_string() == JANE
    assert jim.certificate.subject.rfc4514_string() == JIM
    assert jim.certificate.issuer.rfc4514_string() == TEST_CA


def test_wrong_pkcs12_password_is_a_clear_error(interop):
    with pytest.raises(MetadataError) as caught:
        keys.load_pkcs12(interop / "test.p12", b"wrong")
    assert caught.value.problems[0].rule == "pkcs12"


@pytest.mark.parametrize("profile", ["stratuslab", "default"])
@pytest.mark.parametrize(("p12", "email", "now"), [
    ("test.p12", None, "2011-06-01T00:00:00Z"),
    ("test-ca-signed.p12", "jim.tester@example.org", "2012-06-01T00:00:00Z"),
])
def test_original_keys_sign_valid_minimal(interop, tmp_path, profile, p12, email, now):
    credentials = keys.load_pkcs12(interop / p12, PASSWORD)
    original = load(interop, "valid-minimal.xml")
    root = load(interop, "valid-minimal.xml")
    signature.sign(root, credentials, profile, email=email, now=at(now))
    data = document.serialize(root)
    signed = document.parse(data)
    assert validation.validate(signed) == []
    assert verify(signed) == credentials.certificate
    endorsement = model.from_document(signed).endorsement
    assert endorsement.created == at(now)
    if p12 == "test.p12":
        # the names the original tools wrote into valid-minimal.xml, only the date differs
        before = model.from_document(original).endorsement
        assert endorsement == model.Endorsement(at(now), before.email, before.subject,
                                                before.issuers)
        assert (before.email, before.subject, before.issuers) == (
            "jane.tester@example.org", JANE, (JANE,))
    else:
        assert (endorsement.email, endorsement.subject, endorsement.issuers) == (
            "jim.tester@example.org", JIM, (TEST_CA,))
    with pytest.raises(MetadataError) as caught:
        verify(signed, at=at("2020-01-01T00:00:00Z"))
    assert caught.value.problems[0].rule == "certificate-validity"
    document_file = tmp_path / "signed.xml"
    document_file.write_bytes(data)
    pem = tmp_path / "cert.pem"
    pem.write_bytes(credentials.certificate_pem())
    result = xmlsec1("--pubkey-cert-pem", str(pem), str(document_file))
    assert result.returncode == 0, result.stderr


def test_ca_signed_key_needs_an_email(interop, jim):
    root = load(interop, "valid-minimal.xml")
    with pytest.raises(MetadataError) as caught:
        signature.sign(root, jim, "stratuslab", now=at("2012-06-01T00:00:00Z"))
    assert caught.value.problems[0].rule == "endorser-email"
