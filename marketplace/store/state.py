"""The shared state of a marketplace beside its entries: pending uploads, blocked endorsers,
audit log, change feed, tombstones of removed entries, publications in progress, the count of
mails sent, marks, and the transparency log.

:class:`State` is the interface every store backend implements (:attr:`Store.state`): on
SQLite in the store's own file, the entry and everything its publication writes in one
transaction; on Elasticsearch in indices of the cluster, so that any app server can serve
any request. The moderation workflow, the replica and the log talk only to this interface.
Confirmation tokens are never stored: only their SHA-256.

The change feed numbers every publication and removal (``serial``); replicas follow it
(``/api/v1/changes``). The audit log says who did what to which entry, and why. Both only
grow. Every event that changes what is served (:mod:`marketplace.metadata.logleaf`) also
appends a leaf to the transparency log, in the same transaction as the change where the
backend has transactions, else noted first and repaired by :meth:`State.repair`.

A removal leaves a *tombstone* that refuses the entry until an operator lifts it: the
public signed bytes cannot bring it back. Confirmation mails are counted per recipient and
per client here, so every worker and server shares the limits.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime, timedelta

from marketplace.metadata import logleaf
from marketplace.metadata.model import format_date
from marketplace.store.base import Conflict, Entry

Key = tuple[str, str, str]  # identifier, email, created (YYYY-MM-DDTHH:MM:SSZ)
PENDING = "pending"
FLAGGED = "flagged"
PUBLISH = "publish"
REMOVE = "remove"
REMOVED_BY_OPERATOR = "removed-by-operator"
REMOVED_ON_PRIMARY = "removed-on-primary"  # a replica's copy of its primary's removal
# Where the log's summary of a history older than the log ends (a migrated store):
# {"leaves": L, "change": C, "audit": A}; marketplace.log.check does not match the leaves
# before L, the feed rows up to serial C and the audit rows up to serial A one to one.
LOG_HISTORY_MARK = "log:history"

@dataclass(frozen=True)
class Upload:
    """An upload awaiting its endorser's confirmation (pending) or an operator (flagged)."""

    identifier: str
    email: str
    created: str
    document: bytes
    subject: str | None
    title: str | None
    state: str
    submitted: datetime
    expires: datetime
    flagged: datetime | None = None

    @property
    def key(self) -> Key:
        return self.identifier, self.email, self.created

    def as_dict(self) -> dict:
        return {"identifier": self.identifier, "email": self.email, "created": self.created,
                "subject": self.subject, "title": self.title, "state": self.state,
                "submitted": format_date(self.submitted), "expires": format_date(self.expires),
                "flagged": format_date(self.flagged) if self.flagged else None}


@dataclass(frozen=True)
class AuditRecord:
    """One thing someone did: who (actor), what (action), to which entry or endorser, why."""

    serial: int
    at: datetime
    actor: str
    action: str
    identifier: str | None = None
    email: str | None = None
    created: str | None = None
    endorser: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        return {"serial": self.serial, "at": format_date(self.at), "actor": self.actor,
                "action": self.action, "identifier": self.identifier, "email": self.email,
                "created": self.created, "endorser": self.endorser, "reason": self.reason}


@dataclass(frozen=True)
class Blocked:
    """An endorser whose uploads are refused: an email address or a subject DN."""

    endorser: str
    kind: str  # "email" or "subject"
    at: datetime
    actor: str
    reason: str

    def as_dict(self) -> dict:
        return {"endorser": self.endorser, "kind": self.kind, "at": format_date(self.at),
                "actor": self.actor, "reason": self.reason}


@dataclass(frozen=True)
class Change:
    """A publication or removal, in the order this marketplace made them."""

    serial: int
    at: datetime
    action: str
    identifier: str
    email: str
    created: str

    @property
    def key(self) -> Key:
        return self.identifier, self.email, self.created

    def as_dict(self) -> dict:
        return {"serial": self.serial, "at": format_date(self.at), "action": self.action,
                "identifier": self.identifier, "email": self.email, "created": self.created}


@dataclass(frozen=True)
class Tombstone:
    """What is left of a removed entry: it refuses the entry until an operator lifts it."""

    identifier: str
    email: str
    created: str
    rule: str  # REMOVED_BY_OPERATOR, or REMOVED_ON_PRIMARY on a replica
    at: datetime
    actor: str
    reason: str

    @property
    def key(self) -> Key:
        return self.identifier, self.email, self.created

    def as_dict(self) -> dict:
        return {"identifier": self.identifier, "email": self.email, "created": self.created,
                "rule": self.rule, "at": format_date(self.at), "actor": self.actor,
                "reason": self.reason}


