"""Hostile input: every attempt gets a 4xx with a clear message, never 5xx, nothing stored."""

from __future__ import annotations

import copy

import pytest
from lxml import etree

from marketplace.metadata import document as xml
from marketplace.metadata import model, signature
from marketplace.metadata.keys import Credentials
from tests import factories
from tests.server.conftest import JANE, key_of

JSON = {"Accept": "application/json"}
DSIG = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture
def refused(post, store):
    """Upload a document, expect a 4xx naming ``rule`` (or with ``text`` in it), nothing stored."""

    def check(document: bytes, status: int = 400, rule: str | None = None,
              text: str | None = None, content_type: str = "application/xml"):
        before = store.count()
        response = post(document, content_type, headers=JSON)
        assert response.status_code == status, response.get_data(as_text=True)
        body = response.json
        if rule:
            assert rule in {p["rule"] for p in body["problems"]}, body
        if text:
            assert text in response.get_data(as_text=True)
        assert store.count() == before
        return body

    return check


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">&lol9;</rdf:RDF>"""


def test_billion_laughs(refused):
    body = refused(BILLION_LAUGHS)
    assert body["problems"][0]["element"] == "document"
    assert "lollollol" not in str(body)


def test_external_entity_does_not_leak(refused, rsa_signer):
    signed = factories.signed(rsa_signer, factories.appliance(title="TITLE"))
    start = signed.index(b"<rdf:RDF")
    attack = (b'<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF [<!ENTITY xxe SYSTEM '
              b'"file:///etc/passwd">]>\n' + signed[start:].replace(b"TITLE", b"&xxe;"))
    body = refused(attack)
    assert "root:" not in str(body)


def test_parameter_entity_does_not_leak(refused):
    attack = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd">'
              b' %p;]><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>')
    body = refused(attack)
    assert "root:" not in str(body)


def test_doctype_is_refused(refused, rsa_signer):
    signed = factories.signed(rsa_signer)
    start = signed.index(b"<rdf:RDF")
    body = refused(b'<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF>\n' + signed[start:],
                   rule="no-dtd")
    assert "DOCTYPE" in body["error"]


def test_not_xml_is_refused(refused):
    refused(b"\x00\x01binary junk\xff", rule="not-xml")
    refused(b"<rdf:RDF", rule="not-xml")


def _signed_tree(signer):
    return etree.fromstring(factories.signed(signer, factories.appliance(
        locations=["http://good.example.org/image.img"])))


def _evil_copy(description):
    evil = copy.deepcopy(description)
    for location in evil.iter("{http://mp.stratuslab.eu/slterms#}location"):
        location.text = "http://evil.example.org/image.img"
    return evil


def test_signature_wrapping_with_a_second_description(refused, rsa_signer):
    root = _signed_tree(rsa_signer)
    description = root.find(xml.DESCRIPTION)
    root.insert(0, _evil_copy(description))
    refused(xml.serialize(root), rule="one-description")


def test_signature_wrapping_with_the_signed_description_moved_into_the_signature(
        refused, rsa_signer):
    root = _signed_tree(rsa_signer)
    description = root.find(xml.DESCRIPTION)
    signature = root.find(f"{DSIG}Signature")
    wrapper = etree.SubElement(signature, f"{DSIG}Object")
    root.replace(description, _evil_copy(description))
    wrapper.append(description)
    body = refused(xml.serialize(root))
    assert {p["element"] for p in body["problems"]} & {"Signature", "ds:Object"}


def test_signature_wrapping_inside_the_description(refused, rsa_signer):
    root = _signed_tree(rsa_signer)
    description = root.find(xml.DESCRIPTION)
    holder = etree.SubElement(description, "{http://example.org/evil}holder")
    holder.append(_evil_copy(description))
    refused(xml.serialize(root))


def test_second_signature_is_refused(refused, rsa_signer):
    root = _signed_tree(rsa_signer)
    root.append(copy.deepcopy(root.find(f"{DSIG}Signature")))
    refused(xml.serialize(root), rule="one-signature")


