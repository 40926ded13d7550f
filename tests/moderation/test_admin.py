"""Operators: the admin API and pages behind a bearer token or a basic-auth account, never
open by default; removal and blocking kept in the audit log; no secret in logs or pages."""

from __future__ import annotations

import base64
import logging
import re
import subprocess

import pytest

from tests.moderation.conftest import (
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    bearer,
    path_of,
    signed,
    upload,
)
from tests.server.conftest import EVE
from tests.server.conftest import key_of as entry_key

JANE_DN = "CN=Jane Tester,OU=Testing Department,O=Marketplace Tests,C=EU"
ADMIN_ROUTES = (("GET", "/admin/api/uploads"), ("POST", "/admin/api/remove"),
                ("POST", "/admin/api/block"), ("POST", "/admin/api/unblock"),
                ("GET", "/admin/api/blocked"), ("GET", "/admin/api/audit"),
                ("GET", "/admin/api/tombstones"), ("POST", "/admin/api/lift"),
                ("GET", "/admin/"), ("GET", "/admin/audit"), ("POST", "/admin/remove"),
                ("POST", "/admin/block"), ("POST", "/admin/unblock"), ("POST", "/admin/lift"))


def basic(name: str = "alice", password: str = ADMIN_PASSWORD) -> dict[str, str]:
    credentials = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


@pytest.fixture(params=("sqlite", "elasticsearch"))
def admin_app(request, make_app, admin_files):
    """A marketplace with admin credentials, on each store in turn."""
    overrides = {}
    if request.param == "elasticsearch":
        cluster = request.getfixturevalue("elasticsearch")
        overrides = cluster.settings(request.getfixturevalue("es_prefix"))
    return make_app(**admin_files, **overrides)


def key_of(response) -> dict[str, str]:
    identifier, email, created = entry_key(response.headers["Location"])
    return {"identifier": identifier, "email": email, "created": created}


def test_admin_is_closed_when_no_credentials_are_configured(make_app):
    client = make_app().test_client()
    for method, path in ADMIN_ROUTES:
        for headers in ({}, bearer(), basic()):
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 403, (method, path)
            assert "administration is off" in response.get_data(as_text=True).lower()


@pytest.mark.parametrize("headers", [
    {}, bearer("not-the-token-at-all-0123456789"), bearer(ADMIN_TOKEN[:-1]),
    bearer(""), basic(password="wrong password"), basic("mallory"),
    {"Authorization": "Basic !!!not-base64"}, {"Authorization": f"Token {ADMIN_TOKEN}"},
    {"Authorization": ADMIN_TOKEN}])
def test_missing_or_wrong_credentials_are_refused(make_app, admin_files, headers):
    client = make_app(**admin_files).test_client()
    for method, path in ADMIN_ROUTES:
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401, (method, path, headers)
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert ADMIN_TOKEN not in response.get_data(as_text=True)


def test_token_or_account_lets_an_operator_in(make_app, admin_files):
    client = make_app(**admin_files).test_client()
    assert client.get("/admin/api/blocked", headers=bearer()).status_code == 200
    assert client.get("/admin/api/blocked", headers=basic()).status_code == 200
    page = client.get("/admin/", headers=basic())
    assert page.status_code == 200 and "Signed in as" in page.get_data(as_text=True)
    assert "alice" in page.get_data(as_text=True)


def test_removal_is_audited_with_who_and_why(admin_app, rsa_signer):
    client = admin_app.test_client()
    response = upload(client, signed(rsa_signer, title="Abusive"))
    assert response.status_code == 201
    key = key_of(response)
    removed = client.post("/admin/api/remove", headers=bearer(),
                          json={**key, "reason": "copyright complaint #12"})
    assert removed.status_code == 200, removed.json
    assert removed.json["removed"] == ["published"] and removed.json["actor"] == "ops"
    assert client.get(response.headers["Location"]).status_code == 404
    assert client.get("/api/v1/appliances").json["total"] == 0

    record = client.get("/admin/api/audit", headers=bearer()).json["records"][0]
    assert {k: record[k] for k in ("action", "actor", "reason", "identifier", "email",
                                   "created")} == {
        "action": "removed", "actor": "ops", "reason": "copyright complaint #12", **key}
    feed = client.get("/api/v1/changes").json["changes"]
    assert [c["action"] for c in feed] == ["publish", "remove"]
    again = client.post("/admin/api/remove", headers=bearer(), json={**key, "reason": "x"})
    assert again.status_code == 404


