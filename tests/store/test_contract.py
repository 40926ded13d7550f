"""The storage contract: every backend (SQLite, Elasticsearch) passes the same tests, so
they cannot drift. Each test runs once per backend (see ``store`` in conftest.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from marketplace.metadata.model import format_date
from marketplace.store.base import FACET_FIELDS, Conflict, Query
from tests.store.conftest import EVE, JANE, moment


def titles(page) -> list[str]:
    return [entry.appliance.title for entry in page.entries]


def found(store, **query) -> list[str]:
    """Titles of a search, sorted (for tests of filters, not of order)."""
    return sorted(titles(store.search(Query(limit=500, **query))))


# --- add, get --------------------------------------------------------------------------------


def test_add_new_then_get_gives_the_same_bytes(store, make_entry):
    entry = make_entry(title="Café ünïcødé — ✓", description="<&>\"'")
    assert store.add(entry) is True
    got = store.get(entry.identifier, entry.email, entry.created)
    assert got is not None
    assert got.document == entry.document
    assert got.appliance == entry.appliance
    assert store.count() == 1


def test_a_page_is_served_from_the_index_and_equals_the_document(store, make_entry):
    entry = make_entry(title="Café <b>", description="ü ✓", inbound_ports=[22],
                       locations=["http://a.example/i", "pdisk:h:1/x"])
    store.add(entry)
    (found,) = store.search(Query()).entries
    assert found.fields is not None  # read from the index, not parsed from the XML
    assert found.document == entry.document
    assert found.appliance == entry.appliance
    assert found.as_dict() == entry.appliance.as_dict()


def test_replay_of_the_same_document_is_not_new(store, make_entry):
    entry = make_entry()
    assert store.add(entry) is True
    assert store.add(entry) is False
    assert store.count() == 1
    assert store.search(Query()).total == 1


def test_changed_document_under_a_stored_key_is_a_conflict(store, make_entry):
    when = moment()
    image = b"one image"
    first = make_entry(image, when=when, title="first")
    store.add(first)
    with pytest.raises(Conflict):
        store.add(make_entry(image, when=when, title="changed"))
    assert store.get(first.identifier, first.email, when).document == first.document
    assert store.count() == 1


def test_entry_older_than_the_latest_is_a_conflict(store, make_entry):
    image = b"versioned image"
    store.add(make_entry(image, when=moment(1), title="new"))
    with pytest.raises(Conflict):
        store.add(make_entry(image, when=moment(2), title="old"))
    assert store.count() == 1
    assert titles(store.search(Query())) == ["new"]


def test_the_same_identifier_by_another_endorser_is_independent(store, add, ec_signer):
    image = b"shared image"
    add(image, when=moment(1), title="jane's")
    add(image, signer=ec_signer, when=moment(2), title="eve's")
    assert found(store) == ["eve's", "jane's"]


def test_would_add_answers_as_add_without_storing(store, make_entry):
    """The moderation workflow asks the store before it mails an endorser: the answer must
    be add's, on every backend, and asking stores nothing."""
    image = b"asked first"
    older, entry = make_entry(image, when=moment(2)), make_entry(image, when=moment(1))
    assert store.newest(entry.identifier, entry.email) is None
    assert store.would_add(entry) is True
    assert store.count() == 0
    store.add(entry)
    assert store.newest(entry.identifier, entry.email) == entry.key[2]
    assert store.would_add(entry) is False
    with pytest.raises(Conflict, match="a newer entry"):
        store.would_add(older)
    with pytest.raises(Conflict, match="another document"):
        store.would_add(make_entry(image, when=moment(1), title="changed"))
    assert store.would_add(make_entry(image, when=moment(0))) is True
    assert store.count() == 1


def test_get_of_an_unknown_key_is_none(store, add):
    entry = add()
    assert store.get(entry.identifier, entry.email, entry.created - timedelta(seconds=1)) is None
    assert store.get(entry.identifier, EVE, entry.created) is None
    assert store.get("A" * 27, entry.email, entry.created) is None


# --- latest, dates -------------------------------------------------------------------------------


