"""Real keys, certificates and CRLs made at test time with ``cryptography``.

Nothing here is committed as a key file: every test run makes its own CA, intermediate CA,
end-entity certificates (RSA 2048 or ECDSA P-256, with or without an rfc822 SubjectAltName,
with a chosen validity window) and CRLs, and writes them as PKCS#12 or PEM files into a
temporary directory when a test needs files.

Certificates and CRLs can be signed with SHA-1, as grid CAs signed them until 2016:
``cryptography`` refuses to sign those itself, so :func:`_signed` signs with SHA-256,
puts the SHA-1 algorithm identifier into the to-be-signed part, signs that with the
issuer's key and SHA-1, and assembles the DER.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

RSA = "rsa"
EC = "ec"
KEY_KINDS = (RSA, EC)
PASSWORD = b"test-password"
_serials = itertools.count(0x1000)


@dataclass(frozen=True)
class Issued:
    """A private key with its certificate (a CA or an end entity)."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def subject(self) -> x509.Name:
        return self.certificate.subject

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, encryption)


def make_key(kind: str = RSA) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A new RSA 2048 or ECDSA P-256 private key."""
    if kind == RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == EC:
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key kind {kind!r}")


def name(common_name: str, organisation: str = "Marketplace Tests", unit: str | None = None,
         country: str = "EU") -> x509.Name:
    """A DN in the shape StratusLab certificates had: C, O, (OU,) CN."""
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def window(days_before: float = 1, days_after: float = 365,
           around: datetime | None = None) -> tuple[datetime, datetime]:
    """A validity window from ``days_before`` before ``around`` (default now) to after it."""
    moment = around or datetime.now(UTC)
    return moment - timedelta(days=days_before), moment + timedelta(days=days_after)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, not_before: datetime,
             not_after: datetime, serial: int | None) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(serial if serial is not None else next(_serials))
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))


# The DER AlgorithmIdentifier of each signature, by key kind: SHA-256 (what cryptography
# writes) and SHA-1 (what it is swapped for).
_ALGORITHM_IDENTIFIERS = {
    RSA: (bytes.fromhex("300d06092a864886f70d01010b0500"),
          bytes.fromhex("300d06092a864886f70d0101050500")),
    EC: (bytes.fromhex("300a06082a8648ce3d040302"), bytes.fromhex("300906072a8648ce3d0401")),
}


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_content(element: bytes) -> bytes:
    """The content of one DER element (tag and length stripped)."""
    first = element[1]
    start = 2 if first < 0x80 else 2 + (first & 0x7F)
    return element[start:]


def _signed(builder, key, hash_algorithm: hashes.HashAlgorithm, load):
    """``builder`` signed by ``key`` with ``hash_algorithm``, SHA-1 included; ``load`` reads
    the DER of the result (a certificate or a CRL)."""
    signed = builder.sign(key, hashes.SHA256() if isinstance(hash_algorithm, hashes.SHA1)
                          else hash_algorithm)
    if not isinstance(hash_algorithm, hashes.SHA1):
        return signed
    kind = RSA if isinstance(key, rsa.RSAPrivateKey) else EC
    sha256_id, sha1_id = _ALGORITHM_IDENTIFIERS[kind]
    tbs_der = (signed.tbs_certificate_bytes if isinstance(signed, x509.Certificate)
               else signed.tbs_certlist_bytes)
    content = _der_content(tbs_der)
    assert content.count(sha256_id) == 1
    tbs = _der(0x30, content.replace(sha256_id, sha1_id))
    signature = (key.sign(tbs, padding.PKCS1v15(), hashes.SHA1()) if kind == RSA
                 else key.sign(tbs, ec.ECDSA(hashes.SHA1())))
    return load(_der(0x30, tbs + sha1_id + _der(0x03, b"\x00" + signature)))


def make_ca(common_name: str = "Test Root CA", key_kind: str = RSA,
            issuer: Issued | None = None, validity: tuple[datetime, datetime] | None = None,
            key=None, hash_algorithm: hashes.HashAlgorithm | None = None) -> Issued:
    """A CA certificate: self-signed (a root) or, with ``issuer``, an intermediate CA."""
    key = key or make_key(key_kind)
    not_before, not_after = validity or window(days_before=30, days_after=3650)
    subject = name(common_name, unit="Certificate Authorities")
    builder = _builder(subject, issuer.subject if issuer else subject, key.public_key(),
                       not_before, not_after, None)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                      crl_sign=True, encipher_only=False, decipher_only=False),
        critical=True)
    signing_key = issuer.key if issuer else key
    return Issued(key, _signed(builder, signing_key, hash_algorithm or hashes.SHA256(),
                               x509.load_der_x509_certificate))


def make_certificate(issuer: Issued, common_name: str = "Jane Tester", key_kind: str = RSA,
                     email: str | None = None,
                     validity: tuple[datetime, datetime] | None = None,
                     serial: int | None = None, key=None,
                     subject: x509.Name | None = None,
                     hash_algorithm: hashes.HashAlgorithm | None = None) -> Issued:
    """An end-entity certificate signed by ``issuer``, with an rfc822 SAN when ``email``."""
    key = key or make_key(key_kind)
    not_before, not_after = validity or window()
    builder = _builder(subject or name(common_name, unit="Testing Department"),
                       issuer.subject, key.public_key(), not_before, not_after, serial)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                    critical=True)
    if email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    return Issued(key, _signed(builder, issuer.key, hash_algorithm or hashes.SHA256(),
                               x509.load_der_x509_certificate))


def make_crl(issuer: Issued, revoked: dict[int, datetime] | None = None,
             last_update: datetime | None = None, next_update: datetime | None = None,
             hash_algorithm: hashes.HashAlgorithm | None = None,
             ) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` revoking each serial of ``revoked`` at its date."""
    last_update = last_update or datetime.now(UTC) - timedelta(hours=1)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(last_update)
               .next_update(next_update or last_update + timedelta(days=30)))
    for serial, date in (revoked or {}).items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(date).build())
    return _signed(builder, issuer.key, hash_algorithm or hashes.SHA256(),
                   x509.load_der_x509_crl)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def write_pkcs12(issued: Issued, path: Path, password: bytes = PASSWORD,
                 cas: list[x509.Certificate] | None = None) -> Path:
    """Write key and certificate as a password-protected PKCS#12 file."""
    data = pkcs12.serialize_key_and_certificates(
        b"test", issued.key, issued.certificate, cas,
        serialization.BestAvailableEncryption(password))
    path = Path(path)
    path.write_bytes(data)
    return path


def write_pem(issued: Issued, directory: Path, stem: str = "signer",
              password: bytes | None = None) -> tuple[Path, Path]:
    """Write ``<stem>-key.pem`` (encrypted when ``password``) and ``<stem>-cert.pem``."""
    directory = Path(directory)
    key_path = directory / f"{stem}-key.pem"
    certificate_path = directory / f"{stem}-cert.pem"
    key_path.write_bytes(issued.key_pem(password))
    certificate_path.write_bytes(issued.certificate_pem())
    return key_path, certificate_path
