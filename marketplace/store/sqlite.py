"""The embedded store: one SQLite file, WAL journal, full fsync on commit, FTS5 for text.

Table ``documents`` holds the signed documents byte for byte and is the only truth; table
``entries``, its full-text indexes and the ``tally`` of its counts are derived from it and
rebuilt by :meth:`SQLiteStore.reindex`, or on opening a file whose derived tables have an
older shape. Searches count afresh from the file every time, so that every process and
server gives the same totals and facets.
A write is one ``BEGIN IMMEDIATE`` transaction, so an upload is
either wholly there after a crash or not at all.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sqlite3
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
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
    StoreError,
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
CREATE TABLE IF NOT EXISTS search_stats (
    field TEXT NOT NULL, value TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (field, value));
CREATE TRIGGER IF NOT EXISTS document_added AFTER INSERT ON documents
    BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER IF NOT EXISTS document_removed AFTER DELETE ON documents
    BEGIN UPDATE generation SET value = value + 1; END;
"""
# The derived tables. `summary` is the entry read from its document, as JSON, so that a page
# of results needs no XML parsing. An entry's ``id`` orders it by date: its ``created``
# second shifted left by ORDINAL_BITS, plus its place among the entries of that second (see
# _ordinal), so that "newest first" is the order of ``id`` in every index and in the
# full-text index's rowids.
ORDINAL_BITS = 20
# What a query's filters, location and status test, as words of the full-text index's
# ``facts`` column beside the text (see _facts_sql): one full-text query then finds, counts
# and pages free text with filters, newest first, without reading the matching rows.
# ``gone`` marks an entry whose validity ended before the moment kept in table ``expiry``.
FACTS = "facts"


def fact(name: str, value: str) -> str:
    """The word of the ``facts`` column that says filter field ``name`` has ``value``:
    the field's place and the value's UTF-8 bytes in hexadecimal, so that any value is one
    word, and none can be taken for another or for free text."""
    return f"f{FILTER_FIELDS.index(name)}v{value.encode().hex()}"


# The words of the ``facts`` column that say an entry's status and locations, and when.
FLAGS = (("NOT latest", "old"), ("deprecated", "deprecated"), ("gone", "gone"),
         ("web", "web"), ("pdisk", "pdisk"))
FACT_WORD = re.compile("|".join([r"f[0-9]+v[0-9a-f]*", *(word for _, word in FLAGS)]))


def _facts_sql() -> str:
    """The ``facts`` column as SQL over a row (the same words as :func:`fact`)."""
    flags = [f"CASE WHEN {flag} THEN '{word} ' ELSE '' END" for flag, word in FLAGS]
    values = [f"CASE WHEN {name} IS NULL THEN '' ELSE 'f{i}v' || hex({name}) || ' ' END"
              for i, name in enumerate(FILTER_FIELDS)]
    return " || ".join(flags + values)


INDEX = [f"""
CREATE TABLE entries (
    id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, email TEXT NOT NULL,
    created TEXT NOT NULL, latest INTEGER NOT NULL, deprecated INTEGER NOT NULL,
    valid TEXT, gone INTEGER NOT NULL, os TEXT, os_version TEXT, os_arch TEXT, kind TEXT,
    type TEXT, format TEXT, hypervisor TEXT, tag TEXT, title TEXT, description TEXT,
    subject TEXT, bytes INTEGER, web INTEGER NOT NULL, pdisk INTEGER NOT NULL,
    summary TEXT NOT NULL, {FACTS} TEXT GENERATED ALWAYS AS ({_facts_sql()}) VIRTUAL,
    UNIQUE (identifier, email, created))""",
         "CREATE TABLE expiry (moment TEXT NOT NULL)",
         "INSERT INTO expiry VALUES ('')",
         "CREATE INDEX entries_by_expiry ON entries (valid)",
         "CREATE INDEX entries_by_status ON entries (latest, deprecated, valid)"]
