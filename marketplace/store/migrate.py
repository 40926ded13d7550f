"""Moving a site from the embedded SQLite store to Elasticsearch: its entries, then its
shared state and its transparency log.

The SQLite file is opened read-only. Its ``documents`` table (the truth) is read with each
entry's row id as its order of arrival (ties in sorting stay as they were); the target
derives its own indexes from the documents. Running it again adds nothing twice: an entry
already there with the same bytes is counted as such, one with different bytes is a
Conflict.

Then the history, so that the site keeps it and every node that trusted its log sees the
same log go on (no rollback, no fork): the log's leaves byte for byte in their order, the
change feed and the audit log with their serials, tombstones, blocked endorsers, held
uploads, the mails counted and the marks (the signed checkpoints among them). Only into a
target whose feed, audit log and log are empty (:class:`NotEmpty` names what is there, and
nothing is written), or one that holds exactly this history already (a re-run: nothing is
added). The copy is compared with the source afterwards, tile hashes included.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from marketplace.metadata.model import parse_date
from marketplace.store import sqlite_log
from marketplace.store.base import Entry, StoreError
from marketplace.store.elastic import ElasticStore
from marketplace.store.state import AuditRecord, Blocked, Change, State, Tombstone, Upload

DB_NAME = "marketplace.db"


@dataclass(frozen=True)
class Migration:
    """What a migration did."""

    source: str
    entries: int
    new: int
    already_there: int
    target_total: int
    seconds: float
    history: dict[str, int]
    history_new: bool

    def as_dict(self) -> dict:
        return {"source": self.source, "entries": self.entries, "new": self.new,
                "already_there": self.already_there, "target_total": self.target_total,
                "history": self.history, "history_new": self.history_new,
                "seconds": round(self.seconds, 2)}


class NotEmpty(StoreError):
    """The target's state already has a history other than the source's: merging two
    histories would make a log that no node that trusted either one accepts."""


@dataclass(frozen=True)
class History:
    """A SQLite store's shared state and log, as read from its file."""

    leaves: list[bytes]
    hashes: dict[int, list[bytes]]  # tile level: its stored hashes
    changes: list[Change]
    audit: list[AuditRecord]
    tombstones: list[Tombstone]
    blocked: list[Blocked]
    uploads: list[tuple[Upload, str | None, str]]  # with its token hash and mail's client
    mails: list[tuple]  # at, recipient, client, key
    marks: dict[str, str]

    def counts(self) -> dict[str, int]:
        return {"log leaves": len(self.leaves), "feed changes": len(self.changes),
                "audit records": len(self.audit), "tombstones": len(self.tombstones),
                "blocked endorsers": len(self.blocked), "held uploads": len(self.uploads),
                "mails counted": len(self.mails), "marks": len(self.marks)}


def sqlite_path(text: str) -> Path:
    """The SQLite file of ``sqlite:PATH``: PATH is the file, or a data dir holding it."""
    kind, _, rest = text.partition(":")
    if kind != "sqlite" or not rest:
        raise ValueError(f"--from {text!r}: give sqlite:PATH (the store file or its data dir)")
    path = Path(rest).expanduser()
    if path.is_dir():
        path = path / DB_NAME
    if not path.is_file():
        raise ValueError(f"--from {text!r}: no SQLite store at {path}")
    return path


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def count_sqlite(path: Path) -> int:
    with closing(_connect(path)) as db:
        return db.execute("SELECT count(*) FROM documents").fetchone()[0]


def read_sqlite(path: Path) -> Iterator[tuple[Entry, int]]:
    """Every stored entry with its row id, grouped by identifier and endorser."""
    with closing(_connect(path)) as db:
        rows = db.execute(
            "SELECT d.document, coalesce(e.id, 0) FROM documents d LEFT JOIN entries e "
            "USING (identifier, email, created) ORDER BY d.identifier, d.email, d.created")
        for document, seq in rows:
            yield Entry.from_document(bytes(document)), seq


