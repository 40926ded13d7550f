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
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from marketplace.metadata.model import format_date, parse_date
from marketplace.sqlitefile import SQLiteFile
from marketplace.store.base import Conflict, Entry

Key = tuple[str, str, str]  # identifier, email, created (YYYY-MM-DDTHH:MM:SSZ)
PENDING = "pending"
FLAGGED = "flagged"
PUBLISH = "publish"
REMOVE = "remove"
REMOVED_BY_OPERATOR = "removed-by-operator"
REMOVED_ON_PRIMARY = "removed-on-primary"  # a replica's copy of its primary's removal

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL,
    document BLOB NOT NULL, subject TEXT, title TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'flagged')),
    token_hash TEXT UNIQUE, submitted TEXT NOT NULL, expires TEXT NOT NULL, flagged TEXT,
    PRIMARY KEY (identifier, email, created));
CREATE INDEX IF NOT EXISTS uploads_by_expiry ON uploads (state, expires);
CREATE TABLE IF NOT EXISTS blocked (
    endorser TEXT PRIMARY KEY, kind TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    serial INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, identifier TEXT, email TEXT, created TEXT, endorser TEXT,
    reason TEXT);
CREATE TABLE IF NOT EXISTS changes (
    serial INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('publish', 'remove')),
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_by_key ON changes (identifier, email, created, serial);
CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL,
    rule TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (identifier, email, created));
