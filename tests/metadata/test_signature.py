"""Signing and verification: round trips, tampering, endorser checks, validity and trust.

Every document our code signs is also verified by the ``xmlsec1`` command with the
signer's certificate, and documents with a deliberately wrong endorsement (which our
signer refuses to write) are signed by ``xmlsec1 --sign`` instead, so the cryptography is
checked by a second implementation on both sides.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree

from marketplace.metadata import (
    dn,
    document,
    identifier,
    keys,
    model,
    signature,
    trust,
    validation,
    verdict,
)
from marketplace.metadata.problems import MetadataError
from tests import factories, pki

DSIG = "http://www.w3.org/2000/09/xmldsig#"
DS = f"{{{DSIG}}}"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DCTERMS = "http://purl.org/dc/terms/"
SLREQ = "http://mp.stratuslab.eu/slreq#"
SLTERMS = "http://mp.stratuslab.eu/slterms#"
NS = {"ds": DSIG, "rdf": RDF, "dcterms": DCTERMS, "slreq": SLREQ, "slterms": SLTERMS}
XMLSEC1 = shutil.which("xmlsec1") or "xmlsec1"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"

# What each profile must write: (canonicalization, digest, {key kind: signature method}).
ALGORITHMS = {
    "stratuslab": ("http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
                   "http://www.w3.org/2000/09/xmldsig#sha1",
                   {pki.RSA: "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                    pki.EC: "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"}),
    "default": ("http://www.w3.org/2001/10/xml-exc-c14n#",
                "http://www.w3.org/2001/04/xmlenc#sha256",
                {pki.RSA: "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                 pki.EC: "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"}),
}
HASHES = {"stratuslab": hashlib.sha1, "default": hashlib.sha256}
PROFILES = tuple(ALGORITHMS)
_files = itertools.count()


# --- helpers -------------------------------------------------------------------------------

def verify(root: etree._Element, at: datetime | None = None,
           trust_store: trust.TrustStore | None = None) -> x509.Certificate:
    """The signer's certificate by the trust decision, as of the endorsement (or ``at``)."""
    moment = verdict.Moment.endorsement(None, at)
    return verdict.judge_signed(root, moment, trust_store).certificate


def appliance(image: bytes = b"an appliance image\n" * 1000) -> model.Appliance:
    sha1 = hashlib.sha1(image).hexdigest()
    return model.Appliance(
        identifier=identifier.sha1_to_identifier(sha1), bytes=len(image),
        checksums={"SHA-1": sha1, "SHA-256": hashlib.sha256(image).hexdigest()},
        type="machine", kind="machine", os="ttylinux", os_version="9.7", os_arch="i486",
        version="1.0", format="raw", compression="gz", title="linux-with-my-apps",
        description="A 32-bit ttylinux", publisher="StratusLab",
        locations=["http://example.org/images/ttylinux.img.gz"],
        valid=datetime(2040, 1, 1, tzinfo=UTC), inbound_ports=[22, 443])


def credentials(issued: pki.Issued) -> keys.Credentials:
    return keys.Credentials(issued.key, issued.certificate)


def load_credentials(issued: pki.Issued, source: str, directory: Path) -> keys.Credentials:
    """The signer's credentials as a user has them: a PKCS#12 file or two PEM files."""
    if source == "pkcs12":
        path = pki.write_pkcs12(issued, directory / "signer.p12", pki.PASSWORD)
        return keys.load_pkcs12(path, pki.PASSWORD)
    key_path, certificate_path = pki.write_pem(issued, directory, password=pki.PASSWORD)
    return keys.load_pem(key_path, certificate_path, pki.PASSWORD)


def sign_bytes(issued: pki.Issued, profile: str = "stratuslab", email: str | None = None,
               now: datetime | None = None, item: model.Appliance | None = None) -> bytes:
    root = model.to_document(item or appliance())
    signature.sign(root, credentials(issued), profile, email=email, now=now)
    return document.serialize(root)


def reparse(root: etree._Element) -> etree._Element:
    return document.parse(document.serialize(root))


def rules_of(caught: pytest.ExceptionInfo) -> list[str]:
    return [p.rule for p in caught.value.problems]


def rejected(root: etree._Element, **kwargs) -> list[str]:
    with pytest.raises(MetadataError) as caught:
        verify(root, **kwargs)
    return rules_of(caught)


def verifies(root: etree._Element, **kwargs) -> bool:
    try:
        verify(root, **kwargs)
    except MetadataError:
        return False
    return True


def tmp_file(directory: Path, suffix: str, data: bytes) -> Path:
    path = directory / f"f{next(_files)}{suffix}"
    path.write_bytes(data)
    return path