def test_listings_show_the_latest_entry_of_each_identifier_and_endorser(store, add):
    image = b"evolving"
    add(image, when=moment(3), title="v1")
    add(image, when=moment(2), title="v2")
    add(image, when=moment(1), title="v3")
    add(when=moment(2), title="other")
    page = store.search(Query())
    assert titles(page) == ["v3", "other"] and page.total == 2
    everything = store.search(Query(latest_only=False))
    assert sorted(titles(everything)) == ["other", "v1", "v2", "v3"]
    assert everything.total == 4


def test_a_created_date_names_one_entry_even_when_not_latest(store, add):
    image = b"dated"
    first = add(image, when=moment(2), title="v1")
    add(image, when=moment(1), title="v2")
    assert titles(store.search(Query(created=first.created))) == ["v1"]
    assert titles(store.search(Query(created=first.created, latest_only=False))) == ["v1"]


def test_created_and_valid_ranges_are_inclusive(store, add):
    base = moment()
    for n in range(4):
        add(when=base - timedelta(days=n), title=f"d{n}", valid=base + timedelta(days=10 * n + 1))
    assert found(store, created_from=base - timedelta(days=2)) == ["d0", "d1", "d2"]
    assert found(store, created_to=base - timedelta(days=1)) == ["d1", "d2", "d3"]
    assert found(store, created_from=base - timedelta(days=2),
                 created_to=base - timedelta(days=1)) == ["d1", "d2"]
    assert found(store, valid_from=base + timedelta(days=11)) == ["d1", "d2", "d3"]
    assert found(store, valid_to=base + timedelta(days=11)) == ["d0", "d1"]


# --- filters, status, location ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("os", "debian", ["b"]), ("os_version", "12", ["b"]), ("os_arch", "aarch64", ["b"]),
    ("kind", "disk", ["c"]), ("type", "grid", ["c"]), ("format", "qcow2", ["a"]),
    ("hypervisor", "xen", ["b", "c"]), ("tag", "web", ["a"]), ("email", EVE, ["c"]),
    ("os", "Debian", []), ("os", "debi", []),
])
def test_filters_match_exact_values(store, add, ec_signer, name, value, expected):
    add(title="a", os="ubuntu", format="qcow2", tag="web")
    add(title="b", os="debian", os_version="12", os_arch="aarch64", hypervisor="xen")
    add(title="c", os="none", kind="disk", type="grid", hypervisor="xen", signer=ec_signer)
    assert found(store, filters={name: value}) == expected


def test_identifier_filter_and_unknown_filters(store, add):
    entry = add(title="a")
    add(title="b")
    assert found(store, filters={"identifier": entry.identifier}) == ["a"]
    assert found(store, filters={"identifier": entry.identifier, "email": JANE}) == ["a"]
    assert found(store, filters={"not_a_field": "x"}) == ["a", "b"]
    assert found(store, filters={"os": ""}) == ["a", "b"]


def test_status_is_computed_against_the_query_time(store, add):
    now = moment()
    add(title="valid", valid=now + timedelta(days=2))
    add(title="expires", valid=now + timedelta(hours=1))
    add(title="expired", valid=now - timedelta(days=1))
    add(title="deprecated", deprecated="use another")
    add(title="deprecated and expired", deprecated="old", valid=now - timedelta(days=1))
    add(title="no end", valid=None)
    assert found(store, now=now) == ["expires", "no end", "valid"]
    assert found(store, now=now, status="expired") == ["expired"]
    assert found(store, now=now, status="deprecated") == ["deprecated",
                                                          "deprecated and expired"]
    assert len(found(store, now=now, status="all")) == 6
    later = now + timedelta(hours=2)
    assert found(store, now=later) == ["no end", "valid"]
    assert found(store, now=later, status="expired") == ["expired", "expires"]


def test_status_boundary_is_the_valid_second(store, add):
    now = moment()
    add(title="ends now", valid=now)
    assert found(store, now=now) == ["ends now"]
    assert found(store, now=now + timedelta(seconds=1), status="expired") == ["ends now"]


def test_location_web_or_pdisk(store, add):
    add(title="web", locations=["https://example.org/a.img"])
    add(title="pdisk", locations=["pdisk:example.org:8445:abc"])
    add(title="both", locations=["pdisk:example.org:8445:abc", "http://example.org/b.img"])
    assert found(store, location="web") == ["both", "web"]
    assert found(store, location="pdisk") == ["both", "pdisk"]
    assert found(store, location="all") == ["both", "pdisk", "web"]


# --- free text ---------------------------------------------------------------------------


