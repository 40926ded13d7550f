"""A trust store of CA certificates and CRLs, and the chain check against it.

The store is read from PEM files: a bundle, or a directory such as the OpenSSL hashed
layout grid CAs use (``*.0`` certificates, ``*.r0`` CRLs); every PEM block in every file
counts. A certificate is trusted at a moment when a chain of signatures leads from it to a
CA of the store, every link was within its validity then, and no CRL of an issuer in the
chain listed it as revoked before that moment.

Signatures made with SHA-1 (every grid certificate and CRL of the StratusLab era) count
when the moment judged is before :data:`SHA1_SIGNATURES_UNTIL`, the date CAs stopped
issuing them; ``cryptography`` refuses SHA-1 in its own issuer check, so they are verified
here with the issuer's public key. After that date a SHA-1 signature that verifies is
refused with the rule ``weak-certificate-signature``, never taken for a missing issuer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from marketplace.metadata.problems import fail

MAX_CHAIN = 8
_CERT = b"-----BEGIN CERTIFICATE-----"
_CRL = b"-----BEGIN X509 CRL-----"
SHA1_SIGNATURES_UNTIL = datetime(2017, 1, 1, tzinfo=UTC)
# The SHA-1 signature algorithms, and the kind of issuer key each is made with.
_SHA1_SIGNATURES = {
    SignatureAlgorithmOID.RSA_WITH_SHA1: rsa.RSAPublicKey,
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: ec.EllipticCurvePublicKey,
    SignatureAlgorithmOID.DSA_WITH_SHA1: dsa.DSAPublicKey,
}


@dataclass
class TrustStore:
    """CA certificates and the CRLs their issuers published."""

    authorities: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)

    @classmethod
    def load(cls, *paths: Path) -> TrustStore:
        """Read every certificate and CRL from the given files and directories."""
        store = cls()
        for path in paths:
            files = sorted(p for p in Path(path).iterdir() if p.is_file()) \
                if Path(path).is_dir() else [Path(path)]
            for file in files:
                store.add_pem(file.read_bytes())
        return store

    def add_pem(self, data: bytes) -> None:
        """Add the certificates and CRLs of one PEM text."""
        if _CERT in data:
            self.authorities += x509.load_pem_x509_certificates(data)
        if _CRL in data:
            for block in data.split(_CRL)[1:]:
                self.crls.append(x509.load_pem_x509_crl(_CRL + block))

    def check(self, certificate: x509.Certificate, at: datetime) -> list[x509.Certificate]:
        """The chain from ``certificate`` to a trusted CA, or a MetadataError saying why not."""
        chain = [certificate]
        while not self._is_anchor(chain[-1]):
            if len(chain) > MAX_CHAIN:
                raise fail("certificate", "trust-chain", "the certificate chain is too long")
            chain.append(self._issuer_of(chain[-1], at))
        for link in chain:
            check_validity(link, at)
            self._check_revocation(link, chain, at)
        return chain

    def _is_anchor(self, certificate: x509.Certificate) -> bool:
        return certificate in self.authorities

    def _issuer_of(self, certificate: x509.Certificate, at: datetime) -> x509.Certificate:
        for candidate in self.authorities:
            if candidate.subject == certificate.issuer and _is_ca(candidate) \
                    and _issued_by(certificate, candidate, at):
                return candidate
        raise fail("certificate", "trust-chain",
                   f"no trusted CA issued the certificate of {certificate.subject.rfc4514_string()}"
                   f" (issuer {certificate.issuer.rfc4514_string()})")

    def _check_revocation(self, certificate: x509.Certificate,
                          chain: list[x509.Certificate], at: datetime) -> None:
        issuers = [c for c in chain + self.authorities if c.subject == certificate.issuer]
        for crl in self.crls:
            if crl.issuer != certificate.issuer:
                continue
            if not any(_crl_signed_by(crl, i, at) for i in issuers):
                continue
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None and revoked.revocation_date_utc <= at:
                raise fail("certificate", "revoked",
                           f"the certificate of {certificate.subject.rfc4514_string()} was "
                           f"revoked on {revoked.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ}")


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate,
               at: datetime) -> bool:
    """Whether ``issuer``'s key signed ``certificate`` (SHA-1 by the rule of the moment)."""
    if certificate.signature_algorithm_oid in _SHA1_SIGNATURES:
        return _sha1_signed(certificate, certificate.tbs_certificate_bytes, issuer, at,
                            f"the certificate of {certificate.subject.rfc4514_string()}")
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate,
                   at: datetime) -> bool:
    """Whether ``issuer``'s key signed ``crl`` (SHA-1 by the rule of the moment)."""
    if crl.signature_algorithm_oid in _SHA1_SIGNATURES:
        return _sha1_signed(crl, crl.tbs_certlist_bytes, issuer, at,
                            f"the CRL of {crl.issuer.rfc4514_string()}")
    return crl.is_signature_valid(issuer.public_key())


def _sha1_signed(signed: x509.Certificate | x509.CertificateRevocationList, tbs: bytes,
                 issuer: x509.Certificate, at: datetime, what: str) -> bool:
    """Verify a SHA-1 signature with the issuer's key; one that verifies counts only when
    judged before SHA1_SIGNATURES_UNTIL, and after it is refused by a rule of its own."""
    key = issuer.public_key()
    if not isinstance(key, _SHA1_SIGNATURES[signed.signature_algorithm_oid]):
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signed.signature, tbs, padding.PKCS1v15(), hashes.SHA1())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signed.signature, tbs, ec.ECDSA(hashes.SHA1()))
        else:
            key.verify(signed.signature, tbs, hashes.SHA1())
    except InvalidSignature:
        return False
    if at >= SHA1_SIGNATURES_UNTIL:
        raise fail("certificate", "weak-certificate-signature",
                   f"{what} is signed with SHA-1, which counts only for moments before "
                   f"{SHA1_SIGNATURES_UNTIL:%Y-%m-%d} (judged at {at:%Y-%m-%dT%H:%M:%SZ})")
    return True


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return certificate.version == x509.Version.v1


def check_validity(certificate: x509.Certificate, at: datetime) -> None:
    """Raise a MetadataError unless the certificate was within its validity at ``at``."""
    name = certificate.subject.rfc4514_string()
    when = f"{at:%Y-%m-%dT%H:%M:%SZ}"
    if at < certificate.not_valid_before_utc:
        raise fail("certificate", "certificate-validity",
                   f"the certificate of {name} was not yet valid at {when} (valid from "
                   f"{certificate.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ})")
    if at > certificate.not_valid_after_utc:
        raise fail("certificate", "certificate-validity",
                   f"the certificate of {name} had expired at {when} (valid until "
                   f"{certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})")