def read_history(path: Path) -> History:
    """The shared state and the log of the SQLite store at ``path``; ValueError when its
    serials or leaf positions have a gap (the target's sequences cannot)."""
    with closing(_connect(path)) as db:
        db.row_factory = sqlite3.Row
        size = sqlite_log.size(db)
        leaves = sqlite_log.leaves(db, 0, size)
        levels = [row[0] for row in db.execute("SELECT DISTINCT level FROM log_hashes")]
        hashes = {level: sqlite_log.hashes(db, level, 0, size) for level in levels}
        changes = [Change(r["serial"], parse_date(r["at"]), r["action"], r["identifier"],
                          r["email"], r["created"])
                   for r in db.execute("SELECT * FROM changes ORDER BY serial")]
        audit = [AuditRecord(r["serial"], parse_date(r["at"]), r["actor"], r["action"],
                             r["identifier"], r["email"], r["created"], r["endorser"],
                             r["reason"])
                 for r in db.execute("SELECT * FROM audit ORDER BY serial")]
        tombstones = [Tombstone(r["identifier"], r["email"], r["created"], r["rule"],
                                parse_date(r["at"]), r["actor"], r["reason"])
                      for r in db.execute("SELECT * FROM tombstones ORDER BY at, identifier")]
        blocked = [Blocked(r["endorser"], r["kind"], parse_date(r["at"]), r["actor"],
                           r["reason"])
                   for r in db.execute("SELECT * FROM blocked ORDER BY at, endorser")]
        mails = [(parse_date(r["at"]), r["recipient"], r["client"],
                  (r["identifier"], r["email"], r["created"]))
                 for r in db.execute("SELECT * FROM mails ORDER BY at")]
        client_of = {key: client for _, _, client, key in mails}
        uploads = [(Upload(r["identifier"], r["email"], r["created"], bytes(r["document"]),
                           r["subject"], r["title"], r["state"], parse_date(r["submitted"]),
                           parse_date(r["expires"]),
                           parse_date(r["flagged"]) if r["flagged"] else None),
                    r["token_hash"], client_of.get((r["identifier"], r["email"],
                                                    r["created"]), ""))
                   for r in db.execute("SELECT * FROM uploads ORDER BY submitted")]
        marks = dict(db.execute("SELECT name, value FROM marks ORDER BY name").fetchall())
    for name, serials in (("change feed", [c.serial for c in changes]),
                          ("audit log", [r.serial for r in audit])):
        if serials != list(range(1, len(serials) + 1)):
            raise ValueError(f"{path}: the {name}'s serials are not 1 to {len(serials)} "
                             "without a gap: Elasticsearch cannot number them the same")
    if len(leaves) != size:
        raise ValueError(f"{path}: the log has {len(leaves)} leaves at positions 0 to "
                         f"{size - 1}: a gap")
    return History(leaves, hashes, changes, audit, tombstones, blocked, uploads, mails,
                   marks)


def history_there(state: State) -> dict[str, int]:
    """What the target's feed, audit log and log already hold (zeros: empty)."""
    newest = state.audit(limit=1)
    return {"log leaves": state.log_size(), "feed changes": state.last_serial(),
            "audit records": newest[0].serial if newest else 0}


def differences(history: History, state: State) -> list[str]:
    """Where ``state`` does not hold exactly ``history`` (empty: a faithful copy): leaves,
    tile hashes, feed, audit log, tombstones, blocks, uploads and marks."""
    found = []
    if state.log_leaves(0, state.log_size()) != history.leaves:
        found.append(f"the log's leaves differ from the source's {len(history.leaves)}")
    for level, hashes in sorted(history.hashes.items()):
        if state.log_hashes(level, 0, len(hashes)) != hashes:
            found.append(f"the log's tile hashes of level {level} differ from the source's")
    if state.changes(0, len(history.changes) + 1) != history.changes:
        found.append(f"the change feed differs from the source's {len(history.changes)} "
                     "changes")
    if state.audit(limit=len(history.audit) + 1) != history.audit[::-1]:
        found.append(f"the audit log differs from the source's {len(history.audit)} records")
    for name, have, want in (
            ("tombstones", state.tombstones(), history.tombstones),
            ("blocked endorsers", state.blocked(), history.blocked),
            ("held uploads", sorted(state.uploads(), key=lambda u: u.key),
             sorted((u for u, _, _ in history.uploads), key=lambda u: u.key))):
        if have != want:
            found.append(f"the {name} differ from the source's {len(want)}")
    for name, value in history.marks.items():
        if state.mark(name) != value:
            found.append(f"the mark {name} differs from the source's")
    return found


def migrate(path: Path, target: ElasticStore,
            progress: Callable[[int, int], None] | None = None) -> Migration:
    """Copy every entry of the SQLite store at ``path`` into ``target``, then its history
    (NotEmpty, before anything is written, when the target has another one)."""
    import time
    started = time.perf_counter()
    history = read_history(path)
    there = history_there(target.state)
    adopted = not any(there.values())
    unlike = [] if adopted else differences(history, target.state)
    if unlike:
        shown = ", ".join(f"{count} {name}" for name, count in there.items() if count)
        raise NotEmpty(f"the target's state is not empty ({shown}) and is not this source's "
                       f"history ({'; '.join(unlike)}): migrate only into a store whose "
                       "change feed, audit log and log are empty; nothing was written")
    total = count_sqlite(path)
    new, same = target.import_entries(
        read_sqlite(path), (lambda done: progress(done, total)) if progress else None)
    if new + same != total:
        raise RuntimeError(f"read {new + same} entries of {total}: the source changed "
                           "during the migration; run it again")
    if adopted:
        target.state.adopt_history(
            leaves=history.leaves, changes=history.changes, audit=history.audit,
            tombstones=history.tombstones, blocked=history.blocked, uploads=history.uploads,
            mails=history.mails, marks=history.marks)
        wrong = differences(history, target.state)
        if wrong:
            raise StoreError("the copied history is not the source's: " + "; ".join(wrong))
    return Migration(str(path), total, new, same, target.count(),
                     time.perf_counter() - started, history.counts(), adopted)