CREATE TABLE IF NOT EXISTS publishing (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (identifier, email, created));
CREATE TABLE IF NOT EXISTS mails (
    at TEXT NOT NULL, recipient TEXT NOT NULL, client TEXT NOT NULL,
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS mails_by_recipient ON mails (recipient, at);
CREATE INDEX IF NOT EXISTS mails_by_client ON mails (client, at);
CREATE INDEX IF NOT EXISTS mails_by_time ON mails (at);
"""


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
    announces it (its index, for the upload answer and the entry's forms)."""

    new: bool
    serial: int | None
    leaf: int | None


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
        Conflict as :meth:`Store.add`. The feed's time is when the publication was first
        attempted, if earlier than ``at``."""

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


class SQLiteModerationStore(SQLiteFile, State):
    """The moderation state in one SQLite file; one connection per thread."""

    def __init__(self, path: Path):
        super().__init__(path, SCHEMA, "the moderation store")

    # --- uploads ---

    def hold(self, upload: Upload, token_hash: str, event: Event, client: str = "",
             quota: MailQuota | None = None) -> tuple[Upload, bool]:
        with self._write() as db:
            existing = _upload(db, "identifier=? AND email=? AND created=?", upload.key)
            if existing is not None:
                return existing, False
            if quota is not None:
                oldest = upload.submitted - max(quota.recipient_window, quota.client_window)
                db.execute("DELETE FROM mails WHERE at<?", (format_date(oldest),))
                _check_quota(db, upload.email, client, upload.submitted, quota)
            db.execute("INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (*upload.key, upload.document, upload.subject, upload.title,
                        upload.state, token_hash, format_date(upload.submitted),
                        format_date(upload.expires), None))
            db.execute("INSERT INTO mails VALUES (?,?,?,?,?,?)",
                       (format_date(upload.submitted), upload.email.lower(), client,
                        *upload.key))
            _audit(db, upload.submitted, event, upload.key)
        return upload, True

    def release_mail(self, key: Key) -> None:
        with self._write() as db:
            db.execute("DELETE FROM mails WHERE identifier=? AND email=? AND created=?", key)

    def upload(self, key: Key) -> Upload | None:
        return _upload(self._db(), "identifier=? AND email=? AND created=?", key)

    def by_token(self, token_hash: str) -> Upload | None:
        return _upload(self._db(), "token_hash=? AND state='pending'", (token_hash,))

    def uploads(self, state: str | None = None) -> list[Upload]:
        where, args = ("state=?", (state,)) if state else ("1", ())
        rows = self._db().execute(f"SELECT * FROM uploads WHERE {where} ORDER BY submitted, "
                                  "identifier", args).fetchall()
        return [_upload_of(row) for row in rows]

    def resolve(self, key: Key, event: Event, at: datetime) -> bool:
        with self._write() as db:
            gone = db.execute("DELETE FROM uploads WHERE identifier=? AND email=? AND "
                              "created=?", key).rowcount
            if gone:
                _audit(db, at, event, key)
        return bool(gone)

    def flag(self, key: Key, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("UPDATE uploads SET state='flagged', token_hash=NULL, flagged=? "
                              "WHERE identifier=? AND email=? AND created=? AND "
                              "state='pending'", (format_date(at), *key)).rowcount
            if done:
                _audit(db, at, event, key)
        return bool(done)

    def purge(self, now: datetime, actor: str) -> list[Upload]:
        with self._write() as db:
            expired = [_upload_of(row) for row in db.execute(
                "SELECT * FROM uploads WHERE state='pending' AND expires<=?",
                (format_date(now),)).fetchall()]
            for upload in expired:
                db.execute("DELETE FROM uploads WHERE identifier=? AND email=? AND created=?",
                           upload.key)
                _audit(db, now, Event(actor, "expired", "not confirmed in time"), upload.key)
        return expired

    # --- change feed ---

    def publishing(self, key: Key, at: datetime) -> None:
        with self._write() as db:
            _refuse_buried(db, key)
            db.execute("INSERT OR IGNORE INTO publishing VALUES (?,?,?,?)",
                       (*key, format_date(at)))

    def published(self, key: Key, at: datetime, event: Event | None = None) -> int | None:
        with self._write() as db:
            _refuse_buried(db, key)
            noted = db.execute("SELECT since FROM publishing WHERE identifier=? AND email=? "
                               "AND created=?", key).fetchone()
            db.execute("DELETE FROM publishing WHERE identifier=? AND email=? AND created=?",
                       key)
            last = db.execute("SELECT action FROM changes WHERE identifier=? AND email=? AND "
                              "created=? ORDER BY serial DESC LIMIT 1", key).fetchone()
            if last is not None and last[0] == PUBLISH:
                return None
            if noted is not None:
                at = min(at, parse_date(noted[0]))
            if event is not None:
                _audit(db, at, event, key)
            return _change(db, at, PUBLISH, key)

    def unfinished(self) -> list[tuple[Key, datetime]]:
        rows = self._db().execute("SELECT * FROM publishing ORDER BY since").fetchall()
        return [((r["identifier"], r["email"], r["created"]), parse_date(r["since"]))
                for r in rows]

    def abandon(self, key: Key) -> None:
        with self._write() as db:
            db.execute("DELETE FROM publishing WHERE identifier=? AND email=? AND created=?",
                       key)

    def removed(self, key: Key, at: datetime, event: Event, rule: str = REMOVED_BY_OPERATOR,
                published: bool = True) -> int | None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO tombstones VALUES (?,?,?,?,?,?,?)",
                       (*key, rule, format_date(at), event.actor, event.reason or ""))
            if not published:
                return None
            _audit(db, at, event, key)
            return _change(db, at, REMOVE, key)

    def confirmed(self, key: Key) -> bool:
        return self._db().execute(
            "SELECT 1 FROM audit WHERE action='confirmed' AND identifier=? AND email=? AND "
            "created=? LIMIT 1", key).fetchone() is not None

    def tombstone(self, key: Key) -> Tombstone | None:
        return _tombstone(self._db(), key)

    def tombstones(self) -> list[Tombstone]:
        rows = self._db().execute("SELECT * FROM tombstones ORDER BY at, identifier").fetchall()
        return [_tombstone_of(row) for row in rows]

    def lift(self, key: Key, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("DELETE FROM tombstones WHERE identifier=? AND email=? AND "
                              "created=?", key).rowcount
            if done:
                _audit(db, at, event, key)
        return bool(done)

    def changes(self, after: int = 0, limit: int = 500) -> list[Change]:
        rows = self._db().execute("SELECT * FROM changes WHERE serial>? ORDER BY serial "
                                  "LIMIT ?", (after, limit)).fetchall()
        return [Change(r["serial"], parse_date(r["at"]), r["action"], r["identifier"],
                       r["email"], r["created"]) for r in rows]

    def last_serial(self) -> int:
        return self._db().execute("SELECT coalesce(max(serial), 0) FROM changes").fetchone()[0]

    # --- blocked endorsers ---

    def block(self, endorser: str, kind: str, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("INSERT OR IGNORE INTO blocked VALUES (?,?,?,?,?)",
                              (endorser, kind, format_date(at), event.actor,
                               event.reason or "")).rowcount
            if done:
                _audit(db, at, event)
        return bool(done)

    def unblock(self, endorser: str, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("DELETE FROM blocked WHERE endorser=?", (endorser,)).rowcount
            if done:
                _audit(db, at, event)
        return bool(done)

    def blocked(self) -> list[Blocked]:
        rows = self._db().execute("SELECT * FROM blocked ORDER BY at, endorser").fetchall()
        return [Blocked(r["endorser"], r["kind"], parse_date(r["at"]), r["actor"], r["reason"])
                for r in rows]

    # --- audit log, marks ---

    def audit(self, limit: int = 100, before: int | None = None) -> list[AuditRecord]:
        rows = self._db().execute(
            "SELECT * FROM audit WHERE serial<? ORDER BY serial DESC LIMIT ?",
            (before if before is not None else 2 ** 62, limit)).fetchall()
        return [AuditRecord(r["serial"], parse_date(r["at"]), r["actor"], r["action"],
                            r["identifier"], r["email"], r["created"], r["endorser"],
                            r["reason"]) for r in rows]

    def mark(self, name: str) -> str | None:
        row = self._db().execute("SELECT value FROM marks WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def set_mark(self, name: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO marks VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                       "value=excluded.value", (name, value))



def _upload(db: sqlite3.Connection, where: str, args: tuple) -> Upload | None:
    row = db.execute(f"SELECT * FROM uploads WHERE {where}", args).fetchone()
    return _upload_of(row) if row else None


def _upload_of(row: sqlite3.Row) -> Upload:
    return Upload(row["identifier"], row["email"], row["created"], bytes(row["document"]),
                  row["subject"], row["title"], row["state"], parse_date(row["submitted"]),
                  parse_date(row["expires"]),
                  parse_date(row["flagged"]) if row["flagged"] else None)


def _audit(db: sqlite3.Connection, at: datetime, event: Event,
           key: Key | tuple[None, None, None] = (None, None, None)) -> None:
    db.execute("INSERT INTO audit (at, actor, action, identifier, email, created, endorser, "
               "reason) VALUES (?,?,?,?,?,?,?,?)",
               (format_date(at), event.actor, event.action, *key, event.endorser,
                event.reason))


def _tombstone(db: sqlite3.Connection, key: Key) -> Tombstone | None:
    row = db.execute("SELECT * FROM tombstones WHERE identifier=? AND email=? AND created=?",
                     key).fetchone()
    return _tombstone_of(row) if row else None


def _tombstone_of(row: sqlite3.Row) -> Tombstone:
    return Tombstone(row["identifier"], row["email"], row["created"], row["rule"],
                     parse_date(row["at"]), row["actor"], row["reason"])


def _refuse_buried(db: sqlite3.Connection, key: Key) -> None:
    """Raise Removed when the entry has a tombstone (inside the caller's transaction, so
    that no removal can slip in between the check and the write)."""
    tombstone = _tombstone(db, key)
    if tombstone is not None:
        raise Removed(tombstone)


def _check_quota(db: sqlite3.Connection, recipient: str, client: str, now: datetime,
                 quota: MailQuota) -> None:
    """Raise OverQuota when another mail would pass the recipient's or the client's quota."""
    for column, value, limit, window, who in (
            ("recipient", recipient.lower(), quota.per_recipient, quota.recipient_window,
             recipient),
            ("client", client, quota.per_client, quota.client_window, f"the client {client}")):
        if column == "client" and not client:
            continue
        since = now - window
        sent = db.execute(f"SELECT at FROM mails WHERE {column}=? AND at>? ORDER BY at DESC "
                          "LIMIT 1 OFFSET ?", (value, format_date(since), limit - 1)).fetchone()
        if sent is not None:  # the limit-th newest mail is still inside the window
            frees = parse_date(sent[0]) + window
            raise OverQuota(who, limit, window, int((frees - now).total_seconds()) + 1)


def _change(db: sqlite3.Connection, at: datetime, action: str, key: Key) -> int:
    return db.execute("INSERT INTO changes (at, action, identifier, email, created) VALUES "
                      "(?,?,?,?,?)", (format_date(at), action, *key)).lastrowid
