"""The embedded store: one SQLite file, WAL journal, full fsync on commit, FTS5 for text.

Table ``documents`` holds the signed documents byte for byte and is the only truth; table
``entries`` and its full-text index ``entries_fts`` are derived from it and rebuilt by
:meth:`SQLiteStore.reindex`. A write is one ``BEGIN IMMEDIATE`` transaction, so an upload is
either wholly there after a crash or not at all.
"""

from __future__ import annotations

import itertools
import sqlite3
from datetime import datetime
from pathlib import Path

from marketplace.metadata.model import format_date, parse_date
from marketplace.sqlitefile import SQLiteFile
from marketplace.store.base import (
    FACET_FIELDS,
    FILTER_FIELDS,
    SORT_FIELDS,
    Conflict,
    Endorser,
    Entry,
    Page,
    Query,
    Store,
    query_words,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    identifier TEXT NOT NULL, email TEXT NOT NULL, created TEXT NOT NULL,
    document BLOB NOT NULL, PRIMARY KEY (identifier, email, created));
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, email TEXT NOT NULL,
    created TEXT NOT NULL, latest INTEGER NOT NULL, deprecated INTEGER NOT NULL,
    valid TEXT, os TEXT, os_version TEXT, os_arch TEXT, kind TEXT, type TEXT, format TEXT,
    hypervisor TEXT, tag TEXT, title TEXT, description TEXT, subject TEXT, bytes INTEGER,
    web INTEGER NOT NULL, pdisk INTEGER NOT NULL, UNIQUE (identifier, email, created));
CREATE INDEX IF NOT EXISTS entries_by_created ON entries (latest, created, deprecated, valid);
CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(
    identifier, email, subject, title, description, os, tag,
    content='entries', content_rowid='id');