def test_admin_api_takes_json_and_names_what_is_wrong(make_app, admin_files, rsa_signer):
    client = make_app(**admin_files).test_client()
    key = key_of(upload(client, signed(rsa_signer)))
    as_form = client.post("/admin/api/remove", headers=bearer(), data={**key, "reason": "r"})
    assert as_form.status_code == 415  # no cross-site form can send JSON
    no_reason = client.post("/admin/api/remove", headers=bearer(), json=key)
    assert no_reason.status_code == 400 and no_reason.json["problems"][0]["element"] == \
        "reason"
    bad_key = client.post("/admin/api/remove", headers=bearer(),
                          json={**key, "identifier": "nope", "reason": "r"})
    assert bad_key.status_code == 400
    bad_endorser = client.post("/admin/api/block", headers=bearer(),
                               json={"endorser": "nobody", "reason": "r"})
    assert bad_endorser.status_code == 400 and "neither an email" in bad_endorser.json["error"]


def test_a_blocked_endorser_is_refused_with_403_until_unblocked(make_app, admin_files,
                                                               rsa_signer, ec_signer):
    client = make_app(**admin_files).test_client()
    blocked = client.post("/admin/api/block", headers=bearer(), json={
        "endorser": "cn=JANE TESTER, ou=testing department, o=marketplace tests, c=EU",
        "reason": "spam"})
    assert blocked.status_code == 201 and blocked.json["new"]
    same = client.post("/admin/api/block", headers=bearer(),
                       json={"endorser": JANE_DN, "reason": "spam again"})
    assert same.status_code == 200 and not same.json["new"]  # the same DN, spelt otherwise
    assert client.post("/admin/api/block", headers=bearer(),
                       json={"endorser": EVE, "reason": "phishing"}).status_code == 201

    refused = upload(client, signed(rsa_signer))
    assert refused.status_code == 403
    assert "is blocked by the operators" in refused.json["error"]
    assert refused.json["problems"][0]["rule"] == "blocked"
    assert upload(client, signed(ec_signer)).status_code == 403
    listed = client.get("/admin/api/blocked", headers=bearer()).json
    assert listed["total"] == 2 and {b["kind"] for b in listed["blocked"]} == {"email",
                                                                               "subject"}

    unblocked = client.post("/admin/api/unblock", headers=bearer(),
                            json={"endorser": JANE_DN, "reason": "sorted out"})
    assert unblocked.status_code == 200
    assert upload(client, signed(rsa_signer)).status_code == 201
    assert client.post("/admin/api/unblock", headers=bearer(),
                       json={"endorser": JANE_DN, "reason": "twice"}).status_code == 404
    actions = [(r["action"], r["actor"], r["reason"]) for r in
               client.get("/admin/api/audit", headers=bearer()).json["records"]]
    assert actions == [("unblocked", "ops", "sorted out"), ("blocked", "ops", "phishing"),
                       ("blocked", "ops", "spam")]


def test_blocking_stops_a_held_upload_from_being_confirmed(confirming, smtp, make_signer):
    mailbox, _ = smtp
    client = confirming().test_client()
    sam = make_signer("Sam Held", email="sam.held@example.org")
    response = upload(client, signed(sam))
    assert response.status_code == 202
    mailbox.wait()
    client.post("/admin/api/block", headers=bearer(),
                json={"endorser": "sam.held@example.org", "reason": "abuse"})
    done = client.post(path_of(mailbox.links()["confirm"]))
    assert "Not published" in done.get_data(as_text=True)
    assert client.get(response.headers["Location"]).status_code == 404


