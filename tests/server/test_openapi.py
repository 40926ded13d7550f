"""marketplace/web/openapi.json: a valid OpenAPI document that covers every route and tells
the truth.

Every operation is called with valid example parameters (one optional parameter at a time,
path parameters of a real entry) in each documented media type; the status must be one it
documents, the content type one documented for that status, and a JSON body must validate
against the documented schema.
"""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from marketplace.metadata import vocabulary
from marketplace.metadata.identifier import is_identifier
from marketplace.web import params
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from marketplace.web.views.api import OPENAPI
from tests import factories
from tests.server.conftest import JANE, key_of, moment

ACCEPTS = ("application/json", "*/*", "text/html")
NOT_DOCUMENTED = ("static",)
# Pages for people, not API: the web UI, the admin pages, the pages of mailed links.
HTML_BLUEPRINTS = ("pages.", "admin_pages.", "moderation_pages.")


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(OPENAPI.read_text())


def resolve(document: dict, item: dict) -> dict:
    while "$ref" in item:
        node = document
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_document_is_valid_openapi(document, client):
    validate_openapi(document)
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.json == document


def test_every_route_is_documented(app, document):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_DOCUMENTED or rule.endpoint.startswith(HTML_BLUEPRINTS):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in document["paths"], f"{rule.rule} is not in marketplace/web/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], f"{method} {rule.rule}"


def test_every_documented_route_exists(app, document):
    adapter = app.url_map.bind("localhost")
    for path, method, _ in operations(document):
        concrete = path.format(identifier="A" * 27, email=JANE, created="2026-01-01T00:00:00Z",
                               tag="t", name="n", first="A" * 27, second=JANE,
                               path="0/000")
        adapter.match(concrete, method=method.upper())


def test_documented_parameters_are_the_accepted_ones(document):
    def names(path, method="get"):
        return {resolve(document, p)["name"]
                for p in document["paths"][path][method].get("parameters", [])
                if resolve(document, p)["in"] == "query"}

    assert names("/api/v1/appliances") == set(params.SEARCH_PARAMS)
    assert names("/metadata") == set(params.LISTING_PARAMS)


@pytest.fixture
def entry(publish):
    """A stored entry whose key and tag fill the path parameters."""
    _, location = publish(tag="latest", when=moment(1))
    identifier, _, created = key_of(location)
    return {"identifier": identifier, "email": JANE, "created": created, "tag": "latest",
            "name": "none", "first": identifier, "second": JANE,
            "path": "0/000.p/1"}  # the log's first tile: the entry's leaf hash


def calls(document, operation, entry):
    """(query string, description) for each call: required only, then each optional one."""
    parameters = [resolve(document, p) for p in operation.get("parameters", [])]
    query = [p for p in parameters if p["in"] == "query"]
    yield {}, "no optional parameter"
    for parameter in query:
        if parameter["name"] == "media" or "example" not in parameter:
            continue
        value = parameter["example"]
        if parameter["name"] == "identifier":
            value = entry["identifier"]
        yield {parameter["name"]: str(value).lower() if isinstance(value, bool) else value}, \
            parameter["name"]


def check_response(document, operation, response, what):
    status = str(response.status_code)
    assert status in operation["responses"], f"{what}: undocumented status {status}"
    documented = resolve(document, operation["responses"][status]).get("content", {})
    assert response.mimetype in documented, f"{what}: undocumented type {response.mimetype}"
    if response.mimetype == "application/json":
        schema = resolve(document, documented["application/json"]["schema"])
        validator = Draft202012Validator({**schema, "components": document["components"]})
        errors = [e.message for e in validator.iter_errors(response.json)]
        assert not errors, f"{what}: {errors[:3]}"


def test_every_operation_answers_as_documented(document, client, entry, rsa_signer):
    checked = 0
    for path, method, operation in operations(document):
        url = path.format(**entry)
        for query, name in calls(document, operation, entry):
            for accept in ACCEPTS:
                what = f"{method.upper()} {path} ({name}, Accept {accept})"
                body = {}
                if method == "post":
                    body = {"data": factories.signed(rsa_signer),
                            "content_type": "application/xml"}
                response = client.open(url, method=method.upper(), query_string=query,
                                       headers={"Accept": accept}, **body)
                # 503 naming a setting: an export this unconfigured app does not sign
                assert response.status_code < 500 or (
                    response.status_code == 503 and b"MARKETPLACE_" in response.data), what
                check_response(document, operation, response, what)
                checked += 1
    assert checked > 100


