"""Every answer of every route carries the browser-side protections (issue 11, finding 1b),
and the Host header never reaches a page (finding 13).

Stored documents are served inline as XML, so a browser must never run anything in them:
non-HTML answers get ``default-src 'none'; sandbox``; HTML pages a CSP that admits only
the UI's own static files. The routes are walked from the app's URL map, so a route added
later is covered without editing this file.
"""

from __future__ import annotations

import re

import pytest

from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories

SAMPLE = {"identifier": "AAAAAAAAAAAAAAAAAAAAAAAAAAA", "email": "jane.tester@example.org",
          "created": "2024-01-02T03:04:05Z", "tag": "web", "action": "confirm",
          "filename": "app.css", "name": "default",
          # /metadata/<first>/<second>: segments read by their shape
          "first": "AAAAAAAAAAAAAAAAAAAAAAAAAAA", "second": "jane.tester@example.org",
          "path": "0/000"}  # /log/tile/<path>: a tile of the transparency log
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
HTML_PAGES = ("/", "/publishers", "/upload", "/appliances/AAAAAAAAAAAAAAAAAAAAAAAAAAA",
              "/metadata?media=html", "/endorsers?media=html", "/nowhere",
              "/moderation/confirm?token=nothing")


@pytest.fixture
def app(tmp_path):
    app = create_app(data_dir=str(tmp_path / "data"))
    yield app
    marketplace_of(app).close()


def every_request(app) -> list[tuple[str, str]]:
    """(method, path) of every route with sample arguments, every method, and odd paths."""
    requests = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: SAMPLE[m.group(1)], rule.rule)
        requests += [(method, path) for method in METHODS]
        requests += [("GET", path + "?media=xml"), ("GET", path + "?media=json"),
                     ("GET", path + "?media=bogus")]
    return [*requests, ("GET", "/no/such/route"), ("GET", "/static/missing.js"),
            ("POST", "/metadata")]


def csp_of(response) -> dict[str, str]:
    policy = response.headers.get("Content-Security-Policy", "")
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in
            (p.strip() for p in policy.split(";")) if d}


def test_every_answer_of_every_route_carries_the_protections(app):
    client = app.test_client()
    missing = []
    for method, path in every_request(app):
        response = client.open(path, method=method)
        csp = csp_of(response)
        if (response.headers.get("X-Content-Type-Options") != "nosniff"
                or csp.get("frame-ancestors") != "'none'"
                or "default-src" not in csp
                or response.headers.get("X-Frame-Options") != "DENY"
                or not response.headers.get("Referrer-Policy")
                or response.headers.get("Cross-Origin-Resource-Policy") != "same-origin"):
            missing.append(f"{method} {path} -> {response.status_code}")
            continue
        if response.mimetype != "text/html" and (csp.get("default-src") != "'none'"
                                                 or "sandbox" not in csp):
            missing.append(f"{method} {path} ({response.mimetype}): {csp}")
    assert not missing, "answers without the protections:\n" + "\n".join(missing)


def test_a_413_and_a_stored_document_are_sandboxed(app, rsa_signer):
    client = app.test_client()
    too_big = client.post("/metadata", data=b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1),
                          content_type="application/xml")
    assert too_big.status_code == 413 and "sandbox" in csp_of(too_big)
    document = factories.signed(rsa_signer)
    assert client.post("/metadata", data=document,
                       content_type="application/xml").status_code == 201
    for path in ("/metadata?media=xml", "/endorsers/jane.tester@example.org?media=xml",
                 "/metadata?media=json"):
        response = client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 200
        assert csp_of(response)["default-src"] == "'none'" and "sandbox" in csp_of(response)


def test_html_pages_admit_only_their_own_static_files(app):
    client = app.test_client()
    for path in HTML_PAGES:
        response = client.get(path, headers={"Accept": "text/html"})
        assert response.mimetype == "text/html", path
        csp = csp_of(response)
        assert csp["default-src"] == "'none'", path
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'", path
        assert "unsafe" not in response.headers["Content-Security-Policy"], path
        assert csp["base-uri"] == "'none'" and csp["form-action"] == "'self'", path
        assert response.headers["Cross-Origin-Opener-Policy"], path
        text = response.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"inline script in {path}"
        assert "<style" not in text and " style=" not in text, f"inline style in {path}"


# --- finding 13: the Host header -----------------------------------------------------------


def test_the_public_url_is_shown_whatever_the_host_header_says(tmp_path, rsa_signer):
    app = create_app(data_dir=str(tmp_path / "data"),
                     public_url="https://market.example.org")
    try:
        client = app.test_client()
        page = client.get("/upload", headers={"Host": "market.example.org"})
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert "--marketplace-endpoint https://market.example.org<" in text
        evil = client.get("/upload", headers={"Host": "evil.example:666"})
        assert evil.status_code == 400
        assert "evil.example" not in evil.get_data(as_text=True)
        assert evil.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        marketplace_of(app).close()


def test_the_appliance_page_shows_the_public_url_in_the_fetch_command(tmp_path, rsa_signer):
    app = create_app(data_dir=str(tmp_path / "data"),
                     public_url="https://market.example.org/")
    try:
        client = app.test_client()
        host = {"Host": "market.example.org"}
        document = factories.signed(rsa_signer)
        created = client.post("/metadata", data=document, content_type="application/xml",
                              headers={"Accept": "application/json", **host})
        assert created.status_code == 201, created.json
        page = client.get(f"/appliances/{created.json['identifier']}", headers=host)
        assert "--marketplace-endpoint https://market.example.org" in page.get_data(
            as_text=True)
    finally:
        marketplace_of(app).close()


def test_trusted_hosts_refuse_other_hosts_with_400(tmp_path):
    app = create_app(data_dir=str(tmp_path / "data"),
                     trusted_hosts="market.example.org, .mirror.example.org")
    try:
        client = app.test_client()
        for host, status in (("market.example.org", 200), ("eu.mirror.example.org:8080", 200),
                             ("evil.example:666", 400), ("market.example.org.evil", 400)):
            assert client.get("/upload", headers={"Host": host}).status_code == status, host
    finally:
        marketplace_of(app).close()


def test_without_public_url_or_trusted_hosts_any_host_is_served(app):
    page = app.test_client().get("/upload", headers={"Host": "127.0.0.1:8080"})
    assert page.status_code == 200
    assert "--marketplace-endpoint http://127.0.0.1:8080<" in page.get_data(as_text=True)


@pytest.mark.parametrize("url", ["ftp://market.example.org", "market.example.org",
                                 "https://", "https://user@market.example.org"])
def test_a_public_url_that_is_not_an_http_address_stops_the_start(tmp_path, url):
    with pytest.raises(ValueError, match="PUBLIC_URL"):
        create_app(data_dir=str(tmp_path / "data"), public_url=url)