def test_admin_pages_list_held_uploads_and_act_with_a_csrf_token(confirming, smtp,
                                                                make_signer):
    mailbox, _ = smtp
    client = confirming().test_client()
    sam = make_signer("Sam Paged", email="sam.paged@example.org")
    response = upload(client, signed(sam, title="Held for the page"))
    mailbox.wait()
    client.post(path_of(mailbox.links()["abuse"]))
    page = client.get("/admin/", headers=basic())
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Held for the page" in text
    assert "Reported as abuse (1)" in text
    assert page.headers["Cache-Control"] == "no-store"
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)

    key = response.json
    form = {"identifier": key["identifier"], "email": key["email"],
            "created": key["created"], "reason": "reported by its endorser"}
    forged = client.post("/admin/remove", headers=basic(), data=form)
    assert forged.status_code == 403  # a form from elsewhere, with the browser's credentials
    done = client.post("/admin/remove", headers=basic(), data={**form, "csrf": csrf})
    assert done.status_code == 303 and done.headers["Location"].endswith("done=removed")
    assert "The entry was removed." in client.get("/admin/?done=removed",
                                                   headers=basic()).get_data(as_text=True)
    assert client.get("/admin/api/uploads", headers=bearer()).json["total"] == 0

    blocked = client.post("/admin/block", headers=basic(), data={
        "csrf": csrf, "endorser": "sam.paged@example.org", "reason": "abuse"})
    assert blocked.status_code == 303
    audit = client.get("/admin/audit", headers=basic()).get_data(as_text=True)
    assert "reported by its endorser" in audit and "alice" in audit and "discarded" in audit
    assert "blocked" in audit


def test_no_token_or_credential_in_logs_or_pages(confirming, smtp, make_signer, caplog):
    """A whole session of uploads, mailed links and admin work, with every log record
    captured: no admin token, password, basic credential or link token shows up in a log,
    and none but the mail carries a link token."""
    caplog.set_level(logging.DEBUG)
    mailbox, _ = smtp
    client = confirming().test_client()
    bodies = []

    def keep(response):
        bodies.append(response.get_data(as_text=True) + str(response.headers))
        return response

    sam = make_signer("Sam Secret", email="sam.secret@example.org")
    response = keep(upload(client, signed(sam)))
    mailbox.wait()
    links = mailbox.links()
    token = links["confirm"].rsplit("=", 1)[1]
    for action in ("confirm", "abort", "abuse"):
        keep(client.get(path_of(links[action])))
    keep(client.post(path_of(links["confirm"])))
    keep(client.post(path_of(links["confirm"])))  # used: an error page
    keep(client.get(response.headers["Location"]))
    mistyped = ADMIN_TOKEN[:-2] + "zz"
    for headers in (bearer(), basic(), bearer(mistyped), basic(password=ADMIN_PASSWORD[:-1])):
        keep(client.get("/admin/", headers=headers))
        keep(client.get("/admin/api/uploads", headers=headers))
        keep(client.get("/admin/api/audit", headers=headers))
        keep(client.post("/admin/api/block", headers=headers,
                         json={"endorser": "x@example.org", "reason": "test"}))
    secrets = {"admin token": ADMIN_TOKEN, "mistyped token": mistyped,
               "admin password": ADMIN_PASSWORD,
               "basic credentials": basic()["Authorization"].split()[1],
               "link token": token}
    assert "admin authentication failed" in caplog.text  # failures are logged...
    for name, secret in secrets.items():  # ...without what was sent
        assert secret not in caplog.text, f"{name} in the logs"
        assert not any(secret in body for body in bodies), f"{name} in a page"
    assert token in mailbox.messages[0][1].get_content()


def test_admin_account_prints_a_line_the_accounts_file_takes(make_app, tmp_path):
    from tests.live.conftest import clean_environ, script
    done = subprocess.run([script("stratus-marketplace"), "admin-account", "bob"],
                          input="a long enough password\n", capture_output=True, text=True,
                          env=clean_environ(HOME=str(tmp_path)), timeout=60)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("bob:") and "a long enough password" not in line
    accounts = tmp_path / "accounts"
    accounts.write_text(line + "\n")
    client = make_app(admin_accounts_file=str(accounts)).test_client()
    assert client.get("/admin/api/audit",
                      headers=basic("bob", "a long enough password")).status_code == 200
    short = subprocess.run([script("stratus-marketplace"), "admin-account", "bob"],
                           input="short\n", capture_output=True, text=True,
                           env=clean_environ(HOME=str(tmp_path)), timeout=60)
    assert short.returncode == 1 and "at least 12" in short.stderr