@pytest.fixture
def texts(add, ec_signer):
    add(title="Ubuntu web server", description="nginx with cloud-init on ubuntu", os="ubuntu",
        tag="web-2024")
    add(title="Debian base", description="minimal image", os="debian")
    add(title="Crème brûlée desktop", description="dessert", os="fedora", signer=ec_signer)


@pytest.mark.parametrize(("text", "expected"), [
    ("ubuntu", ["Ubuntu web server"]),
    ("UBUNTU", ["Ubuntu web server"]),
    ("ngin", ["Ubuntu web server"]),
    ("web nginx", ["Ubuntu web server"]),
    ("web minimal", []),
    ("cloud-init", ["Ubuntu web server"]),
    ("cloud-in", ["Ubuntu web server"]),
    ("init-cloud", []),
    ("web-2024", ["Ubuntu web server"]),
    ("creme brulee", ["Crème brûlée desktop"]),
    ("crème", ["Crème brûlée desktop"]),
    ("eve.curve@example.org", ["Crème brûlée desktop"]),
    ("eve", ["Crème brûlée desktop"]),
    ("curve@example", ["Crème brûlée desktop"]),
    ("example.org", ["Crème brûlée desktop", "Debian base", "Ubuntu web server"]),
    ("Jane Tester", ["Debian base", "Ubuntu web server"]),
    ("\"debian\" OR ubuntu", []),
    ("debian*", ["Debian base"]),
    ("...", []),
    ("server image", []),
    ("fedora", ["Crème brûlée desktop"]),
])
def test_free_text_words_all_match_as_prefixes(store, texts, text, expected):
    assert found(store, q=text) == expected


def test_free_text_matches_the_identifier_and_tag(store, add):
    entry = add(title="by id", tag="golden")
    add(title="other")
    assert found(store, q=entry.identifier) == ["by id"]
    assert found(store, q="golden") == ["by id"]


def test_free_text_does_not_join_two_fields_into_a_phrase(store, add):
    add(title="alpha", description="beta")
    assert found(store, q="alpha") == ["alpha"]
    assert found(store, q="alpha-beta") == []


def test_empty_free_text_matches_everything(store, add):
    add(title="a")
    assert found(store, q="") == ["a"]
    assert found(store, q="   ") == ["a"]


# --- order, paging --------------------------------------------------------------------------


@pytest.fixture
def sortable(add, ec_signer):
    base = moment()
    add(title="b", os="debian", os_version="12", os_arch="x86_64", kind="machine",
        format="raw", hypervisor="kvm", valid=base + timedelta(days=3), when=moment(3),
        image=b"x" * 30)
    add(title="a", os="ubuntu", os_version="24.04", os_arch="aarch64", kind="disk",
        format="qcow2", hypervisor="xen", valid=base + timedelta(days=1), when=moment(1),
        image=b"x" * 10, signer=ec_signer)
    add(title="c", os="alpine", os_version="3.20", os_arch="i686", kind="machine",
        format="vmdk", hypervisor="kvm", valid=base + timedelta(days=2), when=moment(2),
        image=b"x" * 20)


@pytest.mark.parametrize(("sort", "ascending"), [
    ("created", ["b", "c", "a"]), ("title", ["a", "b", "c"]), ("os", ["c", "b", "a"]),
    ("os_version", ["b", "a", "c"]), ("os_arch", ["a", "c", "b"]), ("format", ["a", "b", "c"]),
    ("valid", ["a", "c", "b"]), ("bytes", ["a", "c", "b"]), ("email", ["a", "b", "c"]),
])
def test_sort_by_a_field_both_ways(store, sortable, sort, ascending):
    assert titles(store.search(Query(sort=sort, descending=False))) == ascending
    assert titles(store.search(Query(sort=sort, descending=True))) == ascending[::-1]


def test_ties_keep_the_order_of_arrival(store, add):
    when = moment()
    for name in ("first", "second", "third"):
        add(title="same", tag=name, when=when)
    tags = [e.appliance.tag for e in store.search(Query(sort="title", descending=False)).entries]
    assert tags == ["first", "second", "third"]
    tags = [e.appliance.tag for e in store.search(Query(sort="created")).entries]
    assert tags == ["third", "second", "first"]


