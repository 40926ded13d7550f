"""The transparency log in a SQLite store's file: its leaves and the hashes of its tiles.

Functions over a connection, so that a leaf is appended inside the transaction of the change
it records (:mod:`.sqlite_state`): a change and its leaf are on disk together or not at all.
``log_hashes`` keeps, per tile level, the leaf hashes (level 0) and the root of every full
tile of the level below (:func:`~marketplace.metadata.tlog.completed_tiles`), so that any
hash tile is one range read.
"""

from __future__ import annotations

import sqlite3

from marketplace.metadata import tlog
from marketplace.metadata.logleaf import SERVES, LogEvent

KEYS_PER_QUERY = 300  # three parameters each, well under SQLite's limit
SCHEMA = """
CREATE TABLE IF NOT EXISTS log_leaves (
    position INTEGER PRIMARY KEY, leaf BLOB NOT NULL, event TEXT NOT NULL,
    identifier TEXT, email TEXT, created TEXT);
CREATE INDEX IF NOT EXISTS log_leaves_by_key ON log_leaves (identifier, email, created, event);
CREATE TABLE IF NOT EXISTS log_hashes (
    level INTEGER NOT NULL, position INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, position)) WITHOUT ROWID;
"""


def append(db: sqlite3.Connection, event: LogEvent) -> int:
    """Append an event's leaf (inside the caller's write transaction); its index."""
    leaf = event.leaf()
    index = size(db)
    db.execute("INSERT INTO log_leaves VALUES (?,?,?,?,?,?)",
               (index, leaf, event.event, *event.key))
    db.execute("INSERT INTO log_hashes VALUES (0,?,?)", (index, tlog.leaf_hash(leaf)))
    for level, tile in tlog.completed_tiles(index + 1):
        first = tile * tlog.TILE_WIDTH
        root = tlog.root_of(hashes(db, level, first, first + tlog.TILE_WIDTH))
        db.execute("INSERT INTO log_hashes VALUES (?,?,?)", (level + 1, tile, root))
    return index


def size(db: sqlite3.Connection) -> int:
    return db.execute("SELECT coalesce(max(position) + 1, 0) FROM log_leaves").fetchone()[0]


def leaves(db: sqlite3.Connection, start: int, end: int) -> list[bytes]:
    rows = db.execute("SELECT leaf FROM log_leaves WHERE position >= ? AND position < ? "
                      "ORDER BY position", (start, end)).fetchall()
    return [bytes(row[0]) for row in rows]


def hashes(db: sqlite3.Connection, level: int, start: int, end: int) -> list[bytes]:
    rows = db.execute("SELECT hash FROM log_hashes WHERE level = ? AND position >= ? AND "
                      "position < ? ORDER BY position", (level, start, end)).fetchall()
    return [bytes(row[0]) for row in rows]


def leaf_indexes(db: sqlite3.Connection,
                 keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """The newest leaf that served each key (published or deprecated), where there is one:
    one query per ``KEYS_PER_QUERY`` keys (every answer about entries asks this for its
    page, so a query per key would cost a search page a fifth of its time)."""
    found = {}
    for first in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[first:first + KEYS_PER_QUERY]
        wanted = ", ".join("(?,?,?)" for _ in chunk)
        rows = db.execute(
            f"WITH wanted(identifier, email, created) AS (VALUES {wanted}) "
            "SELECT w.identifier, w.email, w.created, (SELECT max(position) FROM log_leaves l "
            "WHERE l.identifier=w.identifier AND l.email=w.email AND l.created=w.created AND "
            f"l.event IN ({', '.join('?' for _ in SERVES)})) FROM wanted w",
            [part for key in chunk for part in key] + list(SERVES))
        found.update(((r[0], r[1], r[2]), r[3]) for r in rows if r[3] is not None)
    return found
