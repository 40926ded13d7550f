"""Who endorsed a document, and the endorser lists that name endorsers: the part of the
trust decision (:mod:`marketplace.metadata.verdict`) that works on plain values.

It is apart so that a node's cache hit re-applies its lists to the facts it kept without
loading the XML or certificate machinery (standard library only, as :mod:`.dn` and
:mod:`.problems`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from marketplace.metadata import dn
from marketplace.metadata.problems import fail

CERTIFICATE = "certificate"  # how an email was proven: the certificate carries it
MAIL = "mail"  # ... or its owner followed the marketplace's mailed link
EMAIL, SUBJECT = "email", "subject"
UNPROVEN_RULE = "endorser-email-unproven"
BLOCKED_RULE = "blocked"  # the rule of a refusal of a blocked endorser


class Refused(Exception):
    """An endorser this judge does not take (blocked, not listed), or an upload a
    read-only replica does not take."""

    def __init__(self, rule: str, message: str, element: str = "slreq:endorser"):
        self.rule, self.element, self.message = rule, element, message
        super().__init__(message)

    @property
    def problems(self) -> list[dict[str, str]]:
        return [{"element": self.element, "rule": self.rule, "message": self.message}]


@dataclass(frozen=True)
class Identity:
    """Who endorsed: the endorsement's email and the emails the certificate carries (lower
    case), and the certificate's subject (RFC 4514 text)."""

    email: str | None
    certified: frozenset[str]
    subject: str | None

    @property
    def email_proof(self) -> str | None:
        """CERTIFICATE when the certificate carries the endorsement's email, else None."""
        return CERTIFICATE if self.email and self.email in self.certified else None

    def require_proven_email(self) -> None:
        """Refuse (MetadataError) an endorsement whose email the certificate does not carry,
        for a judge that cannot prove it by mail."""
        if self.email_proof is None:
            raise fail("slreq:email", UNPROVEN_RULE,
                       f"the endorsement claims the email {self.email}, which the certificate "
                       f"of {self.subject} does not carry (as an rfc822 SubjectAltName or "
                       "an emailAddress): sign with a certificate that carries it")


@dataclass(frozen=True)
class Endorser:
    """An entry of an endorser list: an email address (lower case) or a DN."""

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
            key = tuple(dn.parse(text))
        except ValueError as exc:
            raise ValueError(f"{text[:80]!r} is neither an email address nor a DN "
                             f"(RFC 2253, e.g. CN=Jane Doe,O=Lab,C=EU): {exc}") from None
        return cls(SUBJECT, text, key)

    def names(self, identity: Identity, claimed: bool = False) -> bool:
        """True when this entry names the endorser: by subject, or by an email the
        certificate proves; with ``claimed`` (a block list), by any email the document or
        the certificate names."""
        if self.kind == SUBJECT:
            return self.key == dn.key(identity.subject)
        emails = {identity.email} if identity.email_proof else set()
        if claimed:
            emails |= identity.certified | {identity.email}
        return self.key[0] in emails


def first_naming(endorsers: Iterable[Endorser], identity: Identity,
                 claimed: bool = False) -> Endorser | None:
    """The first endorser of a list that names ``identity``."""
    return next((e for e in endorsers if e.names(identity, claimed)), None)


def check_not_blocked(identity: Identity, blocked: Iterable[Endorser]) -> None:
    """Raise Refused when a blocked endorser names ``identity`` (by any email it claims)."""
    found = first_naming(blocked, identity, claimed=True)
    if found is not None:
        raise Refused(BLOCKED_RULE, f"the endorser {found.text} is blocked by the operators: "
                      "its endorsements are refused")