def test_missing_values_sort_first_ascending_and_last_descending(store, add):
    add(title="has tag", tag="t", when=moment(1))
    add(title="no tag", when=moment(2))
    add(title=None, when=moment(3))
    ascending = store.search(Query(sort="title", descending=False))
    assert [e.appliance.title for e in ascending.entries] == [None, "has tag", "no tag"]
    descending = store.search(Query(sort="title", descending=True))
    assert [e.appliance.title for e in descending.entries] == ["no tag", "has tag", None]


def test_kind_and_identifier_and_hypervisor_sorts_are_total(store, sortable):
    for sort in ("kind", "identifier", "hypervisor"):
        up = titles(store.search(Query(sort=sort, descending=False)))
        down = titles(store.search(Query(sort=sort, descending=True)))
        assert sorted(up) == ["a", "b", "c"] and sorted(down) == ["a", "b", "c"]


def test_paging_with_limit_and_offset(store, add):
    for n in range(7):
        add(title=f"e{n}", when=moment(n))
    pages = [store.search(Query(limit=3, offset=offset)) for offset in (0, 3, 6, 9)]
    assert [titles(p) for p in pages] == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"], []]
    assert {p.total for p in pages} == {7}
    assert store.search(Query(limit=2, offset=1_000_000)).entries == []


# --- facets ----------------------------------------------------------------------------


@pytest.fixture
def faceted(add, ec_signer):
    now = moment()
    add(title="u1", os="ubuntu", os_version="24.04", format="qcow2", description="zebra")
    add(title="u2", os="ubuntu", os_version="22.04", format="raw")
    add(title="d1", os="debian", os_version="12", format="raw", hypervisor="xen")
    add(title="old", os="debian", os_version="11", valid=now - timedelta(days=1))
    add(title="gone", os="centos", deprecated="end of life", signer=ec_signer)
    return now


def test_no_facets_unless_asked(store, faceted):
    assert store.search(Query(now=faceted)).facets == {}


def test_facets_count_every_value_of_the_matching_entries(store, faceted):
    facets = store.search(Query(now=faceted, facets=True, status="all")).facets
    assert set(facets) == set(FACET_FIELDS)
    assert facets["os"] == {"debian": 2, "ubuntu": 2, "centos": 1}
    assert list(facets["os"]) == ["debian", "ubuntu", "centos"]  # count, then value
    assert facets["status"] == {"valid": 3, "deprecated": 1, "expired": 1}
    assert facets["email"] == {JANE: 4, EVE: 1}
    assert facets["hypervisor"] == {"kvm": 4, "xen": 1}


def test_each_facet_is_counted_without_its_own_filter(store, faceted):
    page = store.search(Query(now=faceted, facets=True, filters={"os": "ubuntu"}))
    assert page.total == 2 and sorted(titles(page)) == ["u1", "u2"]
    assert page.facets["os"] == {"ubuntu": 2, "debian": 1}  # valid entries, any os
    assert page.facets["os_version"] == {"22.04": 1, "24.04": 1}  # ubuntu only
    assert page.facets["status"] == {"valid": 2}  # ubuntu, any status
    by_status = store.search(Query(now=faceted, facets=True, status="expired"))
    assert titles(by_status) == ["old"]
    assert by_status.facets["status"] == {"valid": 3, "deprecated": 1, "expired": 1}
    assert by_status.facets["os"] == {"debian": 1}


def test_facets_follow_the_other_constraints(store, faceted):
    page = store.search(Query(now=faceted, facets=True, q="zebra", status="all"))
    assert page.total == 1
    assert page.facets["os"] == {"ubuntu": 1}
    assert page.facets["format"] == {"qcow2": 1}


def test_facets_count_latest_entries_only_by_default(store, add):
    image = b"facet versions"
    add(image, when=moment(2), os="debian")
    add(image, when=moment(1), os="ubuntu")
    assert store.search(Query(facets=True)).facets["os"] == {"ubuntu": 1}
    assert store.search(Query(facets=True, latest_only=False)).facets["os"] == {"debian": 1,
                                                                               "ubuntu": 1}


# --- endorsers, tags ----------------------------------------------------------------------