def xmlsec1_verifies(data: bytes, certificate: x509.Certificate, directory: Path) -> bool:
    """Verify with the xmlsec1 command, using the given certificate's key."""
    cert = tmp_file(directory, ".pem", certificate.public_bytes(Encoding.PEM))
    doc = tmp_file(directory, ".xml", data)
    result = subprocess.run(
        [XMLSEC1, "--verify", "--pubkey-cert-pem", str(cert), "--enabled-reference-uris",
         "empty", str(doc)], capture_output=True, text=True, check=False)
    return result.returncode == 0


def template(method: str, digest: str, c14n: str, transforms: str = "") -> etree._Element:
    return etree.fromstring(
        f'<Signature xmlns="{DSIG}"><SignedInfo>'
        f'<CanonicalizationMethod Algorithm="{c14n}"/><SignatureMethod Algorithm="{method}"/>'
        f'<Reference URI=""><Transforms><Transform Algorithm="{ENVELOPED}"/>{transforms}'
        f'</Transforms><DigestMethod Algorithm="{digest}"/><DigestValue/></Reference>'
        f'</SignedInfo><SignatureValue/><KeyInfo><X509Data><X509Certificate/></X509Data>'
        f'</KeyInfo></Signature>')


def xmlsec1_sign(root: etree._Element, issued: pki.Issued, directory: Path,
                 transforms: str = "") -> etree._Element:
    """Sign with the xmlsec1 command, whatever the document says (stratuslab algorithms)."""
    c14n, digest, methods = ALGORITHMS["stratuslab"]
    kind = pki.EC if isinstance(issued.key, ec.EllipticCurvePrivateKey) else pki.RSA
    root = copy.deepcopy(root)
    for old in root.findall(f"{DS}Signature"):
        root.remove(old)
    root.append(template(methods[kind], digest, c14n, transforms))
    key = tmp_file(directory, ".pem", issued.key_pem())
    cert = tmp_file(directory, ".pem", issued.certificate_pem())
    source = tmp_file(directory, ".xml", document.serialize(root))
    output = directory / f"f{next(_files)}-signed.xml"
    result = subprocess.run(
        [XMLSEC1, "--sign", "--privkey-pem", f"{key},{cert}", "--output", str(output),
         str(source)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return document.parse(output.read_bytes())


def endorser_field(root: etree._Element, name: str) -> etree._Element:
    return root.find(f"rdf:Description/slreq:endorsement/slreq:endorser/slreq:{name}", NS)


# --- signing round trips -------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("source", ["pkcs12", "pem"])
@pytest.mark.parametrize("kind", [pki.RSA, pki.EC])
def test_sign_then_verify(request, tmp_path, kind, source, profile):
    issued = request.getfixturevalue("rsa_signer" if kind == pki.RSA else "ec_signer")
    loaded = load_credentials(issued, source, tmp_path)
    assert loaded.certificate == issued.certificate
    item = appliance()
    before = datetime.now(UTC).replace(microsecond=0)
    root = model.to_document(item)
    assert validation.validate(reparse(root)) == []
    signature.sign(root, loaded, profile)
    data = document.serialize(root)
    signed = document.parse(data)

    assert validation.validate(signed) == []
    assert signature.is_signed(signed)
    assert verify(signed) == issued.certificate
    assert xmlsec1_verifies(data, issued.certificate, tmp_path)

    read = model.from_document(signed)
    emails = issued.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name)
    assert read.endorsement.email == emails[0]
    assert x509.Name.from_rfc4514_string(read.endorsement.subject) == issued.certificate.subject
    assert [x509.Name.from_rfc4514_string(i) for i in read.endorsement.issuers] == [
        issued.certificate.issuer]
    assert read.endorsement.issuers == (
        "CN=Test Root CA,OU=Certificate Authorities,O=Marketplace Tests,C=EU",)
    assert before <= read.endorsement.created <= datetime.now(UTC)
    assert dataclasses_without_endorsement(read) == dataclasses_without_endorsement(item)


def dataclasses_without_endorsement(item: model.Appliance) -> dict:
    values = item.as_dict()
    values.pop("endorsement")
    return values


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", [pki.RSA, pki.EC])
def test_profile_algorithms_and_digest(request, kind, profile):
    issued = request.getfixturevalue("rsa_signer" if kind == pki.RSA else "ec_signer")
    signed = document.parse(sign_bytes(issued, profile))
    c14n, digest, methods = ALGORITHMS[profile]
    info = signed.find("ds:Signature/ds:SignedInfo", NS)
    assert info.find("ds:CanonicalizationMethod", NS).get("Algorithm") == c14n
    assert info.find("ds:SignatureMethod", NS).get("Algorithm") == methods[kind]
    reference = info.find("ds:Reference", NS)
    assert reference.get("URI") == ""
    assert [t.get("Algorithm") for t in reference.iterfind("ds:Transforms/ds:Transform", NS)] \
        == [ENVELOPED]
    assert reference.find("ds:DigestMethod", NS).get("Algorithm") == digest
    # the digest, recomputed: the document without its signature, in inclusive C14N 1.0
    unsigned = copy.deepcopy(signed)
    node = unsigned.find("ds:Signature", NS)
    previous = node.getprevious()
    previous.tail = (previous.tail or "") + (node.tail or "")
    unsigned.remove(node)
    octets = etree.tostring(unsigned.getroottree(), method="c14n", with_comments=False)
    expected = base64.b64encode(HASHES[profile](octets).digest()).decode()
    assert reference.find("ds:DigestValue", NS).text.strip() == expected
    certificates = signed.findall("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert len(certificates) == 1
    assert x509.load_der_x509_certificate(base64.b64decode(certificates[0].text)) == \
        issued.certificate


def test_xmlsec1_check_can_fail(rsa_signer, ec_signer, tmp_path):
    data = sign_bytes(rsa_signer)
    assert xmlsec1_verifies(data, rsa_signer.certificate, tmp_path)
    assert not xmlsec1_verifies(data.replace(b"linux-with-my-apps", b"linux-with-my-appz"),
                                rsa_signer.certificate, tmp_path)
    assert not xmlsec1_verifies(data, ec_signer.certificate, tmp_path)


def test_documents_signed_by_xmlsec1_verify(rsa_signer, tmp_path):
    unsigned = document.parse(sign_bytes(rsa_signer))   # endorsement filled by our signer
    signed = xmlsec1_sign(unsigned, rsa_signer, tmp_path)
    assert verify(signed) == rsa_signer.certificate


def test_certificate_without_email_needs_one(signer_without_email, tmp_path):
    root = model.to_document(appliance())
    with pytest.raises(MetadataError) as caught:
        signature.sign(root, credentials(signer_without_email))
    assert rules_of(caught) == ["endorser-email"]
    assert caught.value.problems[0].element == "slreq:email"
    assert not signature.is_signed(root)


def test_certificate_without_email_signs_with_the_given_one(signer_without_email, tmp_path):
    data = sign_bytes(signer_without_email, email="noah.mail@example.org")
    signed = document.parse(data)
    assert validation.validate(signed) == []
    assert verify(signed) == signer_without_email.certificate
    assert model.from_document(signed).endorsement.email == "noah.mail@example.org"
    assert xmlsec1_verifies(data, signer_without_email.certificate, tmp_path)


def test_certificate_email_wins_over_the_given_one(rsa_signer):
    signed = document.parse(sign_bytes(rsa_signer, email="someone.else@example.org"))
    assert model.from_document(signed).endorsement.email == "jane.tester@example.org"


def test_resigning_replaces_signature_and_endorsement(rsa_signer, ec_signer, tmp_path):
    root = document.parse(sign_bytes(rsa_signer))
    signature.sign(root, credentials(ec_signer), "default")
    signed = reparse(root)
    assert len(signed.findall(f".//{DS}Signature")) == 1
    assert len(signed.findall(f".//{{{SLREQ}}}endorsement")) == 1
    assert verify(signed) == ec_signer.certificate
    assert model.from_document(signed).endorsement.email == "eve.curve@example.org"


def test_explicit_signing_time_is_the_endorsement_date(make_signer):
    moment = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    issued = make_signer(not_before=moment - timedelta(days=1),
                         not_after=moment + timedelta(days=1))
    signed = document.parse(sign_bytes(issued, now=moment))
    assert signed.findtext("rdf:Description/slreq:endorsement/dcterms:created",
                           namespaces=NS) == "2030-05-06T07:08:09Z"
    assert verify(signed) == issued.certificate


# --- tampering -----------------------------------------------------------------------------

def _change_last_char(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def _title(root):
    node = root.find("rdf:Description/dcterms:title", NS)
    node.text = node.text.replace("apps", "appz")


def _about(root):
    node = root.find("rdf:Description", NS)
    node.set(f"{{{RDF}}}about", _change_last_char(node.get(f"{{{RDF}}}about")))


def _email(root):
    node = endorser_field(root, "email")
    node.text = node.text.replace("example.org", "example.orh")


def _identifier(root):
    node = root.find("rdf:Description/dcterms:identifier", NS)
    node.text = _change_last_char(node.text)


def _created(root):
    node = root.find("rdf:Description/slreq:endorsement/dcterms:created", NS)
    node.text = node.text[:-2] + ("1Z" if node.text[-2] != "1" else "2Z")


def _checksum(root):
    node = root.find("rdf:Description/slreq:checksum/slreq:value", NS)
    node.text = _change_last_char(node.text)


def _location(root):
    node = root.find("rdf:Description/slterms:location", NS)
    node.text = node.text.replace("ttylinux", "ttylinuy")


def _parse_type(root):
    root.find("rdf:Description/slreq:checksum", NS).set(f"{{{RDF}}}parseType", "Resourcf")


def _xml_base(root):
    root.set("{http://www.w3.org/XML/1998/namespace}base", "http://mp.stratuslab.eu/x")


def _whitespace(root):
    node = root.find("rdf:Description/dcterms:title", NS)
    node.tail = node.tail + " "


BYTE_CHANGES = {"title": _title, "about": _about, "email": _email, "identifier": _identifier,
                "created": _created, "checksum": _checksum, "location": _location,
                "parse-type": _parse_type, "xml-base": _xml_base, "whitespace": _whitespace}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("change", sorted(BYTE_CHANGES))
def test_any_change_of_signed_content_is_rejected(rsa_signer, tmp_path, change, profile):
    data = sign_bytes(rsa_signer, profile)
    root = document.parse(data)
    BYTE_CHANGES[change](root)
    tampered = document.serialize(root)
    assert tampered != data
    if len(tampered) == len(data):     # one byte changed, or one inserted
        assert sum(a != b for a, b in zip(tampered, data, strict=True)) == 1
    else:
        assert len(tampered) == len(data) + 1
    assert rejected(document.parse(tampered)) == ["signature-value"]
    assert not xmlsec1_verifies(tampered, rsa_signer.certificate, tmp_path)


def _fake_description(original: etree._Element) -> etree._Element:
    fake = copy.deepcopy(original)
    fake.find("slterms:location", NS).text = "http://evil.example.com/trojan.img.gz"
    return fake


def test_signature_wrapping_with_a_foreign_element_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    original = root.find("rdf:Description", NS)
    wrapper = etree.Element("{http://example.org/}wrapper")
    root.replace(original, _fake_description(original))
    wrapper.append(original)
    root.insert(0, wrapper)
    tampered = reparse(root)
    assert rejected(tampered) == ["signature-value"]


def test_signature_wrapping_inside_the_signature_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    original = root.find("rdf:Description", NS)
    root.replace(original, _fake_description(original))
    holder = etree.SubElement(root.find("ds:Signature", NS), f"{DS}Object")
    holder.append(original)
    assert rejected(reparse(root)) == ["signature-shape"]


def test_duplicated_description_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    root.insert(1, _fake_description(root.find("rdf:Description", NS)))
    tampered = reparse(root)
    assert rejected(tampered) == ["signature-value"]
    assert "one-description" in [p.rule for p in validation.validate(tampered)]


def test_second_signature_is_rejected(rsa_signer, ec_signer):
    root = document.parse(sign_bytes(rsa_signer))
    other = document.parse(sign_bytes(ec_signer))
    root.append(other.find("ds:Signature", NS))
    assert rejected(reparse(root)) == ["one-signature"]


def test_second_signature_hidden_in_the_description_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    root.find("rdf:Description", NS).append(copy.deepcopy(root.find("ds:Signature", NS)))
    assert rejected(reparse(root)) == ["one-signature"]


def test_signature_not_last_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    etree.SubElement(root, "{http://example.org/}after").text = "appended after signing"
    assert rejected(reparse(root)) == ["signature-last"]


def test_signature_before_the_description_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    root.insert(0, root.find("ds:Signature", NS))
    assert rejected(reparse(root)) == ["signature-last"]


def test_signature_inside_the_description_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    root.find("rdf:Description", NS).append(root.find("ds:Signature", NS))
    assert rejected(reparse(root)) == ["signature-last"]


@pytest.mark.parametrize("uri", ["#x", "#MMZu9WvwKIro-rtBQfDk4PsKO7_", "http://example.org/",
                                 None])
def test_reference_to_less_than_the_whole_document_is_rejected(rsa_signer, uri):
    root = document.parse(sign_bytes(rsa_signer))
    reference = root.find("ds:Signature/ds:SignedInfo/ds:Reference", NS)
    if uri is None:
        del reference.attrib["URI"]
    else:
        reference.set("URI", uri)
    assert rejected(reparse(root)) == ["whole-document"]


def test_second_reference_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    reference = root.find("ds:Signature/ds:SignedInfo/ds:Reference", NS)
    reference.addnext(copy.deepcopy(reference))
    assert rejected(reparse(root)) == ["whole-document"]


def test_extra_xpath_transform_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    transforms = root.find("ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms", NS)
    extra = etree.SubElement(transforms, f"{DS}Transform", Algorithm=XPATH)
    etree.SubElement(extra, f"{DS}XPath").text = "not(ancestor-or-self::dcterms:title)"
    assert rejected(reparse(root)) == ["enveloped"]


def test_validly_signed_xpath_exclusion_is_rejected(rsa_signer, tmp_path):
    """xmlsec1 signs a reference that leaves the title out; such a signature is refused."""
    transform = (f'<Transform Algorithm="{XPATH}"><XPath xmlns:dcterms="{DCTERMS}">'
                 'not(ancestor-or-self::dcterms:title)</XPath></Transform>')
    signed = xmlsec1_sign(document.parse(sign_bytes(rsa_signer)), rsa_signer, tmp_path,
                          transforms=transform)
    _title(signed)
    data = document.serialize(signed)
    assert xmlsec1_verifies(data, rsa_signer.certificate, tmp_path)   # the danger
    assert rejected(document.parse(data)) == ["enveloped"]


def test_object_in_the_signature_is_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    etree.SubElement(root.find("ds:Signature", NS), f"{DS}Object").text = "x"
    assert rejected(reparse(root)) == ["signature-shape"]


def test_swapped_certificate_is_rejected(rsa_signer, make_signer, tmp_path):
    other = make_signer("Jane Tester", email="jane.tester@example.org", fresh_key=True)
    root = document.parse(sign_bytes(rsa_signer))
    node = root.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    node.text = base64.b64encode(other.certificate.public_bytes(Encoding.DER)).decode()
    data = document.serialize(root)
    assert rejected(document.parse(data)) == ["signature-value"]
    assert not xmlsec1_verifies(data, other.certificate, tmp_path)


def test_two_certificates_in_keyinfo_are_rejected(rsa_signer):
    root = document.parse(sign_bytes(rsa_signer))
    node = root.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    node.addnext(copy.deepcopy(node))
    assert rejected(reparse(root)) == ["one-certificate"]


def test_unsigned_document_is_rejected():
    assert rejected(reparse(model.to_document(appliance()))) == ["signed"]


# --- endorser against certificate (documents signed by xmlsec1) ---------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("email", "mallory@example.org"),
    ("subject", "CN=Mallory,OU=Testing Department,O=Marketplace Tests,C=EU"),
    ("issuer", "CN=Other CA,OU=Certificate Authorities,O=Marketplace Tests,C=EU"),
])
def test_endorser_must_match_the_certificate(rsa_signer, tmp_path, field, value):
    root = document.parse(sign_bytes(rsa_signer))
    endorser_field(root, field).text = value
    signed = xmlsec1_sign(root, rsa_signer, tmp_path)
    assert xmlsec1_verifies(document.serialize(signed), rsa_signer.certificate, tmp_path)
    with pytest.raises(MetadataError) as caught:
        verify(signed)
    assert [(p.element, p.rule) for p in caught.value.problems] == [
        (f"slreq:{field}", "endorser-certificate")]
    assert value in caught.value.problems[0].message


def test_endorser_email_is_free_when_the_certificate_has_none(signer_without_email, tmp_path):
    root = document.parse(sign_bytes(signer_without_email, email="noah@example.org"))
    endorser_field(root, "email").text = "anyone@example.org"
    signed = xmlsec1_sign(root, signer_without_email, tmp_path)
    assert verify(signed) == signer_without_email.certificate


def test_endorser_subject_in_other_letter_case_matches(rsa_signer, tmp_path):
    root = document.parse(sign_bytes(rsa_signer))
    endorser_field(root, "subject").text = \
        "CN=JANE TESTER,OU=testing department,O=Marketplace Tests,C=eu"
    assert verify(xmlsec1_sign(root, rsa_signer, tmp_path)) == rsa_signer.certificate


def test_endorser_with_several_issuers_matches_if_one_does(rsa_signer, tmp_path):
    root = document.parse(sign_bytes(rsa_signer))
    issuer = endorser_field(root, "issuer")
    extra = copy.deepcopy(issuer)
    extra.text = "CN=Some Other CA,O=Elsewhere,C=EU"
    issuer.addprevious(extra)
    assert verify(xmlsec1_sign(root, rsa_signer, tmp_path)) == rsa_signer.certificate


# --- DN comparison -------------------------------------------------------------------------

JANE = pki.name("Jane Tester", organisation="StratusLab Project", unit="Testing Department")
JANE_TEXT = "CN=Jane Tester,OU=Testing Department,O=StratusLab Project,C=EU"


def test_dn_text_of_the_helper_is_the_original_form():
    assert JANE.rfc4514_string() == JANE_TEXT


@pytest.mark.parametrize("text", [
    JANE_TEXT,
    "CN=jane tester,OU=TESTING DEPARTMENT,O=stratuslab project,C=eu",
    "CN=Jane Tester, OU=Testing Department, O=StratusLab Project, C=EU",
    "CN = Jane Tester , OU = Testing Department , O = StratusLab Project , C = EU",
    "cn=Jane Tester,ou=Testing Department,o=StratusLab Project,c=EU",
], ids=["same", "value-case", "space-after-comma", "spaces-around-separators",
        "keyword-case"])
def test_same_dn_ignores_spacing_and_case(text):
    """RFC 2253 section 4: spaces around separators are allowed; keywords ignore case."""
    assert signature.same_dn(text, JANE)


@pytest.mark.parametrize("text", [
    None, "", "not a DN",
    "CN=John Tester,OU=Testing Department,O=StratusLab Project,C=EU",
    "CN=Jane Tester,O=StratusLab Project,C=EU",
    "CN=Jane Tester,OU=Testing Department,O=StratusLab Project,C=EU,DC=org",
    "CN=Jane Tester,OU=Testing Department,O=StratusLab Projects,C=EU",
])
def test_same_dn_rejects_other_names(text):
    assert not signature.same_dn(text, JANE)


def test_same_dn_reads_hex_values_as_java_writes_them():
    """Java's X500Principal.getName() writes emailAddress as #<hex of its DER encoding>."""
    address = b"jane.tester@example.org"
    name = x509.Name([*JANE, x509.NameAttribute(NameOID.EMAIL_ADDRESS, address.decode())])
    der = bytes([0x16, len(address)]) + address            # IA5String
    java = f"1.2.840.113549.1.9.1=#{der.hex()},{JANE_TEXT}"
    assert signature.same_dn(java, name)


# --- certificate validity ------------------------------------------------------------------

def test_validity_is_checked_at_the_endorsement_date_by_default(make_signer, tmp_path):
    start = datetime(2020, 1, 1, tzinfo=UTC)
    issued = make_signer(not_before=start, not_after=start + timedelta(days=365))
    signed = document.parse(sign_bytes(issued, now=start + timedelta(days=100)))
    assert verify(signed) == issued.certificate
    assert xmlsec1_verifies(document.serialize(signed), issued.certificate, tmp_path)


def test_expired_certificate_is_rejected(make_signer):
    start = datetime(2020, 1, 1, tzinfo=UTC)
    issued = make_signer(not_before=start, not_after=start + timedelta(days=365))
    signed = document.parse(sign_bytes(issued, now=start + timedelta(days=100)))
    with pytest.raises(MetadataError) as caught:
        verify(signed, at=start + timedelta(days=366))
    assert rules_of(caught) == ["certificate-validity"]
    assert "expired" in caught.value.problems[0].message
    assert verifies(signed, at=start + timedelta(days=364))


def test_not_yet_valid_certificate_is_rejected(make_signer):
    start = datetime(2020, 1, 1, tzinfo=UTC)
    issued = make_signer(not_before=start, not_after=start + timedelta(days=365))
    signed = document.parse(sign_bytes(issued, now=start - timedelta(days=1)))
    with pytest.raises(MetadataError) as caught:
        verify(signed)
    assert rules_of(caught) == ["certificate-validity"]
    assert "not yet valid" in caught.value.problems[0].message
    assert verifies(signed, at=start + timedelta(seconds=1))


def test_signature_made_now_fails_two_years_later(rsa_signer):
    signed = document.parse(sign_bytes(rsa_signer))
    assert rejected(signed, at=datetime.now(UTC) + timedelta(days=730)) == [
        "certificate-validity"]


# --- trust store ---------------------------------------------------------------------------

def store_of(*authorities: pki.Issued, crls=()) -> trust.TrustStore:
    return trust.TrustStore(authorities=[a.certificate for a in authorities], crls=list(crls))


def test_trusted_ca_is_accepted(ca, rsa_signer):
    signed = document.parse(sign_bytes(rsa_signer))
    assert verify(signed, trust_store=store_of(ca)) == rsa_signer.certificate


def test_unknown_ca_is_rejected(ca, other_ca, make_signer):
    issued = make_signer(issuer=other_ca)
    signed = document.parse(sign_bytes(issued))
    assert verifies(signed)                      # a good signature, untrusted signer
    assert rejected(signed, trust_store=store_of(ca)) == ["trust-chain"]
    assert verifies(signed, trust_store=store_of(other_ca))


def test_ca_with_the_right_name_but_another_key_is_rejected(ca, make_signer):
    impostor = pki.Issued(pki.make_key(pki.EC), ca.certificate)   # same name, other key
    issued = make_signer(issuer=impostor)
    assert issued.certificate.issuer == ca.certificate.subject
    signed = document.parse(sign_bytes(issued))
    assert rejected(signed, trust_store=store_of(ca)) == ["trust-chain"]


def test_end_entity_certificate_is_not_a_ca(ca, rsa_signer, make_signer):
    issued = make_signer(issuer=rsa_signer)       # "issued" by a non-CA certificate
    signed = document.parse(sign_bytes(issued))
    assert rejected(signed, trust_store=store_of(ca, rsa_signer)) == ["trust-chain"]


def test_certificate_revoked_before_the_moment_is_rejected(ca, make_signer):
    issued = make_signer()
    signed = document.parse(sign_bytes(issued))
    created = model.from_document(signed).endorsement.created
    crl = pki.make_crl(ca, {issued.serial: created - timedelta(minutes=10)})
    with pytest.raises(MetadataError) as caught:
        verify(signed, trust_store=store_of(ca, crls=[crl]))
    assert rules_of(caught) == ["revoked"]


def test_certificate_revoked_after_the_moment_is_accepted(ca, make_signer):
    issued = make_signer()
    signed = document.parse(sign_bytes(issued))
    created = model.from_document(signed).endorsement.created
    store = store_of(ca, crls=[pki.make_crl(ca, {issued.serial: created + timedelta(days=1)})])
    assert verify(signed, trust_store=store) == issued.certificate
    assert rejected(signed, trust_store=store, at=created + timedelta(days=2)) == ["revoked"]


def test_crl_of_other_serials_does_not_revoke(ca, make_signer):
    issued = make_signer()
    signed = document.parse(sign_bytes(issued))
    crl = pki.make_crl(ca, {issued.serial + 1000: datetime(2000, 1, 1, tzinfo=UTC)})
    assert verifies(signed, trust_store=store_of(ca, crls=[crl]))


def test_forged_crl_is_ignored(ca, make_signer):
    issued = make_signer()
    signed = document.parse(sign_bytes(issued))
    forger = pki.Issued(pki.make_key(pki.EC), ca.certificate)   # CA's name, not its key
    crl = pki.make_crl(forger, {issued.serial: datetime(2000, 1, 1, tzinfo=UTC)})
    assert crl.issuer == ca.certificate.subject
    assert verifies(signed, trust_store=store_of(ca, crls=[crl]))


def test_chain_through_an_intermediate_ca(ca, intermediate_ca, make_signer):
    issued = make_signer(issuer=intermediate_ca, key_kind=pki.EC)
    signed = document.parse(sign_bytes(issued, "default"))
    assert verify(signed, trust_store=store_of(ca, intermediate_ca)) == \
        issued.certificate
    assert rejected(signed, trust_store=store_of(ca)) == ["trust-chain"]
    assert trust.TrustStore(authorities=[ca.certificate, intermediate_ca.certificate]).check(
        issued.certificate, datetime.now(UTC))[:2] == [issued.certificate,
                                                       intermediate_ca.certificate]


def test_intermediate_ca_revoked_by_the_root(ca, make_signer):
    intermediate = pki.make_ca("Revoked Intermediate CA", key_kind=pki.EC, issuer=ca)
    issued = make_signer(issuer=intermediate, key_kind=pki.EC)
    signed = document.parse(sign_bytes(issued))
    crl = pki.make_crl(ca, {intermediate.serial: datetime(2001, 1, 1, tzinfo=UTC)})
    assert verifies(signed, trust_store=store_of(ca, intermediate))
    assert rejected(signed, trust_store=store_of(ca, intermediate, crls=[crl])) == ["revoked"]


def test_expired_ca_is_rejected(make_signer):
    old_ca = pki.make_ca("Expired CA", validity=(datetime(2000, 1, 1, tzinfo=UTC),
                                                 datetime.now(UTC) - timedelta(days=1)))
    issued = make_signer(issuer=old_ca)
    signed = document.parse(sign_bytes(issued))
    assert rejected(signed, trust_store=store_of(old_ca)) == ["certificate-validity"]


def write_grid_directory(directory: Path, ca, intermediate_ca, crl) -> Path:
    """The OpenSSL hashed layout: <hash>.0 certificates, <hash>.r0 CRLs, other files."""
    directory.mkdir()
    (directory / "3f5a1c2e.0").write_bytes(ca.certificate_pem())
    (directory / "3f5a1c2e.r0").write_bytes(pki.crl_pem(crl))
    (directory / "3f5a1c2e.signing_policy").write_text(
        "access_id_CA X509 '/C=EU/O=Marketplace Tests/CN=Test Root CA'\n")
    (directory / "3f5a1c2e.namespaces").write_text("TO Issuer \"/C=EU\" PERMIT Subject \".*\"\n")
    (directory / "9b0d7e41.0").write_bytes(intermediate_ca.certificate_pem())
    return directory


def test_trust_store_from_a_hashed_directory(ca, intermediate_ca, make_signer, tmp_path):
    good = make_signer("Good Signer")
    bad = make_signer("Revoked Signer")
    deep = make_signer("Deep Signer", issuer=intermediate_ca)
    crl = pki.make_crl(ca, {bad.serial: datetime(2001, 1, 1, tzinfo=UTC)})
    store = trust.TrustStore.load(write_grid_directory(tmp_path / "certificates", ca,
                                                       intermediate_ca, crl))
    assert set(store.authorities) == {ca.certificate, intermediate_ca.certificate}
    assert store.crls == [crl]
    assert verifies(document.parse(sign_bytes(good)), trust_store=store)
    assert verifies(document.parse(sign_bytes(deep)), trust_store=store)
    assert rejected(document.parse(sign_bytes(bad)), trust_store=store) == ["revoked"]


def test_trust_store_from_a_bundle(ca, intermediate_ca, other_ca, make_signer, tmp_path):
    good = make_signer("Good Signer")
    bad = make_signer("Revoked Signer")
    stranger = make_signer("Stranger", issuer=other_ca)
    crl = pki.make_crl(ca, {bad.serial: datetime(2001, 1, 1, tzinfo=UTC)})
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"# test CAs\n" + ca.certificate_pem() + pki.crl_pem(crl)
                       + intermediate_ca.certificate_pem())
    store = trust.TrustStore.load(bundle)
    assert len(store.authorities) == 2 and len(store.crls) == 1
    assert verifies(document.parse(sign_bytes(good)), trust_store=store)
    assert rejected(document.parse(sign_bytes(bad)), trust_store=store) == ["revoked"]
    assert rejected(document.parse(sign_bytes(stranger)), trust_store=store) == ["trust-chain"]


