"""Content negotiation: ?media wins, then Accept with q-values; XML by default; errors too."""

from __future__ import annotations

import pytest
from lxml import etree

from marketplace.web import negotiation

ACCEPTS = [
    (None, "application/xml"),
    ("*/*", "application/xml"),
    ("application/xml", "application/xml"),
    ("application/rdf+xml", "application/xml"),
    ("text/xml", "application/xml"),
    ("application/json", "application/json"),
    ("text/html", "text/html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
    ("application/json;q=0.5, text/html;q=0.9", "text/html"),
    ("application/json, text/html;q=0.1", "application/json"),
    ("application/xml;q=0.1, application/json;q=0.2", "application/json"),
    ("image/png", "application/xml"),
]


@pytest.mark.parametrize(("accept", "expected"), ACCEPTS)
def test_accept_header_chooses_media(client, accept, expected):
    headers = {"Accept": accept} if accept else {}
    response = client.get("/endorsers", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == expected
    assert response.headers["Vary"] == "Accept"


@pytest.mark.parametrize(("media", "expected"), [("xml", "application/xml"),
                                                 ("json", "application/json"),
                                                 ("html", "text/html"),
                                                 ("JSON", "application/json")])
def test_media_parameter_wins_over_accept(client, media, expected):
    response = client.get("/metadata", query_string={"media": media},
                          headers={"Accept": "text/html;q=1, application/json;q=0.1"})
    assert response.status_code == 200
    assert response.mimetype == expected


def test_bad_media_is_400_in_accept_media(client):
    response = client.get("/metadata?media=yaml", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json["problems"][0]["element"] == "media"
    assert "xml, json, html" in response.json["error"]
    as_xml = client.get("/metadata?media=yaml")
    assert as_xml.status_code == 400 and as_xml.mimetype == "application/xml"


def test_errors_as_xml_document(client):
    response = client.get("/metadata?limit=9999")
    assert response.status_code == 400
    assert response.mimetype == "application/xml"
    root = etree.fromstring(response.data)
    assert root.tag == "error" and root.get("status") == "400"
    assert "limit" in root.findtext("message")
    problem = root.find("problems/problem")
    assert problem.get("element") == "limit" and problem.get("rule") == "parameter"


def test_errors_as_json(client):
    response = client.get("/metadata?limit=9999", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert set(response.json) == {"error", "status", "problems"}
    assert response.json["problems"][0]["element"] == "limit"


def test_errors_as_html_page(client):
    response = client.get("/metadata?limit=9999&media=html")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert b"Error 400" in response.data and b"<code>limit</code>" in response.data


def test_not_found_route_in_each_media(client):
    assert client.get("/no/such/route").mimetype == "application/xml"
    as_json = client.get("/no/such/route", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and "error" in as_json.json
    assert client.get("/no/such/route?media=html").mimetype == "text/html"


def test_method_not_allowed_keeps_allow_header(client):
    response = client.delete("/metadata", headers={"Accept": "application/json"})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert response.json["status"] == 405


def test_api_routes_answer_json_errors_whatever_the_accept(client):
    response = client.get("/api/v1/appliances?limit=0", headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.json["problems"][0]["element"] == "limit"


def test_xml_errors_carry_hostile_text_safely():
    body = negotiation.error_xml({"error": "bad \x00 value \x1b", "status": 400, "problems": [
        {"element": "q\x00", "rule": "parameter", "message": "bad\x07"}]})
    root = etree.fromstring(body)
    assert root.findtext("message") == "bad  value "


def test_root_element_keeps_bytes_and_falls_back_for_other_encodings():
    utf8 = (b"<?xml version='1.0' encoding='UTF-8'?>\n<!-- before -->\n<r:RDF xmlns:r='u'>"
            b"<a>\xc3\xa9</a></r:RDF>\n<!-- after --><?pi x?>\n")
    assert negotiation.root_element(utf8) == b"<r:RDF xmlns:r='u'><a>\xc3\xa9</a></r:RDF>"
    latin = ("<?xml version='1.0' encoding='ISO-8859-1'?>\n<rdf:RDF xmlns:rdf="
             "'http://www.w3.org/1999/02/22-rdf-syntax-ns#'><a>\u00e9</a></rdf:RDF>")
    converted = negotiation.root_element(latin.encode("latin-1"))
    assert converted.decode("utf-8").endswith("<a>\u00e9</a></rdf:RDF>")