def test_body_over_content_length_limit_is_413(refused, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = refused(b"<" + b"x" * limit + b"/>", status=413)
    assert "limit" in body["error"]


def test_body_over_upload_limit_but_under_flask_limit_is_413(refused, app):
    limit = int(app.config["MARKETPLACE"]["MAX_UPLOAD_BYTES"])
    body = refused(b" " * limit + b"<x/>", status=413)
    assert str(limit) in body["error"]


def test_streamed_body_without_content_length_is_capped(client, store, app):
    limit = int(app.config["MARKETPLACE"]["MAX_UPLOAD_BYTES"])
    response = client.post("/metadata", data=b" " * (limit * 3), headers={
        **JSON, "Content-Type": "application/xml", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert store.count() == 0


def test_content_length_that_lies_short_truncates_and_is_refused(client, rsa_signer, store):
    document = factories.signed(rsa_signer)
    response = client.post("/metadata", data=document, headers={
        **JSON, "Content-Type": "application/xml"},
        environ_overrides={"CONTENT_LENGTH": "100"})
    assert response.status_code == 400
    assert response.json["problems"][0]["rule"] == "not-xml"
    assert store.count() == 0


def test_multipart_file_over_the_limit_is_413(client, app, store):
    import io
    limit = int(app.config["MARKETPLACE"]["MAX_UPLOAD_BYTES"])
    response = client.post("/metadata", data={"file": (io.BytesIO(b" " * (limit + 1)), "x")},
                           content_type="multipart/form-data", headers=JSON)
    assert response.status_code == 413
    assert store.count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream",
                                          "application/xml-dtd", "image/svg+xml"])
def test_wrong_media_types_are_415(refused, rsa_signer, content_type):
    body = refused(factories.signed(rsa_signer), status=415, content_type=content_type)
    assert content_type in body["error"]


def _path_tricks(identifier: str, created: str) -> list[str]:
    return [
        "/metadata/..%2F..%2Fetc%2Fpasswd",
        "/metadata/../../etc/passwd",
        "/metadata/%2e%2e/%2e%2e/%2e%2e",
        "/metadata/%00",
        "/metadata/" + "A" * 10_000,
        f"/metadata/{identifier}/..%2F..%2F",
        f"/metadata/{identifier}/jane%00@example.org",
        f"/metadata/{identifier}/{'j' * 10_000}@example.org",
        f"/metadata/{identifier}/{JANE}/..%2F..%2Fetc%2Fpasswd",
        f"/metadata/{identifier}/{JANE}/{created}%00",
        f"/metadata/{identifier}/{JANE}/{created[:-1]}+01:00",
        f"/metadata/{identifier}/{JANE}/2026-13-45T99:99:99Z",
        f"/metadata/{identifier}/{JANE}/" + "9" * 10_000,
        f"/metadata/{identifier[:-1]}%2F/{JANE}/{created}",
        "/endorsers/..%2F..%2Fetc",
        "/endorsers/%00/tags",
        f"/tag/{JANE}/..%2F..%2Fetc%2Fpasswd",
        f"/tag/{JANE}/%00",
        f"/tag/{JANE}/" + "t" * 10_000,
        "/api/v1/appliances/..%2F..%2F",
        "/api/v1/appliances/%00",
        "/api/v1/appliances/" + "A" * 10_000,
    ]


def test_path_tricks_are_4xx_with_a_message(client, publish, store):
    document, location = publish()
    identifier, _, created = key_of(location)
    for path in _path_tricks(identifier, created):
        for headers in (JSON, {}):
            response = client.get(path, headers=headers)
            assert response.status_code in (400, 404), (path, response.status_code)
            assert b"root:" not in response.data
        response = client.get(path, headers=JSON)
        assert response.json["error"], path
        if response.status_code == 400:
            assert response.json["problems"][0]["element"] in (
                "identifier", "email", "created", "tag", "path"), path
    assert store.count() == 1
    assert client.get(location).data == document


SQL = ["' OR 1=1 --", '"; DROP TABLE documents; --', "x' UNION SELECT document FROM documents--",
       "1; DELETE FROM entries", 'a" OR "b']
FTS = ["*", "\\", "%", "_", "NEAR(zzqq yyxx)", "zzqq OR yyxx", "title:zzqq", "^zzqq", "-zzqq",
       '"zzqq"*', "zzqq*"]


@pytest.mark.parametrize("text", SQL)
def test_sql_in_validated_parameters_is_400(client, publish, store, text):
    publish()
    for url, name in (("/metadata", "identifier"), ("/metadata", "email"),
                      ("/metadata", "created"), ("/metadata", "status"),
                      ("/metadata", "location"), ("/metadata", "sort"),
                      ("/api/v1/appliances", "os"), ("/api/v1/appliances", "arch"),
                      ("/api/v1/appliances", "tag"), ("/api/v1/appliances", "endorser"),
                      ("/api/v1/appliances", "kind"), ("/api/v1/appliances", "sort"),
                      ("/api/v1/appliances", "created_from")):
        response = client.get(url, query_string={name: text}, headers=JSON)
        assert response.status_code == 400, (url, name, text, response.status_code)
        assert response.json["problems"][0]["element"] == name
    assert store.count() == 1
    assert client.get("/api/v1/appliances").json["total"] == 1


@pytest.mark.parametrize("text", SQL + FTS)
def test_sql_in_free_text_matches_nothing_and_harms_nothing(client, publish, store, text):
    publish(b"a fixed image, so that its identifier is known", title="Fixed")
    response = client.get("/api/v1/appliances", query_string={"q": text, "facets": "true"})
    assert response.status_code == 200
    assert response.json["total"] == (1 if text in ("*", "\\", "%") else 0)
    assert store.count() == 1
    assert client.get("/api/v1/appliances").json["total"] == 1


def test_control_characters_and_huge_parameters_are_400(client):
    for params in ({"q": "a\x00b"}, {"os": "\x1b[31m"}, {"q": "x" * 100_000}):
        response = client.get("/api/v1/appliances", query_string=params)
        assert response.status_code == 400
        assert response.json["problems"][0]["element"] == next(iter(params))


def test_parameters_are_checked_before_the_store_is_touched(client, store, monkeypatch):
    def untouchable(*args, **kwargs):
        raise AssertionError("the store was asked before the parameters were checked")

    for name in ("search", "get", "tags", "endorsers", "count"):
        monkeypatch.setattr(store, name, untouchable)
    for url in ("/metadata?status=nope", "/metadata/bad-id", f"/metadata/{'A' * 27}/x",
                f"/metadata/{'A' * 27}/{JANE}/yesterday", "/endorsers/x", "/endorsers/x/tags",
                f"/tag/{JANE}/%00", "/api/v1/appliances?sort=evil", "/api/v1/appliances/x",
                "/metadata?media=pdf"):
        response = client.get(url, headers=JSON)
        assert response.status_code == 400, url


XHTML_SCRIPT = ('<h:script xmlns:h="http://www.w3.org/1999/xhtml">'
                'fetch("/admin").then(r => r.text())</h:script>')


def test_signed_document_with_an_xhtml_script_is_refused(post, rsa_signer, client, store):
    """The stored-XSS attack of issue 11: a signed document carrying an XHTML ``<script>``
    was stored (201) and then served inline by ``/metadata?media=xml``."""
    document = factories.signed(rsa_signer, factories.appliance(extra=[XHTML_SCRIPT]))
    response = post(document, headers=JSON)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "active-content" in {p["rule"] for p in response.json["problems"]}
    assert store.count() == 0
    listing = client.get("/metadata", query_string={"media": "xml", "status": "all"})
    assert b"script" not in listing.data


def _signed_with(signer, change) -> bytes:
    """A document signed by ``signer`` after ``change(root)`` altered its tree."""
    root = model.to_document(factories.appliance())
    change(root)
    signature.sign(root, Credentials(signer.key, signer.certificate))
    return xml.serialize(root)


@pytest.mark.parametrize("place", ["prolog", "description"])
def test_signed_document_with_a_stylesheet_instruction_is_refused(refused, rsa_signer, place):
    """An ``xml-stylesheet`` instruction makes a browser run XSLT (or apply CSS) on the
    marketplace's origin when the stored document is shown."""
    instruction = etree.PI("xml-stylesheet", 'type="text/xsl" href="data:text/xsl,x"')

    def add(root):
        if place == "prolog":
            root.addprevious(instruction)
        else:
            root.find(xml.DESCRIPTION).append(instruction)

    refused(_signed_with(rsa_signer, add), rule="active-content")