# --- what a verified document says ---------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("field", "before", "after"), [
    ("deprecated", b"<slterms:deprecated>", b"<slterms:deprecated><!---->"),
    ("valid", b"<dcterms:valid>2020", b"<dcterms:valid>20<!---->20"),
    ("title", b"linux-with-my-apps", b"linux<!---->-with-my-apps"),
], ids=["deprecated", "valid", "title"])
def test_comments_added_after_signing_do_not_change_the_verified_model(
        rsa_signer, tmp_path, profile, field, before, after):
    """Comments are outside an XML-DSig URI="" reference, so they may be added freely to a
    signed document; what the verified document says must not change with them."""
    item = appliance()
    item.deprecated = "security issue with app"
    item.valid = datetime(2020, 1, 1, tzinfo=UTC)
    data = sign_bytes(rsa_signer, profile, item=item)
    tampered = data.replace(before, after, 1)
    assert tampered != data
    assert xmlsec1_verifies(tampered, rsa_signer.certificate, tmp_path)   # by the spec
    root = document.parse(tampered)
    if verifies(root):
        read = model.from_document(root)
        original = model.from_document(document.parse(data))
        assert getattr(read, field) == getattr(original, field)
        assert read.status() == original.status() == model.DEPRECATED


# --- the one definition of a certificate's emails, the one DN equality -----------------------


