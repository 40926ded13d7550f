"""Every event that changes what the marketplace serves appends its leaf (issue 15, "The
log"): published, deprecated, removed, lifted, blocked, unblocked, confirmed -- read back
as a node reads them, from the served entry bundles -- and every entry answer carries the
index of the leaf that published it."""

from __future__ import annotations

import hashlib

from marketplace.metadata import logleaf
from marketplace.web.current import marketplace_of
from tests.log.conftest import admin, events, key_of, publish, upload
from tests.moderation import conftest as moderation


def test_each_event_kind_appends_its_leaf(client, rsa_signer):
    document, first = publish(client, rsa_signer, days_ago=1)
    deprecating, second = publish(client, rsa_signer, deprecated="use the next one")
    key = key_of(first)
    admin(client, "remove", **key, reason="malware")
    admin(client, "lift", **key, reason="false alarm")
    admin(client, "block", endorser="mallory@example.org", reason="spam")
    admin(client, "unblock", endorser="mallory@example.org", reason="settled")

    found = events(client)
    assert [e.event for e in found] == ["published", "deprecated", "removed", "lifted",
                                        "blocked", "unblocked"]
    published, deprecated, removed, lifted, blocked, unblocked = found
    assert published.key == tuple(key.values())
    assert published.document_sha256 == hashlib.sha256(document).hexdigest()
    assert deprecated.key == tuple(key_of(second).values())
    assert deprecated.document_sha256 == hashlib.sha256(deprecating).hexdigest()
    assert removed.key == lifted.key == published.key
    assert removed.reason_sha256 == hashlib.sha256(b"malware").hexdigest()
    assert removed.actor and lifted.actor
    assert (blocked.endorser, unblocked.endorser) == ("mallory@example.org",) * 2
    assert blocked.reason_sha256 == hashlib.sha256(b"spam").hexdigest()
    assert all(e.time for e in found)


def test_a_confirmation_by_mail_is_a_leaf_then_its_publication(confirming, smtp, make_signer):
    mailbox, _ = smtp
    app = confirming()
    client = app.test_client()
    document = moderation.signed(make_signer(email="new.comer@example.org"))
    held = moderation.upload(client, document)
    assert held.status_code == 202 and marketplace_of(app).store.state.log_size() == 0
    mailbox.wait(1)
    assert client.post(moderation.path_of(mailbox.links()["confirm"])).status_code == 200
    published, confirmed = events(client, marketplace_of(app).store.state.log_size())
    assert (published.event, confirmed.event) == ("published", "confirmed")
    assert published.key == confirmed.key == tuple(key_of(held.json).values())
    assert published.document_sha256 == hashlib.sha256(document).hexdigest()
    assert confirmed.actor == "new.comer@example.org (mailed link)"


def test_every_answer_about_an_entry_carries_its_leaf_index(client, rsa_signer):
    publish(client, rsa_signer, days_ago=2)
    document, answer = publish(client, rsa_signer, days_ago=1, title="second")
    assert answer["log_index"] == 1
    url = answer["url"]
    as_xml = client.get(url, headers={"Accept": "application/rdf+xml"})
    assert as_xml.data == document and as_xml.headers["Log-Index"] == "1"
    assert client.get(url, headers={"Accept": "application/json"}).json["log_index"] == 1
    listed = client.get("/metadata", headers={"Accept": "application/json"}).json["entries"]
    searched = client.get("/api/v1/appliances").json["items"]
    paged = client.get("/metadata?limit=10", headers={"Accept": "application/json"})
    for items in (listed, searched, paged.json["entries"]):
        assert sorted(item["log_index"] for item in items) == [0, 1]
    replay = upload(client, document)
    assert replay.status_code == 200 and replay.json["log_index"] == 1
    assert replay.headers["Log-Index"] == "1"


def test_a_removed_entry_served_again_names_its_new_leaf(client, rsa_signer):
    document, answer = publish(client, rsa_signer)
    admin(client, "remove", **key_of(answer), reason="checking")
    admin(client, "lift", **key_of(answer), reason="fine after all")
    again = upload(client, document)
    assert again.json["log_index"] == 3
    assert [e.event for e in events(client)] == [logleaf.PUBLISHED, logleaf.REMOVED,
                                                 logleaf.LIFTED, logleaf.PUBLISHED]
