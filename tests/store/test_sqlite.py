"""What only the SQLite store has: the index rebuilt when its shape changed, and counts kept
in the file (a tally, the full-text indexes' status words) that must follow every change,
whichever process made it, and the passing of time."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from marketplace.store.base import Query
from marketplace.store.sqlite import INDEX_VERSION, SQLiteStore, _text_match, _unlike, fact
from tests.store.conftest import moment
from tests.store.test_search import expected


@pytest.fixture
def path(tmp_path):
    return tmp_path / "marketplace.db"


@pytest.fixture
def first(path):
    """One process's store; ``second`` is another on the same file."""
    opened = SQLiteStore(path)
    yield opened
    opened.close()


@pytest.fixture
def second(path, first):
    opened = SQLiteStore(path)
    yield opened
    opened.close()


def titles(page) -> list[str]:
    return sorted(entry.appliance.title for entry in page.entries)


def test_an_index_of_an_older_shape_is_rebuilt_when_the_file_is_opened(path, first,
                                                                        make_entry, caplog):
    assert "rebuilding" not in caplog.text  # a new file is not rebuilt
    first.add(make_entry(title="kept", os="debian"))
    first.close()
    with sqlite3.connect(path) as db:  # as an older version left it: no summaries
        db.execute("ALTER TABLE entries DROP COLUMN summary")
        db.execute("PRAGMA user_version = 1")
    reopened = SQLiteStore(path)
    assert "rebuilding the search index" in caplog.text
    page = reopened.search(Query(filters={"os": "debian"}, facets=True))
    assert titles(page) == ["kept"] and page.total == 1
    assert page.facets["os"] == {"debian": 1}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION
        assert db.execute("SELECT summary FROM entries").fetchone()[0].startswith("{")


def test_counts_follow_an_add_by_another_process(first, second, make_entry):
    first.add(make_entry(title="one", os="debian"))
    query = Query(filters={"os": "debian"}, facets=True, limit=1)
    assert first.search(query).total == 1
    second.add(make_entry(title="two", os="debian"))
    page = first.search(query)
    assert page.total == 2 and page.facets["os"] == {"debian": 2}
    assert first.search(Query(filters={"os": "debian"}, limit=1, offset=1)).total == 2


def test_counts_follow_a_removal_by_another_process(first, second, make_entry):
    gone = make_entry(title="gone")
    first.add(gone)
    first.add(make_entry(title="stays"))
    assert first.search(Query(facets=True)).facets["os"] == {"ubuntu": 2}
    assert second.remove(gone.identifier, gone.email, gone.created)
    page = first.search(Query(facets=True))
    assert (titles(page), page.total, page.facets["os"]) == (["stays"], 1, {"ubuntu": 1})


def test_counts_follow_the_end_of_a_validity(first, make_entry):
    now = moment()
    first.add(make_entry(title="ends", valid=now + timedelta(hours=1)))
    first.add(make_entry(title="lasts", valid=now + timedelta(days=9)))
    assert first.search(Query(now=now, facets=True)).facets["status"] == {"valid": 2}
    assert first.search(Query(now=now + timedelta(minutes=59))).total == 2
    later = first.search(Query(now=now + timedelta(hours=2), facets=True))
    assert later.total == 1
    assert later.facets["status"] == {"expired": 1, "valid": 1}
    assert first.search(Query(now=now + timedelta(hours=2), status="expired")).total == 1


def test_counts_for_an_earlier_moment_are_made_anew(first, make_entry):
    now = moment()
    first.add(make_entry(title="ended", valid=now - timedelta(hours=1)))
    assert first.search(Query(now=now)).total == 0
    assert first.search(Query(now=now - timedelta(hours=2))).total == 1


def test_facets_asked_after_a_count_without_them_are_counted(first, make_entry):
    first.add(make_entry(title="one", os="debian"))
    assert first.search(Query()).facets == {}
    assert first.search(Query(facets=True)).facets["os"] == {"debian": 1}


def test_free_text_pages_agree_whichever_way_they_are_found(first, make_entry):
    """Many matches walk the date index, few are sorted: pages of both kinds must agree."""
    for n in range(12):
        first.add(make_entry(title=f"word {n}", when=moment(n / 24),
                             description="other" if n % 4 == 0 else "word"))
    everything = [e.appliance.title for e in first.search(Query(q="word", limit=50)).entries]
    assert everything == [f"word {n}" for n in range(12)]
    pages = [first.search(Query(q="word", limit=1, offset=n)) for n in range(12)]
    assert [page.entries[0].appliance.title for page in pages] == everything
    assert {page.total for page in pages} == {12}
    other = first.search(Query(q="other word", limit=1))
    assert [e.appliance.title for e in other.entries] == ["word 0"] and other.total == 3