def test_documented_errors_are_answered_as_documented(document, client):
    for url, path in (("/metadata?limit=0", "/metadata"),
                      ("/metadata/bad", "/metadata/{first}"),
                      (f"/metadata/{'A' * 27}", "/metadata/{first}"),
                      (f"/metadata/{JANE}/{'A' * 27}", "/metadata/{first}/{second}"),
                      (f"/metadata/{'A' * 27}/{'B' * 27}", "/metadata/{first}/{second}"),
                      (f"/metadata/{'A' * 27}/{JANE}/2026-01-01T00:00:00Z",
                       "/metadata/{identifier}/{email}/{created}"),
                      ("/endorsers/nobody@example.org", "/endorsers/{email}"),
                      ("/tag/nobody@example.org/none", "/tag/{email}/{tag}"),
                      ("/api/v1/appliances?cursor=x", "/api/v1/appliances"),
                      (f"/api/v1/appliances/{'A' * 27}", "/api/v1/appliances/{identifier}")):
        for accept in ACCEPTS:
            response = client.get(url, headers={"Accept": accept})
            assert response.status_code in (400, 404), url
            check_response(document, document["paths"][path]["get"], response, url)


def test_upload_errors_are_answered_as_documented(document, client, rsa_signer):
    operation = document["paths"]["/metadata"]["post"]
    image = b"documented conflict"
    newer = factories.signed(rsa_signer, factories.appliance(image), now=moment(1))
    older = factories.signed(rsa_signer, factories.appliance(image), now=moment(2))
    for body, content_type, status in ((newer, "application/xml", 201),
                                       (newer, "application/rdf+xml", 200),
                                       (older, "application/xml", 409),
                                       (b"<x/>", "application/xml", 400),
                                       (newer, "text/plain", 415),
                                       (b" " * (2 << 20), "application/xml", 413)):
        response = client.post("/metadata", data=body, content_type=content_type,
                               headers={"Accept": "application/json"})
        assert response.status_code == status
        check_response(document, operation, response, f"POST /metadata -> {status}")


# --- the document and the server agree on what a parameter may be ---------------------------

def parameter_schemas(document: dict, name: str) -> list[dict]:
    """The schema of every parameter called ``name``, in paths and in request bodies."""
    found = [p["schema"] for p in document["components"]["parameters"].values()
             if p["name"] == name]
    for _, _, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body and name in body["schema"].get("properties", {}):
            found.append(body["schema"]["properties"][name])
    return found


@pytest.mark.parametrize(("name", "pattern"), [
    ("identifier", params.IDENTIFIER_PATTERN), ("email", params.EMAIL_PATTERN),
    ("endorser", params.EMAIL_PATTERN), ("created", params.DATE_PATTERN),
    ("tag", params.TAG_PATTERN),
    ("kind", params.TOKEN_PATTERN), ("os", params.TOKEN_PATTERN), ("arch", params.TOKEN_PATTERN),
    ("created_from", f"{params.DAY_PATTERN}(?:{params.TIME_PATTERN})?"),
])
def test_the_document_carries_the_patterns_the_server_checks(document, name, pattern):
    schemas = [s for s in parameter_schemas(document, name) if "pattern" in s
               or name != "endorser"]
    assert schemas, name
    assert {s.get("pattern") for s in schemas} == {f"^{pattern}$"}


def test_a_path_segment_has_the_three_shapes_the_server_reads(document):
    """/metadata/{first}/{second}: one schema, an identifier, an email or a date."""
    shapes = document["components"]["schemas"]["PathSegment"]["oneOf"]
    assert {s["pattern"] for s in shapes} == {
        f"^{p}$" for p in (params.IDENTIFIER_PATTERN, params.EMAIL_PATTERN, params.DATE_PATTERN)}
    for name in ("first", "second"):
        assert {s["$ref"] for s in parameter_schemas(document, name)} == {
            "#/components/schemas/PathSegment"}