# Two full-text indexes: ``entries_fts`` of every entry, and ``shown_fts`` of the entries a
# listing shows by default (latest and valid: SHOWN), so that the most common search needs
# no NOT, which costs a seek per match (bench/RESULTS.md, "Fresh counts").
FULL_TEXT = ("entries_fts", "shown_fts")
SHOWN = "{row}.latest AND NOT {row}.deprecated AND NOT {row}.gone"
INDEX += [f"CREATE VIRTUAL TABLE {table} USING fts5({', '.join(TEXT_FIELDS)}, {FACTS}, "
          "content='entries', content_rowid='id')" for table in FULL_TEXT]
# The vocabulary of ``entries_fts`` (every token of the text and of every entry shown or
# not), declared on each connection (temp schema: nothing in the file), to learn whether a
# word of a query is a prefix of another token (see _text_match). A word of ASCII letters
# and digits is one token of the index's tokenizer (unicode61 only folds its case).
TERMS = "temp.entries_terms"
VOCABULARY = f"CREATE VIRTUAL TABLE IF NOT EXISTS {TERMS} USING fts5vocab(main, entries_fts, row)"
PLAIN_WORD = re.compile(r"[A-Za-z0-9]+")
COLUMN_FACETS = tuple(name for name in FACET_FIELDS if name != "status")
# One narrow covering index per sort field, (latest, field, id, status columns): a page in
# that order, or newest first with a filter on that field, walks it and stops after a page
# of matches instead of sorting every match. A facet field's index also holds the sort
# fields that are not facets (the facets are all in entries_by_facets), so that when a
# walk in another order is cut short (see _ordered_page) the filter's matches are sorted
# without reading their rows: 1 ms instead of 14 for 10,000 matches.
UNFACETED_ORDERS = tuple(name for name in SORT_FIELDS
                         if name not in (*COLUMN_FACETS, "created", "valid"))


def _sort_index(name: str) -> str:
    columns = ["latest", name, "id", "deprecated", *(["valid"] if name != "valid" else []),
               *(UNFACETED_ORDERS if name in COLUMN_FACETS else ())]
    return f"CREATE INDEX entries_by_{name} ON entries ({', '.join(columns)})"


INDEX += [_sort_index(name) for name in SORT_FIELDS if name != "created"]
INDEX += ["CREATE INDEX entries_by_created ON entries (latest, id, deprecated, valid)"]
# All facet columns in one index: the facet counts walk it once (see _facets).
INDEX += [f"CREATE INDEX entries_by_facets ON entries (latest, {', '.join(COLUMN_FACETS)}, "
          "deprecated, valid, created)"]
# Steps of SQLite's engine a page in another order may take walking that order's index
# before it finds and sorts every match instead (see _ordered_page): 5,000 are under a
# millisecond on the machine of bench/RESULTS.md, a few hundred entries, as long as sorting
# a filter's 10,000 matches on its covering index takes; free text adds the steps that
# collect its matches (~5 each) for the walk to test.
# The most other values a filter may have to be asked as none of them (see _unlike).
MAX_OTHERS = 8
WALK_STEPS = 5_000
TEXT_STEPS = 75_000
# How many latest entries have each combination of facet values, location and status
# words: the totals and facet counts of a query without text or dates are sums over it
# (bench/RESULTS.md, "Fresh counts"), kept exact by the triggers below in the transaction
# of every write, so that every process and server reads the same counts.
TALLIED = (*COLUMN_FACETS, "web", "pdisk", "deprecated", "gone")
INDEX += [f"CREATE TABLE tally (key TEXT PRIMARY KEY, {', '.join(TALLIED)}, n INTEGER NOT NULL)"]
INDEX += [f"CREATE INDEX tally_by_{name} ON tally ({name}, deprecated, gone, n)"
          for name in COLUMN_FACETS]
TALLY_STATUS = {"deprecated": "deprecated != 0", "expired": "deprecated = 0 AND gone != 0",
                "valid": "deprecated = 0 AND gone = 0"}
STATUS_OF_TALLY = ("CASE WHEN deprecated THEN 'deprecated' WHEN gone THEN 'expired' "
                   "ELSE 'valid' END")


def _fts_row(row: str) -> str:
    return ", ".join(f"coalesce({row}.{name}, '')" for name in (*TEXT_FIELDS, FACTS))


def _fts_added(row: str) -> str:
    return "".join(f"INSERT INTO {table} (rowid, {', '.join((*TEXT_FIELDS, FACTS))}) "
                   f"SELECT {row}.id, {_fts_row(row)} WHERE {when};"
                   for table, when in zip(FULL_TEXT, ("1", SHOWN.format(row=row)), strict=True))


