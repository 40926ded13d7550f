"""A removal holds: its tombstone refuses the entry on every path back -- a direct upload,
the mailed confirmation, a replica following the primary or walking it -- until an
operator lifts it (audited)."""

from __future__ import annotations

import re

import requests

from marketplace import config
from marketplace.replica import Replicator
from marketplace.service import Marketplace, open_store
from marketplace.store.state import Event
from marketplace.web.current import marketplace_of
from tests.moderation.conftest import bearer, path_of, signed, upload
from tests.moderation.test_admin import basic
from tests.moderation.test_replica import configure, primary, publish  # noqa: F401

ADMIN = bearer()


def key_of(response) -> dict[str, str]:
    return {k: response.json[k] for k in ("identifier", "email", "created")}


def test_a_removed_entry_is_refused_until_an_operator_lifts_it(make_app, admin_files,
                                                               rsa_signer):
    client = make_app(**admin_files).test_client()
    document = signed(rsa_signer)
    key = key_of(upload(client, document))
    client.post("/admin/api/remove", headers=ADMIN, json={**key, "reason": "malware"})

    refused = upload(client, document)
    assert refused.status_code == 410
    assert refused.json["problems"] == [{"element": "document", "rule": "removed-by-operator",
                                         "message": refused.json["problems"][0]["message"]}]
    assert f"{key['identifier']} by {key['email']} at {key['created']}" in \
        refused.json["error"]
    as_xml = client.post("/metadata", data=document, content_type="application/xml")
    assert as_xml.status_code == 410 and b'rule="removed-by-operator"' in as_xml.data
    assert [c["action"] for c in client.get("/api/v1/changes").json["changes"]] == [
        "publish", "remove"]

    assert client.post("/admin/api/lift", headers=ADMIN, json=key).status_code == 400
    assert client.post("/admin/api/lift", headers=ADMIN,
                       json={**key, "identifier": "A" * 27, "reason": "r"}).status_code == 404
    lifted = client.post("/admin/api/lift", headers=ADMIN, json={**key, "reason": "false alarm"})
    assert lifted.status_code == 200 and lifted.json["actor"] == "ops"
    assert client.get("/admin/api/tombstones", headers=ADMIN).json["total"] == 0
    assert upload(client, document).status_code == 201
    assert client.post("/admin/api/lift", headers=ADMIN,
                       json={**key, "reason": "twice"}).status_code == 404


def test_a_discarded_upload_is_not_held_or_mailed_again(confirming, smtp, make_signer):
    mailbox, _ = smtp
    client = confirming().test_client()
    eve = make_signer("Eve Impostor", email="held.victim@example.org")
    document = signed(eve, title="Reported by its endorser")
    held = upload(client, document)
    assert held.status_code == 202
    mailbox.wait()
    client.post(path_of(mailbox.links()["abuse"]))
    removed = client.post("/admin/api/remove", headers=ADMIN,
                          json={**key_of(held), "reason": "abuse confirmed"})
    assert removed.json["removed"] == ["flagged"]

    again = upload(client, document)
    assert again.status_code == 410, again.json
    assert len(mailbox.messages) == 1, "the removed upload mailed its victim again"
    assert client.get("/admin/api/uploads", headers=ADMIN).json["total"] == 0


def test_a_removal_made_before_the_confirmation_stops_it(confirming, smtp, make_signer):
    """The endorser follows the link after an operator removed the entry it names."""
    mailbox, _ = smtp
    app = confirming()
    client = app.test_client()
    sam = make_signer("Sam Late", email="sam.late@example.org")
    held = upload(client, signed(sam))
    mailbox.wait()
    moderation = marketplace_of(app).moderation
    key = tuple(key_of(held).values())
    moderation.state.withdraw(key, moderation.now(), Event("ops", "removed", "while pending"))
    done = client.post(path_of(mailbox.links()["confirm"]))
    assert "removed by the operators" in done.get_data(as_text=True)
    assert client.get(f"/metadata/{'/'.join(key)}").status_code == 404


def replica_of(primary_server, data_dir) -> Replicator:
    """A replica's marketplace in ``data_dir`` and its puller (run here, not as a server)."""
    settings = config.load(str(configure(data_dir)), primary_url=primary_server.url)
    return Replicator(primary_server.url, Marketplace.from_settings(settings,
                                                                    open_store(settings)))


def remove_on(server, location: str, reason: str = "malware") -> None:
    identifier, email, created = location.split("/")[2:]
    answer = requests.post(server.url + "admin/api/remove", headers=ADMIN, timeout=30, json={
        "identifier": identifier, "email": email, "created": created, "reason": reason})
    assert answer.status_code == 200, answer.text


def test_a_replica_follows_a_removal_and_its_lifting(primary, tmp_path,  # noqa: F811
                                                     rsa_signer):
    document = signed(rsa_signer)
    location = publish(primary, document)
    replicator = replica_of(primary, tmp_path / "replica")
    store, db = replicator.marketplace.store, replicator.marketplace.moderation.state
    try:
        assert replicator.pull().added == 1
        remove_on(primary, location)
        assert replicator.pull().removed == 1
        assert [t.rule for t in db.tombstones()] == ["removed-on-primary"]
        assert store.count() == 0

        identifier, email, created = location.split("/")[2:]
        requests.post(primary.url + "admin/api/lift", headers=ADMIN, timeout=30, json={
            "identifier": identifier, "email": email, "created": created, "reason": "ok"})
        publish(primary, document)
        report = replicator.pull()
        assert report.added == 1 and not report.refused, report
        assert db.tombstones() == [] and store.count() == 1
    finally:
        replicator.marketplace.close()


def test_a_replica_operators_removal_holds_against_a_walk(primary, tmp_path,  # noqa: F811
                                                         rsa_signer):
    location = publish(primary, signed(rsa_signer))
    replicator = replica_of(primary, tmp_path / "replica")
    moderation = replicator.marketplace.moderation
    try:
        replicator.pull()
        key = tuple(location.split("/")[2:])
        assert moderation.remove(key, "replica-ops", "not here", moderation.now()) == [
            "published"]
        walked = replicator.pull(full=True)
        assert walked.walked and walked.added == 0
        assert [r["identifier"] for r in walked.refused] == [key[0]]
        assert "removed by the operators" in walked.refused[0]["reason"]
        assert replicator.marketplace.store.count() == 0
    finally:
        replicator.marketplace.close()


def test_the_admin_page_lists_removals_and_lifts_one_with_its_form(make_app, admin_files,
                                                                   rsa_signer):
    client = make_app(**admin_files).test_client()
    document = signed(rsa_signer)
    key = key_of(upload(client, document))
    client.post("/admin/api/remove", headers=ADMIN, json={**key, "reason": "spam wave 7"})
    text = client.get("/admin/", headers=basic()).get_data(as_text=True)
    assert "Removed entries (1)" in text and "spam wave 7" in text and key["identifier"] in text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)

    form = {**key, "reason": "reviewed"}
    assert client.post("/admin/lift", headers=basic(), data=form).status_code == 403
    done = client.post("/admin/lift", headers=basic(), data={**form, "csrf": csrf})
    assert done.status_code == 303 and done.headers["Location"].endswith("done=lifted")
    assert upload(client, document).status_code == 201
    again = client.post("/admin/lift", headers=basic(), data={**form, "csrf": csrf})
    assert again.status_code == 404
