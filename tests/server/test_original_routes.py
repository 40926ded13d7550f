"""The REST forms the original StratusLab marketplace served (issue 12, point 6).

Every route also under the original war's context path ``/marketplace``; trailing slashes
answered in place; ``/metadata/<a>[/<b>]`` read by the segments' shapes (identifier,
endorser email, date); 404 for a path naming what has no entry; the whole catalogue without
``limit``, streamed a page at a time; an absolute ``Location``; and error documents whose
root's text is the message. tests/compat plays the original clients' own requests.
"""

from __future__ import annotations

import re

import pytest
from lxml import etree

from marketplace.metadata.model import format_date
from marketplace.metadata.vocabulary import MAX_LIMIT
from marketplace.store.base import Entry
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories
from tests.server.conftest import EVE, JANE, key_of, moment

JSON = {"Accept": "application/json"}
XML = {"Accept": "application/xml"}
RDF_ROOT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"
PARAMETER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")
# The original's own routes: their answers must be the same bytes with or without the
# prefix and the slash. (Other answers may name the address they were asked at.)
SAME_BYTES = ("api.listing", "api.entry", "api.endorsers", "api.endorser",
              "api.endorser_tags", "api.tagged", "api.appliance", "api.openapi")
UNKNOWN_IDENTIFIER = "A" * 27
NOBODY = "nobody@example.org"
ADMIN_TOKEN = "an-operators-token-long-enough-for-the-guard-0123456789"


@pytest.fixture
def entry(publish) -> dict[str, str]:
    """A stored entry of Jane's, tagged: the values of every route's parameters."""
    _, location = publish(tag="latest", when=moment(1))
    identifier, email, created = key_of(location)
    return {"identifier": identifier, "email": email, "created": created, "tag": "latest",
            "first": identifier, "second": email, "name": "default", "action": "confirm",
            "filename": "app.css", "path": "0/000.p/1"}  # the log's first tile


def every_get(app, values: dict[str, str]) -> list[tuple[str, str]]:
    """(endpoint, path) of every GET route, its parameters filled with ``values``."""
    return [(rule.endpoint, PARAMETER.sub(lambda m: values[m.group(1)], rule.rule))
            for rule in app.url_map.iter_rules() if "GET" in rule.methods]


def same_answer(endpoint: str, one, other) -> None:
    assert (one.status_code, one.mimetype) == (other.status_code, other.mimetype), endpoint
    assert one.headers.get("Content-Security-Policy") == \
        other.headers.get("Content-Security-Policy"), endpoint
    assert one.headers.get("Cache-Control") == other.headers.get("Cache-Control"), endpoint
    if endpoint in SAME_BYTES:
        assert one.data == other.data, endpoint


