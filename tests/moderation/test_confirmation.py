"""Who may publish: whitelisted endorsers at once; everyone else after following the link
that a real SMTP server on 127.0.0.1 received; abort and abuse links; expiry."""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest

from marketplace.web.current import marketplace_of
from tests import factories, pki
from tests.moderation.conftest import (
    SMTP_PASSWORD,
    bearer,
    free_port,
    path_of,
    signed,
    upload,
)
from tests.server.conftest import EVE, JANE, moment

SAM = "sam.unlisted@example.org"
JANE_DN_OTHER_SPELLING = ("cn=jane tester, ou=Testing Department,  o=marketplace tests,"
                          "C=eu")


@pytest.fixture
def sam(make_signer) -> pki.Issued:
    return make_signer("Sam Unlisted", email=SAM)


def entry_path(response) -> str:
    data = response.json
    return f"/metadata/{data['identifier']}/{data['email']}/{data['created']}"


def published(client, path: str) -> bool:
    return client.get(path, headers={"Accept": "application/json"}).status_code == 200


def test_whitelisted_subject_is_published_at_once(confirming, smtp, rsa_signer):
    """The list writes Jane's DN another way: names compare as DNs, not as strings."""
    mailbox, _ = smtp
    client = confirming([JANE_DN_OTHER_SPELLING]).test_client()
    document = signed(rsa_signer)
    response = upload(client, document)
    assert response.status_code == 201, response.json
    assert client.get(response.headers["Location"]).data == document
    assert mailbox.messages == []


def test_whitelisted_email_is_published_at_once(confirming, smtp, ec_signer):
    client = confirming([EVE.upper()]).test_client()
    assert upload(client, signed(ec_signer)).status_code == 201
    assert smtp[0].messages == []


def test_a_listed_email_the_certificate_does_not_carry_is_not_enough(
        confirming, smtp, signer_without_email):
    """A certificate without an email lets its holder write any address: that claim does
    not make them a listed endorser; the address's owner is asked instead."""
    mailbox, _ = smtp
    client = confirming([EVE]).test_client()
    document = factories.signed(signer_without_email, factories.appliance(), now=moment(),
                                email=EVE)
    response = upload(client, document)
    assert response.status_code == 202
    assert mailbox.wait()[0][0] == [EVE]


def test_unlisted_endorser_stays_pending_until_the_mailed_link_is_followed(
        confirming, smtp, sam, rsa_signer):
    mailbox, _ = smtp
    app = confirming([JANE_DN_OTHER_SPELLING])
    client = app.test_client()
    document = signed(sam, title="Sam's image")
    response = upload(client, document)
    assert response.status_code == 202, response.json
    assert response.json["state"] == "pending" and SAM in response.json["message"]
    status_url = response.headers["Location"]
    assert status_url == "http://marketplace.test" + response.json["url"]
    assert status_url.startswith("http://marketplace.test/api/v1/uploads/")
    assert client.get(status_url).json["state"] == "pending"
    assert not published(client, entry_path(response))

    (recipients, mail), = mailbox.wait()
    assert recipients == [SAM] and mail["To"] == SAM
    assert mail["From"] == "marketplace@example.org"
    assert "Sam's image" not in mail["Subject"]  # the uploader's words: quoted in the body
    assert '| title:       "Sam\'s image"' in mail.get_content()
    links = mailbox.links()
    assert set(links) == {"confirm", "abort", "abuse"}
    assert all(link.startswith("http://marketplace.test/moderation/") for link in
               links.values())
    tokens = {link.rsplit("=", 1)[1] for link in links.values()}
    assert len(tokens) == 1 and len(tokens.pop()) >= 43  # token_urlsafe(32)

    page = client.get(path_of(links["confirm"]))  # what a mail scanner would fetch
    assert page.status_code == 200 and "Publish it" in page.get_data(as_text=True)
    assert client.get(status_url).json["state"] == "pending"

    done = client.post(path_of(links["confirm"]))
    assert done.status_code == 200 and "Published" in done.get_data(as_text=True)
    assert client.get(status_url).json["state"] == "published"
    entry = client.get(entry_path(response), headers={"Accept": "application/rdf+xml"})
    assert entry.status_code == 200 and entry.data == document

    again = client.post(path_of(links["confirm"]))
    assert again.status_code == 404 and "no longer valid" in again.get_data(as_text=True)
    assert client.get(path_of(links["abort"])).status_code == 404

    feed = client.get("/api/v1/changes").json
    assert [(c["action"], c["email"]) for c in feed["changes"]] == [("publish", SAM)]
    actions = [r["action"] for r in client.get("/admin/api/audit", headers=bearer())
               .json["records"]]
    assert actions == ["confirmed", "held"]


def test_abort_link_discards_the_upload(confirming, smtp, sam):
    mailbox, _ = smtp
    client = confirming().test_client()
    response = upload(client, signed(sam))
    mailbox.wait()
    done = client.post(path_of(mailbox.links()["abort"]))
    assert done.status_code == 200 and "Discarded" in done.get_data(as_text=True)
    assert client.get(response.headers["Location"]).status_code == 404
    assert not published(client, entry_path(response))
    assert client.post(path_of(mailbox.links()["confirm"])).status_code == 404
    audit = client.get("/admin/api/audit", headers=bearer()).json["records"]
    assert audit[0]["action"] == "aborted" and audit[0]["actor"].startswith(SAM)