IDENTIFIERS = ["0" * 27, "Q" + "A" * 26, "_" * 27, "P" + "_" * 26, "A" * 27,
               "MMZu9WvwKIro-rtBQfDk4PsKO7_", "A" * 26, "A" * 28, "A" * 26 + "=", ""]


@pytest.mark.parametrize("value", IDENTIFIERS)
def test_the_identifier_pattern_admits_exactly_what_the_server_accepts(value):
    assert bool(re.fullmatch(params.IDENTIFIER_PATTERN, value)) == is_identifier(value)


DATES = ["9803-13-53T12:30:93Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
         "9999-12-31T23:59:59Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
         "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
         "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z",
         "\u0662\u0660\u0662\u0666-01-01T00:00:00Z", "2026-1-01T00:00:00Z"]


@pytest.mark.parametrize("value", DATES)
def test_the_date_pattern_admits_exactly_what_the_server_accepts(value):
    try:
        params.date_value("created", value)
        accepted = True
    except params.ParameterError:
        accepted = False
    assert bool(re.fullmatch(params.DATE_PATTERN, value)) == accepted


@pytest.mark.parametrize(("url", "name"), [
    ("/api/v1/appliances/" + "0" * 27, "identifier"),
    (f"/metadata/{'A' * 27}/{JANE}/9803-13-53T12:30:93Z", "created"),
    ("/api/v1/appliances?kind=m\u00e1quina", "kind"),
    ("/api/v1/appliances?os=\u0443\u0431\u0443\u043d\u0442\u0443", "os"),
    ("/api/v1/appliances?identifier=", "identifier"),
    ("/api/v1/appliances?endorser=", "endorser"),
    ("/metadata?email=", "email"),
    ("/metadata?limit=", "limit"),
    ("/api/v1/changes?after=", "after"),
    ("/api/v1/changes?limit=", "limit"),
])
def test_values_the_document_refuses_are_refused(client, url, name):
    response = client.get(url, headers={"Accept": "application/json"})
    assert response.status_code == 400, url
    assert response.json["problems"][0]["element"] == name


def test_tags_in_any_script_are_accepted(client, publish):
    publish(tag="d\u00e9bian-\u0443\u0431\u0443\u043d\u0442\u0443")
    tagged = client.get(f"/tag/{JANE}/d\u00e9bian-\u0443\u0431\u0443\u043d\u0442\u0443",
                        headers={"Accept": "application/json"})
    assert tagged.status_code == 200
    search = client.get("/api/v1/appliances", query_string={"tag": "d\u00e9bian-\u0443\u0431"
                                                                    "\u0443\u043d\u0442\u0443"})
    assert search.json["total"] == 1


def test_the_search_page_still_ignores_empty_form_fields(client):
    response = client.get("/?q=&os=&kind=", headers={"Accept": "text/html"},
                          follow_redirects=True)
    assert response.status_code == 200


def test_every_operation_documents_the_http_servers_414(document):
    for path, method, operation in operations(document):
        answer = resolve(document, operation["responses"].get("414", {}))
        assert "text/html" in answer.get("content", {}), f"{method.upper()} {path}"


def test_an_admin_api_404_is_json(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("ops:a-long-enough-admin-token-for-tests-0123456789\n")
    app = create_app(data_dir=str(tmp_path / "data"), admin_token_file=str(tokens))
    try:
        response = app.test_client().post(
            "/admin/api/remove", json={"identifier": "A" * 27, "email": JANE,
                                       "created": "2026-01-01T00:00:00Z", "reason": "gone"},
            headers={"Authorization": "Bearer a-long-enough-admin-token-for-tests-0123456789"})
    finally:
        marketplace_of(app).close()
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert "no entry" in response.json["error"]


def test_the_documented_facets_are_the_vocabularys(document):
    """A search's facet keys are its filter names (and status), in the document as served."""
    facets = document["components"]["schemas"]["SearchResult"]["properties"]["facets"]
    assert set(facets["propertyNames"]["enum"]) == {*vocabulary.FACETS,
                                                    vocabulary.STATUS_FACET}