def test_a_word_that_no_token_extends_is_asked_whole_until_one_does(first, second, make_entry):
    """A word that is a whole token and begins no other is asked without its prefix star
    (one doclist, not a merge per token); once another process stores a token that extends
    it, the next search asks the prefix again and finds both."""
    first.add(make_entry(title="zebra", description="Zebra herd"))
    assert _text_match(first._db(), "Zebra ze") == (
        '"Zebra" AND {identifier email subject title description os tag} : ("ze"*)')
    assert first.search(Query(q="zebra")).total == 1
    second.add(make_entry(title="zebras", description="more"))
    assert '"zebra"*' in _text_match(first._db(), "zebra")
    assert titles(first.search(Query(q="zebra"))) == ["zebra", "zebras"]
    assert titles(first.search(Query(q="zebras"))) == ["zebras"]


def test_a_connection_without_the_vocabulary_searches_by_prefixes(first, make_entry):
    first.add(make_entry(title="zebra"))
    first._db().execute("DROP TABLE temp.entries_terms")
    assert '"zebra"*' in _text_match(first._db(), "zebra")
    assert titles(first.search(Query(q="zebr"))) == ["zebra"]


def segments(path) -> list[int]:
    """How many segments each full-text index is in (a row of its ``_idx`` per leaf)."""
    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT count(DISTINCT segid) FROM {table}_idx").fetchone()[0]
                for table in ("entries_fts", "shown_fts")]


def test_init_store_merges_the_full_text_indexes_and_answers_the_same(path, first, make_entry):
    """Each upload adds segments to the full-text indexes; ``init-store`` merges each into
    one, and every search answers as before (``serve`` leaves them as they are)."""
    for n in range(6):
        first.add(make_entry(title=f"zebra {n}", os=("debian", "ubuntu")[n % 2],
                             when=moment(n / 24)))
    queries = [Query(q="zebra"), Query(q="zeb", filters={"os": "debian"}), Query(q="1"),
               Query(q="zebra", status="all", sort="title")]
    before = [([e.key for e in p.entries], p.total) for p in map(first.search, queries)]
    assert min(segments(path)) > 1
    assert first.init(migrate=False) == 6 and min(segments(path)) > 1
    assert first.init() == 6 and segments(path) == [1, 1]
    assert [([e.key for e in p.entries], p.total) for p in map(first.search, queries)] == before


def test_free_text_never_matches_the_words_of_the_facts_column(first, make_entry):
    """A whole word asked in any column must not be one the ``facts`` column may hold: the
    status and location words, and a filter value's word, match only in the text."""
    first.add(make_entry(title="zebra", os="debian", locations=["http://a.example/i"],
                         deprecated="old"))
    words = _text_match(first._db(), f"web deprecated {fact('os', 'debian')} zebra")
    assert words.startswith('"zebra" AND {')
    for word in ("web", "deprecated", fact("os", "debian")):
        assert first.search(Query(q=word, status="all")).total == 0
    assert first.search(Query(q="zebra", status="all")).total == 1


def test_a_common_filter_value_asked_as_none_of_the_others_lists_the_same(first, make_entry):
    """A value most shown entries have is asked of the full-text index as none of the
    field's other values: only while every latest entry has a value of that field (an
    entry without one, added after the statistics, sends the search back to the value)."""
    now = moment()
    stored = []
    for n in range(12):
        entry = make_entry(os=("debian", "ubuntu", "debian")[n % 3], description=f"zebra {n}",
                           os_arch=("x86_64", "x86_64", "x86_64", "aarch64")[n % 4],
                           when=moment(n / 24, base=now))
        assert first.add(entry)
        stored.append(entry)
    first.init()

    def listed(arch: str) -> list:
        """The keys listed newest first, what the oracle lists, and what was asked unlike;
        the listing by title (found by the same full-text query) must agree too."""
        query = Query(q="zebra", filters={"os_arch": arch, "os": "debian"}, now=now, limit=50)
        by_title = Query(**{**vars(query), "sort": "title", "limit": 2, "offset": 1})
        assert ([e.key for e in first.search(by_title).entries]
                == expected(stored, by_title)[1:3])
        page = first.search(query)
        assert page.total == len(page.entries)
        return [e.key for e in page.entries], expected(stored, query), _unlike(first._db(), query)

    for arch in ("x86_64", "aarch64"):
        got, want, unlike = listed(arch)
        assert got == want and len(want) == (6 if arch == "x86_64" else 2)
        assert unlike == {"os": ["ubuntu"], **({"os_arch": ["aarch64"]} if arch == "x86_64"
                                               else {})}
    unset = make_entry(os="debian", description="zebra", os_arch=None, when=moment(0, base=now))
    assert first.add(unset)
    stored.append(unset)
    got, want, unlike = listed("x86_64")
    assert got == want and len(want) == 6 and unlike == {"os": ["ubuntu"]}
