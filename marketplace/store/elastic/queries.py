"""Query translation: a store :class:`Query` as the body of an Elasticsearch search, and the
answer's aggregations as facet counts. Pure functions of their arguments, so that they can
be tested without a cluster; the store sends what they build.

Constraints on facet fields go to ``post_filter`` when facets are asked, and each facet's
aggregation filters by the other facets' constraints: so each facet is counted without its
own constraint, as the SQLite store counts them.
"""

from __future__ import annotations

from datetime import datetime

from marketplace.metadata.model import format_date
from marketplace.store.base import (
    FACET_FIELDS,
    FILTER_FIELDS,
    SORT_FIELDS,
    STATUSES,
    Query,
    query_words,
)
from marketplace.store.elastic.documents import tokens

FACET_SIZE = 10_000              # values counted per facet (SQLite counts all)
PHRASE_EXPANSIONS = 1024         # terms a phrase's last word may expand to as a prefix


def search_body(query: Query) -> dict:
    """The search request of a query (index apart: see :meth:`ElasticStore.search`)."""
    plain, faceted = constraints(query)
    order = "desc" if query.descending else "asc"
    sort = query.sort if query.sort in SORT_FIELDS else "created"
    body = {
        "from": query.offset, "size": query.limit, "track_total_hits": True,
        "source": ["document", "summary"],
        "sort": sort_clauses(sort, order),
    }
    if query.facets:
        body["query"] = {"bool": {"filter": plain}}
        body["post_filter"] = {"bool": {"filter": list(faceted.values())}}
        body["aggs"] = {name: {"filter": {"bool": {"filter": [
            clause for other, clause in faceted.items() if other != name]}},
            "aggs": {"values": facet_agg(name, query.now)}} for name in FACET_FIELDS}
    else:
        body["query"] = {"bool": {"filter": plain + list(faceted.values())}}
    return body


def sort_clauses(field: str, order: str) -> list[dict]:
    """By the field (missing values first ascending, last descending), ties by date, then by
    arrival (``seq``), then by key: the SQLite store's order, whose row ids follow the
    date and, within one second, the arrival."""
    fields = [field] if field == "created" else [field, "created"]
    return [{fields[0]: {"order": order, "missing": "_last" if order == "desc" else "_first"}},
            *({name: {"order": order}} for name in (*fields[1:], "seq", "key"))]


def constraints(query: Query) -> tuple[list[dict], dict[str, dict]]:
    """The query's clauses: those on non-facet fields, and those on facets by facet name."""
    plain, faceted = [], {}
    for name, value in query.filters.items():
        if name in FILTER_FIELDS and value:
            clause = {"term": {name: value}}
            if name in FACET_FIELDS:
                faceted[name] = clause
            else:
                plain.append(clause)
    if query.status != "all":
        faceted["status"] = status_clause(query.status, query.now)
    if query.location in ("web", "pdisk"):
        plain.append({"term": {query.location: True}})
    if query.created is not None:
        plain.append({"term": {"created": format_date(query.created)}})
    for name, bound, operator in (("created", query.created_from, "gte"),
                                  ("created", query.created_to, "lte"),
                                  ("valid", query.valid_from, "gte"),
                                  ("valid", query.valid_to, "lte")):
        if bound is not None:
            plain.append({"range": {name: {operator: format_date(bound)}}})
    plain.extend(text_clause(word) for word in query_words(query.q or ""))
    return plain, faceted


def text_clause(word: str) -> dict:
    """One word of free text: its tokens, in order, the last as a prefix, in one field
    (``prefix`` for one token, ``match_phrase_prefix`` for a word such as ``cloud-init``
    that makes several)."""
    parts = tokens(word)
    if not parts:
        return {"match_none": {}}
    if len(parts) == 1:
        return {"prefix": {"text": parts[0]}}
    return {"match_phrase_prefix": {"text": {"query": " ".join(parts), "analyzer": "whitespace",
                                             "max_expansions": PHRASE_EXPANSIONS}}}


def status_clause(status: str, now: datetime) -> dict:
    """Deprecated, else expired (``valid`` passed at ``now``), else valid."""
    expired = {"range": {"valid": {"lt": format_date(now)}}}
    deprecated = {"term": {"deprecated": True}}
    if status == "deprecated":
        return deprecated
    if status == "expired":
        return {"bool": {"filter": [expired], "must_not": [deprecated]}}
    return {"bool": {"must_not": [deprecated, expired]}}


def facet_agg(name: str, now: datetime) -> dict:
    """The aggregation that counts the values of one facet, most frequent first."""
    if name == "status":
        return {"filters": {"filters": {s: status_clause(s, now)
                                        for s in STATUSES if s != "all"}}}
    return {"terms": {"field": name, "size": FACET_SIZE,
                      "order": [{"_count": "desc"}, {"_key": "asc"}]}}


def read_facets(aggregations: dict) -> dict[str, dict[str, int]]:
    """The facet counts of a search's aggregations, in the SQLite store's form."""
    facets = {}
    for name in FACET_FIELDS:
        values = aggregations[name]["values"]
        if name == "status":
            counts = sorted(((-b["doc_count"], s) for s, b in values["buckets"].items()
                             if b["doc_count"]))
            facets[name] = {s: -c for c, s in counts}
        else:
            facets[name] = {b["key"]: b["doc_count"] for b in values["buckets"]}
    return facets