# --- finding 1c: the admin area survives a script running on the marketplace's origin ------

SCRIPT_FETCH = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors",
                "Sec-Fetch-Dest": "empty"}
FORM_POST = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate",
             "Sec-Fetch-Dest": "document"}


def admin_form(client) -> dict[str, str]:
    text = client.get("/admin/", headers={**basic(), **FORM_POST}).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)
    return {"csrf": csrf, "endorser": EVE, "reason": "forged"}


def blocked_emails(client) -> list:
    return client.get("/admin/api/blocked", headers=bearer()).json["blocked"]


def test_a_same_origin_script_cannot_read_the_admin_page(make_app, admin_files):
    """What the stored XSS did: fetch('/admin/') with the browser's basic credentials."""
    client = make_app(**admin_files).test_client()
    for dest in ("empty", "iframe", "object", "embed", "script"):
        refused = client.get("/admin/", headers={**basic(), **SCRIPT_FETCH,
                                                 "Sec-Fetch-Dest": dest})
        assert refused.status_code == 403, dest
        assert "csrf" not in refused.get_data(as_text=True)
    assert client.get("/admin/", headers={**basic(), **FORM_POST}).status_code == 200
    assert client.get("/admin/", headers=basic()).status_code == 200  # no browser: curl


@pytest.mark.parametrize("headers", [
    SCRIPT_FETCH,  # a script on our own origin posting with the token it read
    {**FORM_POST, "Sec-Fetch-Site": "cross-site"},
    {**FORM_POST, "Sec-Fetch-Site": "same-site"},
    {**FORM_POST, "Sec-Fetch-Site": "none"},
    {"Origin": "https://evil.example"},
    {"Origin": "http://localhost.evil.example"},
    {"Referer": "https://evil.example/page"},
], ids=["script", "cross-site", "same-site", "none", "origin", "origin-prefix", "referer"])
def test_state_changing_admin_requests_from_elsewhere_are_refused(make_app, admin_files,
                                                                  headers):
    client = make_app(**admin_files).test_client()
    form = admin_form(client)
    refused = client.post("/admin/block", headers={**basic(), **headers}, data=form)
    assert refused.status_code == 403
    api = client.post("/admin/api/block", headers={**basic(), **headers},
                      json={"endorser": EVE, "reason": "forged"})
    assert api.status_code == 403 and api.is_json
    assert blocked_emails(client) == []
    assert [r["action"] for r in client.get("/admin/api/audit", headers=bearer())
            .json["records"]] == []


def test_the_admin_page_posts_and_api_clients_still_work(make_app, admin_files):
    client = make_app(**admin_files).test_client()
    form = admin_form(client)
    for headers in (FORM_POST, {"Origin": "http://localhost"},
                    {"Referer": "http://localhost/admin/"}):
        done = client.post("/admin/block", headers={**basic(), **headers}, data=form)
        assert done.status_code == 303, headers
    unblock = {"endorser": EVE, "reason": "test"}
    assert client.post("/admin/api/unblock", headers=bearer(), json=unblock).status_code == 200
    assert client.post("/admin/api/block", headers=basic(), json=unblock).status_code == 201
    # a bearer token is never attached by a browser on its own: a script has none to send
    assert client.post("/admin/api/unblock", headers={**bearer(), **SCRIPT_FETCH},
                       json=unblock).status_code == 200


def test_admin_pages_are_cut_off_from_the_window_that_opened_them(make_app, admin_files):
    client = make_app(**admin_files).test_client()
    page = client.get("/admin/", headers={**basic(), **FORM_POST})
    assert page.headers["Cross-Origin-Opener-Policy"] == "noopener-allow-popups"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "same-origin"
