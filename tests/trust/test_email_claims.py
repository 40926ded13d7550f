"""Finding 3, as an attacker would try it against a live server: a self-signed certificate
that carries no email publishes under another endorser's address and takes her tag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests import factories, pki
from tests.live.conftest import LiveServer
from tests.moderation.conftest import upload

JANE = "jane.tester@example.org"


def self_signed(common_name: str) -> pki.Issued:
    """An end-entity certificate signed by its own key, with no email anywhere."""
    key = pki.make_key()
    subject = pki.name(common_name)
    not_before, not_after = pki.window()
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .sign(key, hashes.SHA256()))
    return pki.Issued(key, certificate)


def tagged(signer: pki.Issued, tag: str, minutes_later: int = 0, email: str | None = None,
           title: str = "Jane's image") -> bytes:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10 - minutes_later)
    return factories.signed(signer, factories.appliance(tag=tag, title=title, created=when),
                            now=when, email=email)


def post(server: LiveServer, document: bytes) -> requests.Response:
    return requests.post(server.url + "metadata", data=document, timeout=30,
                         headers={"Content-Type": "application/xml",
                                  "Accept": "application/json"})


@pytest.fixture
def server(tmp_path):
    live = LiveServer(tmp_path / "data", tmp_path)
    live.start()
    yield live
    live.stop()


def test_a_certificate_without_email_cannot_take_over_an_endorsers_tag(server, rsa_signer):
    assert post(server, tagged(rsa_signer, "prod")).status_code == 201
    mallory = self_signed("Mallory")
    attack = post(server, tagged(mallory, "prod", minutes_later=5, email=JANE,
                                 title="Mallory's image"))

    assert attack.status_code == 400, attack.text
    (problem,) = attack.json()["problems"]
    assert problem["rule"] == "endorser-email-unproven" and JANE in problem["message"]
    tag = server.get(f"tag/{JANE}/prod", headers={"Accept": "application/json"}).json()
    assert tag["title"] == "Jane's image"
    publisher = server.get(f"endorsers/{JANE}", headers={"Accept": "application/json"}).json()
    assert [e["title"] for e in publisher["entries"]] == ["Jane's image"]


def test_under_confirm_an_unproven_email_waits_for_the_mail_even_when_whitelisted(
        confirming, smtp, ca):
    mallory = pki.make_certificate(ca, "Mallory")
    app = confirming(whitelist=[mallory.subject.rfc4514_string()])
    held = upload(app.test_client(), tagged(mallory, "prod", email=JANE))
    assert held.status_code == 202, held.get_json()
    mailbox, _ = smtp
    (recipients, _message), = mailbox.wait(1)
    assert recipients == [JANE]


def test_under_refuse_an_unproven_email_is_refused_even_when_whitelisted(
        confirming, smtp, ca):
    mallory = pki.make_certificate(ca, "Mallory")
    app = confirming(whitelist=[mallory.subject.rfc4514_string()],
                     unlisted_endorsers="refuse")
    refused = upload(app.test_client(), tagged(mallory, "prod", email=JANE))
    assert refused.status_code == 400, refused.get_json()
    assert refused.get_json()["problems"][0]["rule"] == "endorser-email-unproven"
    assert smtp[0].messages == []
