"""The shared state of a SQLite store, in the store's own file.

The tables below live beside the documents (:mod:`.sqlite`) and the log (:mod:`.sqlite_log`)
in one file and share its connections, so that a publication -- the document, its index
rows, its change-feed row, its audit row and its log leaf -- is one ``BEGIN IMMEDIATE``
transaction: after a crash it is wholly there or wholly absent, and an upload costs one
fsynced commit, not one per file. A removal is one transaction the same way.

The state does not know the documents' tables: the store hands it the functions that
touch them (``add``: the conflict rule and the index rows; ``take_out``: the removal;
``documents``: every stored document), each run inside the state's transaction.

A marketplace of an older version kept this state in a file of its own (``moderation.db``);
:meth:`SQLiteState.adopt` takes such a file in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, suppress
from datetime import datetime
from pathlib import Path

from marketplace.metadata import logleaf
from marketplace.metadata.model import format_date, parse_date
from marketplace.sqlitefile import SQLiteFile
from marketplace.store import sqlite_log
from marketplace.store.base import Entry
from marketplace.store.state import (
    LOG_HISTORY_MARK,
    PUBLISH,
    REMOVE,
    REMOVED_BY_OPERATOR,
    AuditRecord,
    Blocked,
    Change,
    Event,
    Key,
    MailQuota,
    OverQuota,
    Publication,
    Removed,
    State,
    Tombstone,
    Upload,
    log_event,
    serving_event,
)

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
CREATE TABLE IF NOT EXISTS mails (
    at TEXT NOT NULL, recipient TEXT NOT NULL, client TEXT NOT NULL,
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS mails_by_recipient ON mails (recipient, at);
CREATE INDEX IF NOT EXISTS mails_by_client ON mails (client, at);
CREATE INDEX IF NOT EXISTS mails_by_time ON mails (at);
""" + sqlite_log.SCHEMA

AddEntry = Callable[[sqlite3.Connection, Entry], bool]
TakeOut = Callable[[sqlite3.Connection, Key], bytes | None]
Documents = Callable[[sqlite3.Connection], Iterable[bytes]]
# The tables an older version kept in its own moderation file, copied row for row (serials
# included) by SQLiteState.adopt; its `publishing` notes are read, not copied.
ADOPTED = ("uploads", "blocked", "audit", "changes", "tombstones", "mails", "marks")
ADOPTED_MARK = "adopted-moderation-file"


