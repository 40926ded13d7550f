"""The publication policy and the moderation actions, apart from HTTP.

:meth:`Moderation.judge` asks the trust decision (:mod:`marketplace.metadata.verdict`)
with this marketplace's trust store, blocked endorsers and whitelist; :meth:`Moderation.
admit` then lets an upload whose email the certificate proves through when its endorser
is whitelisted (or anyone is, by default), and otherwise holds it and mails that address
-- the only other way an email is proven -- or refuses it where no mail is sent. The
mailed links act through :meth:`Moderation.respond`; operators act through
:meth:`Moderation.remove`, :meth:`block` and :meth:`unblock`. Every change is one
change of the store's shared state (:class:`~marketplace.store.state.State`, one
transaction on SQLite) and is audited. "Now" is :attr:`Moderation.clock`, which tests
replace.
"""

from __future__ import annotations

import hashlib
import ipaddress
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
    BLOCKED_RULE,
    MAIL,
    Endorser,
    Identity,
    Moment,
    Refused,
    Verdict,
    check_not_blocked,
    identify,
    judge,
)
from marketplace.moderation.endorsers import Whitelist
from marketplace.moderation.mail import ACTIONS, Mailer, MailUnavailable, confirmation
from marketplace.store.base import Conflict, Entry, Store
from marketplace.store.state import (
    FLAGGED,
    PENDING,
    REMOVED_ON_PRIMARY,
    Blocked,
    Event,
    Key,
    MailQuota,
    Publication,
    Removed,
    State,
    Upload,
)

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
class LinkOutcome:
    """What following a mailed link did."""

    action: str
    state: str  # published | known | aborted | flagged | conflict
    upload: Upload
    message: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def mail_quota(settings: dict[str, str]) -> MailQuota:
    """The confirmation-mail limits the settings give; ValueError for one below 1."""
    limits = {}
    for key in ("MAILS_PER_RECIPIENT_PER_DAY", "MAILS_PER_CLIENT_PER_HOUR"):
        try:
            limits[key] = int(settings[key])
        except ValueError:
            limits[key] = 0
        if limits[key] < 1:
            raise ValueError(f"MARKETPLACE_{key} must be a whole number of at least 1; got "
                             f"{settings[key]!r}")
    return MailQuota(limits["MAILS_PER_RECIPIENT_PER_DAY"], limits["MAILS_PER_CLIENT_PER_HOUR"])


def _endorsers(blocked: list[Blocked]) -> list[Endorser]:
    return [Endorser.parse(b.endorser) for b in blocked]


