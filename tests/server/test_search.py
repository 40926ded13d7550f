"""GET /api/v1/appliances: free text, filters, ranges, sort, paging, cursors, facets."""

from __future__ import annotations

import base64
import json

import pytest

from marketplace.metadata.model import format_date
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests.server.conftest import EVE, JANE, key_of, moment


def search(client, expected: int = 200, **params):
    response = client.get("/api/v1/appliances", query_string=params)
    assert response.status_code == expected, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.json


def titles(result):
    return sorted(item["title"] for item in result["items"])


@pytest.fixture
def catalogue(publish, ec_signer):
    """Four appliances of two endorsers with different properties."""
    publish(title="Ubuntu web server", description="nginx on ubuntu", os="ubuntu",
            os_version="24.04", os_arch="x86_64", kind="machine", format="qcow2",
            hypervisor="kvm", tag="web", when=moment(4))
    publish(title="Debian base", description="minimal", os="debian", os_version="12",
            os_arch="aarch64", kind="machine", format="raw", hypervisor="xen",
            when=moment(3))
    publish(title="Data disk", description="scratch space", os="none", os_version="1",
            kind="disk",
            format="raw", type="grid", when=moment(2), valid=moment(-300))
    publish(title="Eve ubuntu", description="ubuntu desktop", os="ubuntu", os_version="22.04",
            format="qcow2", signer=ec_signer, when=moment(1))


def test_items_carry_entry_fields_email_status_and_url(client, catalogue):
    result = search(client)
    assert result["total"] == 4 and result["next_cursor"] is None and result["facets"] == {}
    item = next(i for i in result["items"] if i["title"] == "Eve ubuntu")
    assert item["email"] == EVE and item["status"] == "valid"
    assert item["url"].startswith(f"/metadata/{item['identifier']}/{EVE}/")
    assert client.get(item["url"]).status_code == 200


def test_free_text(client, catalogue):
    assert titles(search(client, q="ubuntu")) == ["Eve ubuntu", "Ubuntu web server"]
    assert titles(search(client, q="ngin")) == ["Ubuntu web server"]
    assert titles(search(client, q="ubuntu desktop")) == ["Eve ubuntu"]
    assert titles(search(client, q=EVE)) == ["Eve ubuntu"]
    assert search(client, q="nothing-like-this")["total"] == 0


@pytest.mark.parametrize(("params", "expected"), [
    ({"os": "ubuntu"}, ["Eve ubuntu", "Ubuntu web server"]),
    ({"os_version": "24.04"}, ["Ubuntu web server"]),
    ({"os-version": "12"}, ["Debian base"]),
    ({"arch": "aarch64"}, ["Debian base"]),
    ({"endorser": EVE}, ["Eve ubuntu"]),
    ({"kind": "disk"}, ["Data disk"]),
    ({"type": "grid"}, ["Data disk"]),
    ({"format": "raw"}, ["Data disk", "Debian base"]),
    ({"hypervisor": "xen"}, ["Debian base"]),
    ({"tag": "web"}, ["Ubuntu web server"]),
    ({"os": "ubuntu", "endorser": JANE}, ["Ubuntu web server"]),
    ({"q": "ubuntu", "os_version": "22.04"}, ["Eve ubuntu"]),
])
def test_filters(client, catalogue, params, expected):
    assert titles(search(client, **params)) == expected


def test_identifier_filter_and_status(client, publish):
    _, location = publish(title="retired", deprecated="superseded")
    identifier = key_of(location)[0]
    assert search(client, identifier=identifier)["total"] == 0
    assert titles(search(client, identifier=identifier, status="deprecated")) == ["retired"]
    assert titles(search(client, identifier=identifier, status="all")) == ["retired"]


def test_date_ranges(client, publish):
    publish(title="old", when=moment(10), valid=moment(-10))
    publish(title="recent", when=moment(1), valid=moment(-100))
    middle = format_date(moment(5))
    assert titles(search(client, created_from=middle)) == ["recent"]
    assert titles(search(client, created_to=middle)) == ["old"]
    assert titles(search(client, created_to=format_date(moment(10))[:10])) == ["old"]
    assert titles(search(client, valid_from=format_date(moment(-50)))) == ["recent"]
    assert titles(search(client, valid_to=format_date(moment(-50)))) == ["old"]


def test_sort(client, catalogue):
    ascending = search(client, sort="title")
    assert [i["title"] for i in ascending["items"]] == sorted(titles(ascending))
    descending = search(client, sort="-title")
    assert [i["title"] for i in descending["items"]] == sorted(titles(ascending), reverse=True)
    newest = search(client)
    assert newest["items"][0]["title"] == "Eve ubuntu"
    oldest = search(client, sort="created")
    assert oldest["items"][0]["title"] == "Ubuntu web server"


def test_offset_paging(client, catalogue):
    pages = [search(client, limit=3, offset=offset) for offset in (0, 3)]
    assert [len(p["items"]) for p in pages] == [3, 1]
    assert len({i["identifier"] for p in pages for i in p["items"]}) == 4
    assert pages[0]["next_cursor"] and pages[1]["next_cursor"] is None


