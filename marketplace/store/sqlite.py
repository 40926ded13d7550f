"""The embedded store: one SQLite file, WAL journal, full fsync on commit, FTS5 for text.

Table ``documents`` holds the signed documents byte for byte and is the only truth; table
``entries`` and its full-text index ``entries_fts`` are derived from it and rebuilt by
:meth:`SQLiteStore.reindex`, or on opening a file whose derived tables have an older shape.
A write is one ``BEGIN IMMEDIATE`` transaction, so an upload is
either wholly there after a crash or not at all.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from marketplace.metadata.model import format_date, parse_date
from marketplace.sqlitefile import SQLiteFile
from marketplace.store.base import (
    FACET_FIELDS,
    FILTER_FIELDS,
    SORT_FIELDS,
    TEXT_FIELDS,
    EndorserStats,
    Entry,
    Page,
    Query,
    Store,
    indexed_fields,
    is_new,
    query_words,
)
from marketplace.store.sqlite_state import SCHEMA as STATE_SCHEMA
from marketplace.store.sqlite_state import SQLiteState

DOCUMENTS = """
CREATE TABLE IF NOT EXISTS documents (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL,
    document BLOB NOT NULL, PRIMARY KEY (identifier, email, created));
CREATE TABLE IF NOT EXISTS generation (
    id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT OR IGNORE INTO generation VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS document_added AFTER INSERT ON documents
    BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER IF NOT EXISTS document_removed AFTER DELETE ON documents
    BEGIN UPDATE generation SET value = value + 1; END;
"""
# The derived tables. `summary` is the entry read from its document, as JSON, so that a page
# of results needs no XML parsing.
INDEX = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, email TEXT NOT NULL,
    created TEXT NOT NULL, latest INTEGER NOT NULL, deprecated INTEGER NOT NULL,
    valid TEXT, os TEXT, os_version TEXT, os_arch TEXT, kind TEXT, type TEXT, format TEXT,
    hypervisor TEXT, tag TEXT, title TEXT, description TEXT, subject TEXT, bytes INTEGER,
    web INTEGER NOT NULL, pdisk INTEGER NOT NULL, summary TEXT NOT NULL,
    UNIQUE (identifier, email, created));
CREATE INDEX entries_by_created ON entries (latest, created, deprecated, valid);
CREATE INDEX entries_by_valid ON entries (valid);
"""
INDEX += (f"CREATE VIRTUAL TABLE entries_fts USING fts5({', '.join(TEXT_FIELDS)}, "
          "content='entries', content_rowid='id');\n")
COLUMN_FACETS = tuple(name for name in FACET_FIELDS if name != "status")
# One narrow covering index per facet column, (latest, column, created, status columns): a
# filtered page walks it in date order and stops after a page of matches instead of sorting
# every match, and the count of the matches reads the index alone.
INDEX += "".join(f"CREATE INDEX entries_by_{name} ON entries "
                 f"(latest, {name}, created, deprecated, valid);\n"
                 for name in COLUMN_FACETS)
INDEX += "CREATE INDEX entries_by_status ON entries (latest, deprecated, valid);\n"
# All facet columns in one index: the facet counts walk it once (see _facets).
INDEX += (f"CREATE INDEX entries_by_facets ON entries (latest, {', '.join(COLUMN_FACETS)}, "
          "deprecated, valid, created);\n")
# The shape of the derived tables, kept in the file's user_version: a store whose index has
# another shape (made by another version) gets it rebuilt from the documents when opened.
INDEX_VERSION = 3
log = logging.getLogger(__name__)
# Each status as plain conditions on the columns: a CASE expression per row makes a facet
# count over every latest entry slower (bench/RESULTS.md, "Marketplace server").
STATUS_WHERE = {"deprecated": "e.deprecated != 0",
                "expired": "e.deprecated = 0 AND e.valid < :now",
                "valid": "e.deprecated = 0 AND (e.valid IS NULL OR e.valid >= :now)"}
STATUS_SUMS = {status: f"sum({where})" for status, where in STATUS_WHERE.items()}


class SQLiteStore(SQLiteFile, Store):
    """A store in one SQLite file; one connection per thread."""

    def __init__(self, path: Path):
        super().__init__(path, DOCUMENTS + STATE_SCHEMA, "the store")
        self._counts = CountCache()
        self._state = SQLiteState(self, add_entry, take_out, stored_documents)
        if self._db().execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
            self._rebuild_index(only_if_outdated=True)

    def add(self, entry: Entry) -> bool:
        with self._write() as db:
            return add_entry(db, entry)

    @property
    def state(self) -> SQLiteState:
        return self._state

    def newest(self, identifier: str, email: str) -> str | None:
        return _newest(self._db(), identifier, email)

    def get(self, identifier: str, email: str, created: datetime) -> Entry | None:
        return _entry(self._db(), (identifier, email, format_date(created)))

    def search(self, query: Query) -> Page:
        with self._read() as db:
            return _page(db, query, self._counts)

    def endorsers(self) -> list[EndorserStats]:
        rows = self._db().execute(
            "SELECT email, max(subject), count(*), max(created) FROM entries GROUP BY email "
            "ORDER BY email").fetchall()
        return [EndorserStats(r[0], r[1], r[2], parse_date(r[3])) for r in rows]

    def tags(self, email: str) -> dict[str, int]:
        rows = self._db().execute("SELECT tag, count(*) FROM entries WHERE email=? AND tag IS "
                                  "NOT NULL GROUP BY tag ORDER BY tag", (email,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def remove(self, identifier: str, email: str, created: datetime) -> bool:
        with self._write() as db:
            return take_out(db, (identifier, email, format_date(created))) is not None

    def reindex(self) -> int:
        return self._rebuild_index(only_if_outdated=False)

    def _rebuild_index(self, only_if_outdated: bool) -> int:
        """Drop the derived tables and make them again from the documents."""
        with self._write() as db:
            if only_if_outdated and (db.execute("PRAGMA user_version").fetchone()[0]
                                     == INDEX_VERSION):
                return self.count()  # another process rebuilt it meanwhile
            if only_if_outdated and _has_table(db, "entries"):
                log.warning("%s: rebuilding the search index from the stored documents "
                            "(it was made by another version)", self.path)
            db.execute("DROP TABLE IF EXISTS entries_fts")
            db.execute("DROP TABLE IF EXISTS entries")
            for statement in INDEX.split(";"):
                if statement.strip():
                    db.execute(statement)
            rows = db.execute("SELECT identifier, email, document FROM documents "
                              "ORDER BY identifier, email, created")
            count = 0
            for _, pair in itertools.groupby(rows, key=lambda row: (row[0], row[1])):
                documents = [bytes(row[2]) for row in pair]
                for position, data in enumerate(documents, start=1):
                    _index(db, Entry.from_document(data), latest=position == len(documents))
                count += len(documents)
            db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            db.execute("UPDATE generation SET value = value + 1")
        self._db().execute("ANALYZE")
        return count

    def count(self) -> int:
        return self._db().execute("SELECT count(*) FROM documents").fetchone()[0]

    def change_serial(self) -> int:
        return self._db().execute("SELECT value FROM generation").fetchone()[0]

    def healthy(self) -> bool:
        try:
            self._db().execute("SELECT 1 FROM documents LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True


def add_entry(db: sqlite3.Connection, entry: Entry) -> bool:
    """:meth:`SQLiteStore.add` inside the caller's transaction (a publication's, too)."""
    identifier, email, _ = entry.key
    stored = _document(db, entry.key)
    if not is_new(entry, stored, _newest(db, identifier, email)):
        return False
    db.execute("INSERT INTO documents VALUES (?, ?, ?, ?)", (*entry.key, entry.document))
    db.execute("UPDATE entries SET latest=0 WHERE identifier=? AND email=?",
               (identifier, email))
    _index(db, entry, latest=True)
    return True


def take_out(db: sqlite3.Connection, key: tuple[str, str, str]) -> bytes | None:
    """Remove one entry inside the caller's transaction (a withdrawal's, too); its document,
    or None when it was not stored."""
    document = _document(db, key)
    if document is not None:
        db.execute("DELETE FROM documents WHERE identifier=? AND email=? AND created=?", key)
        _rebuild_pair(db, key[0], key[1])
    return document


def stored_documents(db: sqlite3.Connection) -> Iterator[bytes]:
    """Every stored document, oldest first (the state takes in an older moderation file)."""
    for row in db.execute("SELECT document FROM documents ORDER BY created, identifier"):
        yield bytes(row[0])


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is not None


def _page(db: sqlite3.Connection, query: Query, counts: CountCache) -> Page:
    """The page's ids are chosen on the narrow index first and only their rows then fetched:
    sorting joined rows would drag every matching document through the sorter."""
    where, params = _where(query)
    total, facets = counts.get(db, query, where, params)
    order = query.sort if query.sort in SORT_FIELDS else "created"
    direction = "DESC" if query.descending else "ASC"
    rows = db.execute(
        f"SELECT e.id FROM entries e {_text_plan(query, order, total)} WHERE {where} "
        f"ORDER BY e.{order} {direction}, e.id {direction} LIMIT :limit OFFSET :offset",
        {**params, "limit": query.limit, "offset": query.offset}).fetchall()
    ids = [row[0] for row in rows]
    found = db.execute(
        "SELECT e.id, d.document, e.summary FROM entries e JOIN documents d USING "
        f"(identifier, email, created) WHERE e.id IN ({', '.join('?' for _ in ids)})", ids)
    entries = {row[0]: Entry.from_dict(bytes(row[1]), json.loads(row[2])) for row in found}
    return Page([entries[rowid] for rowid in ids], total, facets)


def _text_plan(query: Query, order: str, total: int) -> str:
    """For free text in date order, walk the date index and test each entry against the
    text's matches when they are many (a page is found after a few hundred entries), rather
    than sort every match by date (bench/RESULTS.md, "Marketplace server", has the figures);
    with few matches sorting them wins (a rare word would make the walk read every entry)."""
    walk = (query.q and order == "created" and query.latest_only and query.created is None
            and not any(query.filters.values())
            and total >= 10 * (query.offset + query.limit))
    return "INDEXED BY entries_by_created" if walk else ""


@dataclass(frozen=True)
class _Counted:
    """Counts made at store ``generation`` for the moment ``since``; they hold until the first
    validity end from then, ``until`` (None: no entry ends)."""

    generation: int
    since: str
    until: str | None
    total: int
    facets: dict[str, dict[str, int]] | None


class CountCache:
    """The totals and facet counts of recent queries: the pages of one query share them, and
    they are counted again once a document was added or removed (in any process: the
    ``generation`` row counts such writes) or once an entry's validity ended (its status
    changed) after the moment they were counted for."""

    SIZE = 512

    def __init__(self):
        self._kept: dict[tuple, _Counted] = {}

    def get(self, db: sqlite3.Connection, query: Query, where: str,
            params: dict) -> tuple[int, dict[str, dict[str, int]]]:
        now = params["now"]
        key = (where, tuple(sorted((k, v) for k, v in params.items() if k != "now")))
        generation = db.execute("SELECT value FROM generation").fetchone()[0]
        kept = self._kept.get(key)
        if (kept is not None and kept.generation == generation
                and kept.since <= now and (kept.until is None or now <= kept.until)
                and (kept.facets is not None or not query.facets)):
            return kept.total, kept.facets or {}
        total = db.execute(f"SELECT count(*) FROM entries e WHERE {where}",
                           params).fetchone()[0]
        facets = _facets(db, query) if query.facets else None
        until = db.execute("SELECT min(valid) FROM entries WHERE valid >= ?",
                           (now,)).fetchone()[0]
        if len(self._kept) >= self.SIZE:
            self._kept.clear()
        self._kept[key] = _Counted(generation, now, until, total, facets)
        return total, facets or {}


def _document(db: sqlite3.Connection, key: tuple[str, str, str]) -> bytes | None:
    row = db.execute("SELECT document FROM documents WHERE identifier=? AND email=? AND "
                     "created=?", key).fetchone()
    return bytes(row[0]) if row else None


def _entry(db: sqlite3.Connection, key: tuple[str, str, str]) -> Entry | None:
    document = _document(db, key)
    return Entry.from_document(document) if document is not None else None


def _newest(db: sqlite3.Connection, identifier: str, email: str) -> str | None:
    return db.execute("SELECT max(created) FROM documents WHERE identifier=? AND email=?",
                      (identifier, email)).fetchone()[0]


def _index(db: sqlite3.Connection, entry: Entry, latest: bool) -> None:
    """Index one entry: its :func:`indexed_fields` as columns (flags as 0/1), with the entry
    as JSON in ``summary``, and its text fields in ``entries_fts``."""
    values = {**indexed_fields(entry), "latest": latest,
              "summary": json.dumps(entry.as_dict(), ensure_ascii=False,
                                    separators=(",", ":"))}
    columns = ", ".join(values)
    cursor = db.execute(f"INSERT INTO entries ({columns}) VALUES "
                        f"({', '.join(':' + c for c in values)})", values)
    db.execute(f"INSERT INTO entries_fts (rowid, {', '.join(TEXT_FIELDS)}) VALUES "
               f"(?, {', '.join('?' for _ in TEXT_FIELDS)})",
               (cursor.lastrowid, *(values[c] or "" for c in TEXT_FIELDS)))


def _rebuild_pair(db: sqlite3.Connection, identifier: str, email: str) -> None:
    """Re-derive the index rows of one identifier and endorser after a removal."""
    old = db.execute("SELECT id FROM entries WHERE identifier=? AND email=?",
                     (identifier, email)).fetchall()
    for (rowid,) in old:
        _unindex(db, rowid)
    rows = db.execute("SELECT document FROM documents WHERE identifier=? AND email=? ORDER BY "
                      "created", (identifier, email)).fetchall()
    for index, row in enumerate(rows):
        _index(db, Entry.from_document(bytes(row[0])), latest=index == len(rows) - 1)


def _unindex(db: sqlite3.Connection, rowid: int) -> None:
    row = db.execute(f"SELECT {', '.join(TEXT_FIELDS)} FROM entries WHERE id=?",
                     (rowid,)).fetchone()
    db.execute(f"INSERT INTO entries_fts (entries_fts, rowid, {', '.join(TEXT_FIELDS)}) VALUES "
               f"('delete', ?, {', '.join('?' for _ in TEXT_FIELDS)})",
               (rowid, *(v or "" for v in row)))
    db.execute("DELETE FROM entries WHERE id=?", (rowid,))


def _where(query: Query, without: Collection[str] = ()) -> tuple[str, dict]:
    """SQL conditions and parameters for a query, leaving out the filters named ``without``."""
    clauses, params = [], {"now": format_date(query.now)}
    if query.latest_only and query.created is None:
        clauses.append("e.latest = 1")
    for name, value in query.filters.items():
        if name in FILTER_FIELDS and value and name not in without:
            clauses.append(f"e.{name} = :f_{name}")
            params[f"f_{name}"] = value
    if query.status != "all" and "status" not in without:
        clauses.append(f"({STATUS_WHERE[query.status]})")
    if query.location in ("web", "pdisk"):
        clauses.append(f"e.{query.location} = 1")
    for column, bound, operator in (("created", query.created, "="),
                                    ("created", query.created_from, ">="),
                                    ("created", query.created_to, "<="),
                                    ("valid", query.valid_from, ">="),
                                    ("valid", query.valid_to, "<=")):
        if bound is not None:
            name = f"b{len(params)}"
            clauses.append(f"e.{column} {operator} :{name}")
            params[name] = format_date(bound)
    text = fts_query(query.q or "")
    if text:
        clauses.append("e.id IN (SELECT rowid FROM entries_fts WHERE entries_fts MATCH :text)")
        params["text"] = text
    return " AND ".join(clauses) or "1", params


def fts_query(text: str) -> str:
    """Free text as an FTS5 query: every word must match, as a prefix; no operators pass."""
    words = query_words(text)
    return " AND ".join('"' + w.replace('"', "") + '"*' for w in words)


def _facets(db: sqlite3.Connection, query: Query) -> dict[str, dict[str, int]]:
    """Counts per value of each facet, each counted without its own filter.

    One walk of the ``entries_by_facets`` index groups the matching entries by every facet
    column at once, with their counts per status; each facet is then summed here from the
    groups that pass the other facets' filters, faster than eight GROUP BY queries
    (bench/RESULTS.md, "Marketplace server").
    """
    where, params = _where(query, without=FACET_FIELDS)
    groups = db.execute(
        f"SELECT {', '.join(COLUMN_FACETS)}, {', '.join(STATUS_SUMS.values())} "
        f"FROM entries e WHERE {where} GROUP BY {', '.join(COLUMN_FACETS)}", params)
    wanted = [(i, query.filters[name]) for i, name in enumerate(COLUMN_FACETS)
              if query.filters.get(name)]
    shown = [i for i, status in enumerate(STATUS_SUMS)
             if query.status in ("all", status)]
    counts: dict[str, dict] = {name: {} for name in FACET_FIELDS}
    for row in groups:
        missed = [i for i, value in wanted if row[i] != value]
        if len(missed) > 1:
            continue
        by_status = row[len(COLUMN_FACETS):]
        if not missed:
            for status, count in zip(STATUS_SUMS, by_status, strict=True):
                counts["status"][status] = counts["status"].get(status, 0) + count
        total = sum(by_status[i] for i in shown)
        for i in missed or range(len(COLUMN_FACETS)):
            if total and row[i] is not None:
                facet = counts[COLUMN_FACETS[i]]
                facet[row[i]] = facet.get(row[i], 0) + total
    return {name: dict(sorted(((value, n) for value, n in values.items() if n),
                              key=lambda item: (-item[1], item[0])))
            for name, values in counts.items()}
