"""Stored XSS through a signed document (issue 11, finding 1), in a real browser.

A signed document carrying an XHTML ``<script>`` and an SVG ``onload`` is put straight into
the store, as if the upload check had let it through. An operator is signed in (the
browser answers the admin area's basic-auth challenge by itself), and every link that
shows the document is opened. The script does what the attacker's did: it reads the admin
page's CSRF token with ``fetch`` (or from a popup it opened) and blocks an endorser. The
test asserts that no script ran and nothing changed; a second test strips the protective
headers from the document's answers (as if they had failed) and asserts that the admin
area still holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from lxml import etree
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from werkzeug.security import generate_password_hash

from marketplace.metadata import document, model, signature
from marketplace.metadata.keys import Credentials
from marketplace.store.base import Entry
from marketplace.store.sqlite import SQLiteStore
from tests import factories
from tests.live.conftest import LiveServer
from tests.ui.conftest import EVE, JANE, open_page

OPERATOR, PASSWORD = "alice", "operator password 1234"
TOKEN = "ops-token-" + "Vb6Nq2Lx8Rt4Mz0Kc5"
XHTML = "http://www.w3.org/1999/xhtml"
SVG = "http://www.w3.org/2000/svg"
TAG = "xss"
# What the attacker's document runs: it marks that it ran, then tries the two ways to an
# operator's CSRF token (a fetch of the admin page; a popup of it) and posts the block form.
PAYLOAD = """
window.__xss = (window.__xss || 0) + 1;
fetch('/xss-ran');
function block(html, marker) {
  var token = /name="csrf" value="([0-9a-f]+)"/.exec(html);
  if (!token) { return; }
  fetch(marker);
  fetch('/admin/block', {method: 'POST', body: new URLSearchParams(
    {csrf: token[1], endorser: 'VICTIM', reason: 'xss'})});
}
fetch('/admin/').then(function (r) { return r.text(); })
  .then(function (html) { block(html, '/xss-read-by-fetch'); });
var popup = window.open('/admin/', 'admin');
setTimeout(function () {
  try { block(popup.document.documentElement.outerHTML, '/xss-read-by-popup'); }
  catch (e) { fetch('/xss-popup-closed'); }
}, 3000);
""".replace("VICTIM", EVE)
SVG_ONLOAD = "window.__xss = (window.__xss || 0) + 1; fetch('/xss-ran-svg');"
SETTLE_MS = 4500


def hostile_document(signer) -> bytes:
    """A correctly signed document with a script and an SVG onload among its properties."""
    now = datetime.now(UTC).replace(microsecond=0)
    root = model.to_document(factories.appliance(title="Hostile image", tag=TAG))
    description = root.find(document.DESCRIPTION)
    etree.SubElement(description, f"{{{XHTML}}}script").text = PAYLOAD
    etree.SubElement(description, f"{{{SVG}}}svg", onload=SVG_ONLOAD)
    signature.sign(root, Credentials(signer.key, signer.certificate), now=now)
    return document.serialize(root)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, signers) -> Iterator[tuple[LiveServer, Entry]]:
    """A server with admin credentials whose store holds the hostile document."""
    root = tmp_path_factory.mktemp("ui-hostile")
    data = root / "data"
    data.mkdir()
    (root / "accounts").write_text(f"{OPERATOR}:{generate_password_hash(PASSWORD)}\n")
    (root / "tokens").write_text(f"ops:{TOKEN}\n")
    (data / "marketplace.cfg").write_text(
        f"[marketplace]\nADMIN_ACCOUNTS_FILE = {root / 'accounts'}\n"
        f"ADMIN_TOKEN_FILE = {root / 'tokens'}\n")
    entry = Entry.from_document(hostile_document(signers[JANE]))
    store = SQLiteStore(Path(data) / "marketplace.db")
    try:
        # published as the marketplace publishes (feed and log with it): an entry stored
        # behind the log's back is what the start-up check reports, and /healthz says 503
        assert store.state.publish(entry, datetime.now(UTC)).new
    finally:
        store.close()
    server = LiveServer(data, root).start()
    yield server, entry
    server.stop()


def links_showing(entry: Entry) -> list[str]:
    """Every address that shows the document, in each media type."""
    email = quote(entry.email, safe="@+")
    created = model.format_date(entry.created)
    shown = [f"metadata/{entry.identifier}", f"metadata/{entry.identifier}/{email}",
             f"metadata/{entry.identifier}/{email}/{created}", "metadata",
             f"endorsers/{email}", f"tag/{email}/{TAG}"]
    pages = ["", f"appliances/{entry.identifier}", f"publishers/{email}", "admin/",
             "admin/audit", f"api/v1/appliances/{entry.identifier}"]
    return [f"{path}?media={media}" for path in shown for media in ("xml", "json", "html")] \
        + pages


def admin_state(server: LiveServer) -> tuple[list, list]:
    """The blocked endorsers and the audit log, read with the operator's token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    blocked = server.get("admin/api/blocked", headers=headers)
    audit = server.get("admin/api/audit", headers=headers)
    assert blocked.status_code == audit.status_code == 200, blocked.text
    return blocked.json()["blocked"], audit.json()["records"]


