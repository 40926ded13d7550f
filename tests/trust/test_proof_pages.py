"""Pages say how an endorsement's email was proven, and a publisher page does not show
another signer's unproven entries beside the proven ones under the same address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marketplace.store.base import Entry
from marketplace.web.current import marketplace_of
from tests import factories, pki
from tests.moderation.conftest import path_of, signed, upload

JANE = "jane.tester@example.org"
HTML = {"Accept": "text/html"}


def page(client, path: str) -> str:
    response = client.get(path, headers=HTML)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_a_certificate_proven_email_says_so(make_app, rsa_signer):
    client = make_app().test_client()
    created = upload(client, signed(rsa_signer, title="Jane's"))
    assert created.status_code == 201
    text = page(client, f"/appliances/{created.get_json()['identifier']}")
    assert "proven by the signer&#39;s certificate" in text
    assert "proven by the signer&#39;s certificate" in page(client, f"/publishers/{JANE}")


def test_a_mail_confirmed_email_says_so(confirming, smtp, ca):
    mailbox, _ = smtp
    noah = pki.make_certificate(ca, "Noah Mail")
    app = confirming()
    client = app.test_client()
    held = upload(client, factories.signed(noah, factories.appliance(title="Noah's"),
                                           email="noah@example.org"))
    assert held.status_code == 202
    mailbox.wait(1)
    confirm = path_of(mailbox.links()["confirm"])
    assert client.post(confirm).status_code in (200, 303)
    identifier = held.get_json()["identifier"]
    text = page(client, f"/appliances/{identifier}")
    assert "proven by mail" in text
    assert "proven by mail" in page(client, "/publishers/noah@example.org")


def test_a_publisher_page_leaves_out_an_unproven_signer_beside_a_proven_one(
        make_app, rsa_signer, ca):
    app = make_app()
    client = app.test_client()
    assert upload(client, signed(rsa_signer, title="Jane's")).status_code == 201
    mallory = pki.make_certificate(ca, "Mallory")
    claim = factories.signed(mallory, factories.appliance(title="Mallory's"), email=JANE)
    marketplace_of(app).store.add(Entry.from_document(claim))  # stored before the rule

    text = page(client, f"/publishers/{JANE}")
    assert "Jane&#39;s" in text and "Mallory&#39;s" not in text
    assert 'id="left-out"' in text
    mallory_page = page(client, f"/appliances/{Entry.from_document(claim).identifier}")
    assert "not proven" in mallory_page


def test_a_tag_does_not_resolve_to_another_signers_unproven_entry(make_app, rsa_signer, ca):
    """An entry stored without the upload path (before the rule, or by ``migrate``) whose
    certificate does not carry the email cannot take the tag of the one who proved it."""
    app = make_app()
    client = app.test_client()
    jane = factories.signed(rsa_signer, factories.appliance(title="Jane's", tag="prod"))
    assert upload(client, jane).status_code == 201
    mallory = pki.make_certificate(ca, "Mallory")
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    claim = factories.signed(mallory, factories.appliance(title="Mallory's", tag="prod",
                                                          created=when), email=JANE, now=when)
    marketplace_of(app).store.add(Entry.from_document(claim))

    tagged = client.get(f"/tag/{JANE}/prod", headers={"Accept": "application/json"})
    assert tagged.status_code == 200 and tagged.get_json()["title"] == "Jane's"
