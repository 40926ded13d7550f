"""The leaf index of many entries at once (a listing's page, a streamed catalogue) is read
in a few queries, and is the newest serving leaf of each key, whatever the number of keys."""

from __future__ import annotations

from marketplace.metadata.logleaf import LogEvent
from marketplace.store import sqlite_log
from marketplace.store.sqlite import SQLiteStore

WHEN = "2026-01-01T00:00:00Z"


def test_leaf_indexes_over_several_queries_of_keys(tmp_path):
    store = SQLiteStore(tmp_path / "marketplace.db")
    keys = [(f"A{n:026d}", "jane@example.org", WHEN) for n in range(2 * 300 + 7)]
    try:
        with store.state._write() as db:  # leaves alone: the function under test reads them
            for key in keys:
                sqlite_log.append(db, LogEvent("published", WHEN, *key, document_sha256="0"))
            sqlite_log.append(db, LogEvent("removed", WHEN, *keys[5]))
            sqlite_log.append(db, LogEvent("deprecated", WHEN, *keys[6], document_sha256="1"))
        asked = [*keys, ("B" * 27, "nobody@example.org", WHEN)]
        found = store.state.leaf_indexes(asked)
    finally:
        store.close()
    assert len(found) == len(keys)
    assert found[keys[0]] == 0 and found[keys[-1]] == len(keys) - 1
    assert found[keys[5]] == 5  # a removal is no serving leaf: the one before it counts
    assert found[keys[6]] == len(keys) + 1