def test_abuse_link_flags_the_upload_for_the_operators(confirming, smtp, sam):
    mailbox, _ = smtp
    client = confirming().test_client()
    response = upload(client, signed(sam, title="Suspicious"))
    mailbox.wait()
    page = client.get(path_of(mailbox.links()["abuse"]))
    assert "Report it to the operators" in page.get_data(as_text=True)
    done = client.post(path_of(mailbox.links()["abuse"]))
    assert done.status_code == 200 and "Reported" in done.get_data(as_text=True)
    assert client.get(response.headers["Location"]).json["state"] == "flagged"
    assert not published(client, entry_path(response))
    assert client.post(path_of(mailbox.links()["confirm"])).status_code == 404

    flagged = client.get("/admin/api/uploads?state=flagged", headers=bearer()).json
    assert flagged["total"] == 1 and flagged["uploads"][0]["title"] == "Suspicious"
    assert flagged["uploads"][0]["flagged"] is not None
    assert client.get("/admin/api/uploads?state=pending", headers=bearer()).json["total"] == 0
    audit = client.get("/admin/api/audit", headers=bearer()).json["records"]
    assert audit[0]["action"] == "abuse-reported"


def test_pending_uploads_expire_and_are_purged(confirming, smtp, sam, tmp_path):
    mailbox, _ = smtp
    app = confirming(pending_hours="48")
    client = app.test_client()
    moderation = marketplace_of(app).moderation
    response = upload(client, signed(sam))
    mailbox.wait()
    later = moderation.now() + timedelta(hours=47)
    moderation.clock = lambda: later
    assert client.get(response.headers["Location"]).json["state"] == "pending"
    later = moderation.now() + timedelta(hours=2)  # 49 h after the upload
    moderation.clock = lambda: later
    gone = client.get(path_of(mailbox.links()["confirm"]))
    assert gone.status_code == 404 and "not confirmed in time" in gone.get_data(as_text=True)
    assert client.get(response.headers["Location"]).status_code == 404
    assert moderation.state.uploads() == []
    audit = client.get("/admin/api/audit", headers=bearer()).json["records"]
    assert audit[0]["action"] == "expired" and audit[0]["actor"] == "marketplace"
    assert not published(client, entry_path(response))


def test_a_replayed_pending_upload_is_mailed_once(confirming, smtp, sam):
    mailbox, _ = smtp
    client = confirming().test_client()
    document = signed(sam)
    assert upload(client, document).status_code == 202
    again = upload(client, document)
    assert again.status_code == 202 and "already awaits" in again.json["message"]
    mailbox.wait()
    assert len(mailbox.messages) == 1


def test_another_document_under_a_pending_key_conflicts(confirming, smtp, sam):
    client = confirming().test_client()
    image, when = b"same image", moment()
    first = factories.signed(sam, factories.appliance(image, title="one"), now=when)
    second = factories.signed(sam, factories.appliance(image, title="two"), now=when)
    assert upload(client, first).status_code == 202
    response = upload(client, second)
    assert response.status_code == 409 and "awaits" in response.json["error"]


def test_unlisted_endorsers_can_be_refused_outright(make_app, ca_bundle, tmp_path, sam,
                                                   rsa_signer):
    listed = tmp_path / "listed"
    listed.write_text(JANE + "\n")
    client = make_app(trust_store=str(ca_bundle), endorser_whitelist=str(listed),
                      unlisted_endorsers="refuse").test_client()
    response = upload(client, signed(sam))
    assert response.status_code == 403
    assert response.json["problems"][0]["rule"] == "whitelist"
    assert "not on this marketplace's list" in response.json["error"]
    assert upload(client, signed(rsa_signer)).status_code == 201


def test_the_whitelist_is_read_again_when_it_changes(make_app, ca_bundle, tmp_path, sam):
    listed = tmp_path / "listed"
    listed.write_text(JANE + "\n")
    client = make_app(trust_store=str(ca_bundle), endorser_whitelist=str(listed),
                      unlisted_endorsers="refuse").test_client()
    assert upload(client, signed(sam)).status_code == 403
    listed.write_text(f"{JANE}\n{SAM}\n")
    assert upload(client, signed(sam)).status_code == 201


def test_when_the_mail_cannot_be_sent_nothing_is_kept(confirming, sam):
    client = confirming(smtp_port=str(free_port())).test_client()  # nobody listens there
    response = upload(client, signed(sam))
    assert response.status_code == 503 and "nothing was kept" in response.json["error"]
    assert response.headers["Retry-After"]
    assert client.get("/admin/api/uploads", headers=bearer()).json["total"] == 0