def _fts_removed(row: str) -> str:
    return "".join(f"INSERT INTO {table} ({table}, rowid, {', '.join((*TEXT_FIELDS, FACTS))}) "
                   f"SELECT 'delete', {row}.id, {_fts_row(row)} WHERE {when};"
                   for table, when in zip(FULL_TEXT, ("1", SHOWN.format(row=row)), strict=True))


def _tally_key(row: str) -> str:
    return f"json_array({', '.join(f'{row}.{name}' for name in TALLIED)})"


def _tallied(row: str) -> str:
    return (f"INSERT INTO tally SELECT {_tally_key(row)}, "
            f"{', '.join(f'{row}.{name}' for name in TALLIED)}, 1 WHERE {row}.latest "
            "ON CONFLICT (key) DO UPDATE SET n = n + 1;")


def _untallied(row: str) -> str:
    return (f"UPDATE tally SET n = n - 1 WHERE {row}.latest AND key = {_tally_key(row)}; "
            f"DELETE FROM tally WHERE {row}.latest AND key = {_tally_key(row)} AND n = 0;")


# The full-text index and the tally follow the rows they are derived from, whoever writes
# them (an entry's row changes only when it stops being the latest or its validity ends).
INDEX += [f"CREATE TRIGGER entries_indexed AFTER INSERT ON entries BEGIN "
          f"{_fts_added('NEW')} {_tallied('NEW')} END",
          f"CREATE TRIGGER entries_unindexed AFTER DELETE ON entries BEGIN "
          f"{_fts_removed('OLD')} {_untallied('OLD')} END",
          "CREATE TRIGGER entries_reindexed AFTER UPDATE OF latest, gone ON entries "
          "WHEN OLD.latest IS NOT NEW.latest OR OLD.gone IS NOT NEW.gone BEGIN "
          f"{_fts_removed('OLD')} {_fts_added('NEW')} {_untallied('OLD')} {_tallied('NEW')} END"]


