"""Search on every backend against the two promises its speed must not bend: counts are made
afresh for every query (a write through one store object is counted by another on the same
file or cluster at its next query: nothing is kept per process), and free text with filters,
status and any sort gives the same pages as a plain sort of every match (a brute-force
oracle over the entries the test stored)."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pytest

from marketplace.metadata.model import format_date
from marketplace.store.base import (
    FACET_FIELDS,
    SORT_FIELDS,
    TEXT_FIELDS,
    Query,
    indexed_fields,
)
from marketplace.store.sqlite import SQLiteStore
from tests.store.conftest import moment, open_backend

WORDS = ("zebra", "zenith", "nginx", "nightly", "mpi", "monitor")


@pytest.fixture
def other(request, backend, tmp_path, store):
    """A second store object on the same file or index prefix as ``store`` (another
    gunicorn worker, or another server)."""
    opened = open_backend(request, backend, tmp_path)
    yield opened
    opened.close()


COUNTED = [Query(), Query(filters={"os": "debian"}), Query(q="zebra"),
           Query(q="zebra", filters={"os": "debian"}), Query(q="zeb", sort="title"),
           Query(filters={"os": "debian"}, sort="title", descending=False)]


def counts(store, now) -> list[tuple[int, dict]]:
    """The total and the os and status facets of every query of COUNTED at ``now``."""
    pages = [store.search(Query(**{**vars(q), "now": now, "facets": True})) for q in COUNTED]
    return [(p.total, p.facets["os"], p.facets["status"]) for p in pages]


def test_a_write_through_one_store_is_counted_by_another_at_its_next_query(store, other, add,
                                                                           make_entry):
    now = moment()
    add(os="debian", description="zebra", when=moment(2))
    add(os="ubuntu", description="zebra", when=moment(1))
    before = counts(store, now)
    assert [total for total, *_ in before] == [2, 1, 2, 1, 2, 1]
    added = make_entry(os="debian", description="zebra crossing")
    assert other.add(added)
    after = counts(store, now)
    assert [total for total, *_ in after] == [3, 2, 3, 2, 3, 2]
    assert after[0][1] == {"debian": 2, "ubuntu": 1} and after[0][2] == {"valid": 3}
    assert other.remove(added.identifier, added.email, added.created)
    assert counts(store, now) == before


def test_a_new_version_moves_the_counts_from_the_old_one(store, other, add, make_entry):
    now = moment()
    add(image=b"one image", os="debian", description="zebra", when=moment(2))
    newer = make_entry(image=b"one image", os="ubuntu", description="nginx", when=moment(1))
    assert other.add(newer)
    page = store.search(Query(q="zebra", now=now, facets=True))
    assert page.total == 0 and page.facets["os"] == {}
    page = store.search(Query(q="nginx", filters={"os": "ubuntu"}, now=now))
    assert [e.key for e in page.entries] == [newer.key] and page.total == 1


# --- the oracle -------------------------------------------------------------------------


def status(fields: dict, now: str) -> str:
    if fields["deprecated"]:
        return "deprecated"
    return "expired" if fields["valid"] is not None and fields["valid"] < now else "valid"


def text_matches(fields: dict, words: list[str]) -> bool:
    """Every word is a prefix of a letter-and-digit run of some text field."""
    runs = [run for name in TEXT_FIELDS if fields[name]
            for run in re.findall(r"[a-z0-9]+", fields[name].lower())]
    return all(any(run.startswith(word) for run in runs) for word in words)


def expected(stored: list, query: Query) -> list[tuple]:
    """The keys a query must list, in order: every match, sorted by the sort field (missing
    values first ascending), then by date, then by arrival; all reversed when descending."""
    newest = {}
    for arrival, entry in enumerate(stored):
        fields = indexed_fields(entry)
        pair = (fields["identifier"], fields["email"])
        if pair not in newest or newest[pair][1]["created"] < fields["created"]:
            newest[pair] = (arrival, fields)
    now = format_date(query.now)
    words = (query.q or "").lower().split()
    found = [(arrival, f) for arrival, f in newest.values()
             if all(f[name] == value for name, value in query.filters.items())
             and query.status in ("all", status(f, now)) and text_matches(f, words)]

    def order(item):
        arrival, fields = item
        value = fields[query.sort]
        return (value is not None, value if value is not None else 0, fields["created"],
                arrival)

    found.sort(key=order, reverse=query.descending)
    return [(f["identifier"], f["email"], f["created"]) for _, f in found]


@pytest.fixture
def catalogue(store, make_entry, ec_signer):
    """Thirty entries of two endorsers, with ties of date and of every sorted field, some
    expired, deprecated or replaced by a newer version, added out of date order; the
    entries in order of arrival and the moment they are judged at."""
    now = moment()
    stored = []
    for n in range(30):
        fields = {
            "os": ("ubuntu", "debian", "centos")[n % 3], "os_arch": ("x86_64", "aarch64")[n % 2],
            "format": ("raw", "qcow2", "vmdk", None)[n % 4], "title": f"image {n % 5}",
            "description": f"{WORDS[n % 6]} {WORDS[(n // 4) % 6]}",
            "valid": now - timedelta(days=1) if n % 7 == 3 else now + timedelta(days=n),
            "deprecated": "old" if n % 9 == 4 else None,
        }
        entry = make_entry(image=b"version" if n in (6, 20) else None,
                           signer=ec_signer if n % 4 == 1 else None,
                           when=moment((n * 7) % 11 / 24, base=now), **fields)
        if store.add(entry):
            stored.append(entry)
    return stored, now


QUERIES = [
    {}, {"q": "zebra"}, {"q": "ze"}, {"q": "nginx ze"}, {"q": "zebra", "os": "debian"},
    {"q": "ni", "os": "ubuntu", "os_arch": "x86_64"}, {"os": "centos"},
    {"q": "monitor", "status": "expired"}, {"q": "mpi", "status": "all"},
    {"status": "deprecated"}, {"q": "image", "format": "qcow2", "status": "all"},
]


@pytest.mark.parametrize("sort", ["created", "title", "os", "format", "valid", "email"])
def test_pages_equal_a_plain_sort_of_every_match(store, catalogue, sort):
    stored, now = catalogue
    assert sort in SORT_FIELDS
    for asked in QUERIES:
        filters = {k: v for k, v in asked.items() if k not in ("q", "status")}
        for descending in (True, False):
            query = Query(q=asked.get("q"), filters=filters, status=asked.get("status", "valid"),
                          sort=sort, descending=descending, now=now, limit=4)
            want = expected(stored, query)
            got, offset = [], 0
            while True:
                page = store.search(Query(**{**vars(query), "offset": offset}))
                assert page.total == len(want), (asked, descending)
                got += [entry.key for entry in page.entries]
                offset += query.limit
                if offset >= len(want) + query.limit:
                    break
            assert got == want, (asked, sort, descending)


def test_date_bounds_give_the_same_pages_as_without(store, catalogue):
    """A date bound that every entry meets changes nothing (on SQLite it takes the b-tree
    path instead of the full-text index: both must agree with the oracle)."""
    stored, now = catalogue
    for asked in QUERIES:
        filters = {k: v for k, v in asked.items() if k not in ("q", "status")}
        query = Query(q=asked.get("q"), filters=filters, status=asked.get("status", "valid"),
                      now=now, limit=50, created_to=now + timedelta(days=1))
        page = store.search(query)
        assert [e.key for e in page.entries] == expected(stored, query), asked
        assert page.total == len(page.entries)



def expected_facets(stored: list, query: Query) -> dict[str, list]:
    """Each facet's values among the matches of the query without that facet's own filter,
    most frequent first, then by value."""
    facets = {}
    for name in FACET_FIELDS:
        others = Query(**{**vars(query), "status": "all" if name == "status" else query.status,
                          "filters": {k: v for k, v in query.filters.items() if k != name}})
        counted = {}
        for key in expected(stored, others):
            fields = next(indexed_fields(e) for e in stored if e.key == key)
            value = status(fields, format_date(query.now)) if name == "status" else fields[name]
            if value is not None:
                counted[value] = counted.get(value, 0) + 1
        facets[name] = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    return facets


@pytest.mark.parametrize("asked", [
    {}, {"os": "debian"}, {"os": "ubuntu", "format": "raw"}, {"status": "expired"},
    {"status": "all", "os_arch": "aarch64"}, {"q": "ze"}, {"q": "ze", "os": "centos"},
    {"os": "debian", "created_to": 1},
])
def test_facets_equal_a_count_of_every_match(store, catalogue, asked):
    stored, now = catalogue
    filters = {k: v for k, v in asked.items() if k not in ("q", "status", "created_to")}
    query = Query(q=asked.get("q"), filters=filters, status=asked.get("status", "valid"),
                  now=now, facets=True,
                  created_to=now + timedelta(days=1) if "created_to" in asked else None)
    facets = store.search(query).facets
    assert {name: list(values.items()) for name, values in facets.items()} == \
        expected_facets(stored, query)


def test_an_entry_whose_validity_ends_between_writes_leaves_the_valid_listing(tmp_path,
                                                                              make_entry):
    """SQLite marks an ended validity in its indexes at the first search after it (no write
    need come): until then, and for moments before the mark, it counts over the rows."""
    path = tmp_path / "marketplace.db"
    store = SQLiteStore(path)
    now = moment()
    store.add(make_entry(title="lasting", description="zebra", valid=now + timedelta(days=9)))
    with sqlite3.connect(path) as db:  # as if no write had come for two hours
        db.execute("UPDATE expiry SET moment = ?", (format_date(now - timedelta(hours=2)),))
    store.add(make_entry(title="ending", description="zebra", valid=now - timedelta(hours=1)))
    for query in (Query(q="zebra", now=now, facets=True), Query(now=now, facets=True)):
        page = store.search(query)
        assert [e.appliance.title for e in page.entries] == ["lasting"] and page.total == 1
        assert page.facets["status"] == {"expired": 1, "valid": 1}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT title, gone FROM entries ORDER BY title").fetchall() == [
            ("ending", 1), ("lasting", 0)]
    before = store.search(Query(q="zebra", now=now - timedelta(hours=3), facets=True))
    assert before.total == 2 and before.facets["status"] == {"valid": 2}
    store.close()


def test_a_store_that_cannot_be_written_still_counts_an_ended_validity(tmp_path, make_entry):
    """The mark is only a shortcut: when the search cannot write it (busy, read-only), the
    counts are made over the rows, and are the same."""
    path = tmp_path / "marketplace.db"
    store = SQLiteStore(path)
    now = moment()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE expiry SET moment = ?", (format_date(now - timedelta(hours=2)),))
    store.add(make_entry(title="ending", description="zebra", valid=now - timedelta(hours=1)))
    store._db().execute("PRAGMA query_only = ON")  # this connection may no longer write
    page = store.search(Query(q="zebra", now=now, status="all", facets=True))
    assert page.total == 1 and page.facets["status"] == {"expired": 1}
    assert store.search(Query(q="zebra", now=now)).total == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT gone FROM entries").fetchall() == [(0,)]
    store.close()
