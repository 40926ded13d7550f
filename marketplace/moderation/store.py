"""Where moderation state lives: pending uploads, blocked endorsers, audit log, change feed.

:class:`ModerationStore` is the interface; :class:`SQLiteModerationStore` keeps it in one
SQLite file (WAL journal, full fsync), one ``BEGIN IMMEDIATE`` transaction per change, so
every gunicorn worker of a server sees the same state and a change acknowledged is on disk.
Confirmation tokens are never stored: only their SHA-256.

The change feed numbers every publication and removal (``serial``); replicas follow it
(``/api/v1/changes``). The audit log says who did what to which entry, and why. Both only
grow. See the package docstring for what a multi-server site does with this file.
"""

from __future__ import annotations

import abc
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from marketplace.metadata.model import format_date, parse_date
from marketplace.sqlitefile import SQLiteFile

Key = tuple[str, str, str]  # identifier, email, created (YYYY-MM-DDTHH:MM:SSZ)
PENDING = "pending"
FLAGGED = "flagged"
PUBLISH = "publish"
REMOVE = "remove"

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
CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);
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
class Event:
    """What to write in the audit log with a change (its serial and time are added)."""

    actor: str
    action: str
    reason: str | None = None
    endorser: str | None = None


class ModerationStore(abc.ABC):
    """The moderation state; every method is one transaction, safe from several threads."""

    @abc.abstractmethod
    def hold(self, upload: Upload, token_hash: str, event: Event) -> tuple[Upload, bool]:
        """Keep an upload pending under a token hash; (the held upload, True) -- or, when
        one with its key is already held, (that one, False) and nothing changes."""

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
    def resolve(self, key: Key, event: Event, at: datetime, published: bool) -> bool:
        """Take an upload out (confirmed, aborted, discarded), audit it and, when
        ``published``, add it to the change feed; False if it was no longer there."""

    @abc.abstractmethod
    def flag(self, key: Key, event: Event, at: datetime) -> bool:
        """Mark a pending upload for the operators; its token stops working."""

    @abc.abstractmethod
    def purge(self, now: datetime, actor: str) -> list[Upload]:
        """Discard (and audit) the pending uploads that expired by ``now``."""

    @abc.abstractmethod
    def published(self, key: Key, at: datetime, event: Event | None = None) -> int:
        """Add a publication to the change feed (and the audit log); its serial."""

    @abc.abstractmethod
    def removed(self, key: Key, at: datetime, event: Event) -> int:
        """Add a removal to the change feed and the audit log; its serial."""

    @abc.abstractmethod
    def confirmed(self, key: Key) -> bool:
        """True when the endorser of this entry confirmed it by the mailed link."""

    @abc.abstractmethod
    def block(self, endorser: str, kind: str, event: Event, at: datetime) -> bool:
        """Block an endorser (audited); False if already blocked."""

    @abc.abstractmethod
    def unblock(self, endorser: str, event: Event, at: datetime) -> bool:
        """Unblock an endorser (audited); False if it was not blocked."""

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


class SQLiteModerationStore(SQLiteFile, ModerationStore):
    """The moderation state in one SQLite file; one connection per thread."""

    def __init__(self, path: Path):
        super().__init__(path, SCHEMA, "the moderation store")

    # --- uploads ---

    def hold(self, upload: Upload, token_hash: str, event: Event) -> tuple[Upload, bool]:
        with self._write() as db:
            existing = _upload(db, "identifier=? AND email=? AND created=?", upload.key)
            if existing is not None:
                return existing, False
            db.execute("INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (*upload.key, upload.document, upload.subject, upload.title,
                        upload.state, token_hash, format_date(upload.submitted),
                        format_date(upload.expires), None))
            _audit(db, upload.submitted, event, upload.key)
        return upload, True

    def upload(self, key: Key) -> Upload | None:
        return _upload(self._db(), "identifier=? AND email=? AND created=?", key)

    def by_token(self, token_hash: str) -> Upload | None:
        return _upload(self._db(), "token_hash=? AND state='pending'", (token_hash,))

    def uploads(self, state: str | None = None) -> list[Upload]:
        where, args = ("state=?", (state,)) if state else ("1", ())
        rows = self._db().execute(f"SELECT * FROM uploads WHERE {where} ORDER BY submitted, "
                                  "identifier", args).fetchall()
        return [_upload_of(row) for row in rows]

    def resolve(self, key: Key, event: Event, at: datetime, published: bool) -> bool:
        with self._write() as db:
            gone = db.execute("DELETE FROM uploads WHERE identifier=? AND email=? AND "
                              "created=?", key).rowcount
            if gone:
                _audit(db, at, event, key)
                if published:
                    _change(db, at, PUBLISH, key)
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

    def published(self, key: Key, at: datetime, event: Event | None = None) -> int:
        with self._write() as db:
            if event is not None:
                _audit(db, at, event, key)
            return _change(db, at, PUBLISH, key)

    def removed(self, key: Key, at: datetime, event: Event) -> int:
        with self._write() as db:
            _audit(db, at, event, key)
            return _change(db, at, REMOVE, key)

    def confirmed(self, key: Key) -> bool:
        return self._db().execute(
            "SELECT 1 FROM audit WHERE action='confirmed' AND identifier=? AND email=? AND "
            "created=? LIMIT 1", key).fetchone() is not None

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


def _change(db: sqlite3.Connection, at: datetime, action: str, key: Key) -> int:
    return db.execute("INSERT INTO changes (at, action, identifier, email, created) VALUES "
                      "(?,?,?,?,?)", (format_date(at), action, *key)).lastrowid