def test_certificate_emails_are_the_alt_names_then_the_subjects_email_address(ca):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sue Subject"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, "Sue@Example.org")])
    only_subject = pki.make_certificate(ca, subject=subject)
    assert keys.certificate_emails(only_subject.certificate) == ("Sue@Example.org",)
    both = pki.make_certificate(ca, subject=subject, email="sue@example.org")
    assert keys.certificate_emails(both.certificate) == ("sue@example.org",)
    assert keys.certificate_emails(pki.make_certificate(ca).certificate) == ()


def test_an_email_only_in_the_subject_is_proven_by_the_certificate(ca):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sue Subject"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, "sue@example.org")])
    sue = pki.make_certificate(ca, subject=subject)
    data = factories.signed(sue, factories.appliance())
    judged = verdict.judge(data, verdict.Moment.endorsement(None))
    assert judged.email_proof == verdict.CERTIFICATE
    assert judged.identity.email == "sue@example.org"


def test_dn_equality_takes_text_or_names_on_either_side():
    text = "cn=jane  tester, OU=Testing Department,o=stratuslab project, c=EU"
    assert dn.same_dn(text, JANE) and dn.same_dn(JANE, text) and dn.same_dn(JANE, JANE)
    assert dn.same_dn(text, text.upper())
    assert not dn.same_dn("not a dn", "not a dn") and not dn.same_dn(None, JANE)
