"""GET /metadata...: listings, filters, latest-per-endorser, and the stored bytes."""

from __future__ import annotations

from datetime import timedelta

from lxml import etree

from marketplace.metadata.checks import check_document
from marketplace.metadata.model import format_date
from tests.server.conftest import EVE, JANE, key_of, moment

RDF_ROOT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"


def listing(client, url, **params):
    response = client.get(url, query_string={"media": "json", **params})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def titles(result):
    return sorted(e["title"] for e in result["entries"])


def test_listing_shows_latest_entry_per_identifier_and_endorser(client, publish, ec_signer):
    image = b"versioned image"
    publish(image, when=moment(3), title="v1")
    publish(image, when=moment(2), title="v2")
    publish(image, signer=ec_signer, when=moment(1), title="eve's")
    publish(b"other image", title="other")
    result = listing(client, "/metadata")
    assert result["total"] == 3
    assert titles(result) == ["eve's", "other", "v2"]


def test_created_lists_that_exact_entry_even_when_not_latest(client, publish):
    image, old = b"dated", moment(3)
    publish(image, when=old, title="old")
    publish(image, when=moment(1), title="new")
    result = listing(client, "/metadata", created=format_date(old))
    assert titles(result) == ["old"]


def test_listing_by_identifier_and_by_identifier_and_email(client, publish, ec_signer):
    image = b"shared image"
    _, location = publish(image, title="jane's")
    publish(image, signer=ec_signer, title="eve's")
    publish(b"unrelated", title="unrelated")
    identifier = key_of(location)[0]
    assert titles(listing(client, f"/metadata/{identifier}")) == ["eve's", "jane's"]
    assert titles(listing(client, f"/metadata/{identifier}/{EVE}")) == ["eve's"]
    assert titles(listing(client, "/metadata", identifier=identifier, email=JANE)) == ["jane's"]
    assert titles(listing(client, "/metadata", email=EVE)) == ["eve's"]


def test_path_and_query_must_agree(client, publish):
    _, location = publish()
    identifier = key_of(location)[0]
    response = client.get(f"/metadata/{identifier}", query_string={
        "identifier": "A" * 27, "media": "json"})
    assert response.status_code == 400
    assert response.json["problems"][0]["element"] == "identifier"


def test_status_filter(client, publish):
    publish(title="fresh")
    publish(title="old", valid=moment(1))
    publish(title="retired", deprecated="replaced by fresh")
    assert titles(listing(client, "/metadata")) == ["fresh"]
    assert titles(listing(client, "/metadata", status="valid")) == ["fresh"]
    assert titles(listing(client, "/metadata", status="expired")) == ["old"]
    assert titles(listing(client, "/metadata", status="deprecated")) == ["retired"]
    assert titles(listing(client, "/metadata", status="all")) == ["fresh", "old", "retired"]
    statuses = {e["title"]: e["status"] for e in listing(client, "/metadata",
                                                         status="all")["entries"]}
    assert statuses == {"fresh": "valid", "old": "expired", "retired": "deprecated"}


def test_location_filter(client, publish):
    publish(title="web", locations=["https://example.org/web.img"])
    publish(title="pdisk", locations=["pdisk:example.org:8445:abc"])
    publish(title="both", locations=["pdisk:example.org:8445:def", "http://example.org/b.img"])
    assert titles(listing(client, "/metadata", location="web")) == ["both", "web"]
    assert titles(listing(client, "/metadata", location="pdisk")) == ["both", "pdisk"]
    assert titles(listing(client, "/metadata", location="all")) == ["both", "pdisk", "web"]


def test_paging_and_sort(client, publish):
    for index in range(5):
        publish(title=f"t{index}", when=moment(5 - index))
    first = listing(client, "/metadata", limit=2)
    assert [e["title"] for e in first["entries"]] == ["t4", "t3"]
    assert first["total"] == 5
    rest = listing(client, "/metadata", limit=2, offset=4)
    assert [e["title"] for e in rest["entries"]] == ["t0"]
    ascending = listing(client, "/metadata", sort="created", limit=2)
    assert [e["title"] for e in ascending["entries"]] == ["t0", "t1"]


def test_invalid_listing_parameters_name_the_parameter(client, store):
    for name, value in (("status", "bogus"), ("location", "ftp"), ("limit", "0"),
                        ("limit", "501"), ("limit", "ten"), ("offset", "-1"),
                        ("created", "2026-01-01"), ("created", "2026-02-30T00:00:00Z"),
                        ("identifier", "short"), ("email", "not-an-email"),
                        ("sort", "password"), ("status", "valid\x00")):
        response = client.get("/metadata", query_string={name: value, "media": "json"})
        assert response.status_code == 400, (name, value)
        assert response.json["problems"][0]["element"] == name
        assert name in response.json["error"]


def test_repeated_parameter_is_refused(client):
    response = client.get("/metadata?status=all&status=valid&media=json")
    assert response.status_code == 400
    assert response.json["problems"][0]["element"] == "status"


def test_xml_listing_holds_each_signed_document_verbatim(client, publish):
    documents = [publish(title=f"doc {i}")[0] for i in range(3)]
    response = client.get("/metadata")
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    root = etree.fromstring(response.data)
    assert root.tag == "metadata" and root.get("total") == "3"
    assert [child.tag for child in root] == [RDF_ROOT] * 3
    for document in documents:
        start = document.index(b"<rdf:RDF")
        assert document[start:].rstrip() in response.data
    for child in root:
        extracted = etree.tostring(child)
        assert check_document(extracted).appliance.title.startswith("doc ")


def test_entry_is_served_byte_for_byte(client, publish):
    document, location = publish()
    response = client.get(location)
    assert response.status_code == 200
    assert response.data == document
    assert response.mimetype == "application/rdf+xml"
    identifier, _, created = key_of(location)
    disposition = response.headers["Content-Disposition"]
    assert disposition == (f'attachment; filename="{identifier}-'
                           f'{created.replace(":", "-")}.xml"')


def test_entry_in_json_and_html(client, publish):
    _, location = publish(title="Shown", description="<script>alert(1)</script>")
    as_json = client.get(location, headers={"Accept": "application/json"})
    assert as_json.json["title"] == "Shown"
    assert "http://localhost" + as_json.json["url"] == location
    assert as_json.json["email"] == JANE and as_json.json["status"] == "valid"
    as_html = client.get(location, query_string={"media": "html"})
    assert as_html.mimetype == "text/html"
    assert b"<script>alert" not in as_html.data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in as_html.data


def test_html_listing_escapes_descriptions(client, publish):
    publish(title="<b>bold</b>", description="<script>alert('x')</script>")
    page = client.get("/metadata", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert b"<script>alert" not in page.data and b"<b>bold" not in page.data
    assert b"&lt;script&gt;" in page.data


def test_unknown_entry_is_404(client, publish):
    _, location = publish()
    identifier, email, _ = key_of(location)
    later = format_date(moment() + timedelta(days=1))
    response = client.get(f"/metadata/{identifier}/{email}/{later}?media=json")
    assert response.status_code == 404
    assert identifier in response.json["error"]


def test_email_with_plus_and_percent_round_trips(client, publish, make_signer):
    signer = make_signer(email="first+tag%x@example.org")
    document, location = publish(signer=signer)
    assert "first+tag%25x@example.org" in location
    assert client.get(location).data == document
    assert listing(client, "/metadata", email="first+tag%x@example.org")["total"] == 1