def visit_as_operator(browser, server: LiveServer, entry: Entry, strip: bool = False):
    """Open every link as a signed-in operator; what the pages requested and set."""
    context, page = open_page(browser, http_credentials={"username": OPERATOR,
                                                         "password": PASSWORD})
    if strip:
        context.route(lambda url: "media=" in url, strip_protections)
    ran = []
    try:
        for link in links_showing(entry):
            try:
                response = page.goto(server.url + link)
            except PlaywrightError as exc:  # an attachment is saved, never shown
                assert "Download is starting" in str(exc), (link, exc)
                continue
            assert response is not None and response.status < 400, (link, response.status)
            page.wait_for_timeout(SETTLE_MS if "media=xml" in link else 300)
            ran.append((link, page.evaluate("window.__xss || 0")))
        requested = list(page.watched.requests)
    finally:
        context.close()
    return requested, ran


def strip_protections(route) -> None:
    """Serve the answer without its protective headers: as if finding 1(b) had failed."""
    response = route.fetch()
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("content-security-policy", "x-content-type-options",
                                    "cross-origin-opener-policy", "x-frame-options")}
    route.fulfill(response=response, headers=headers)


def test_no_link_to_a_hostile_document_runs_its_script(browser, hostile):
    server, entry = hostile
    before = admin_state(server)
    assert server.get("metadata?media=xml").content.count(b"fetch('/xss-ran')") == 1
    requested, ran = visit_as_operator(browser, server, entry)
    assert [r for r in requested if "/xss-" in r] == [], "the document's script ran"
    assert [link for link, count in ran if count] == []
    assert admin_state(server) == before == ([], [])


def test_the_admin_area_holds_when_the_documents_headers_are_gone(browser, hostile):
    server, entry = hostile
    before = admin_state(server)
    requested, _ = visit_as_operator(browser, server, entry, strip=True)
    assert any(r.endswith("/xss-ran") for r in requested), \
        "the stripped answer should have let the script run (else this test shows nothing)"
    assert any(r.endswith("/xss-popup-closed") for r in requested), \
        "the admin popup should be cut off from the script that opened it"
    read = [r for r in requested if "/xss-read-by-" in r]
    assert read == [], f"the script read the admin page: {read}"
    assert admin_state(server) == before, json.dumps(admin_state(server))


def test_the_pages_own_scripts_and_styles_pass_their_policy(browser, hostile):
    """The strict CSP must not cost the UI anything: no violation on any page."""
    server, entry = hostile
    context, page = open_page(browser, http_credentials={"username": OPERATOR,
                                                         "password": PASSWORD})
    violations = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    try:
        for link in [link for link in links_showing(entry) if "media=html" in link
                     or "media" not in link]:
            response = page.goto(server.url + link)
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
            assert page.evaluate("getComputedStyle(document.body).marginTop") != "", link
        page.goto(server.url + "?q=hostile")
        page.fill("#search input[name=q]", "image")
        page.wait_for_timeout(1000)
    finally:
        context.close()
    assert violations == []


def test_an_operator_still_blocks_and_unblocks_from_the_admin_page(browser, hostile):
    """The checks that stop the script let the real forms through (run last: it changes
    the admin state the tests above compare)."""
    server, _ = hostile
    context, page = open_page(browser, http_credentials={"username": OPERATOR,
                                                         "password": PASSWORD})
    try:
        page.goto(server.url + "admin/")
        page.fill("#b-endorser", EVE)
        page.fill("#b-reason", "tested from the admin page")
        page.click("form[action='/admin/block'] button")
        expect(page.locator("body")).to_contain_text("The endorser is blocked.")
        assert [b["endorser"] for b in admin_state(server)[0]] == [EVE]
        unblock = page.locator("form[action='/admin/unblock']")
        unblock.locator("input[name=reason]").fill("test over")
        unblock.locator("button").click()
        expect(page.locator("body")).to_contain_text("no longer blocked")
    finally:
        context.close()
    assert admin_state(server)[0] == []


# --- finding 2 on a live server, and the mailed link's own button in a real browser --------


def test_a_mailed_link_acts_only_through_its_pages_button(browser, confirming_server,
                                                          signers):
    server, mailbox = confirming_server
    answer = requests.post(server.url + "metadata", data=hostile_free_document(signers),
                           headers={"Content-Type": "application/xml",
                                    "Accept": "application/json"}, timeout=30)
    assert answer.status_code == 202, answer.text
    status = answer.headers["Location"]
    mailbox.wait()
    link = mailbox.links()["confirm"]
    for method in ("HEAD", "PUT", "OPTIONS", "DELETE"):  # what a mail scanner might send
        requests.request(method, link, timeout=30)
        assert server.get(status).json()["state"] == "pending", method
    context, page = open_page(browser)
    try:
        page.goto(link)
        page.click("form button")
        expect(page.locator("body")).to_contain_text("Published")
    finally:
        context.close()
    assert server.get(status).json()["state"] == "published"


def hostile_free_document(signers) -> bytes:
    return factories.signed(signers[JANE], factories.appliance(title="Plain image"))