def test_cursor_paging_walks_every_item_once(client, catalogue):
    seen, cursor = [], None
    while True:
        params = {"limit": 1, "sort": "title", **({"cursor": cursor} if cursor else {})}
        page = search(client, **params)
        seen += [i["title"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == 4


def test_cursor_of_another_query_is_refused(client, catalogue):
    cursor = search(client, limit=1, os="ubuntu")["next_cursor"]
    assert cursor
    refused = search(client, 400, limit=1, os="debian", cursor=cursor)
    assert refused["problems"][0]["element"] == "cursor"
    assert "another query" in refused["error"]
    assert search(client, limit=1, os="ubuntu", cursor=cursor, facets="true")["items"]


@pytest.mark.parametrize("cursor", ["garbage!", "e30=", base64.urlsafe_b64encode(
    json.dumps([-5, "x"]).encode()).decode(), base64.urlsafe_b64encode(b"\xff\xfe").decode()])
def test_malformed_cursor_is_refused(client, cursor):
    refused = search(client, 400, cursor=cursor)
    assert refused["problems"][0]["element"] == "cursor"


def test_cursor_and_offset_together_are_refused(client, catalogue):
    cursor = search(client, limit=1)["next_cursor"]
    refused = search(client, 400, limit=1, cursor=cursor, offset=1)
    assert "not both" in refused["error"]


def test_facets(client, catalogue):
    result = search(client, facets="true", os="ubuntu")
    facets = result["facets"]
    assert facets["os"] == {"ubuntu": 2, "debian": 1, "none": 1}
    assert facets["endorser"] == {JANE: 1, EVE: 1}
    assert facets["os_version"] == {"24.04": 1, "22.04": 1}
    assert facets["status"] == {"valid": 2}
    assert set(facets) == {"os", "os_version", "arch", "endorser", "kind", "format",
                           "hypervisor", "status"}


def test_a_facet_value_is_sent_back_as_its_filter(client, catalogue):
    """Facets are keyed by filter name: each value, sent as that filter, finds its count."""
    facets = search(client, facets="true")["facets"]
    for name, counts in facets.items():
        if name == "status":
            continue
        for value, count in counts.items():
            assert search(client, **{name: value})["total"] == count, (name, value)


@pytest.mark.parametrize(("name", "value"), [
    ("limit", "0"), ("limit", "501"), ("offset", "x"), ("sort", "-secret"), ("sort", "--title"),
    ("status", "gone"), ("location", "moon"), ("facets", "maybe"), ("created_from", "yesterday"),
    ("valid_to", "2026-01-01T00:00"), ("identifier", "x" * 27), ("endorser", "jane"),
    ("os", "x" * 201), ("q", "x" * 501), ("colour", "blue"),
])
def test_invalid_parameters_name_the_parameter(client, name, value):
    refused = search(client, 400, **{name: value})
    assert refused["problems"][0]["element"] == name
    assert name in refused["error"]


def test_one_appliance_all_endorsers(client, publish, ec_signer):
    image = b"common image"
    publish(image, when=moment(2), title="jane v1")
    _, location = publish(image, when=moment(1), title="jane v2", deprecated="old")
    publish(image, signer=ec_signer, title="eve")
    identifier = key_of(location)[0]
    response = client.get(f"/api/v1/appliances/{identifier}")
    assert response.status_code == 200
    assert titles(response.json) == ["eve", "jane v2"] and response.json["total"] == 2


def test_one_appliance_unknown_or_malformed(client):
    missing = client.get(f"/api/v1/appliances/{'A' * 27}")
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    malformed = client.get("/api/v1/appliances/nope")
    assert malformed.status_code == 400
    assert malformed.json["problems"][0]["element"] == "identifier"


@pytest.fixture
def other_worker(request, app, tmp_path):
    """A client of a second app on the same data dir and store: another gunicorn worker,
    or another server."""
    overrides = {}
    if request.node.callspec.params["app"] == "elasticsearch":
        overrides = request.getfixturevalue("elasticsearch").settings(
            request.getfixturevalue("es_prefix"))
    other = create_app(data_dir=str(tmp_path), **overrides)
    yield other.test_client()
    marketplace_of(other).store.close()


def test_counts_are_made_afresh_for_every_request_in_every_worker(client, other_worker,
                                                                  catalogue, publish):
    """Totals and facets asked through one worker count what was published through another
    at its very next request: no worker keeps counts of its own."""
    asked = [{"facets": "true"}, {"facets": "true", "os": "ubuntu"}, {"q": "ubuntu"},
             {"q": "ubuntu", "os": "ubuntu", "facets": "true"}]
    before = [search(other_worker, **params) for params in asked]
    assert [result["total"] for result in before] == [4, 2, 2, 2]
    publish(title="Third ubuntu", description="ubuntu again", os="ubuntu", when=moment(0.5))
    after = [search(other_worker, **params) for params in asked]
    assert [result["total"] for result in after] == [5, 3, 3, 3]
    assert after[0]["facets"]["os"] == {"ubuntu": 3, "debian": 1, "none": 1}
    assert after[3]["facets"]["status"] == {"valid": 3}
