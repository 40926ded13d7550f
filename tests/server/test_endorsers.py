"""GET /endorsers, /endorsers/<email>, /endorsers/<email>/tags and /tag/<email>/<tag>."""

from __future__ import annotations

from lxml import etree

from tests.server.conftest import EVE, JANE, moment


def test_endorsers_list_with_counts(client, publish, ec_signer):
    publish(when=moment(2))
    publish(when=moment(1))
    publish(signer=ec_signer)
    response = client.get("/endorsers", headers={"Accept": "application/json"})
    assert response.status_code == 200
    endorsers = {e["email"]: e for e in response.json["endorsers"]}
    assert set(endorsers) == {JANE, EVE}
    assert endorsers[JANE]["entries"] == 2
    assert endorsers[JANE]["url"] == f"/endorsers/{JANE}"
    assert "CN=Jane Tester" in endorsers[JANE]["subject"]
    xml = etree.fromstring(client.get("/endorsers").data)
    assert sorted(e.get("email") for e in xml.findall("endorser")) == sorted([JANE, EVE])


def test_endorser_entries_newest_first_whatever_status(client, publish, ec_signer):
    publish(title="oldest", when=moment(3))
    publish(title="retired", when=moment(2), deprecated="old")
    publish(title="newest", when=moment(1))
    publish(title="eve's", signer=ec_signer)
    response = client.get(f"/endorsers/{JANE}?media=json")
    assert [e["title"] for e in response.json["entries"]] == ["newest", "retired", "oldest"]
    valid_only = client.get(f"/endorsers/{JANE}?media=json&status=valid")
    assert [e["title"] for e in valid_only.json["entries"]] == ["newest", "oldest"]
    xml = etree.fromstring(client.get(f"/endorsers/{JANE}").data)
    assert xml.tag == "metadata" and len(xml) == 3


def test_unknown_endorser_is_404(client, publish):
    publish()
    response = client.get("/endorsers/nobody@example.org?media=json")
    assert response.status_code == 404
    assert "nobody@example.org" in response.json["error"]


def test_tags_with_counts(client, publish, ec_signer):
    publish(tag="stable")
    publish(tag="stable")
    publish(tag="testing")
    publish(tag="eve-only", signer=ec_signer)
    publish()
    response = client.get(f"/endorsers/{JANE}/tags", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json["tags"] == [
        {"tag": "stable", "count": 2, "url": f"/tag/{JANE}/stable"},
        {"tag": "testing", "count": 1, "url": f"/tag/{JANE}/testing"}]
    xml = etree.fromstring(client.get(f"/endorsers/{JANE}/tags").data)
    assert [(t.text, t.get("count")) for t in xml] == [("stable", "2"), ("testing", "1")]


def test_tag_serves_latest_non_deprecated_entry(client, publish, ec_signer):
    publish(tag="stable", title="old stable", when=moment(5))
    document, location = publish(tag="stable", title="current stable", when=moment(4),
                                 valid=moment(1))
    publish(tag="stable", title="withdrawn", when=moment(2), deprecated="broken")
    publish(tag="stable", title="eve's", signer=ec_signer)
    response = client.get(f"/tag/{JANE}/stable")
    assert response.status_code == 200
    assert response.data == document
    assert response.mimetype == "application/rdf+xml"
    assert response.headers["Content-Location"] == location
    as_json = client.get(f"/tag/{JANE}/stable?media=json")
    assert as_json.json["title"] == "current stable" and as_json.json["status"] == "expired"


def test_tag_of_a_superseded_version_is_not_served(client, publish):
    image = b"one appliance"
    publish(image, tag="stable", when=moment(2))
    publish(image, tag="stable", when=moment(1), deprecated="gone")
    response = client.get(f"/tag/{JANE}/stable?media=json")
    assert response.status_code == 404
    assert "stable" in response.json["error"]


def test_unknown_tag_is_404(client, publish):
    publish(tag="stable")
    assert client.get(f"/tag/{JANE}/nightly").status_code == 404
    assert client.get(f"/tag/{EVE}/stable").status_code == 404


def test_endorser_routes_validate_email_and_tag(client):
    for url, name in ((f"/endorsers/{'x' * 300}@example.org", "email"),
                      ("/endorsers/not-an-email/tags", "email"),
                      (f"/tag/{JANE}/a'b", "tag"), (f"/tag/{JANE}/{'t' * 201}", "tag"),
                      ("/tag/nobody/stable", "email")):
        response = client.get(url, headers={"Accept": "application/json"})
        assert response.status_code == 400, url
        assert response.json["problems"][0]["element"] == name
