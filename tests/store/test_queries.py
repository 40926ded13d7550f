"""Query translation for Elasticsearch (marketplace/store/elastic/queries.py), without a
cluster: the request bodies a store Query becomes. That they give the SQLite store's answers
is the contract suite's job (test_contract.py, on a real node); these pin the translation
itself, so that a change to it is seen at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marketplace.store.base import FACET_FIELDS, Query
from marketplace.store.elastic.queries import (
    constraints,
    read_facets,
    search_body,
    status_clause,
    text_clause,
)

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
NOT_VALID = [{"term": {"deprecated": True}}, {"range": {"valid": {"lt": "2026-11-27T10:00:00Z"}}}]


def query(**fields) -> Query:
    return Query(now=NOW, **fields)


def filters_of(body: dict) -> list[dict]:
    return body["query"]["bool"]["filter"]


def test_the_default_query_lists_valid_entries_newest_first():
    body = search_body(query())
    assert filters_of(body) == [{"bool": {"must_not": NOT_VALID}}]
    assert body["sort"] == [{"created": {"order": "desc", "missing": "_last"}},
                            {"seq": {"order": "desc"}}, {"key": {"order": "desc"}}]
    assert (body["from"], body["size"], body["track_total_hits"]) == (0, 50, True)
    assert body["source"] == ["document", "summary"]
    assert "aggs" not in body and "post_filter" not in body


def test_filters_are_exact_terms_and_unknown_or_empty_ones_are_left_out():
    plain, faceted = constraints(query(filters={"os": "ubuntu", "type": "base", "tag": "",
                                                "colour": "blue"}, status="all"))
    assert plain == [{"term": {"type": "base"}}]
    assert faceted == {"os": {"term": {"os": "ubuntu"}}}


@pytest.mark.parametrize(("status", "clause"), [
    ("deprecated", {"term": {"deprecated": True}}),
    ("expired", {"bool": {"filter": [NOT_VALID[1]], "must_not": [NOT_VALID[0]]}}),
    ("valid", {"bool": {"must_not": NOT_VALID}}),
])
def test_status_is_judged_at_the_query_time(status, clause):
    assert status_clause(status, NOW) == clause


def test_status_all_adds_no_clause():
    assert constraints(query(status="all")) == ([], {})


def test_location_and_date_bounds():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    plain, _ = constraints(query(location="pdisk", created=when, created_from=when,
                                 valid_to=when, status="all"))
    assert plain == [{"term": {"pdisk": True}}, {"term": {"created": "2026-01-02T03:04:05Z"}},
                     {"range": {"created": {"gte": "2026-01-02T03:04:05Z"}}},
                     {"range": {"valid": {"lte": "2026-01-02T03:04:05Z"}}}]


def test_location_all_adds_no_clause():
    assert constraints(query(location="all", status="all")) == ([], {})


def test_each_free_text_word_must_match_as_a_prefix():
    plain, _ = constraints(query(q='Ubuntu "cloud-init" OR', status="all"))
    assert plain == [
        {"prefix": {"text": "ubuntu"}},
        {"match_phrase_prefix": {"text": {"query": "cloud init", "analyzer": "whitespace",
                                          "max_expansions": 1024}}},
        {"prefix": {"text": "or"}},
    ]


def test_free_text_folds_latin_diacritics_and_a_word_without_letters_matches_nothing():
    assert text_clause("Café") == {"prefix": {"text": "cafe"}}
    assert text_clause("-") == {"match_none": {}}


@pytest.mark.parametrize(("sort", "descending", "field", "missing"), [
    ("title", False, "title", "_first"),
    ("bytes", True, "bytes", "_last"),
    ("document", True, "created", "_last"),  # not a sort field: the default order
])
def test_sort_by_a_field_with_missing_values_at_the_end_of_descending_order(
        sort, descending, field, missing):
    order = "desc" if descending else "asc"
    body = search_body(query(sort=sort, descending=descending))
    assert body["sort"][0] == {field: {"order": order, "missing": missing}}
    ties = ["seq", "key"] if field == "created" else ["created", "seq", "key"]
    assert body["sort"][1:] == [{name: {"order": order}} for name in ties]


def test_paging_is_from_and_size():
    body = search_body(query(offset=40, limit=20))
    assert (body["from"], body["size"]) == (40, 20)


def test_with_facets_each_facet_is_counted_without_its_own_constraint():
    body = search_body(query(filters={"os": "ubuntu", "type": "base"}, facets=True,
                             q="cloud"))
    status = {"bool": {"must_not": NOT_VALID}}
    assert filters_of(body) == [{"term": {"type": "base"}}, {"prefix": {"text": "cloud"}}]
    assert body["post_filter"] == {"bool": {"filter": [{"term": {"os": "ubuntu"}}, status]}}
    assert set(body["aggs"]) == set(FACET_FIELDS)
    assert body["aggs"]["os"]["filter"] == {"bool": {"filter": [status]}}
    assert body["aggs"]["status"]["filter"] == {"bool": {"filter": [
        {"term": {"os": "ubuntu"}}]}}
    assert body["aggs"]["kind"]["filter"] == body["post_filter"]
    assert body["aggs"]["email"]["aggs"]["values"]["terms"]["field"] == "email"
    assert set(body["aggs"]["status"]["aggs"]["values"]["filters"]["filters"]) == {
        "valid", "expired", "deprecated"}


def test_without_facets_every_constraint_filters_the_query():
    body = search_body(query(filters={"os": "ubuntu"}))
    assert filters_of(body) == [{"term": {"os": "ubuntu"}}, {"bool": {"must_not": NOT_VALID}}]


def test_facet_counts_are_read_back_with_empty_statuses_left_out():
    aggregations = {name: {"values": {"buckets": [{"key": "a", "doc_count": 3},
                                                  {"key": "b", "doc_count": 1}]}}
                    for name in FACET_FIELDS}
    aggregations["status"] = {"values": {"buckets": {"valid": {"doc_count": 2},
                                                     "expired": {"doc_count": 5},
                                                     "deprecated": {"doc_count": 0}}}}
    facets = read_facets(aggregations)
    assert facets["os"] == {"a": 3, "b": 1}
    assert list(facets["status"].items()) == [("expired", 5), ("valid", 2)]
    assert set(facets) == set(FACET_FIELDS)