def client_key(address: str | None) -> str:
    """Whom a client address stands for when mails are counted: the address itself, or
    for IPv6 its /64 network (one host may hold a whole /64)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


@dataclass
class Moderation:
    """The publication policy in front of a store, and the operators' actions."""

    store: Store
    unlisted: str = "publish"
    whitelist: Whitelist | None = None
    mailer: Mailer | None = None
    public_url: str = ""
    pending_for: timedelta = timedelta(hours=48)
    site: str = "StratusLab Marketplace"
    trust_store: TrustStore | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    quota: MailQuota = field(default_factory=MailQuota)

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
        return cls(store, unlisted, whitelist, mailer, public_url, timedelta(hours=hours),
                   settings["TITLE"], trust_store, quota=mail_quota(settings))

    @property
    def state(self) -> State:
        """The shared state, kept by the store beside its entries."""
        return self.store.state

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    # --- uploads ---

    def judge(self, data: bytes, moment: Moment) -> Verdict:
        """The trust decision with this marketplace's trust store, blocked endorsers and
        whitelist."""
        whitelist = self.whitelist.endorsers() if self.whitelist is not None else None
        blocked = self.state.blocked_to_judge()
        try:
            return judge(data, moment, self.trust_store, _endorsers(blocked), whitelist)
        except Refused as exc:
            if exc.rule != BLOCKED_RULE:
                raise
            now_blocked = self.state.blocked_to_judge(fresh=True)
            if now_blocked == blocked:
                raise
        # the store's copy of the list was older than an unblock: judge with the list now
        return judge(data, moment, self.trust_store, _endorsers(now_blocked), whitelist)

    def email_proof(self, key: Key, identity: Identity) -> str | None:
        """How the email of a stored entry was proven: CERTIFICATE, MAIL, or None (an entry
        stored before emails had to be proven, or not through the upload path)."""
        if identity.email_proof is not None:
            return identity.email_proof
        return MAIL if self.state.confirmed(key) else None

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

    def admit(self, entry: Entry, verdict: Verdict, now: datetime,
              client: str = "") -> None:
        """Return when the judged entry may be stored now; else raise Refused,
        PendingConfirmation (after mailing the endorser), Conflict, or MetadataError for an
        email only a mail could prove where no mail is sent.

        An email the certificate does not carry waits for the mail round trip whatever the
        whitelist says: a listed subject proves who signed, not which address it may use.

        An entry operators removed raises Removed: here before anything else for an upload
        that is not published at once (no mail goes out for it); one published at once is
        refused by :meth:`publish`, which reads the tombstone anyway (one read, not two).
        So is a blocked endorser: the judge may have used the backend's copy of the list
        (:meth:`State.blocked_to_judge`), which only a publication checks again.
        """
        if verdict.email_proof is not None and (self.unlisted == "publish" or verdict.listed):
            return
        self.check_removed(entry.key)
        check_not_blocked(verdict.identity, _endorsers(self.state.blocked()))
        if verdict.email_proof is None and self.unlisted != "confirm":
            verdict.identity.require_proven_email()
        if self.unlisted == "refuse":
            raise Refused("whitelist", f"the endorser {entry.email} "
                          f"({verdict.identity.subject}) is not on this marketplace's list "
                          "of endorsers who may publish")
        if self._already_stored(entry):
            return
        self.hold(entry, verdict, now, client)

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
        return not self.store.would_add(entry)

    def hold(self, entry: Entry, verdict: Verdict, now: datetime, client: str = "") -> None:
        """Keep the upload pending, mail its endorser, raise PendingConfirmation; OverQuota
        (from the store: nothing held) when the endorser or the ``client`` address had its
        mails."""
        self.purge(now)
        token = secrets.token_urlsafe(32)
        upload = Upload(*entry.key, entry.document, verdict.identity.subject,
                        entry.appliance.title, PENDING, now, now + self.pending_for)
        held, new = self.state.hold(upload, token_hash(token),
                                    Event(entry.email, "held", "awaiting the endorser's "
                                          "confirmation by mail"), client_key(client),
                                    self.quota)
        if not new:
            if held.document != entry.document:
                raise Conflict(f"another document of {entry.identifier} by {entry.email} at "
                               f"{entry.key[2]} awaits its endorser's confirmation")
            raise PendingConfirmation(held, mailed=False)
        try:
            self.mailer.send(confirmation(upload, self.links(token), self.site))
        except MailUnavailable:
            self.state.resolve(upload.key, Event(SYSTEM, "discarded", "the confirmation "
                                                 "mail could not be sent"), now)
            self.state.release_mail(upload.key)
            raise
        log.info("upload of %s by %s held for confirmation until %s", entry.identifier,
                 entry.email, format_date(upload.expires))
        raise PendingConfirmation(upload, mailed=True)

    def links(self, token: str) -> dict[str, str]:
        return {action: f"{self.public_url}/moderation/{action}?token={token}"
                for action in ACTIONS}

    def check_removed(self, key: Key) -> None:
        """Raise Removed when operators removed the entry and did not lift it."""
        tombstone = self.state.tombstone(key)
        if tombstone is not None:
            raise Removed(tombstone)

    def publish(self, entry: Entry, now: datetime, event: Event | None = None) -> Publication:
        """Store an entry, put it in the change feed and the log (audited with ``event``):
        one change of the state, so that a replay adds only what a crash left out. Removed
        for an entry with a tombstone; Conflict as :meth:`Store.add`; Refused for an
        endorser blocked since this thread judged it (:meth:`State.blocked_to_judge`)."""
        return self.state.publish(entry, now, event)

    def publish_following(self, entry: Entry, now: datetime) -> Publication:
        """:meth:`publish` for a replica following its primary's feed, where the primary
        published the entry (again): a removal the replica copied from its primary
        (REMOVED_ON_PRIMARY) is lifted, since the primary lifted it; its own operators'
        removal still refuses it. The tombstone is read by the publication itself, so the
        common case (none) costs no read of its own."""
        try:
            return self.publish(entry, now)
        except Removed as exc:
            if exc.rule != REMOVED_ON_PRIMARY:
                raise
        self.state.lift(entry.key, Event(SYSTEM, "lifted", "published again on the primary"),
                        self.now())
        return self.publish(entry, now)

    def repair(self, now: datetime) -> dict[str, int]:
        """Finish what a crash interrupted, at start (:meth:`State.repair`); what was done,
        counted."""
        done = self.state.repair(now)
        if any(done.values()):
            log.warning("repaired after a crash: %s",
                        ", ".join(f"{count} {name}" for name, count in done.items() if count))
        return done

    def purge(self, now: datetime) -> None:
        expired = self.state.purge(now, SYSTEM)
        if expired:
            log.info("discarded %d pending upload(s) not confirmed in time", len(expired))

    def standing(self, key: Key, now: datetime) -> dict | None:
        """Where an upload stands: pending, flagged or published (None: nowhere)."""
        self.purge(now)
        upload = self.state.upload(key)
        if upload is not None:
            return {"state": upload.state, "expires": format_date(upload.expires)}
        if self.store.get(key[0], key[1], parse_date(key[2])) is not None:
            return {"state": "published"}
        return None

    # --- mailed links ---

    def pending(self, token: str, now: datetime) -> Upload:
        """The pending upload a mailed link names; LinkGone if none."""
        self.purge(now)
        upload = self.state.by_token(token_hash(token)) if token else None
        if upload is None:
            raise LinkGone("this link is no longer valid: the upload was confirmed, aborted "
                           "or reported already, or it was not confirmed in time")
        return upload

    def respond(self, action: str, token: str, now: datetime) -> LinkOutcome:
        """Do what a mailed link says: confirm, abort or report abuse."""
        upload = self.pending(token, now)
        actor = f"{upload.email} (mailed link)"
        if action == "confirm":
            return self._confirm(upload, actor, now)
        if action == "abort":
            self.state.resolve(upload.key, Event(actor, "aborted"), now)
            return LinkOutcome(action, "aborted", upload, "The upload was discarded.")
        if action == "abuse":
            self.state.flag(upload.key, Event(actor, "abuse-reported", "the endorser's address "
                                           "says it did not make this upload"), now)
            log.warning("abuse reported for the upload of %s by %s", upload.identifier,
                        upload.email)
            return LinkOutcome(action, FLAGGED, upload, "Thank you: the upload stays unpublished "
                           "and the operators of the marketplace will look at it.")
        raise ValueError(f"unknown action {action!r}")

    def _confirm(self, upload: Upload, actor: str, now: datetime) -> LinkOutcome:
        try:  # blocked (which the publication checks again), or revoked, since it was held
            self.judge(upload.document, Moment.published(upload.submitted, now))
            new = self.publish(Entry.from_document(upload.document), now).new
        except (Refused, MetadataError) as exc:
            self.state.resolve(upload.key, Event(SYSTEM, "discarded", str(exc)), now)
            return LinkOutcome("confirm", "conflict", upload, f"It cannot be published: {exc}.")
        except Conflict as exc:  # Removed too: operators removed the entry meanwhile
            self.state.resolve(upload.key, Event(SYSTEM, "discarded",
                                                 f"could not be published: {exc}"), now)
            return LinkOutcome("confirm", "conflict", upload, f"It cannot be published: {exc}.")
        self.state.resolve(upload.key, Event(actor, "confirmed"), now)
        log.info("upload of %s by %s confirmed and published", upload.identifier, upload.email)
        return LinkOutcome("confirm", "published" if new else "known", upload,
                       "The entry is published.")

    # --- operators ---

    def remove(self, key: Key, actor: str, reason: str, now: datetime) -> list[str]:
        """Remove a published entry and/or discard a held upload; what was removed. Either
        leaves a tombstone, so the public bytes cannot bring the entry back: the tombstone,
        the entry's removal from the store, the feed and the log are one change of the
        state, so an upload racing the removal is refused or taken out with it."""
        removed = []
        upload = self.state.upload(key)
        if upload is not None and self.state.resolve(key, Event(actor, "discarded", reason), now):
            removed.append(upload.state)
        stored = self.store.get(key[0], key[1], parse_date(key[2])) is not None
        if (stored or removed) and self.state.withdraw(key, now,
                                                       Event(actor, "removed", reason)):
            removed.append("published")
        if removed:
            log.info("%s removed %s of %s by %s at %s", actor, " and ".join(removed), *key)
        return removed

    def follow_removal(self, key: Key, actor: str, primary: str, now: datetime) -> bool:
        """A replica's copy of its primary's removal: a tombstone that keeps the entry out
        of later walks (the primary's next publication of it lifts it, see
        :meth:`publish_following`), with the entry out of the store; whether it was stored."""
        return self.state.withdraw(key, now, Event(actor, "removed", f"removed on {primary}"),
                                   REMOVED_ON_PRIMARY)

    def lift(self, key: Key, actor: str, reason: str, now: datetime) -> bool:
        """Let a removed entry be published again (audited); False if it had no tombstone."""
        done = self.state.lift(key, Event(actor, "lifted", reason), now)
        if done:
            log.info("%s lifted the removal of %s by %s at %s", actor, *key)
        return done

    def block(self, text: str, actor: str, reason: str, now: datetime) -> tuple[str, bool]:
        """Block an endorser (email or DN); (its name as stored, whether newly blocked)."""
        endorser = Endorser.parse(text)
        known = self._blocked_as(endorser)
        if known is not None:
            return known, False
        self.state.block(endorser.text, endorser.kind,
                         Event(actor, "blocked", reason, endorser.text), now)
        log.info("%s blocked the endorser %s", actor, endorser.text)
        return endorser.text, True

    def unblock(self, text: str, actor: str, reason: str, now: datetime) -> tuple[str, bool]:
        endorser = Endorser.parse(text)
        known = self._blocked_as(endorser)
        if known is None:
            return endorser.text, False
        self.state.unblock(known, Event(actor, "unblocked", reason, known), now)
        log.info("%s unblocked the endorser %s", actor, known)
        return known, True

    def _blocked_as(self, endorser: Endorser) -> str | None:
        for blocked in self.state.blocked():
            if Endorser.parse(blocked.endorser).key == endorser.key:
                return blocked.endorser
        return None
