"""A data dir of an older version, with its moderation state in a file of its own
(``moderation.db``), is taken into the store's file by ``init-store``: every row, the change
feed and the audit log with their serials, a feed row for an entry that version stored and
did not announce (its crash), and the log's first leaves -- one per entry served, tombstone
and blocked endorser. The old file is renamed, and doing it again copies nothing twice.
``serve`` does it too, before its workers start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from marketplace import cli
from marketplace.metadata import logleaf, tlog
from marketplace.store.base import Entry
from marketplace.store.sqlite import SQLiteStore
from tests.live.conftest import LiveServer
from tests.moderation.conftest import signed

# The schema of moderation.db as the older version wrote it (data, not code of ours to use).
OLD_SCHEMA = """
CREATE TABLE uploads (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL,
    document BLOB NOT NULL, subject TEXT, title TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'flagged')),
    token_hash TEXT UNIQUE, submitted TEXT NOT NULL, expires TEXT NOT NULL, flagged TEXT,
    PRIMARY KEY (identifier, email, created));
CREATE INDEX uploads_by_expiry ON uploads (state, expires);
CREATE TABLE blocked (
    endorser TEXT PRIMARY KEY, kind TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE audit (
    serial INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, identifier TEXT, email TEXT, created TEXT, endorser TEXT,
    reason TEXT);
CREATE TABLE changes (
    serial INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('publish', 'remove')),
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX changes_by_key ON changes (identifier, email, created, serial);
CREATE TABLE marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tombstones (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL,
    rule TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (identifier, email, created));
CREATE TABLE publishing (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (identifier, email, created));
CREATE TABLE mails (
    at TEXT NOT NULL, recipient TEXT NOT NULL, client TEXT NOT NULL,
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL);
"""
BLOCKED = "mallory@example.org"


class OldDataDir:
    """A data dir as the older version left it: entries A and C stored, B removed (its
    tombstone), C stored by a publication the crash cut before its feed row, an endorser
    blocked, an upload held with its mail counted, a replica mark."""

    def __init__(self, root: Path, signer, moderation_db: Path | None = None):
        self.root = root
        self.moderation_db = moderation_db or root / "moderation.db"
        a, b, c = (Entry.from_document(signed(signer, days_ago=d, title=t))
                   for d, t in ((3, "a"), (2, "b"), (1, "c")))
        self.a, self.b, self.c = a, b, c
        held = Entry.from_document(signed(signer, title="held"))
        store = SQLiteStore(root / "marketplace.db")
        store.add(a)
        store.add(c)
        store.close()
        db = sqlite3.connect(self.moderation_db)
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO changes VALUES (?,?,?,?,?,?)", [
            (1, "2026-01-01T10:00:00Z", "publish", *a.key),
            (2, "2026-01-02T10:00:00Z", "publish", *b.key),
            (3, "2026-01-03T10:00:00Z", "remove", *b.key)])
        db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)", [
            (7, "2026-01-03T10:00:00Z", "ops", "removed", *b.key, None, "malware"),
            (8, "2026-01-04T10:00:00Z", "ops", "blocked", None, None, None, BLOCKED, "spam")])
        db.execute("INSERT INTO tombstones VALUES (?,?,?,?,?,?,?)",
                   (*b.key, "removed-by-operator", "2026-01-03T10:00:00Z", "ops", "malware"))
        db.execute("INSERT INTO blocked VALUES (?,?,?,?,?)",
                   (BLOCKED, "email", "2026-01-04T10:00:00Z", "ops", "spam"))
        db.execute("INSERT INTO publishing VALUES (?,?,?,?)", (*c.key, "2026-01-05T10:00:00Z"))
        db.execute("INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (*held.key, held.document, "CN=held", "held", "pending", "f" * 64,
                    "2026-01-06T10:00:00Z", "2099-01-08T10:00:00Z", None))
        db.execute("INSERT INTO mails VALUES (?,?,?,?,?,?)",
                   ("2026-01-06T10:00:00Z", held.email, "127.0.0.1", *held.key))
        db.execute("INSERT INTO marks VALUES ('replica:http://primary', '42')")
        db.commit()
        db.close()

    def init_store(self) -> int:
        return cli.main(["init-store", "--data-dir", str(self.root)])

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.root / "marketplace.db")


@pytest.fixture
def old(tmp_path, rsa_signer, monkeypatch) -> OldDataDir:
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path))  # init-store sets it
    monkeypatch.delenv("MARKETPLACE_MODERATION_DB", raising=False)
    return OldDataDir(tmp_path, rsa_signer)


def events(state) -> list[tuple]:
    return [(e.event, e.key if e.identifier else e.endorser, e.time)
            for e in map(logleaf.LogEvent.parse, state.log_leaves(0, state.log_size()))]


def test_init_store_takes_in_the_old_moderation_file(old):
    assert old.init_store() == 0
    assert not old.moderation_db.exists()
    assert old.moderation_db.with_name("moderation.db.migrated").exists()
    store = old.store()
    state = store.state
    try:
        assert [(c.serial, c.action, c.key) for c in state.changes()] == [
            (1, "publish", old.a.key), (2, "publish", old.b.key), (3, "remove", old.b.key),
            (4, "publish", old.c.key)]  # C announced, at the time its publication was noted
        assert state.changes()[3].as_dict()["at"] == "2026-01-05T10:00:00Z"
        assert [r.serial for r in state.audit()] == [8, 7]
        assert [t.key for t in state.tombstones()] == [old.b.key]
        assert [b.endorser for b in state.blocked()] == [BLOCKED]
        assert [u.title for u in state.uploads()] == ["held"]
        assert state.by_token("f" * 64) is not None
        assert state.mark("replica:http://primary") == "42"
        assert events(state) == [
            ("published", old.a.key, "2026-01-01T10:00:00Z"),
            ("removed", old.b.key, "2026-01-03T10:00:00Z"),
            ("blocked", BLOCKED, "2026-01-04T10:00:00Z"),
            ("published", old.c.key, "2026-01-05T10:00:00Z")]
        assert state.leaf_indexes([old.a.key, old.b.key, old.c.key]) == {
            old.a.key: 0, old.c.key: 3}
        leaves = state.log_leaves(0, 4)
        assert state.log_hashes(0, 0, 4) == [tlog.leaf_hash(leaf) for leaf in leaves]
        assert logleaf.LogEvent.parse(leaves[0]).document_sha256 == \
            logleaf.digest(old.a.document)
    finally:
        store.close()


def test_taking_in_again_copies_nothing_twice(old):
    assert old.init_store() == 0
    migrated = old.moderation_db.with_name("moderation.db.migrated")
    migrated.rename(old.moderation_db)  # as if the process died before the rename
    assert old.init_store() == 0
    assert old.init_store() == 0  # and with no old file at all
    assert not old.moderation_db.exists() and migrated.exists()
    store = old.store()
    try:
        assert store.state.last_serial() == 4
        assert store.state.log_size() == 4
        assert len(store.state.audit()) == 2
    finally:
        store.close()


def test_the_setting_names_the_file_to_take_in(tmp_path, rsa_signer, monkeypatch):
    elsewhere = tmp_path / "shared" / "state.db"
    elsewhere.parent.mkdir()
    monkeypatch.setenv("MARKETPLACE_MODERATION_DB", str(elsewhere))
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    old = OldDataDir(tmp_path / "data", rsa_signer, elsewhere)
    assert old.init_store() == 0
    assert elsewhere.with_name("state.db.migrated").exists()
    store = old.store()
    try:
        assert [t.key for t in store.state.tombstones()] == [old.b.key]
    finally:
        store.close()


def test_a_file_that_is_not_a_moderation_file_is_refused_naming_it(tmp_path, rsa_signer,
                                                                     monkeypatch, capsys):
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MARKETPLACE_MODERATION_DB", raising=False)
    (tmp_path / "moderation.db").write_bytes(b"not a database at all" * 100)
    assert cli.main(["init-store", "--data-dir", str(tmp_path)]) == 1
    assert "moderation.db" in capsys.readouterr().err
    assert (tmp_path / "moderation.db").exists()
    store = SQLiteStore(tmp_path / "marketplace.db")
    try:
        assert store.state.log_size() == 0 and store.state.last_serial() == 0
    finally:
        store.close()


def test_serve_takes_it_in_before_its_workers_start(tmp_path, rsa_signer):
    data = tmp_path / "data"
    data.mkdir()
    old = OldDataDir(data, rsa_signer)
    server = LiveServer(data, tmp_path)
    try:
        server.start()
        feed = server.get("api/v1/changes").json()
        assert [c["serial"] for c in feed["changes"]] == [1, 2, 3, 4]
        assert feed["changes"][1]["identifier"] == old.b.identifier
        assert not old.moderation_db.exists()
    finally:
        server.stop()