class SQLiteState(State):
    """The state of one SQLite store, over the store's file and connections."""

    def __init__(self, file: SQLiteFile, add: AddEntry, take_out: TakeOut,
                 documents: Documents):
        self._file = file
        self._add = add
        self._take_out = take_out
        self._documents = documents

    def _db(self) -> sqlite3.Connection:
        return self._file._db()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file._write()

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
                if event.action == logleaf.CONFIRMED:
                    sqlite_log.append(db, log_event(logleaf.CONFIRMED, at, key, event))
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

    # --- publications and removals ---

    def publish(self, entry: Entry, at: datetime, event: Event | None = None) -> Publication:
        key = entry.key
        with self._write() as db:
            _refuse_buried(db, key)
            new = self._add(db, entry)
            serial = None
            if _last_change(db, key) != PUBLISH:
                if event is not None:
                    _audit(db, at, event, key)
                serial = _change(db, at, PUBLISH, key)
            leaf = _serving_leaf(db, key)
            if leaf is None:
                leaf = sqlite_log.append(db, log_event(serving_event(entry), at, key, event,
                                                       entry.document))
        return Publication(new, serial, leaf)

    def withdraw(self, key: Key, at: datetime, event: Event, rule: str = REMOVED_BY_OPERATOR
                 ) -> bool:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO tombstones VALUES (?,?,?,?,?,?,?)",
                       (*key, rule, format_date(at), event.actor, event.reason or ""))
            document = self._take_out(db, key)
            _audit(db, at, event, key)
            if document is not None:
                _change(db, at, REMOVE, key)
            sqlite_log.append(db, log_event(logleaf.REMOVED, at, key, event, document))
        return document is not None

    def repair(self, now: datetime) -> dict[str, int]:
        """A publication or removal is one transaction here, so a crash leaves nothing to
        finish in the feed or the log; what remains is an entry stored under its tombstone
        (a reindex, or a file made before the state moved into it, may bring one back),
        taken out again."""
        removed = 0
        with self._write() as db:
            for tombstone in _tombstones(db):
                if self._take_out(db, tombstone.key) is not None:
                    removed += 1
        return {"removed": removed}

    def adopt(self, old: Path, at: datetime) -> dict[str, int] | None:
        """Take in the moderation file of an older version (None when there is none): its
        rows, the change feed and audit log with their serials, in one transaction; then
        the log's first leaves, one per entry served, tombstone and blocked endorser, in the
        order of their times -- the log starts where this history starts (what was undone
        before, a lifted removal or an unblocked endorser, is not in it). The old file is
        renamed ``*.migrated``. Again after a crash, it copies nothing twice."""
        if not old.exists():
            return None
        _settle(old)
        db = self._db()
        db.execute("ATTACH DATABASE ? AS old", (str(old),))
        try:
            with self._write() as db:
                done = None if self.mark(ADOPTED_MARK) else self._take_in(db, at)
                db.execute("INSERT OR REPLACE INTO marks VALUES (?, ?)",
                           (ADOPTED_MARK, f"{old} at {format_date(at)}"))
        finally:
            db.execute("DETACH DATABASE old")
        with suppress(FileNotFoundError):  # another process renamed it first
            old.rename(old.with_name(old.name + ".migrated"))
        return done or {}

    def _take_in(self, db: sqlite3.Connection, at: datetime) -> dict[str, int]:
        """Copy the attached old file's rows, put in the feed the stored entries it did not
        announce (a crash of the older version), and start the log."""
        found = {row[0] for row in db.execute("SELECT name FROM old.sqlite_master")}
        for table in ("audit", "changes"):
            if table in found and db.execute(f"SELECT 1 FROM main.{table} LIMIT 1").fetchone():
                raise RuntimeError(f"cannot take in the old moderation file: this store has "
                                   f"its own {table} already, and the serials would clash")
        done = {}
        for table in ADOPTED:
            if table in found:
                columns = ", ".join(row[1] for row in db.execute(
                    f"PRAGMA main.table_info({table})"))
                done[table] = db.execute(f"INSERT OR IGNORE INTO main.{table} ({columns}) "
                                         f"SELECT {columns} FROM old.{table}").rowcount
        noted = dict(((r[0], r[1], r[2]), parse_date(r[3])) for r in db.execute(
            "SELECT * FROM old.publishing")) if "publishing" in found else {}
        events, done["announced"] = [], 0
        for document in self._documents(db):
            entry = Entry.from_document(document)
            if _last_change(db, entry.key) != PUBLISH:
                _change(db, noted.get(entry.key, at), PUBLISH, entry.key)
                done["announced"] += 1
            if _serving_leaf(db, entry.key) is None:
                events.append(log_event(serving_event(entry), _published_at(db, entry.key),
                                        entry.key, None, document))
        events += [log_event(logleaf.REMOVED, t.at, t.key, Event(t.actor, "removed", t.reason))
                   for t in _tombstones(db)]
        events += [log_event(logleaf.BLOCKED, b.at, None,
                             Event(b.actor, "blocked", b.reason, b.endorser))
                   for b in _blocked(db)]
        for event in sorted(events, key=lambda e: e.time):
            sqlite_log.append(db, event)
        done["leaves"] = len(events)
        history = {"leaves": sqlite_log.size(db), "change": _last_serial(db, "changes"),
                   "audit": _last_serial(db, "audit")}
        db.execute("INSERT OR REPLACE INTO marks VALUES (?, ?)",
                   (LOG_HISTORY_MARK, json.dumps(history)))
        return done

    def confirmed(self, key: Key) -> bool:
        return self._db().execute(
            "SELECT 1 FROM audit WHERE action='confirmed' AND identifier=? AND email=? AND "
            "created=? LIMIT 1", key).fetchone() is not None

    def tombstone(self, key: Key) -> Tombstone | None:
        return _tombstone(self._db(), key)

    def tombstones(self) -> list[Tombstone]:
        return _tombstones(self._db())

    def lift(self, key: Key, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("DELETE FROM tombstones WHERE identifier=? AND email=? AND "
                              "created=?", key).rowcount
            if done:
                _audit(db, at, event, key)
                sqlite_log.append(db, log_event(logleaf.LIFTED, at, key, event))
        return bool(done)

    def changes(self, after: int = 0, limit: int = 500) -> list[Change]:
        rows = self._db().execute("SELECT * FROM changes WHERE serial>? ORDER BY serial "
                                  "LIMIT ?", (after, limit)).fetchall()
        return [Change(r["serial"], parse_date(r["at"]), r["action"], r["identifier"],
                       r["email"], r["created"]) for r in rows]

    def last_serial(self) -> int:
        return self._db().execute("SELECT coalesce(max(serial), 0) FROM changes").fetchone()[0]

    # --- the transparency log ---

    def log_size(self) -> int:
        return sqlite_log.size(self._db())

    def log_leaves(self, start: int, end: int) -> list[bytes]:
        return sqlite_log.leaves(self._db(), start, end)

    def log_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        return sqlite_log.hashes(self._db(), level, start, end)

    def leaf_indexes(self, keys: list[Key]) -> dict[Key, int]:
        return sqlite_log.leaf_indexes(self._db(), keys)

    # --- blocked endorsers ---

    def block(self, endorser: str, kind: str, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("INSERT OR IGNORE INTO blocked VALUES (?,?,?,?,?)",
                              (endorser, kind, format_date(at), event.actor,
                               event.reason or "")).rowcount
            if done:
                _audit(db, at, event)
                sqlite_log.append(db, log_event(logleaf.BLOCKED, at, None, event))
        return bool(done)

    def unblock(self, endorser: str, event: Event, at: datetime) -> bool:
        with self._write() as db:
            done = db.execute("DELETE FROM blocked WHERE endorser=?", (endorser,)).rowcount
            if done:
                _audit(db, at, event)
                sqlite_log.append(db, log_event(logleaf.UNBLOCKED, at, None, event))
        return bool(done)

    def blocked(self) -> list[Blocked]:
        return _blocked(self._db())

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


def _tombstones(db: sqlite3.Connection) -> list[Tombstone]:
    rows = db.execute("SELECT * FROM tombstones ORDER BY at, identifier").fetchall()
    return [_tombstone_of(row) for row in rows]


def _blocked(db: sqlite3.Connection) -> list[Blocked]:
    rows = db.execute("SELECT * FROM blocked ORDER BY at, endorser").fetchall()
    return [Blocked(r["endorser"], r["kind"], parse_date(r["at"]), r["actor"], r["reason"])
            for r in rows]


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


def _last_change(db: sqlite3.Connection, key: Key) -> str | None:
    row = db.execute("SELECT action FROM changes WHERE identifier=? AND email=? AND created=? "
                     "ORDER BY serial DESC LIMIT 1", key).fetchone()
    return row[0] if row else None


def _serving_leaf(db: sqlite3.Connection, key: Key) -> int | None:
    """The leaf that serves the entry now: the newest that published or deprecated it, if
    no removal came after it (a removed entry published again needs a leaf of its own)."""
    served = sqlite_log.leaf_indexes(db, [key]).get(key)
    removed = db.execute("SELECT max(position) FROM log_leaves WHERE identifier=? AND email=? "
                         "AND created=? AND event=?", (*key, logleaf.REMOVED)).fetchone()[0]
    return served if served is not None and (removed is None or removed < served) else None


def _published_at(db: sqlite3.Connection, key: Key) -> datetime:
    """When the feed says an entry was last published."""
    row = db.execute("SELECT at FROM changes WHERE identifier=? AND email=? AND created=? AND "
                     "action=? ORDER BY serial DESC LIMIT 1", (*key, PUBLISH)).fetchone()
    return parse_date(row[0])


def _settle(path: Path) -> None:
    """Fold an SQLite file's write-ahead log into it, so that the file alone holds all of
    it and can be renamed."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def _last_serial(db: sqlite3.Connection, table: str) -> int:
    return db.execute(f"SELECT coalesce(max(serial), 0) FROM {table}").fetchone()[0]
