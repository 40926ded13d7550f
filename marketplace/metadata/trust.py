"""A trust store of CA certificates and CRLs, and the chain check against it.

The store is read from PEM files: a bundle, or a directory such as the OpenSSL hashed
layout grid CAs use (``*.0`` certificates, ``*.r0`` CRLs); every PEM block in every file
counts. A certificate is trusted at a moment when a chain of signatures leads from it to a
CA of the store, every link was within its validity then, and no CRL of an issuer in the
chain listed it as revoked before that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from marketplace.metadata.problems import fail

MAX_CHAIN = 8
_CERT = b"-----BEGIN CERTIFICATE-----"
_CRL = b"-----BEGIN X509 CRL-----"


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
            chain.append(self._issuer_of(chain[-1]))
        for link in chain:
            check_validity(link, at)
            self._check_revocation(link, chain, at)
        return chain

    def _is_anchor(self, certificate: x509.Certificate) -> bool:
        return certificate in self.authorities

    def _issuer_of(self, certificate: x509.Certificate) -> x509.Certificate:
        for candidate in self.authorities:
            if candidate.subject != certificate.issuer or not _is_ca(candidate):
                continue
            try:
                certificate.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
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
            if not any(crl.is_signature_valid(i.public_key()) for i in issuers):
                continue
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None and revoked.revocation_date_utc <= at:
                raise fail("certificate", "revoked",
                           f"the certificate of {certificate.subject.rfc4514_string()} was "
                           f"revoked on {revoked.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ}")


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