DERIVED = (*FULL_TEXT, "entries", "expiry", "tally")
# The shape of the derived tables, kept in the file's user_version: a store whose index has
# another shape (made by another version) gets it rebuilt from the documents when opened.
INDEX_VERSION = 4
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
        self._state = SQLiteState(self, add_entry, take_out, stored_documents)
        if self._db().execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
            self._rebuild_index(only_if_outdated=True)

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, with the vocabulary of the full-text index declared
        when it is new (a connection that cannot declare it searches by prefixes)."""
        fresh = getattr(self._local, "db", None) is None
        db = super()._db()
        if fresh:
            try:
                db.execute(VOCABULARY)
            except sqlite3.Error as exc:
                log.debug("%s: no vocabulary on this connection: %s", self.path, exc)
        return db

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
        """Counted afresh from the file at every call: every process and server sees the
        same totals and facets, and no count outlives a change."""
        self._mark_expired(query.now)
        with self._read() as db:
            return _page(db, query)

    def _mark_expired(self, now: datetime) -> None:
        """Mark ``gone`` the entries whose validity ended since the ``expiry`` moment, when
        some did and ``now`` is between it and the present: the full-text indexes and the
        tally then say their status again (see _facts_hold), for this search and the next.
        Searches are right without the mark (they count over the rows), so a store that
        cannot be written now (busy, read-only) is only slower."""
        moment = format_date(now)
        if (not _expiry(self._db()) < moment <= format_date(datetime.now(UTC))
                or _facts_hold(self._db(), moment)):
            return
        try:
            with self._write() as db:
                since = _expiry(db)
                if since < moment and not _facts_hold(db, moment):
                    db.execute("UPDATE entries SET gone = 1 WHERE valid >= ? AND valid < ?",
                               (since, moment))
                    db.execute("UPDATE expiry SET moment = ?", (moment,))
        except (StoreError, sqlite3.Error) as exc:
            log.debug("%s: ended validities not marked: %s", self.path, exc)

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

    def init(self, migrate: bool = True) -> int:
        """What ``init-store`` does to a store (``serve`` passes ``migrate=False``, so that
        servers starting at once never rewrite an index side by side): an index of an older
        shape was rebuilt when the file was opened; ``migrate`` also merges the segments
        of the full-text indexes into one each. Uploads leave them in a few dozen segments
        (FTS5 merges by levels), and a search seeks each of its words in every segment:
        merged, free text with two filters took 1.25 ms of the store's CPU instead of 1.95
        at 100,000 entries (1.4 s to merge). It also counts the values of the facets for
        search_stats (see _unlike). How many entries the store holds."""
        if migrate:
            with self._write() as db:
                _merge_full_text(db)
                _count_values(db)
        return self.count()

    def _rebuild_index(self, only_if_outdated: bool) -> int:
        """Drop the derived tables and make them again from the documents."""
        with self._write() as db:
            if only_if_outdated and (db.execute("PRAGMA user_version").fetchone()[0]
                                     == INDEX_VERSION):
                return self.count()  # another process rebuilt it meanwhile
            if only_if_outdated and _has_table(db, "entries"):
                log.warning("%s: rebuilding the search index from the stored documents "
                            "(it was made by another version)", self.path)
            for table in DERIVED:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in INDEX:
                db.execute(statement)
            db.execute("UPDATE expiry SET moment = ?", (format_date(datetime.now(UTC)),))
            rows = db.execute("SELECT identifier, email, document FROM documents "
                              "ORDER BY identifier, email, created")
            count = 0
            for _, pair in itertools.groupby(rows, key=lambda row: (row[0], row[1])):
                documents = [bytes(row[2]) for row in pair]
                for position, data in enumerate(documents, start=1):
                    _index(db, Entry.from_document(data), latest=position == len(documents))
                count += len(documents)
            _merge_full_text(db)
            _count_values(db)
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


def _merge_full_text(db: sqlite3.Connection) -> None:
    """Each full-text index in one segment (FTS5's ``optimize``; see SQLiteStore.init)."""
    for table in FULL_TEXT:
        db.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")


def _count_values(db: sqlite3.Connection) -> None:
    """Keep in ``search_stats`` how many shown entries have each value of each tallied
    facet, as SQLite's ANALYZE keeps its statistics: only for choosing how to ask the
    full-text index (see _unlike), so a count made before later writes is only slower."""
    db.execute("DELETE FROM search_stats")
    for name in COLUMN_FACETS:
        db.execute(f"INSERT INTO search_stats SELECT ?, {name}, sum(n) FROM tally WHERE "
                   f"{TALLY_STATUS['valid']} AND {name} IS NOT NULL GROUP BY {name}", (name,))


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is not None


def _page(db: sqlite3.Connection, query: Query) -> Page:
    """One page and its counts, made afresh from three derived structures, whichever answers
    without reading every match: the tally (a query without text or dates), the full-text
    index (free text with filters and status, newest first: see _match) and the b-tree
    indexes. A page's ids are chosen first and only their rows then fetched: sorting
    joined rows would drag every matching document through the sorter."""
    text = _text_match(db, query.q or "")
    facts = query.status in ("all", "deprecated") or _facts_hold(db, format_date(query.now))
    tallied = _tally_where(query) if facts else None
    match = _match(query, text, _unlike(db, query) if text else {}) if facts else None
    searched = match or ("entries_fts", text)
    where, params = _where(query, match=searched)
    if tallied:
        total = db.execute(f"SELECT coalesce(sum(n), 0) FROM tally WHERE {tallied[0]}",
                           tallied[1]).fetchone()[0]
    elif match:
        total = db.execute(f"SELECT count(*) FROM {match[0]} WHERE {match[0]} MATCH ?",
                           (match[1],)).fetchone()[0]
    else:
        total = db.execute(f"SELECT count(*) FROM entries e WHERE {where}",
                           params).fetchone()[0]
    order = query.sort if query.sort in SORT_FIELDS else "created"
    direction = "DESC" if query.descending else "ASC"
    if match and order == "created":
        rows = db.execute(f"SELECT rowid FROM {match[0]} WHERE {match[0]} MATCH ? ORDER BY "
                          f"rowid {direction} LIMIT ? OFFSET ?",
                          (match[1], query.limit, query.offset)).fetchall()
    else:
        rows = _ordered_page(db, query, order, direction, searched)
    ids = [row[0] for row in rows]
    found = db.execute(
        "SELECT e.id, d.document, e.summary FROM entries e JOIN documents d USING "
        f"(identifier, email, created) WHERE e.id IN ({', '.join('?' for _ in ids)})", ids)
    entries = {row[0]: Entry.from_dict(bytes(row[1]), json.loads(row[2])) for row in found}
    return Page([entries[rowid] for rowid in ids], total, _counted_facets(db, query, facts))


def _ordered_page(db: sqlite3.Connection, query: Query, order: str, direction: str,
                  match: tuple[str, str] | None) -> list[tuple]:
    """The page's ids on the b-tree indexes. Free text, or filters in another order than
    their index's, first walk the index of the order, testing each latest entry against the
    query (the text's matches are collected once), for at most WALK_STEPS steps of SQLite's
    engine: with matches spread over the order a page is found within a few hundred
    entries. Only a walk cut short (few matches, or matches bunched at the far end of the
    order: titles of one system in title order) gives way to finding every match and
    sorting it. SQLite's planner, knowing neither the number of matches nor their spread,
    would otherwise walk the whole index, or sort every match of a common word. With a
    full-text ``match`` (_match), its rows are the text's matches to test or sort: those
    that pass the filters and status, not every entry with the words."""
    ordering = ("" if order == "created" else f"e.{order} {direction}, ") + f"e.id {direction}"
    paging = {"limit": query.limit, "offset": query.offset}
    conditions = (query_words(query.q or "") or query.location != "all"
                  or any(query.filters.values()) or query.valid_from or query.valid_to
                  or query.created_from or query.created_to)
    if (query.latest_only and query.created is None and conditions
            and (order != "created" or query.q)):
        where, params = _where(query, walk=True, match=match)
        steps = WALK_STEPS + (TEXT_STEPS if query_words(query.q or "") else 0)
        db.set_progress_handler(lambda: 1, steps)  # a non-zero answer interrupts
        try:
            return db.execute(f"SELECT e.id FROM entries e INDEXED BY entries_by_{order} "
                              f"WHERE {where} ORDER BY {ordering} LIMIT :limit OFFSET :offset",
                              {**params, **paging}).fetchall()
        except sqlite3.OperationalError:
            pass  # the walk was cut short; the read transaction goes on
        finally:
            db.set_progress_handler(None, 0)
    where, params = _where(query, match=match)
    sort = ordering if order == "created" else "+" + ordering  # "+": sort, do not walk
    return db.execute(f"SELECT e.id FROM entries e WHERE {where} ORDER BY {sort} "
                      "LIMIT :limit OFFSET :offset", {**params, **paging}).fetchall()


def _tally_where(query: Query, without: Collection[str] = ()) -> tuple[str, list] | None:
    """The query's conditions on the tally, leaving out those named ``without``; None when
    it has a condition the tally cannot say (text, dates, a filter on another field, or all
    versions of an entry). The ``gone`` words must hold at the query's moment (_facts_hold)
    when its status is asked."""
    bounds = (query.created, query.created_from, query.created_to, query.valid_from,
              query.valid_to)
    if (not query.latest_only or any(bound is not None for bound in bounds)
            or query_words(query.q or "")):
        return None
    clauses, params = [], []
    for name, value in query.filters.items():
        if name in FILTER_FIELDS and value and name not in without:
            if name not in COLUMN_FACETS:
                return None
            clauses.append(f"{name} = ?")
            params.append(value)
    if query.location in ("web", "pdisk"):
        clauses.append(f"{query.location} = 1")
    if query.status != "all" and "status" not in without:
        clauses.append(TALLY_STATUS[query.status])
    return " AND ".join(clauses) or "1", params


def _counted_facets(db: sqlite3.Connection, query: Query,
                    facts: bool) -> dict[str, dict[str, int]]:
    """The facet counts when asked: summed from the tally when the query's other conditions
    allow it, else counted over the entries (_facets)."""
    if not query.facets:
        return {}
    if _tally_where(query, without=FACET_FIELDS) is None or not (
            facts or _facts_hold(db, format_date(query.now))):
        return _facets(db, query)
    counts = {}
    for name in FACET_FIELDS:
        where, params = _tally_where(query, without=(name,))
        if name == "status":
            rows = db.execute(f"SELECT {STATUS_OF_TALLY}, sum(n) FROM tally WHERE {where} "
                              "GROUP BY 1", params).fetchall()
        else:
            rows = db.execute(f"SELECT {name}, sum(n) FROM tally WHERE {where} AND {name} "
                              f"IS NOT NULL GROUP BY {name}", params).fetchall()
        counts[name] = dict(sorted(((value, n) for value, n in rows if n),
                                   key=lambda item: (-item[1], item[0])))
    return counts


def _expiry(db: sqlite3.Connection) -> str:
    """The moment before which every entry whose validity ended is marked ``gone``."""
    return db.execute("SELECT moment FROM expiry").fetchone()[0]


def _facts_hold(db: sqlite3.Connection, moment: str) -> bool:
    """Whether the ``gone`` words say every entry's status at ``moment``: no validity
    ends between it and the ``expiry`` moment (one probe of the ``valid`` index)."""
    since = _expiry(db)
    low, high = min(since, moment), max(since, moment)
    return db.execute("SELECT 1 FROM entries WHERE valid >= ? AND valid < ? LIMIT 1",
                      (low, high)).fetchone() is None


def _match(query: Query, text: str, unlike: dict[str, list[str]]) -> tuple[str, str] | None:
    """Free text (``text``, the query's words as an FTS5 query) with the query's filters and
    status as one FTS5 query on the text columns and the ``facts`` words, and the full-text
    index to ask: ``shown_fts`` when the query lists what is shown by default (its status
    then needs no words; a filter named in ``unlike`` is asked there as none of the other
    values it lists, see _unlike). None without text (the b-tree indexes and the tally
    answer those faster) or with a date bound (the full-text indexes have no dates)."""
    bounds = (query.created, query.created_from, query.created_to, query.valid_from,
              query.valid_to)
    if not text or any(bound is not None for bound in bounds):
        return None
    shown = query.latest_only and query.status == "valid"
    words = [fact(name, value) for name, value in query.filters.items()
             if name in FILTER_FIELDS and value and not (shown and name in unlike)]
    if query.location in ("web", "pdisk"):
        words.append(query.location)
    found = " AND ".join([text, *([f"{FACTS} : ({' '.join(words)})"] if words else [])])
    if shown:
        others = [fact(name, value) for name, values in unlike.items() for value in values]
        return "shown_fts", (f"({found}) NOT {FACTS} : ({' OR '.join(others)})" if others
                             else found)
    hidden = ["old"] if query.latest_only else []
    if query.status == "deprecated":
        found += f" AND {FACTS} : deprecated"
    elif query.status == "expired":
        found += f" AND {FACTS} : gone"
        hidden.append("deprecated")
    elif query.status == "valid":
        hidden += ["deprecated", "gone"]
    return "entries_fts", (f"({found}) NOT {FACTS} : ({' OR '.join(hidden)})" if hidden
                           else found)


def _unlike(db: sqlite3.Connection, query: Query) -> dict[str, list[str]]:
    """The filters of ``query`` better asked of ``shown_fts`` as none of the field's other
    values, with those values: a value most shown entries have (``search_stats``: 70 % of
    the entries are x86_64) has a long word list to read, its few other values short
    ones (0.63 ms instead of 0.82 per free text search with two filters at 100,000
    entries). The same entries only while every latest entry has a value of the field and
    there are no more than MAX_OTHERS others: both read from the tally, in this search's
    snapshot."""
    asked = {name: value for name, value in query.filters.items()
             if name in COLUMN_FACETS and value}
    if not asked:
        return {}
    counts: dict[str, dict[str, int]] = {}
    for name, value, n in db.execute(
            f"SELECT field, value, n FROM search_stats WHERE field IN "
            f"({', '.join('?' for _ in asked)})", list(asked)):
        counts.setdefault(name, {})[value] = n
    unlike = {}
    for name, value in asked.items():
        seen = counts.get(name, {})
        if 2 * seen.get(value, 0) <= sum(seen.values()) or db.execute(
                f"SELECT 1 FROM tally WHERE {name} IS NULL LIMIT 1").fetchone():
            continue
        others = [row[0] for row in db.execute(  # no WHERE: it would stop the skip-scan
            f"SELECT DISTINCT {name} FROM tally LIMIT ?", (MAX_OTHERS + 2,)) if row[0] != value]
        if len(others) <= MAX_OTHERS:
            unlike[name] = others
    return unlike


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
    as JSON in ``summary``; the triggers of INDEX add it to ``entries_fts``."""
    fields = indexed_fields(entry)
    values = {**fields, "latest": latest, "id": _ordinal(db, entry.created),
              "gone": fields["valid"] is not None and fields["valid"] < _expiry(db),
              "summary": json.dumps(entry.as_dict(), ensure_ascii=False,
                                    separators=(",", ":"))}
    db.execute(f"INSERT INTO entries ({', '.join(values)}) VALUES "
               f"({', '.join(':' + c for c in values)})", values)


def _ordinal(db: sqlite3.Connection, created: datetime) -> int:
    """The ``id`` of a new entry dated ``created``: after every entry of an earlier second
    and, within its second, after the entries indexed before it (ties keep the order of
    arrival)."""
    first = int(created.timestamp()) << ORDINAL_BITS
    last = db.execute("SELECT max(id) FROM entries WHERE id >= ? AND id < ?",
                      (first, first + (1 << ORDINAL_BITS))).fetchone()[0]
    if last == first + (1 << ORDINAL_BITS) - 1:
        raise StoreError(f"more than {1 << ORDINAL_BITS} entries are dated "
                         f"{format_date(created)}")
    return first if last is None else last + 1


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
    db.execute("DELETE FROM entries WHERE id=?", (rowid,))


def _where(query: Query, without: Collection[str] = (), walk: bool = False,
           match: tuple[str, str] | None = None) -> tuple[str, dict]:
    """SQL conditions and parameters for a query, leaving out the filters named ``without``;
    the text's matches are those of the full-text ``match`` when given (_match), and with
    ``walk`` they are only tested, never looked up by id (see _ordered_page)."""
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
    table, text = match or ("entries_fts", fts_query(query.q or ""))
    if text:
        clauses.append(("+" if walk else "")
                       + f"e.id IN (SELECT rowid FROM {table} WHERE {table} MATCH :text)")
        params["text"] = text
    return " AND ".join(clauses) or "1", params


def fts_query(text: str, whole: Collection[str] = ()) -> str:
    """Free text as an FTS5 query on the text columns (not the ``facts`` words): every word
    must match, as a prefix; no operators pass. The words in ``whole`` (of letters and
    digits only) are asked as whole tokens, which is the same when no other token of the
    index begins with them (_text_match) and spares FTS5 merging a doclist per token a
    prefix expands to; those that no word of the ``facts`` column can be (FACT_WORD) are
    asked in any column, which spares reading where each match has them."""
    words = query_words(text)
    anywhere = [w for w in words if w in whole and not FACT_WORD.fullmatch(w.lower())]
    kept = [w for w in words if w not in anywhere]
    return " AND ".join(
        ['"' + w.replace('"', "") + '"' for w in anywhere]
        + ([f"{{{' '.join(TEXT_FIELDS)}}} : ("
            + " AND ".join('"' + w.replace('"', "") + ('"' if w in whole else '"*')
                           for w in kept) + ")"] if kept else []))


def _text_match(db: sqlite3.Connection, text: str) -> str:
    """The query's free text as an FTS5 query (:func:`fts_query`), with each word that is
    one token of letters and digits and that no other token of the index extends asked as
    a whole token: a probe of the index's vocabulary (TERMS) for a token beginning with
    the word and one more character (every character of a token sorts at or after "0")
    costs a seek, where the prefix would read and merge the doclists of every segment."""
    try:
        whole = {word for word in query_words(text) if PLAIN_WORD.fullmatch(word)
                 and db.execute(f"SELECT 1 FROM {TERMS} WHERE term >= ? AND term < ? LIMIT 1",
                                (word.lower() + "0", word.lower() + "\U0010ffff")
                                ).fetchone() is None}
    except sqlite3.OperationalError:  # no vocabulary on this connection: prefixes are right
        whole = set()
    return fts_query(text, whole)


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