@dataclass(frozen=True)
class MailQuota:
    """How many confirmation mails one recipient (a day) and one client (an hour) get."""

    per_recipient: int = 3
    per_client: int = 20
    recipient_window: timedelta = timedelta(days=1)
    client_window: timedelta = timedelta(hours=1)


class OverQuota(Exception):
    """A confirmation mail over its quota: nothing was held; try again after
    ``retry_after`` seconds."""

    def __init__(self, who: str, limit: int, window: timedelta, retry_after: int):
        self.retry_after = max(1, retry_after)
        super().__init__(f"{who} got {limit} confirmation mail{'s' if limit != 1 else ''} "
                         f"in the last {_span(window)}, the most this marketplace sends: "
                         f"try again in {self.retry_after} s")


def _span(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return {1: "hour", 24: "day"}.get(hours, f"{hours:g} hours")


class Removed(Conflict):
    """An entry that operators removed and did not let back (its tombstone): the upload
    is answered 410, naming the entry and the rule."""

    def __init__(self, tombstone: Tombstone):
        self.tombstone = tombstone
        self.rule = tombstone.rule
        where = ("on the primary this replica follows" if tombstone.rule == REMOVED_ON_PRIMARY
                 else "by the operators of this marketplace")
        super().__init__(f"the entry {tombstone.identifier} by {tombstone.email} at "
                         f"{tombstone.created} was removed {where} on "
                         f"{format_date(tombstone.at)}; it cannot be published again unless "
                         "they lift the removal")

    @property
    def problems(self) -> list[dict[str, str]]:
        return [{"element": "document", "rule": self.rule, "message": str(self)}]


@dataclass(frozen=True)
class Event:
    """What to write in the audit log with a change (its serial and time are added)."""

    actor: str
    action: str
    reason: str | None = None
    endorser: str | None = None


@dataclass(frozen=True)
class Publication:
    """What publishing an entry did: whether the store took it (False: a replay of the same
    document), its change-feed serial (None: the feed had it already) and the log leaf that
    announces it (its index, for the upload answer and the entry's forms; for a replay the
    leaf already there; None only where the log has none for it)."""

    new: bool
    serial: int | None
    leaf: int | None


def serving_event(entry: Entry) -> str:
    """The log event that puts an entry in what is served: ``deprecated`` for a document that
    deprecates its appliance, else ``published``."""
    return logleaf.DEPRECATED if entry.appliance.deprecated is not None else logleaf.PUBLISHED


def log_event(action: str, at: datetime, key: Key | None = None, event: Event | None = None,
              document: bytes | None = None) -> logleaf.LogEvent:
    """The log leaf of a change, as every backend writes it (one encoding for both): who
    (``event.actor``), why (the digest of ``event.reason``, which the audit log keeps), about
    which entry or endorser, and which document byte for byte."""
    identifier, email, created = key or (None, None, None)
    return logleaf.LogEvent(
        action, format_date(at), identifier, email, created, logleaf.digest(document),
        event.endorser if event else None, event.actor if event else None,
        logleaf.digest(event.reason) if event else None)


class State(abc.ABC):
    """The shared state; every method is one transaction (or, on a backend without them,
    noted first and finished by :meth:`repair`), safe from several threads, processes and
    servers."""

    @abc.abstractmethod
    def hold(self, upload: Upload, token_hash: str, event: Event, client: str = "",
             quota: MailQuota | None = None) -> tuple[Upload, bool]:
        """Keep an upload pending under a token hash and count the confirmation mail it
        will send to its endorser from ``client``; (the held upload, True) -- or, when one
        with its key is already held, (that one, False) and nothing changes. OverQuota
        (nothing held) when the endorser or the client had ``quota`` mails already."""

    @abc.abstractmethod
    def release_mail(self, key: Key) -> None:
        """Stop counting the mail of an upload: it could not be sent."""

    @abc.abstractmethod
    def upload(self, key: Key) -> Upload | None:
        """The pending or flagged upload with this key."""

    @abc.abstractmethod
    def by_token(self, token_hash: str) -> Upload | None:
        """The pending upload whose token has this hash."""

    @abc.abstractmethod
    def uploads(self, state: str | None = None) -> list[Upload]:
        """Pending and/or flagged uploads, oldest first."""

    @abc.abstractmethod
    def resolve(self, key: Key, event: Event, at: datetime) -> bool:
        """Take an upload out (confirmed, aborted, discarded) and audit it (a confirmation is
        also a ``confirmed`` leaf of the log); False if it was no longer there. (A confirmed
        upload is published through :meth:`publish`, as every publication is.)"""

    @abc.abstractmethod
    def flag(self, key: Key, event: Event, at: datetime) -> bool:
        """Mark a pending upload for the operators; its token stops working."""

    @abc.abstractmethod
    def purge(self, now: datetime, actor: str) -> list[Upload]:
        """Discard (and audit) the pending uploads that expired by ``now``."""

    @abc.abstractmethod
    def publish(self, entry: Entry, at: datetime, event: Event | None = None) -> Publication:
        """Store an entry (:meth:`Store.add`), add its publication to the change feed (and
        to the audit log when an ``event`` is given) and append its log leaf (``published``,
        or ``deprecated`` for a document that deprecates): one transaction on SQLite. A
        replay of a stored entry adds only what is missing (a crash may have left the feed
        or the log behind). Removed (nothing written) when the entry has a tombstone,
        Conflict as :meth:`Store.add`."""

    @abc.abstractmethod
    def withdraw(self, key: Key, at: datetime, event: Event, rule: str = REMOVED_BY_OPERATOR
                 ) -> bool:
        """Leave a tombstone for an entry and, when it is stored, take it out of the store,
        add its removal to the change feed and the audit log and append a ``removed`` leaf
        (a tombstone alone, for a held upload never published, is audited and logged too):
        one transaction on SQLite. Whether the entry was stored."""

    @abc.abstractmethod
    def repair(self, now: datetime) -> dict[str, int]:
        """Finish what a crash interrupted (an entry stored and not in the feed or the log,
        an entry still stored under its tombstone, an abandoned publication note), at start
        and in ``stratus-marketplace repair``; cheap when nothing was interrupted. What was
        done, counted by name."""

    # --- the transparency log (appended to by the methods that change what is served) ---

    @abc.abstractmethod
    def log_size(self) -> int:
        """How many leaves the log has."""

    @abc.abstractmethod
    def log_leaves(self, start: int, end: int) -> list[bytes]:
        """The leaves [start, end) (end at most :meth:`log_size`), in order."""

    @abc.abstractmethod
    def log_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        """The hashes [start, end) of one tile level (:mod:`marketplace.metadata.tlog`): at
        level 0 the leaf hashes, at level L the roots of the full tiles of level L - 1, as
        stored with each leaf (:func:`~marketplace.metadata.tlog.completed_tiles`)."""

    @abc.abstractmethod
    def leaf_indexes(self, keys: list[Key]) -> dict[Key, int]:
        """For each key whose entry is served, the index of the newest leaf that published
        (or deprecated with) it; keys without such a leaf are left out."""

    @abc.abstractmethod
    def tombstone(self, key: Key) -> Tombstone | None:
        """The tombstone of an entry, if it has one."""

    @abc.abstractmethod
    def tombstones(self) -> list[Tombstone]:
        """Every tombstone, oldest first."""

    @abc.abstractmethod
    def lift(self, key: Key, event: Event, at: datetime) -> bool:
        """Remove a tombstone (audited, and a ``lifted`` leaf); False if there was none."""

    @abc.abstractmethod
    def confirmed(self, key: Key) -> bool:
        """True when the endorser of this entry confirmed it by the mailed link."""

    @abc.abstractmethod
    def block(self, endorser: str, kind: str, event: Event, at: datetime) -> bool:
        """Block an endorser (audited, and a ``blocked`` leaf); False if already blocked."""

    @abc.abstractmethod
    def unblock(self, endorser: str, event: Event, at: datetime) -> bool:
        """Unblock an endorser (audited, and an ``unblocked`` leaf); False if it was not
        blocked."""

    @abc.abstractmethod
    def blocked(self) -> list[Blocked]:
        """Every blocked endorser."""

    def blocked_to_judge(self, fresh: bool = False) -> list[Blocked]:
        """The blocked endorsers to judge an upload with that this thread then publishes:
        :meth:`blocked`, unless the backend keeps a copy (not ``fresh``) that
        :meth:`publish` checks again before it writes (Refused, from the trust decision,
        for an endorser blocked since). A copy may also be older than an unblock: a
        refusal it caused is judged again with a ``fresh`` list."""
        return self.blocked()

    @abc.abstractmethod
    def audit(self, limit: int = 100, before: int | None = None) -> list[AuditRecord]:
        """The audit log, newest first; ``before`` a serial to page back from."""

    @abc.abstractmethod
    def changes(self, after: int = 0, limit: int = 500) -> list[Change]:
        """The change feed after a serial, oldest first."""

    @abc.abstractmethod
    def last_serial(self) -> int:
        """The serial of the newest change (0 when none)."""

    @abc.abstractmethod
    def mark(self, name: str) -> str | None:
        """A remembered value (e.g. how far a replica got)."""

    @abc.abstractmethod
    def set_mark(self, name: str, value: str) -> None:
        """Remember a value durably."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
