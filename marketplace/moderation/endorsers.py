"""Naming endorsers: an email address or a subject DN, matched against a verified upload.

A DN is compared as a name (:mod:`marketplace.metadata.dn`), so ``CN=Jane, O=Lab, C=EU``
and ``cn=jane,o=lab,c=eu`` are one endorser. For the whitelist an email counts only when
the certificate itself carries it (rfc822 SubjectAltName or an emailAddress attribute):
an endorsement's email is otherwise the signer's own claim. Blocking takes either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from marketplace.metadata import dn

EMAIL = "email"
SUBJECT = "subject"


@dataclass(frozen=True)
class Endorser:
    """An email address (lower case) or a DN (as written, and its comparable form)."""

    kind: str
    text: str
    key: tuple

    @classmethod
    def parse(cls, text: str) -> Endorser:
        """``name@domain`` or an RFC 2253 DN; ValueError saying which rule it breaks."""
        text = " ".join(text.split())
        if not text:
            raise ValueError("an endorser is an email address or a subject DN; got nothing")
        if "@" in text and "=" not in text:
            if text.count("@") != 1 or " " in text or len(text) > 254:
                raise ValueError(f"{text[:80]!r} is not an email address")
            return cls(EMAIL, text.lower(), (text.lower(),))
        try:
            key = dn.parse(text)
        except ValueError as exc:
            raise ValueError(f"{text[:80]!r} is neither an email address nor a DN "
                             f"(RFC 2253, e.g. CN=Jane Doe,O=Lab,C=EU): {exc}") from None
        return cls(SUBJECT, text, tuple(key))

    def matches(self, email: str | None, subject: x509.Name | None) -> bool:
        """True for an endorser with this email, or with a certificate of this subject."""
        if self.kind == EMAIL:
            return bool(email) and email.lower() == self.key[0]
        return subject is not None and list(self.key) == dn.name_key(subject)


def certificate_emails(certificate: x509.Certificate) -> set[str]:
    """The email addresses a certificate itself vouches for, in lower case."""
    emails = {str(a.value).lower()
              for a in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)}
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        emails |= {e.lower() for e in names.value.get_values_for_type(x509.RFC822Name)}
    except x509.ExtensionNotFound:
        pass
    return emails


def read_list(path: Path) -> list[Endorser]:
    """The endorsers of a list file: one a line; blank lines and ``#`` comments skipped."""
    endorsers = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                endorsers.append(Endorser.parse(line))
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
    return endorsers


class WatchedFile:
    """A file read again whenever it changes, so operators edit it without a restart."""

    def __init__(self, path: Path, read: Callable[[Path], object]):
        self.path = Path(path)
        self._read = read
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._value = None
        self.value()  # a broken file is an error at start-up, not at the first request

    def value(self):
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if stamp != self._stamp:
                self._value, self._stamp = self._read(self.path), stamp
            return self._value


class Whitelist:
    """The endorsers whose uploads are published at once."""

    def __init__(self, path: Path):
        self.file = WatchedFile(path, read_list)

    def lists(self, email: str | None, certificate: x509.Certificate) -> bool:
        """True when the certificate's subject, or an email it carries that is also the
        endorsement's, is on the list."""
        certified = email if email and email.lower() in certificate_emails(certificate) \
            else None
        return any(e.matches(certified, certificate.subject) for e in self.file.value())
