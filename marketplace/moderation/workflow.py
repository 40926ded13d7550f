"""The publication policy and the moderation actions, apart from HTTP.

:meth:`Moderation.judge` asks the trust decision (:mod:`marketplace.metadata.verdict`)
with this marketplace's trust store, blocked endorsers and whitelist; :meth:`Moderation.
admit` then lets an upload whose email the certificate proves through when its endorser
is whitelisted (or anyone is, by default), and otherwise holds it and mails that address
-- the only other way an email is proven -- or refuses it where no mail is sent. The
mailed links act through :meth:`Moderation.respond`; operators act through
:meth:`Moderation.remove`, :meth:`block` and :meth:`unblock`. Every change is one
transaction of the :class:`~.store.ModerationStore` and is audited. "Now" is
:attr:`Moderation.clock`, which tests replace.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from marketplace.metadata.model import format_date, parse_date
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.trust import TrustStore
from marketplace.metadata.verdict import (
    MAIL,
    Endorser,
    Identity,
    Moment,
    Refused,
    Verdict,
    identify,
    judge,
)
from marketplace.moderation.endorsers import Whitelist
from marketplace.moderation.mail import ACTIONS, Mailer, MailUnavailable, confirmation
from marketplace.moderation.store import (
    FLAGGED,
    PENDING,
    Event,
    Key,
    ModerationStore,
    SQLiteModerationStore,
    Upload,
)
from marketplace.store.base import Conflict, Entry, Query, Store

log = logging.getLogger(__name__)
POLICIES = ("publish", "confirm", "refuse")
SYSTEM = "marketplace"


class PendingConfirmation(Exception):
    """The upload is kept until its endorser follows the mailed link (the answer is 202)."""

    def __init__(self, upload: Upload, mailed: bool):
        self.upload, self.mailed = upload, mailed
        super().__init__(f"the upload of {upload.identifier} awaits the confirmation of "
                         f"{upload.email}")


class LinkGone(LookupError):
    """A mailed link whose token is unknown, used already, or expired."""


@dataclass(frozen=True)
class Outcome:
    """What following a mailed link did."""

    action: str
    state: str  # published | known | aborted | flagged | conflict
    upload: Upload
    message: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass
class Moderation:
    """The publication policy in front of a store, and the operators' actions."""

    store: Store
    db: ModerationStore
    unlisted: str = "publish"
    whitelist: Whitelist | None = None
    mailer: Mailer | None = None
    public_url: str = ""
    pending_for: timedelta = timedelta(hours=48)
    site: str = "StratusLab Marketplace"
    trust_store: TrustStore | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @classmethod
    def from_settings(cls, settings: dict[str, str], store: Store,
                      trust_store: TrustStore | None = None) -> Moderation:
        """The policy the settings describe; ValueError for settings that cannot work."""
        unlisted = settings["UNLISTED_ENDORSERS"].lower()
        if unlisted not in POLICIES:
            raise ValueError(f"MARKETPLACE_UNLISTED_ENDORSERS must be one of "
                             f"{', '.join(POLICIES)}; got {unlisted!r}")
        whitelist = None
        if settings["ENDORSER_WHITELIST"]:
            if not settings["TRUST_STORE"]:
                raise ValueError("MARKETPLACE_ENDORSER_WHITELIST needs MARKETPLACE_TRUST_STORE: "
                                 "without one, anyone can make a certificate with a listed "
                                 "name")
            whitelist = Whitelist(Path(settings["ENDORSER_WHITELIST"]))
        mailer, public_url = None, settings["PUBLIC_URL"].rstrip("/")
        if unlisted == "confirm":
            mailer = Mailer.from_settings(settings)
            if not public_url.startswith(("http://", "https://")):
                raise ValueError("UNLISTED_ENDORSERS=confirm mails links: set "
                                 "MARKETPLACE_PUBLIC_URL to this marketplace's http(s) address")
        hours = float(settings["PENDING_HOURS"])
        if hours <= 0:
            raise ValueError("MARKETPLACE_PENDING_HOURS must be positive")
        path = settings["MODERATION_DB"] or str(Path(settings["DATA_DIR"]) / "moderation.db")
        return cls(store, SQLiteModerationStore(Path(path)), unlisted, whitelist, mailer,
                   public_url, timedelta(hours=hours), settings["TITLE"], trust_store)

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    # --- uploads ---

    def judge(self, data: bytes, moment: Moment) -> Verdict:
        """The trust decision with this marketplace's trust store, blocked endorsers and
        whitelist."""
        whitelist = self.whitelist.endorsers() if self.whitelist is not None else None
        return judge(data, moment, self.trust_store, self.blocked(), whitelist)

    def email_proof(self, key: Key, identity: Identity) -> str | None:
        """How the email of a stored entry was proven: CERTIFICATE, MAIL, or None (an entry
        stored before emails had to be proven, or not through the upload path)."""
        if identity.email_proof is not None:
            return identity.email_proof
        return MAIL if self.db.confirmed(key) else None

    def signer(self, entry: Entry) -> tuple[str | None, str | None]:
        """(certificate subject, how the email was proven) of a stored entry, as signed."""
        try:
            identity = identify(entry.document)
        except MetadataError:
            return None, None
        return identity.subject, self.email_proof(entry.key, identity)

    def unmixed(self, entries: list[Entry]) -> tuple[list[Entry], list[tuple[str, str | None]]]:
        """The entries one email may show together (a page, a tag), and who signed them with
        what proof.

        Entries of several certificate subjects appear under one email only when each proved
        it (certificate or mail); an unproven one (stored before emails had to be proven, or
        not through the upload path) is then left out, so no other certificate speaks under
        that address.
        """
        signed = [(entry, *self.signer(entry)) for entry in entries]
        mixed = len({subject for _, subject, _ in signed}) > 1
        kept = [entry for entry, _, proof in signed if proof or not mixed]
        signers = {subject: proof for _, subject, proof in signed
                   if subject and (proof or not mixed)}
        return kept, list(signers.items())

    def blocked(self) -> list[Endorser]:
        return [Endorser.parse(b.endorser) for b in self.db.blocked()]

    def admit(self, entry: Entry, verdict: Verdict, now: datetime) -> None:
        """Return when the judged entry may be stored now; else raise Refused,
        PendingConfirmation (after mailing the endorser), Conflict, or MetadataError for an
        email only a mail could prove where no mail is sent.

        An email the certificate does not carry waits for the mail round trip whatever the
        whitelist says: a listed subject proves who signed, not which address it may use.
        """
        if verdict.email_proof is None and self.unlisted != "confirm":
            verdict.identity.require_proven_email()
        if verdict.email_proof is not None and (self.unlisted == "publish" or verdict.listed):
            return
        if self.unlisted == "refuse":
            raise Refused("whitelist", f"the endorser {entry.email} "
                          f"({verdict.identity.subject}) is not on this marketplace's list "
                          "of endorsers who may publish")
        if self._already_stored(entry):
            return
        self.hold(entry, verdict, now)

    def admit_copy(self, verdict: Verdict) -> None:
        """What a replica takes of what its primary published: the whitelist when unlisted
        endorsers are refused, and only emails the certificate proves (a replica sends no
        mail: an entry its primary published after a mail confirmation is left out)."""
        verdict.identity.require_proven_email()
        if self.unlisted == "refuse" and verdict.listed is False:
            raise Refused("whitelist", f"the endorser {verdict.identity.email} "
                          f"({verdict.identity.subject}) is not on this marketplace's list "
                          "of endorsers who may publish")

    def _already_stored(self, entry: Entry) -> bool:
        """True for a replay of a stored document; Conflict where the store would refuse."""
        stored = self.store.get(entry.identifier, entry.email, entry.created)
        if stored is not None:
            if stored.document == entry.document:
                return True
            raise Conflict(f"another document is stored for {entry.identifier} by "
                           f"{entry.email} at {entry.key[2]}")
        latest = self.store.search(Query(filters={"identifier": entry.identifier,
                                                  "email": entry.email},
                                         status="all", limit=1)).entries
        if latest and latest[0].created > entry.created:
            raise Conflict(f"a newer entry ({latest[0].key[2]}) of {entry.identifier} by "
                           f"{entry.email} is stored; this one is from {entry.key[2]}")
        return False

    def hold(self, entry: Entry, verdict: Verdict, now: datetime) -> None:
        """Keep the upload pending, mail its endorser, raise PendingConfirmation."""
        self.purge(now)
        token = secrets.token_urlsafe(32)
        upload = Upload(*entry.key, entry.document, verdict.identity.subject,
                        entry.appliance.title, PENDING, now, now + self.pending_for)
        held, new = self.db.hold(upload, token_hash(token),
                                 Event(entry.email, "held", "awaiting the endorser's "
                                       "confirmation by mail"))
        if not new:
            if held.document != entry.document:
                raise Conflict(f"another document of {entry.identifier} by {entry.email} at "
                               f"{entry.key[2]} awaits its endorser's confirmation")
            raise PendingConfirmation(held, mailed=False)
        try:
            self.mailer.send(confirmation(upload, self.links(token), self.site))
        except MailUnavailable:
            self.db.resolve(upload.key, Event(SYSTEM, "discarded", "the confirmation mail "
                                              "could not be sent"), now, published=False)
            raise
        log.info("upload of %s by %s held for confirmation until %s", entry.identifier,
                 entry.email, format_date(upload.expires))
        raise PendingConfirmation(upload, mailed=True)

    def links(self, token: str) -> dict[str, str]:
        return {action: f"{self.public_url}/moderation/{action}?token={token}"
                for action in ACTIONS}

    def record_published(self, entry: Entry, now: datetime, actor: str | None = None,
                         action: str = "published") -> None:
        """Add a new entry to the change feed (audited when an ``actor`` is named)."""
        self.db.published(entry.key, now, Event(actor, action) if actor else None)

    def purge(self, now: datetime) -> None:
        expired = self.db.purge(now, SYSTEM)
        if expired:
            log.info("discarded %d pending upload(s) not confirmed in time", len(expired))

    def state(self, key: Key, now: datetime) -> dict | None:
        """Where an upload stands: pending, flagged or published (None: nowhere)."""
        self.purge(now)
        upload = self.db.upload(key)
        if upload is not None:
            return {"state": upload.state, "expires": format_date(upload.expires)}
        if self.store.get(key[0], key[1], parse_date(key[2])) is not None:
            return {"state": "published"}
        return None

    # --- mailed links ---

    def pending(self, token: str, now: datetime) -> Upload:
        """The pending upload a mailed link names; LinkGone if none."""
        self.purge(now)
        upload = self.db.by_token(token_hash(token)) if token else None
        if upload is None:
            raise LinkGone("this link is no longer valid: the upload was confirmed, aborted "
                           "or reported already, or it was not confirmed in time")
        return upload

    def respond(self, action: str, token: str, now: datetime) -> Outcome:
        """Do what a mailed link says: confirm, abort or report abuse."""
        upload = self.pending(token, now)
        actor = f"{upload.email} (mailed link)"
        if action == "confirm":
            return self._confirm(upload, actor, now)
        if action == "abort":
            self.db.resolve(upload.key, Event(actor, "aborted"), now, published=False)
            return Outcome(action, "aborted", upload, "The upload was discarded.")
        if action == "abuse":
            self.db.flag(upload.key, Event(actor, "abuse-reported", "the endorser's address "
                                           "says it did not make this upload"), now)
            log.warning("abuse reported for the upload of %s by %s", upload.identifier,
                        upload.email)
            return Outcome(action, FLAGGED, upload, "Thank you: the upload stays unpublished "
                           "and the operators of the marketplace will look at it.")
        raise ValueError(f"unknown action {action!r}")

    def _confirm(self, upload: Upload, actor: str, now: datetime) -> Outcome:
        try:  # blocked, or revoked, since it was held
            self.judge(upload.document, Moment.published(upload.submitted, now))
        except (Refused, MetadataError) as exc:
            self.db.resolve(upload.key, Event(SYSTEM, "discarded", str(exc)), now, False)
            return Outcome("confirm", "conflict", upload, f"It cannot be published: {exc}.")
        try:
            new = self.store.add(Entry.from_document(upload.document))
        except Conflict as exc:
            self.db.resolve(upload.key, Event(SYSTEM, "discarded", f"could not be published: "
                                              f"{exc}"), now, published=False)
            return Outcome("confirm", "conflict", upload, f"It cannot be published: {exc}.")
        self.db.resolve(upload.key, Event(actor, "confirmed"), now, published=new)
        log.info("upload of %s by %s confirmed and published", upload.identifier, upload.email)
        return Outcome("confirm", "published" if new else "known", upload,
                       "The entry is published.")

    # --- operators ---

    def remove(self, key: Key, actor: str, reason: str, now: datetime) -> list[str]:
        """Remove a published entry and/or discard a held upload; what was removed."""
        removed = []
        upload = self.db.upload(key)
        if upload is not None and self.db.resolve(key, Event(actor, "discarded", reason), now,
                                                  published=False):
            removed.append(upload.state)
        if self.store.remove(key[0], key[1], parse_date(key[2])):
            self.db.removed(key, now, Event(actor, "removed", reason))
            removed.append("published")
        if removed:
            log.info("%s removed %s of %s by %s at %s", actor, " and ".join(removed), *key)
        return removed

    def block(self, text: str, actor: str, reason: str, now: datetime) -> tuple[str, bool]:
        """Block an endorser (email or DN); (its name as stored, whether newly blocked)."""
        endorser = Endorser.parse(text)
        known = self._blocked_as(endorser)
        if known is not None:
            return known, False
        self.db.block(endorser.text, endorser.kind, Event(actor, "blocked", reason,
                                                          endorser.text), now)
        log.info("%s blocked the endorser %s", actor, endorser.text)
        return endorser.text, True

    def unblock(self, text: str, actor: str, reason: str, now: datetime) -> tuple[str, bool]:
        endorser = Endorser.parse(text)
        known = self._blocked_as(endorser)
        if known is None:
            return endorser.text, False
        self.db.unblock(known, Event(actor, "unblocked", reason, known), now)
        log.info("%s unblocked the endorser %s", actor, known)
        return known, True

    def _blocked_as(self, endorser: Endorser) -> str | None:
        for blocked in self.db.blocked():
            if Endorser.parse(blocked.endorser).key == endorser.key:
                return blocked.endorser
        return None

    def close(self) -> None:
        self.db.close()
