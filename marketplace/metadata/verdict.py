"""THE trust decision: may a signed document be trusted, for whom, and as of when.

Every caller (the marketplace's upload, its moderation workflow, a replica, the node's
fetcher and ``stratus-validate-metadata``) asks :func:`judge`, so they agree. It checks

- the document (schema and rules) and its signature (:mod:`.signature`: the XML-DSig
  mechanics, and the endorser named in the document against the certificate);
- the moment the certificate is judged at (:class:`Moment`): never earlier than the
  endorsement, except when a person asks for an exact moment (``--at``), and an endorsement
  dated later than the judge's clock (plus :data:`CLOCK_SKEW`) is refused;
- the certificate's validity then, and with a trust store its chain and CRLs (:mod:`.trust`);
- who it is (:class:`Identity`): the certificate's subject, and the endorsement's email
  with how it was proven -- by the certificate (:func:`~.keys.certificate_emails`) or not
  at all: an email the certificate does not carry is the signer's own claim, which only a
  mail round trip (the marketplace's moderation) can prove;
- the endorser lists (:class:`Endorser`): a blocked endorser is refused, by subject or by
  any email the document or the certificate names; a whitelist matches a subject or an
  email the certificate proves.

The answer is a :class:`Verdict`; a refusal is a MetadataError (the document is wrong) or
:class:`Refused` (this judge does not take that endorser).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from lxml import etree

from marketplace.metadata import document as doc
from marketplace.metadata import model, signature, validation
from marketplace.metadata.identity import (
    BLOCKED_RULE,
    CERTIFICATE,
    EMAIL,
    MAIL,
    SUBJECT,
    UNPROVEN_RULE,
    Endorser,
    Identity,
    Refused,
    check_not_blocked,
    first_naming,
)
from marketplace.metadata.keys import certificate_emails
from marketplace.metadata.problems import fail
from marketplace.metadata.trust import TrustStore, check_validity

CLOCK_SKEW = timedelta(minutes=5)
__all__ = ["BLOCKED_RULE", "CERTIFICATE", "CLOCK_SKEW", "EMAIL", "MAIL", "SUBJECT",
           "UNPROVEN_RULE", "Checked", "Endorser", "Identity", "Moment", "Refused", "Verdict",
           "check_not_blocked", "first_naming", "identify", "identity_of", "judge", "judge_signed"]


@dataclass(frozen=True)
class Checked:
    """A document that passed every check, with its entry and (if signed) the signer."""

    root: etree._Element
    appliance: model.Appliance
    certificate: x509.Certificate | None


@dataclass(frozen=True)
class Moment:
    """When a certificate is judged (``at``, never before the endorsement unless ``exact``)
    and the clock an endorsement may not be dated after (None: a document judged on its
    own, with no clock, as a signing tool checks what it just made)."""

    clock: datetime | None
    at: datetime | None = None
    exact: bool = False

    @classmethod
    def upload(cls, now: datetime) -> Moment:
        """An upload: the certificate must be valid now."""
        return cls(now, now)

    @classmethod
    def published(cls, at: datetime, now: datetime) -> Moment:
        """A replica's copy: as of when the primary says it published it (no later than
        now), which the signer's endorsement date still bounds from below."""
        return cls(min(at, now), min(at, now))

    @classmethod
    def endorsement(cls, now: datetime | None, at: datetime | None = None) -> Moment:
        """A node or a person: as of the endorsement date, or of exactly ``at``."""
        return cls(now, at, exact=at is not None)

    def of(self, created: datetime) -> datetime:
        """The moment the certificate of an endorsement made at ``created`` is judged at."""
        if self.at is None:
            return created
        return self.at if self.exact else max(self.at, created)

    def check_not_future(self, created: datetime) -> None:
        if self.clock is not None and created > self.clock + CLOCK_SKEW:
            raise fail("dcterms:created", "not-in-future",
                       f"the endorsement is dated {created:%Y-%m-%dT%H:%M:%SZ}, in the future "
                       f"(at {self.clock:%Y-%m-%dT%H:%M:%SZ})")


@dataclass(frozen=True)
class Verdict:
    """A document that may be trusted: what it says, who signed it, as of when, and
    whether the whitelist (if any) names its endorser."""

    checked: Checked
    identity: Identity | None
    moment: datetime | None
    listed: bool | None = None  # None: no whitelist was given

    @property
    def appliance(self) -> model.Appliance:
        return self.checked.appliance

    @property
    def certificate(self) -> x509.Certificate | None:
        return self.checked.certificate

    @property
    def email_proof(self) -> str | None:
        return self.identity.email_proof if self.identity else None


def identity_of(email: str | None, certificate: x509.Certificate) -> Identity:
    """The endorsement's email with what the certificate vouches for."""
    return Identity((email or "").lower() or None,
                    frozenset(e.lower() for e in certificate_emails(certificate)),
                    certificate.subject.rfc4514_string())


def identify(data: bytes) -> Identity:
    """Who signed a stored document (signature and endorser checked; not whether the
    certificate is trusted, or was valid): for showing who speaks under an email."""
    root = validation.check(data)
    certificate = signature.verify(root)
    return identity_of(model.read_endorsement(doc.description_of(root)).email, certificate)


def judge(data: bytes, moment: Moment, trust_store: TrustStore | None = None,
          blocked: Iterable[Endorser] = (), whitelist: Iterable[Endorser] | None = None,
          require_signature: bool = True) -> Verdict:
    """The verdict on a document; MetadataError or Refused saying why it cannot be trusted.

    An unsigned document passes only without ``require_signature`` (a person checking a
    draft), and then has no identity.
    """
    root = validation.check(data)
    if not signature.is_signed(root):
        if require_signature:
            raise fail("Signature", "signed", "the document is not signed")
        return Verdict(Checked(root, model.from_document(root), None), None, None)
    return judge_signed(root, moment, trust_store, blocked, whitelist)


def judge_signed(root: etree._Element, moment: Moment, trust_store: TrustStore | None = None,
                 blocked: Iterable[Endorser] = (),
                 whitelist: Iterable[Endorser] | None = None) -> Verdict:
    """The verdict on a document already parsed and validated, which must be signed."""
    certificate = signature.verify(root)
    appliance = model.from_document(root)
    created = appliance.endorsement.created
    if created is None:
        raise fail("dcterms:created", "required", "the endorsement has no date")
    moment.check_not_future(created)
    at = moment.of(created)
    check_validity(certificate, at)
    if trust_store is not None:
        trust_store.check(certificate, at)
    identity = identity_of(appliance.endorsement.email, certificate)
    check_not_blocked(identity, blocked)
    listed = None if whitelist is None else first_naming(whitelist, identity) is not None
    return Verdict(Checked(root, appliance, certificate), identity, at, listed)