def listed(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return sorted(e["title"] for e in response.json["entries"])


# --- /marketplace/ and trailing slashes --------------------------------------------------


def test_every_route_answers_the_same_under_the_context_path(app, client, entry):
    for endpoint, path in every_get(app, entry):
        for media in ({}, {"media": "json"}):
            same_answer(endpoint, client.get(path, query_string=media),
                        client.get("/marketplace" + path, query_string=media))


def test_trailing_slashes_answer_in_place(app, client, entry):
    for endpoint, path in every_get(app, entry):
        if endpoint == "static" or path == "/":
            continue
        bare = path.rstrip("/")
        without = client.get(bare, query_string={"media": "json"})
        with_slash = client.get(bare + "/", query_string={"media": "json"})
        # no redirect to the other spelling (a route's own redirects stay as they are)
        assert with_slash.headers.get("Location") == without.headers.get("Location"), path
        same_answer(endpoint, without, with_slash)


def test_the_context_path_is_one_whole_segment_taken_once(client, entry):
    assert client.get("/marketplace").status_code == client.get("/").status_code == 200
    assert client.get("/marketplacemetadata").status_code == 404
    assert client.get("/marketplace/marketplace/metadata").status_code == 404


def test_the_admin_area_keeps_its_guards_under_the_context_path(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ops:{ADMIN_TOKEN}\n")
    app = create_app(data_dir=str(tmp_path / "data"), admin_token_file=str(tokens))
    client = app.test_client()
    try:
        for prefix in ("", "/marketplace"):
            assert client.get(f"{prefix}/admin/api/uploads").status_code == 401, prefix
            allowed = client.get(f"{prefix}/admin/api/uploads",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert allowed.status_code == 200, prefix
            assert allowed.headers["Cache-Control"] == "no-store", prefix
            framed = client.get(f"{prefix}/admin/", headers={"Sec-Fetch-Dest": "iframe"})
            assert framed.status_code == 403, prefix
    finally:
        marketplace_of(app).close()


# --- absolute Location ------------------------------------------------------------------


def test_an_upload_under_the_context_path_is_located_under_it(client, rsa_signer):
    document = factories.signed(rsa_signer)
    response = client.post("/marketplace/metadata", data=document,
                           content_type="application/xml", headers=XML)
    assert response.status_code == 201
    identifier, email, created = key_of(response.headers["Location"])
    assert response.headers["Location"] == \
        f"http://localhost/marketplace/metadata/{identifier}/{email}/{created}"
    assert client.get(response.headers["Location"]).data == document


def test_a_public_url_with_the_context_path_is_not_doubled(tmp_path, rsa_signer):
    app = create_app(data_dir=str(tmp_path / "data"),
                     public_url="https://mp.example.org/marketplace")
    client = app.test_client()
    try:
        for path in ("/metadata", "/marketplace/metadata"):
            response = client.post(path, data=factories.signed(rsa_signer),
                                   content_type="application/xml",
                                   base_url="https://mp.example.org")
            assert response.status_code == 201, response.get_data(as_text=True)
            assert re.fullmatch(r"https://mp\.example\.org/marketplace/metadata/[^/]+/[^/]+/"
                                r"[^/]+", response.headers["Location"]), path
    finally:
        marketplace_of(app).close()


def test_a_tag_answers_with_its_entrys_absolute_address(client, entry):
    answer = client.get(f"/marketplace/tag/{JANE}/latest")
    assert answer.headers["Content-Location"] == (
        f"http://localhost/marketplace/metadata/{entry['identifier']}/{JANE}/"
        f"{entry['created']}")


# --- path segments read by their shape ---------------------------------------------------


@pytest.fixture
def catalogue(publish, ec_signer) -> dict[str, str]:
    """Jane: image A (an old and a new version, tagged), image B; Eve: image A."""
    old, new = moment(3), moment(2)
    _, location = publish(b"image A", when=old, title="A old", tag="stable")
    publish(b"image A", when=new, title="A new", tag="stable")
    publish(b"image B", when=moment(1), title="B", tag="testing")
    publish(b"image A", signer=ec_signer, title="A by Eve")
    return {"a": key_of(location)[0], "old": format_date(old), "new": format_date(new)}


def test_an_endorsers_entries_by_email(client, catalogue):
    assert listed(client.get(f"/metadata/{JANE}", headers=JSON)) == ["A new", "B"]
    assert listed(client.get(f"/metadata/{EVE}", headers=JSON)) == ["A by Eve"]


def test_an_endorsers_tagged_entries(client, catalogue):
    assert listed(client.get(f"/metadata/{JANE}?tag=stable", headers=JSON)) == ["A new"]
    assert listed(client.get(f"/metadata/{JANE}?tag=testing", headers=JSON)) == ["B"]


def test_an_identifier_and_an_email_in_either_order(client, catalogue):
    a = catalogue["a"]
    assert listed(client.get(f"/metadata/{a}", headers=JSON)) == ["A by Eve", "A new"]
    assert listed(client.get(f"/metadata/{JANE}/{a}", headers=JSON)) == ["A new"]
    assert listed(client.get(f"/metadata/{a}/{JANE}", headers=JSON)) == ["A new"]


def test_an_identifier_and_a_date_name_that_version_even_when_older(client, catalogue):
    a = catalogue["a"]
    assert listed(client.get(f"/metadata/{a}/{catalogue['old']}", headers=JSON)) == ["A old"]
    assert listed(client.get(f"/metadata/{catalogue['new']}/{a}", headers=JSON)) == ["A new"]
    assert listed(client.get(f"/metadata/{catalogue['old']}", headers=JSON)) == ["A old"]
    assert listed(client.get(f"/metadata/{catalogue['old']}/{JANE}", headers=JSON)) == \
        ["A old"]


def test_the_xml_form_holds_the_signed_documents(client, catalogue):
    answer = client.get(f"/marketplace/metadata/{JANE}/", headers=XML)
    root = etree.fromstring(answer.data)
    assert root.get("total") == "2"
    assert [child.tag for child in root] == [RDF_ROOT, RDF_ROOT]


@pytest.mark.parametrize(("path", "element"), [
    (f"/metadata/{UNKNOWN_IDENTIFIER}/{'B' * 27}", "identifier"),
    (f"/metadata/{JANE}/{EVE}", "email"),
    ("/metadata/2026-01-01T00:00:00Z/2026-01-02T00:00:00Z", "created"),
    ("/metadata/not-a-thing", "path"),
    (f"/metadata/{UNKNOWN_IDENTIFIER}/2026-01-01", "path"),
    (f"/metadata/{'j' * 300}@example.org", "email"),
    ("/metadata/2026-02-30T00:00:00Z", "path"),
])
def test_a_path_of_no_reading_is_refused_naming_why(client, path, element):
    answer = client.get(path, headers=JSON)
    assert answer.status_code == 400, path
    assert answer.json["problems"][0]["element"] == element


def test_a_path_and_its_query_must_agree(client, catalogue):
    answer = client.get(f"/metadata/{JANE}", query_string={"email": EVE}, headers=JSON)
    assert answer.status_code == 400
    assert answer.json["problems"][0]["element"] == "email"


# --- 404 for what has no entry -----------------------------------------------------------


@pytest.mark.parametrize("path", [
    f"/metadata/{UNKNOWN_IDENTIFIER}",
    f"/metadata/{NOBODY}",
    "/metadata/2001-01-01T00:00:00Z",
    f"/metadata/{NOBODY}/{UNKNOWN_IDENTIFIER}",
])
def test_a_path_naming_what_has_no_entry_is_404(client, catalogue, path):
    for headers in (JSON, XML):
        assert client.get(path, headers=headers).status_code == 404, (path, headers)
        assert client.get("/marketplace" + path + "/", headers=headers).status_code == 404


def test_a_path_naming_two_things_with_no_common_entry_is_404(client, catalogue):
    a = catalogue["a"]
    for path in (f"/metadata/{a}/2001-01-01T00:00:00Z", f"/metadata/{a}/{NOBODY}"):
        answer = client.get(path, headers=JSON)
        assert answer.status_code == 404, path
        assert a in answer.json["error"]


def test_entries_of_another_status_are_200_not_404(client, publish):
    _, location = publish(title="retired", deprecated="replaced")
    identifier = key_of(location)[0]
    assert listed(client.get(f"/metadata/{identifier}", headers=JSON)) == []
    assert listed(client.get(f"/metadata/{identifier}?status=all", headers=JSON)) == \
        ["retired"]


def test_filters_of_the_query_narrow_to_an_empty_list_not_404(client, catalogue):
    assert listed(client.get(f"/metadata/{JANE}?tag=none-such", headers=JSON)) == []
    assert listed(client.get(f"/metadata?identifier={UNKNOWN_IDENTIFIER}", headers=JSON)) == []


# --- the error document -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metadata/not-a-thing", f"/metadata/{NOBODY}"])
def test_the_xml_errors_root_text_is_the_message(client, path):
    root = etree.fromstring(client.get(path, headers=XML).data)
    assert root.tag == "error"
    assert root.text.strip() == root.findtext("message") != ""


def test_a_refused_uploads_root_text_is_the_message(client):
    answer = client.post("/marketplace/metadata", data=b"<x/>", content_type="application/xml",
                         headers=XML)
    assert answer.status_code == 400
    root = etree.fromstring(answer.data)
    assert root.text.strip() == root.findtext("message") != ""


# --- the whole catalogue without limit ------------------------------------------------------


@pytest.fixture
def large(tmp_path, ec_signer):
    """A SQLite marketplace holding more entries than one page (added to the store directly:
    signing is real, uploading each would only slow the test)."""
    app = create_app(data_dir=str(tmp_path / "large"))
    store = marketplace_of(app).store
    count = MAX_LIMIT + 23
    for index in range(count):
        store.add(Entry.from_document(factories.signed(
            ec_signer, factories.appliance(title=f"t{index}"))))
    yield app, count
    marketplace_of(app).close()


def identifiers_of(answer) -> list[str]:
    return [e["identifier"] for e in answer.json["entries"]]


def test_without_limit_every_entry_is_listed_in_xml_and_json(large):
    app, count = large
    client = app.test_client()
    root = etree.fromstring(client.get("/metadata", headers=XML).data)
    assert root.get("total") == str(count) and len(root) == count
    assert root.get("limit") is None and root.get("offset") is None
    whole = client.get("/marketplace/metadata/", headers=JSON)
    assert whole.json["total"] == count
    first = client.get("/metadata", query_string={"limit": MAX_LIMIT}, headers=JSON)
    rest = client.get("/metadata", query_string={"offset": MAX_LIMIT}, headers=JSON)
    assert identifiers_of(whole) == identifiers_of(first) + identifiers_of(rest)
    assert len(set(identifiers_of(whole))) == count


def test_with_limit_or_offset_one_page(large):
    app, count = large
    client = app.test_client()
    page = client.get("/metadata", query_string={"limit": 10, "offset": count - 4},
                      headers=JSON)
    assert page.json["total"] == count and len(page.json["entries"]) == 4
    root = etree.fromstring(client.get("/metadata?limit=7", headers=XML).data)
    assert (root.get("total"), root.get("limit"), root.get("offset"), len(root)) == \
        (str(count), "7", "0", 7)
    html = client.get("/metadata", headers={"Accept": "text/html"})
    assert html.status_code == 200 and html.data.count(b"/metadata/") < count


def test_an_entry_streamed_in_json_is_the_same_as_paged(client, catalogue):
    whole = client.get("/metadata", headers=JSON).json
    paged = client.get("/metadata?limit=10", headers=JSON).json
    assert whole["entries"] == paged["entries"] and whole["total"] == paged["total"]


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_streamed_listings_do_not_hold_the_request_context(client, catalogue):
    """A body is read after its view returned: one never read (HEAD), or two open at once,
    must not leave a request context to be popped out of turn (Flask's
    ``stream_with_context`` did: "Popped wrong request context")."""
    head = client.head("/metadata")
    assert head.status_code == 200 and head.data == b""
    one, other = client.get("/metadata", headers=JSON), client.get("/metadata/", headers=JSON)
    assert one.json == other.json and one.json["total"] == 3