def test_endorsers_with_their_counts_and_latest_date(store, add, ec_signer):
    assert store.endorsers() == []
    now = moment()
    image = b"jane's evolving image"
    add(image, when=moment(3, now))
    add(image, when=moment(2, now))
    add(when=moment(5, now))
    add(signer=ec_signer, when=moment(4, now))
    endorsers = store.endorsers()
    assert [e.email for e in endorsers] == [EVE, JANE]
    eve, jane = endorsers
    assert (eve.entries, eve.latest) == (1, moment(4, now))
    assert (jane.entries, jane.latest) == (3, moment(2, now))
    assert "CN=Jane Tester" in jane.subject and "CN=Eve Curve" in eve.subject


def test_tags_of_an_endorser(store, add, ec_signer):
    image = b"tagged"
    add(image, when=moment(2), tag="stable")
    add(image, when=moment(1), tag="stable")
    add(tag="beta")
    add()
    add(tag="other", signer=ec_signer)
    assert store.tags(JANE) == {"beta": 1, "stable": 2}
    assert store.tags(EVE) == {"other": 1}
    assert store.tags("nobody@example.org") == {}


# --- remove, reindex, count, health ---------------------------------------------------------


def test_remove_the_latest_brings_back_the_one_before(store, add):
    image = b"moderated"
    add(image, when=moment(2), title="v1")
    v2 = add(image, when=moment(1), title="v2")
    assert store.remove(v2.identifier, v2.email, v2.created) is True
    assert store.get(v2.identifier, v2.email, v2.created) is None
    assert titles(store.search(Query())) == ["v1"]
    assert store.count() == 1
    assert store.remove(v2.identifier, v2.email, v2.created) is False


def test_remove_the_only_entry_empties_the_listing(store, add):
    entry = add(title="alone")
    assert store.remove(entry.identifier, entry.email, entry.created) is True
    assert store.search(Query(status="all")).total == 0
    assert store.endorsers() == [] and store.count() == 0
    assert store.add(entry) is True  # and it can come back


def test_remove_an_older_entry_keeps_the_latest(store, add):
    image = b"history"
    v1 = add(image, when=moment(2), title="v1")
    add(image, when=moment(1), title="v2")
    assert store.remove(v1.identifier, v1.email, v1.created) is True
    assert titles(store.search(Query())) == ["v2"]
    assert titles(store.search(Query(latest_only=False))) == ["v2"]


def test_reindex_gives_the_same_answers(store, add, ec_signer):
    image = b"reindexed"
    add(image, when=moment(3), title="v1", os="debian")
    add(image, when=moment(2), title="v2", os="debian", deprecated="x")
    add(title="web", tag="t", when=moment(4), description="cloud-init")
    add(title="eve", signer=ec_signer, when=moment(1))
    queries = [Query(status="all", facets=True), Query(), Query(q="cloud-init"),
               Query(latest_only=False, sort="title", descending=False),
               Query(status="deprecated")]

    def answers():
        return ([(titles(p), p.total, p.facets) for p in map(store.search, queries)],
                store.endorsers(), store.tags(JANE), store.count())

    before = answers()
    assert store.reindex() == 4
    assert answers() == before
    assert store.reindex() == 4
    assert answers() == before


def test_count_counts_every_stored_document(store, add):
    assert store.count() == 0
    image = b"counted"
    add(image, when=moment(2))
    add(image, when=moment(1))
    assert store.count() == 2


def test_healthy(store):
    assert store.healthy() is True


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_versions_end_with_the_newest_as_latest(store, make_entry):
    image = b"raced"
    versions = [make_entry(image, when=moment(0.01 * (20 - n)), title=f"v{n}")
                for n in range(20)]
    outcomes: list[str] = []

    def upload(entries):
        for entry in entries:
            try:
                outcomes.append("new" if store.add(entry) else "same")
            except Conflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=upload, args=(versions[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "same" not in outcomes and len(outcomes) == 20
    assert titles(store.search(Query())) == ["v19"]
    stored = store.search(Query(latest_only=False, limit=100))
    assert stored.total == outcomes.count("new") == store.count()


def test_concurrent_replays_store_one_copy(store, make_entry):
    entry = make_entry()
    outcomes: list[bool] = []
    threads = [threading.Thread(target=lambda: outcomes.append(store.add(entry)))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 5 + [True]
    assert store.count() == 1


def test_dates_are_kept_to_the_second(store, add):
    entry = add(when=moment(0.5))
    got = store.get(entry.identifier, entry.email, entry.created)
    assert format_date(got.created) == format_date(entry.created)