def test_the_upload_page_says_the_upload_awaits_confirmation(confirming, smtp, sam):
    mailbox, _ = smtp
    client = confirming().test_client()
    response = client.post("/upload", data={"file": (BytesIO(signed(sam)), "sam.xml")},
                           content_type="multipart/form-data")
    assert response.status_code == 202
    text = response.get_data(as_text=True)
    assert "Awaiting your confirmation" in text and SAM in text
    mailbox.wait()


def test_tokens_are_stored_only_as_hashes(confirming, smtp, sam, tmp_path):
    mailbox, _ = smtp
    app = confirming()
    upload(app.test_client(), signed(sam))
    mailbox.wait()
    token = mailbox.links()["confirm"].rsplit("=", 1)[1]
    db = Path(marketplace_of(app).store.path)
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(FULL)")
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert token.encode() not in stored


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_mail_goes_through_an_smtp_login_read_from_the_password_file(
        confirming, smtp_with_login, sam, tmp_path, caplog):
    mailbox, port = smtp_with_login
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_PASSWORD + "\n")
    caplog.set_level("DEBUG")
    client = confirming(smtp_port=str(port), smtp_user="mailer",
                        smtp_password_file=str(password_file)).test_client()
    assert upload(client, signed(sam)).status_code == 202
    mailbox.wait()
    assert mailbox.logins == ["mailer"]
    assert SMTP_PASSWORD not in caplog.text


@pytest.mark.parametrize("settings, message", [
    ({"endorser_whitelist": "LIST"}, "needs MARKETPLACE_TRUST_STORE"),
    ({"unlisted_endorsers": "confirm"}, "MARKETPLACE_SMTP_HOST"),
    ({"unlisted_endorsers": "confirm", "smtp_host": "h", "smtp_from": "f@x"},
     "MARKETPLACE_PUBLIC_URL"),
    ({"unlisted_endorsers": "maybe"}, "must be one of publish, confirm, refuse"),
])
def test_settings_that_cannot_work_stop_the_start(make_app, tmp_path, settings, message):
    listed = tmp_path / "LIST"
    listed.write_text("")
    settings = {k: str(listed) if v == "LIST" else v for k, v in settings.items()}
    with pytest.raises(ValueError, match=message):
        make_app(**settings)


def test_the_202_answer_comes_in_every_media_type(confirming, smtp, sam):
    client = confirming().test_client()
    document = signed(sam)
    as_xml = client.post("/metadata", data=document, content_type="application/xml")
    assert as_xml.status_code == 202 and as_xml.mimetype == "application/xml"
    assert b"<upload " in as_xml.data and b'state="pending"' in as_xml.data
    as_html = client.post("/metadata?media=html", data=document,
                          content_type="application/xml")
    assert as_html.status_code == 202 and "Awaiting confirmation" in as_html.get_data(
        as_text=True)
    assert as_xml.headers["Location"] == as_html.headers["Location"]


def test_request_logs_never_show_link_tokens(caplog):
    """Flask's development server logs request lines, query string included."""
    from marketplace.moderation import logs
    logs.redact_tokens()
    caplog.set_level(logging.INFO)
    logging.getLogger("werkzeug").info('%s - - "%s" %s', "127.0.0.1",
                                       "GET /moderation/confirm?token=s3cr3t_T0ken HTTP/1.1",
                                       200)
    assert "s3cr3t_T0ken" not in caplog.text and "token=[redacted]" in caplog.text


# --- finding 2: only the confirmation page's own POST acts ---------------------------------


@pytest.mark.parametrize("action", ["confirm", "abort", "abuse"])
def test_no_method_but_the_pages_post_acts_on_a_mailed_link(confirming, smtp, sam, action):
    """A mail scanner's HEAD (or PUT, OPTIONS) on a live link leaves the upload pending."""
    mailbox, _ = smtp
    client = confirming().test_client()
    response = upload(client, signed(sam))
    mailbox.wait()
    link = path_of(mailbox.links()[action])
    assert client.head(link).status_code == 200
    assert client.put(link).status_code == 405
    assert client.options(link).status_code == 200
    assert client.delete(link).status_code == 405
    assert client.get(response.headers["Location"]).json["state"] == "pending"
    assert client.get("/admin/api/uploads", headers=bearer()).json["total"] == 1
    assert [r["action"] for r in client.get("/admin/api/audit", headers=bearer())
            .json["records"]] == ["held"]
    assert client.post(link).status_code == 200  # the page's own button still works


def test_a_cross_site_post_of_a_mailed_link_is_refused(confirming, smtp, sam):
    mailbox, _ = smtp
    client = confirming().test_client()
    response = upload(client, signed(sam))
    mailbox.wait()
    link = path_of(mailbox.links()["confirm"])
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://evil.example"}):
        refused = client.post(link, headers=headers)
        assert refused.status_code == 403, headers
        assert client.get(response.headers["Location"]).json["state"] == "pending"
    done = client.post(link, headers={"Sec-Fetch-Site": "same-origin",
                                      "Sec-Fetch-Mode": "navigate",
                                      "Sec-Fetch-Dest": "document"})
    assert done.status_code == 200
    assert client.get(response.headers["Location"]).json["state"] == "published"
