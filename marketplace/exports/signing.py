"""The marketplace's own signatures on its exports: S/MIME for image lists (what ``openssl
smime -sign`` makes, as vmcaster did) and GPG cleartext signatures for simplestreams' ``.sjson``.

Both keys are optional settings; an export that needs a missing one raises
:class:`NotConfigured` naming the setting, which the web side answers with 503.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from marketplace.exports.imagelist import Endorser
from marketplace.metadata.hepix import slash_dn
from marketplace.metadata.keys import certificate_emails

GPG_TIMEOUT = 60


class NotConfigured(Exception):
    """A signed export was asked for and the setting its key comes from is empty."""

    def __init__(self, *settings: str):
        self.settings = settings
        super().__init__(f"this marketplace signs no such export: set {' and '.join(settings)}")


class SigningFailed(Exception):
    """A configured key that cannot sign (unreadable file, wrong key, gpg failing)."""


@dataclass(frozen=True)
class SMIMESigner:
    """The certificate and key that sign image lists; the certificate is ``hv:endorser``."""

    certificate: x509.Certificate
    key: object

    @classmethod
    def from_files(cls, certificate_path: str, key_path: str) -> SMIMESigner:
        if not certificate_path or not key_path:
            raise NotConfigured(*(name for name, value in (
                ("MARKETPLACE_IMAGELIST_CERTIFICATE", certificate_path),
                ("MARKETPLACE_IMAGELIST_KEY", key_path)) if not value))
        try:
            certificate = x509.load_pem_x509_certificate(Path(certificate_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningFailed(f"the image-list signing certificate or key cannot be read: "
                                f"{type(exc).__name__}") from None
        return cls(certificate, key)

    def endorser(self) -> Endorser:
        emails = certificate_emails(self.certificate)
        return Endorser(slash_dn(self.certificate.subject), slash_dn(self.certificate.issuer),
                        emails[0] if emails else "")

    def sign(self, data: bytes) -> bytes:
        """``data`` as S/MIME ``multipart/signed`` with a detached PKCS#7 signature."""
        return (pkcs7.PKCS7SignatureBuilder().set_data(data)
                .add_signer(self.certificate, self.key, hashes.SHA256())
                .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))


@dataclass(frozen=True)
class GPGSigner:
    """A key in a GnuPG home that clearsigns simplestreams files, through Debian's ``gpg``."""

    home: str
    key: str

    @classmethod
    def from_settings(cls, home: str, key: str) -> GPGSigner:
        if not key:
            raise NotConfigured("MARKETPLACE_GPG_KEY")
        return cls(home, key)

    def clearsign(self, data: bytes) -> bytes:
        """``data`` as an RFC 4880 cleartext-signed message."""
        command = ["gpg", "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback",
                   "--passphrase", "", "--local-user", self.key, "--digest-algo", "SHA256",
                   "--clearsign"]
        if self.home:
            command[1:1] = ["--homedir", self.home]
        try:
            done = subprocess.run(command, input=data, capture_output=True,
                                  timeout=GPG_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SigningFailed(f"gpg could not sign: {exc}") from None
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise SigningFailed(f"gpg could not sign with key {self.key}: "
                                f"{' '.join(reason) or 'exit ' + str(done.returncode)}")
        return done.stdout