"""
# One narrow covering index per filter/facet column, (latest, column, created, status
# columns): a facet count reads the index alone, and a filtered page walks it in date order
# and stops after a page of matches instead of sorting every match.
SCHEMA += "".join(f"CREATE INDEX IF NOT EXISTS entries_by_{name} ON entries "
                  f"(latest, {name}, created, deprecated, valid);\n"
                  for name in FACET_FIELDS if name != "status")
SCHEMA += ("CREATE INDEX IF NOT EXISTS entries_by_status ON entries "
           "(latest, deprecated, valid);\n")
INDEXED = ("identifier", "email", "subject", "title", "description", "os", "tag")
STATUS_SQL = ("CASE WHEN deprecated THEN 'deprecated' "
              "WHEN valid IS NOT NULL AND valid < :now THEN 'expired' ELSE 'valid' END")


class SQLiteStore(SQLiteFile, Store):
    """A store in one SQLite file; one connection per thread."""

    def __init__(self, path: Path):
        super().__init__(path, SCHEMA, "the store")

    def add(self, entry: Entry) -> bool:
        identifier, email, created = entry.key
        with self._write() as db:
            stored = db.execute("SELECT document FROM documents WHERE identifier=? AND email=? "
                                "AND created=?", entry.key).fetchone()
            if stored is not None:
                if bytes(stored[0]) == entry.document:
                    return False
                raise Conflict(f"another document is stored for {identifier} by {email} at "
                               f"{created}")
            latest = db.execute("SELECT max(created) FROM documents WHERE identifier=? AND "
                                "email=?", (identifier, email)).fetchone()[0]
            if latest is not None and latest > created:
                raise Conflict(f"a newer entry ({latest}) of {identifier} by {email} is stored; "
                               f"this one is from {created}")
            db.execute("INSERT INTO documents VALUES (?, ?, ?, ?)", (*entry.key, entry.document))
            db.execute("UPDATE entries SET latest=0 WHERE identifier=? AND email=?",
                       (identifier, email))
            _index(db, entry, latest=True)
        return True

    def get(self, identifier: str, email: str, created: datetime) -> Entry | None:
        return _entry(self._db(), (identifier, email, format_date(created)))

    def search(self, query: Query) -> Page:
        with self._read() as db:
            return _page(db, query)

    def endorsers(self) -> list[Endorser]:
        rows = self._db().execute(
            "SELECT email, max(subject), count(*), max(created) FROM entries GROUP BY email "
            "ORDER BY email").fetchall()
        return [Endorser(r[0], r[1], r[2], parse_date(r[3])) for r in rows]

    def tags(self, email: str) -> dict[str, int]:
        rows = self._db().execute("SELECT tag, count(*) FROM entries WHERE email=? AND tag IS "
                                  "NOT NULL GROUP BY tag ORDER BY tag", (email,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def remove(self, identifier: str, email: str, created: datetime) -> bool:
        key = (identifier, email, format_date(created))
        with self._write() as db:
            gone = db.execute("DELETE FROM documents WHERE identifier=? AND email=? AND "
                              "created=?", key).rowcount
            if gone:
                _rebuild_pair(db, identifier, email)
        return bool(gone)

    def reindex(self) -> int:
        with self._write() as db:
            db.execute("DELETE FROM entries")
            db.execute("INSERT INTO entries_fts(entries_fts) VALUES ('delete-all')")
            rows = db.execute("SELECT identifier, email, document FROM documents "
                              "ORDER BY identifier, email, created")
            count = 0
            for _, pair in itertools.groupby(rows, key=lambda row: (row[0], row[1])):
                documents = [bytes(row[2]) for row in pair]
                for position, data in enumerate(documents, start=1):
                    _index(db, Entry.from_document(data), latest=position == len(documents))
                count += len(documents)
        self._db().execute("ANALYZE")
        return count

    def count(self) -> int:
        return self._db().execute("SELECT count(*) FROM documents").fetchone()[0]

    def healthy(self) -> bool:
        try:
            self._db().execute("SELECT 1 FROM documents LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True



def _page(db: sqlite3.Connection, query: Query) -> Page:
    """The page's keys are chosen on the narrow index table first and only their documents
    fetched: sorting joined rows would drag every matching document through the sorter."""
    where, params = _where(query)
    order = query.sort if query.sort in SORT_FIELDS else "created"
    direction = "DESC" if query.descending else "ASC"
    rows = db.execute(
        f"SELECT e.id FROM entries e WHERE {where} "
        f"ORDER BY e.{order} {direction}, e.id {direction} LIMIT :limit OFFSET :offset",
        {**params, "limit": query.limit, "offset": query.offset}).fetchall()
    total = db.execute(f"SELECT count(*) FROM entries e WHERE {where}", params).fetchone()[0]
    facets = _facets(db, query) if query.facets else {}
    keys = [db.execute("SELECT identifier, email, created FROM entries WHERE id=?", row)
            .fetchone() for row in rows]
    return Page([_entry(db, tuple(key)) for key in keys], total, facets)


def _entry(db: sqlite3.Connection, key: tuple[str, str, str]) -> Entry | None:
    row = db.execute("SELECT document FROM documents WHERE identifier=? AND email=? AND "
                     "created=?", key).fetchone()
    return Entry.from_document(bytes(row[0])) if row else None


def _index(db: sqlite3.Connection, entry: Entry, latest: bool) -> None:
    a = entry.appliance
    locations = a.locations
    values = {
        "identifier": a.identifier, "email": entry.email, "created": entry.key[2],
        "latest": int(latest), "deprecated": int(a.deprecated is not None),
        "valid": format_date(a.valid) if a.valid else None, "os": a.os,
        "os_version": a.os_version, "os_arch": a.os_arch, "kind": a.kind, "type": a.type,
        "format": a.format, "hypervisor": a.hypervisor, "tag": a.tag, "title": a.title,
        "description": a.description, "subject": a.endorsement.subject, "bytes": a.bytes,
        "web": int(any(not u.startswith("pdisk:") for u in locations)),
        "pdisk": int(any(u.startswith("pdisk:") for u in locations)),
    }
    columns = ", ".join(values)
    cursor = db.execute(f"INSERT INTO entries ({columns}) VALUES "
                        f"({', '.join(':' + c for c in values)})", values)
    db.execute(f"INSERT INTO entries_fts (rowid, {', '.join(INDEXED)}) VALUES "
               f"(?, {', '.join('?' for _ in INDEXED)})",
               (cursor.lastrowid, *(values[c] or "" for c in INDEXED)))


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
    row = db.execute(f"SELECT {', '.join(INDEXED)} FROM entries WHERE id=?", (rowid,)).fetchone()
    db.execute(f"INSERT INTO entries_fts (entries_fts, rowid, {', '.join(INDEXED)}) VALUES "
               f"('delete', ?, {', '.join('?' for _ in INDEXED)})",
               (rowid, *(v or "" for v in row)))
    db.execute("DELETE FROM entries WHERE id=?", (rowid,))


def _where(query: Query, without: str | None = None) -> tuple[str, dict]:
    """SQL conditions and parameters for a query, leaving out the filter named ``without``."""
    clauses, params = [], {"now": format_date(query.now)}
    if query.latest_only and query.created is None:
        clauses.append("e.latest = 1")
    for name, value in query.filters.items():
        if name in FILTER_FIELDS and value and name != without:
            clauses.append(f"e.{name} = :f_{name}")
            params[f"f_{name}"] = value
    if query.status != "all" and without != "status":
        clauses.append(f"{STATUS_SQL} = :status")
        params["status"] = query.status
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
    """Counts per value of each facet, each counted without its own filter."""
    facets = {"status": _status_counts(db, query)}
    for name in FACET_FIELDS:
        if name == "status":
            continue
        where, params = _where(query, without=name)
        # With another filter on, "+" keeps SQLite from grouping along this column's index
        # (a walk over every row) and lets it use the filter's index instead.
        group = f"+e.{name}" if _filtered(query, name) else f"e.{name}"
        rows = db.execute(f"SELECT {group} AS value, count(*) FROM entries e WHERE {where} "
                          "GROUP BY value ORDER BY count(*) DESC, value", params).fetchall()
        facets[name] = {r[0]: r[1] for r in rows if r[0] is not None}
    return facets


def _filtered(query: Query, facet: str) -> bool:
    return any(value and name != facet for name, value in query.filters.items())


def _status_counts(db: sqlite3.Connection, query: Query) -> dict[str, int]:
    """The status facet in one pass: three sums instead of grouping on an expression."""
    where, params = _where(query, without="status")
    row = db.execute(
        "SELECT sum(deprecated != 0), sum(deprecated = 0 AND valid IS NOT NULL AND valid < :now),"
        " sum(deprecated = 0 AND (valid IS NULL OR valid >= :now)) FROM entries e "
        f"WHERE {where}", params).fetchone()
    counts = dict(zip(("deprecated", "expired", "valid"), row, strict=True))
    return dict(sorted(((k, v) for k, v in counts.items() if v),
                       key=lambda item: (-item[1], item[0])))


