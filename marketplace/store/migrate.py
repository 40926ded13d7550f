"""Moving a site's entries from the embedded SQLite store to Elasticsearch.

The SQLite file is opened read-only and only its ``documents`` table (the truth) is read,
with each entry's row id as its order of arrival (ties in sorting stay as they were). The
target derives its own indexes from the documents. Running it again adds nothing twice: an
entry already there with the same bytes is counted as such, one with different bytes is a
Conflict.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from marketplace.store.base import Entry
from marketplace.store.elastic import ElasticStore

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

    def as_dict(self) -> dict:
        return {"source": self.source, "entries": self.entries, "new": self.new,
                "already_there": self.already_there, "target_total": self.target_total,
                "seconds": round(self.seconds, 2)}


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


def migrate(path: Path, target: ElasticStore,
            progress: Callable[[int, int], None] | None = None) -> Migration:
    """Copy every entry of the SQLite store at ``path`` into ``target``."""
    import time
    started = time.perf_counter()
    total = count_sqlite(path)
    new, same = target.import_entries(
        read_sqlite(path), (lambda done: progress(done, total)) if progress else None)
    if new + same != total:
        raise RuntimeError(f"read {new + same} entries of {total}: the source changed "
                           "during the migration; run it again")
    return Migration(str(path), total, new, same, target.count(),
                     time.perf_counter() - started)
