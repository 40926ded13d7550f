"""What the original StratusLab tools did to a document, redone for tests.

The original signer (the Java metadata library's ``signMetadataEntry``) keeps the last
``slreq:endorsement`` with its attributes, empties it, fills in ``dcterms:created`` and an
``slreq:endorser`` with ``rdf:parseType="Resource"``, strips old signatures and signs with
RSA-SHA1 over C14N with comments, its certificate in the KeyInfo. The original
``stratus-deprecate-metadata`` removes the entry's endorsement and signature, appends an
empty ``<slreq:endorsement parseType="Resource"/>`` (parseType unqualified) and then
``slterms:deprecated`` at the end of the Description, and hands the file to that signer.

Written from the original code's behaviour, independently of ``marketplace.metadata`` (our
signer always writes the qualified form and our own order), so that a test of a document
made here is a test of what the original tools sent.
"""

from __future__ import annotations

from datetime import datetime

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from tests import pki

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DCTERMS = "http://purl.org/dc/terms/"
SLREQ = "http://mp.stratuslab.eu/slreq#"
SLTERMS = "http://mp.stratuslab.eu/slterms#"
DSIG = "http://www.w3.org/2000/09/xmldsig#"


def description(root: etree._Element) -> etree._Element:
    return root.find(f"{{{RDF}}}Description")


def deprecator_form(root: etree._Element, reason: str) -> etree._Element:
    """The original deprecator's edit, in place, before it calls the signer."""
    found = description(root)
    found.remove(found.find(f".//{{{SLREQ}}}endorsement"))
    etree.SubElement(found, f"{{{SLREQ}}}endorsement", parseType="Resource")
    for signature in root.findall(f"{{{DSIG}}}Signature"):
        root.remove(signature)
    etree.SubElement(found, f"{{{SLTERMS}}}deprecated").text = reason
    return root


def sign(root: etree._Element, signer: pki.Issued, email: str, now: datetime) -> bytes:
    """The original signer: fill the (last) endorsement in place and sign, RSA-SHA1 (or
    ECDSA-SHA1 for an EC key, as our ``stratuslab`` profile does).

    The email is the certificate's, else ``email`` (the original's default email).
    """
    email = _certificate_email(signer.certificate) or email
    for signature in root.iter(f"{{{DSIG}}}Signature"):
        signature.getparent().remove(signature)
    endorsements = root.findall(f".//{{{SLREQ}}}endorsement")
    for extra in endorsements[:-1]:
        extra.getparent().remove(extra)
    endorsement = endorsements[-1]
    for child in list(endorsement):
        endorsement.remove(child)
    endorsement.text = None
    etree.SubElement(endorsement, f"{{{DCTERMS}}}created").text = \
        now.strftime("%Y-%m-%dT%H:%M:%SZ")
    endorser = etree.SubElement(endorsement, f"{{{SLREQ}}}endorser",
                                {f"{{{RDF}}}parseType": "Resource"})
    etree.SubElement(endorser, f"{{{SLREQ}}}email").text = email
    etree.SubElement(endorser, f"{{{SLREQ}}}subject").text = \
        signer.certificate.subject.rfc4514_string()
    etree.SubElement(endorser, f"{{{SLREQ}}}issuer").text = \
        signer.certificate.issuer.rfc4514_string()
    return _signed(root, signer)


def _certificate_email(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    emails = names.value.get_values_for_type(x509.RFC822Name)
    return emails[0] if emails else None


def _signed(root: etree._Element, signer: pki.Issued) -> bytes:
    transform = xmlsec.Transform
    method = transform.RSA_SHA1 if isinstance(signer.key, rsa.RSAPrivateKey) \
        else transform.ECDSA_SHA1
    template = xmlsec.template.create(root, transform.C14N_COMMENTS, method)
    root.append(template)
    reference = xmlsec.template.add_reference(template, transform.SHA1, uri="")
    xmlsec.template.add_transform(reference, transform.ENVELOPED)
    key_info = xmlsec.template.ensure_key_info(template)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    key_pem = signer.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM, None)
    key.load_cert_from_memory(signer.certificate_pem(), xmlsec.KeyFormat.CERT_PEM)
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(template)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def tag_document_order(root: etree._Element) -> etree._Element:
    """The order of the original marketplace's tag documents: dcterms:alternative (the tag)
    first, before slreq:bytes and the rest, in place."""
    found = description(root)
    tag = found.find(f"{{{DCTERMS}}}alternative")
    found.remove(tag)
    found.insert(0, tag)
    return root


def reversed_order(root: etree._Element) -> etree._Element:
    """Every property of the Description in the reverse of its order, in place."""
    found = description(root)
    children = [c for c in found if isinstance(c.tag, str)]
    for child in children:
        found.remove(child)
    for child in reversed(children):
        found.append(child)
    return root
