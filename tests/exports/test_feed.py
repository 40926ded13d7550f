"""Atom feeds of searches, read with ``feedparser``; entry content is always escaped text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import feedparser

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def moment(hours_ago: float) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(microsecond=0)


def test_a_search_feed_is_newest_first_and_valid_atom(client, publish):
    publish(title="older", when=moment(2))
    publish(title="newer", when=moment(1))
    publish(title="not ubuntu", os="centos")
    response = client.get("/feeds/appliances?os=ubuntu")
    assert response.status_code == 200
    assert response.content_type.startswith("application/atom+xml")
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == ["newer", "older"]
    assert parsed.entries[0].author_detail.email == "jane.tester@example.org"
    assert parsed.entries[0].link.startswith("http://localhost/appliances/")


def test_the_search_page_and_api_have_an_atom_form(client, publish):
    publish(title="listed")
    for path in ("/?os=ubuntu&media=atom", "/api/v1/appliances?os=ubuntu&media=atom"):
        parsed = feedparser.parse(client.get(path).data)
        assert [e.title for e in parsed.entries] == ["listed"], path
    page = client.get("/?os=ubuntu").get_data(as_text=True)
    link = re.search(r'<link rel="alternate" type="application/atom\+xml"[^>]*href="([^"]+)"',
                     page)
    assert link and link.group(1) == "/feeds/appliances?os=ubuntu"
    assert feedparser.parse(client.get(link.group(1)).data).entries[0].title == "listed"


def test_markup_from_a_document_is_escaped_text(client, publish):
    publish(title=HOSTILE, description=HOSTILE)
    body = client.get("/feeds/appliances").data
    assert b"<script" not in body and b"<img" not in body
    assert b"&lt;script&gt;" in body
    entry = feedparser.parse(body).entries[0]
    assert entry.title_detail.type == "text/plain"
    assert entry.title == HOSTILE


def test_one_feed_per_endorser_and_unknown_names_are_404(client, publish, ec_signer):
    publish(title="jane's")
    publish(title="eve's", signer=ec_signer)
    parsed = feedparser.parse(client.get("/feeds/endorsers/eve.curve@example.org").data)
    assert [e.title for e in parsed.entries] == ["eve's"]
    assert client.get("/feeds/endorsers/nobody@example.org").status_code == 404
    assert client.get("/feeds/nosuch").status_code == 404


def test_an_empty_feed_is_served_and_a_repeat_is_304(client, publish):
    empty = client.get("/feeds/appliances?os=plan9")
    assert empty.status_code == 200 and feedparser.parse(empty.data).entries == []
    tag = empty.headers["ETag"]
    assert client.get("/feeds/appliances?os=plan9",
                      headers={"If-None-Match": tag}).status_code == 304
    publish()
    assert client.get("/feeds/appliances?os=plan9",
                      headers={"If-None-Match": tag}).status_code == 200


def test_a_bad_search_parameter_is_400(client):
    assert client.get("/feeds/appliances?colour=blue").status_code == 400
