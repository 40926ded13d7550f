"""Signing credentials: a private key with its certificate, from PKCS#12 or PEM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from marketplace.metadata.problems import fail

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey


@dataclass(frozen=True)
class Credentials:
    """A private key and the certificate that names its owner."""

    key: SigningKey
    certificate: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def load_pkcs12(path: Path, password: bytes | None) -> Credentials:
    """Read a PKCS#12 bundle (old RC2-encrypted ones too)."""
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(Path(path).read_bytes(), password)
    except ValueError as exc:
        raise fail("credentials", "pkcs12",
                   f"cannot open {path}: wrong password or not a PKCS#12 file ({exc})") from None
    if key is None or certificate is None:
        raise fail("credentials", "pkcs12", f"{path} holds no private key with a certificate")
    return _checked(key, path, certificate, path)


def load_pem(key_path: Path, certificate_path: Path, password: bytes | None) -> Credentials:
    """Read a PEM private key (encrypted or not) and a PEM certificate."""
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password)
    except (ValueError, TypeError) as exc:
        raise fail("credentials", "pem-key", f"cannot read the key in {key_path}: {exc}") from None
    try:
        certificate = x509.load_pem_x509_certificate(Path(certificate_path).read_bytes())
    except ValueError as exc:
        raise fail("credentials", "pem-certificate",
                   f"cannot read the certificate in {certificate_path}: {exc}") from None
    return _checked(key, key_path, certificate, certificate_path)


def _checked(key, key_source: Path, certificate: x509.Certificate,
             certificate_source: Path) -> Credentials:
    """Usable credentials; a mismatch names the certificate, the part that is wrong for the
    key (and the key's file too, when they are two files)."""
    if not isinstance(key, SigningKey):
        raise fail("credentials", "key-type", f"the key in {key_source} is "
                   f"{type(key).__name__}; RSA, ECDSA or DSA is needed")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():
        where = "" if key_source == certificate_source else f" in {key_source}"
        raise fail("credentials", "key-mismatch", f"the certificate in {certificate_source} "
                   f"does not belong to the private key{where}")
    return Credentials(key, certificate)


def certificate_emails(certificate: x509.Certificate) -> tuple[str, ...]:
    """The email addresses the certificate itself vouches for, as written: its rfc822
    SubjectAltNames first, then any emailAddress attribute of its subject.

    THE definition: an endorsement's email counts as the certificate's only when it is one
    of these (compared without case).
    """
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found = list(extension.value.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        found = []
    found += [str(a.value) for a in certificate.subject.get_attributes_for_oid(
        NameOID.EMAIL_ADDRESS)]
    unique: dict[str, str] = {}
    for email in found:
        unique.setdefault(email.lower(), email)
    return tuple(unique.values())
