"""POST /metadata: what is accepted (201, replay 200), what is refused and why."""

from __future__ import annotations

import io
from datetime import timedelta

from lxml import etree

from marketplace.metadata import document as xml
from tests import factories
from tests.server.conftest import JANE, moment


def test_raw_upload_is_created_with_its_location(post, rsa_signer, store):
    document = factories.signed(rsa_signer, now=moment())
    response = post(document)
    assert response.status_code == 201
    identifier = etree.fromstring(document).find(f".//{{{xml.DCTERMS}}}identifier").text
    created = xml.parse(document).find(".//{http://purl.org/dc/terms/}created").text
    # absolute, as the original clients expect (issue 12, point 6)
    assert response.headers["Location"] == \
        f"http://localhost/metadata/{identifier}/{JANE}/{created}"
    body = etree.fromstring(response.data)
    assert body.tag == "entry" and body.get("identifier") == identifier
    assert body.get("new") == "true"
    assert store.count() == 1


def test_rdf_xml_content_type_is_accepted(post, rsa_signer):
    response = post(factories.signed(rsa_signer), "application/rdf+xml")
    assert response.status_code == 201


def test_multipart_upload_with_file_field(client, rsa_signer, store):
    document = factories.signed(rsa_signer)
    response = client.post("/metadata", data={"file": (io.BytesIO(document), "entry.xml")},
                           content_type="multipart/form-data")
    assert response.status_code == 201
    stored = client.get(response.headers["Location"])
    assert stored.data == document


def test_multipart_upload_with_any_single_file_field(client, rsa_signer):
    document = factories.signed(rsa_signer)
    response = client.post("/metadata", data={"metadata": (io.BytesIO(document), "x.xml")},
                           content_type="multipart/form-data")
    assert response.status_code == 201


def test_multipart_with_two_files_is_refused(client, rsa_signer, store):
    document = factories.signed(rsa_signer)
    response = client.post("/metadata", data={"a": (io.BytesIO(document), "a.xml"),
                                              "b": (io.BytesIO(document), "b.xml")},
                           content_type="multipart/form-data", headers={"Accept":
                                                                        "application/json"})
    assert response.status_code == 400
    assert response.json["problems"][0]["element"] == "file"
    assert store.count() == 0


def test_replay_answers_200_with_same_location_and_stores_once(post, rsa_signer, store):
    document = factories.signed(rsa_signer)
    first = post(document)
    again = post(document, headers={"Accept": "application/json"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json["new"] is False
    assert store.count() == 1


def test_older_entry_of_same_identifier_and_endorser_conflicts(publish, post, rsa_signer,
                                                               store):
    image = b"conflicting image"
    publish(image, when=moment(1))
    older = factories.signed(rsa_signer, factories.appliance(image), now=moment(2))
    response = post(older, headers={"Accept": "application/json"})
    assert response.status_code == 409
    assert "newer entry" in response.json["error"]
    assert store.count() == 1


def test_changed_copy_under_same_key_conflicts(post, rsa_signer, store):
    image, when = b"same key", moment()
    post(factories.signed(rsa_signer, factories.appliance(image, title="One"), now=when))
    changed = factories.signed(rsa_signer, factories.appliance(image, title="Two"), now=when)
    response = post(changed, headers={"Accept": "application/json"})
    assert response.status_code == 409
    assert "another document" in response.json["error"]
    assert store.count() == 1


def test_invalid_document_names_element_and_rule(post, rsa_signer, store):
    entry = factories.appliance(inbound_ports=[70000])
    response = post(factories.signed(rsa_signer, entry), headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json["problems"] == [{
        "element": "slterms:inbound-port", "rule": "schema",
        "message": "Element 'slterms:inbound-port': [facet 'maxInclusive'] The value '70000' "
                   "is greater than the maximum value allowed ('65535')."}]
    assert "slterms:inbound-port" in response.json["error"]
    assert store.count() == 0


def test_every_problem_is_reported(post, rsa_signer, store):
    entry = factories.appliance(inbound_ports=[70000])
    entry.identifier = "A" * 27
    response = post(factories.signed(rsa_signer, entry), headers={"Accept": "application/json"})
    assert response.status_code == 400
    found = {(p["element"], p["rule"]) for p in response.json["problems"]}
    assert {("slterms:inbound-port", "schema"),
            ("dcterms:identifier", "identifier-sha1")} <= found
    assert store.count() == 0


def test_changed_after_signing_is_refused(post, rsa_signer, store):
    document = factories.signed(rsa_signer).replace(b"Test image", b"Evil image")
    response = post(document, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json["problems"][0]["rule"] == "signature-value"
    assert store.count() == 0


def test_unsigned_document_is_refused(post, store):
    document = xml.serialize(factories.model.to_document(factories.appliance()))
    response = post(document, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json["problems"] == [{"element": "Signature", "rule": "signed",
                                          "message": "the document is not signed"}]
    assert store.count() == 0


def test_expired_certificate_is_refused(post, make_signer, store):
    expired = make_signer(email=JANE, not_before=moment(30), not_after=moment(1))
    document = factories.signed(expired, now=moment(2))
    response = post(document, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert any("certificate" in p["message"].lower() for p in response.json["problems"])
    assert store.count() == 0


def test_endorsement_in_the_future_is_refused(post, rsa_signer, store):
    document = factories.signed(rsa_signer, now=moment() + timedelta(hours=2))
    response = post(document, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json["problems"][0]["rule"] == "not-in-future"
    assert store.count() == 0


def test_empty_body_is_refused(post, store):
    response = post(b"", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "empty" in response.json["error"]
    assert store.count() == 0


def test_wrong_media_type_is_415(post, rsa_signer, store):
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        response = post(factories.signed(rsa_signer), content_type,
                        headers={"Accept": "application/json"})
        assert response.status_code == 415, content_type
        assert "application/xml" in response.json["error"]
    assert store.count() == 0


def test_no_content_type_is_415(client, rsa_signer):
    response = client.post("/metadata", data=factories.signed(rsa_signer))
    assert response.status_code == 415
    assert b"application/rdf+xml" in response.data


def test_upload_answers_in_negotiated_media(post, rsa_signer):
    as_json = post(factories.signed(rsa_signer), headers={"Accept": "application/json"})
    assert as_json.mimetype == "application/json"
    assert as_json.headers["Location"] == "http://localhost" + as_json.json["url"]
    as_html = post(factories.signed(rsa_signer), query_string={"media": "html"})
    assert as_html.status_code == 201 and as_html.mimetype == "text/html"
    assert b"Accepted" in as_html.data


def test_stored_upload_survives_a_new_app_on_the_same_store(app, post, rsa_signer):
    from marketplace.web.app import create_app
    from marketplace.web.current import marketplace_of
    document = factories.signed(rsa_signer)
    location = post(document).headers["Location"]
    other = create_app(**app.config["MARKETPLACE"])  # same settings: same file or indices
    again = other.test_client().get(location)
    marketplace_of(other).store.close()
    assert again.status_code == 200 and again.data == document


def test_value_outside_an_enumeration_is_400_naming_the_element(post, rsa_signer, store):
    document = factories.signed(rsa_signer, factories.appliance(kind="spaceship"))
    response = post(document, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert [p["element"] for p in response.json["problems"]] == ["slterms:kind"]
    assert "spaceship" in response.json["problems"][0]["message"]
    assert store.count() == 0
