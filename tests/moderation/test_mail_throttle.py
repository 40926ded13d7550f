"""Confirmation mails cannot be turned against someone: uploads that claim a victim's
address make at most a few mails a day, one client cannot send many, and the uploader's
text never reaches a subject line -- in the body it is quoted and marked as the uploader's.
The mails go through a real SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

from io import BytesIO

import pytest

from marketplace.moderation.workflow import client_key
from tests.moderation.conftest import path_of, signed, upload

VICTIM = "victim@example.org"
PHISHING = "URGENT: your account is locked, log in at http://evil.example/reset"


def test_uploads_claiming_a_victims_address_mail_her_three_times_a_day(confirming, smtp,
                                                                       make_signer):
    mailbox, _ = smtp
    client = confirming().test_client()
    impostor = make_signer("Account Security", email=VICTIM)
    answers = [upload(client, signed(impostor, title=f"{PHISHING} #{n}")) for n in range(5)]

    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    assert int(answers[3].headers["Retry-After"]) > 23 * 3600
    assert answers[3].json["problems"][0]["rule"] == "mail-limit"
    assert VICTIM in answers[3].json["error"]
    assert len(mailbox.wait(3)) == 3
    for recipients, message in mailbox.messages:
        assert recipients == [VICTIM]
        assert "evil" not in message["Subject"] and "URGENT" not in message["Subject"]
        body = message.get_content()
        quoted = [line for line in body.splitlines() if "URGENT" in line]
        assert quoted and all(line.lstrip().startswith("|") for line in quoted), body
        assert "written by the uploader" in body
        assert "http://evil" not in body  # not a link a mail reader would make clickable
    held = client.get("/admin/api/uploads", headers={"Authorization": "Bearer " + (
        "admin-token-Q7x9Lm2Pz4Rt8Vw1Ks6Hd3Fj5Ng0Bc")}).json
    assert held["total"] == 3, "an upload over the limit was kept"


def test_one_client_gets_a_limited_number_of_mails_sent(confirming, smtp, make_signer):
    mailbox, _ = smtp
    client = confirming(mails_per_client_per_hour="2").test_client()
    signers = [make_signer(f"Signer {n}", email=f"signer{n}@example.org") for n in range(3)]
    first = [upload(client, signed(s)) for s in signers]
    assert [a.status_code for a in first] == [202, 202, 429]
    assert 0 < int(first[2].headers["Retry-After"]) <= 3600
    other = upload(client, signed(signers[2]), environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 202, other.json
    assert len(mailbox.wait(3)) == 3


def test_a_replayed_upload_is_not_mailed_again_nor_counted(confirming, smtp, make_signer):
    mailbox, _ = smtp
    client = confirming().test_client()
    sam = make_signer("Sam Replay", email="sam.replay@example.org")
    document = signed(sam)
    answers = [upload(client, document) for _ in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    assert len(mailbox.wait(1)) == 1
    assert client.post(path_of(mailbox.links()["confirm"])).status_code == 200


def test_the_limits_are_shared_by_every_worker(confirming, smtp, make_signer, tmp_path):
    """Two apps on one data dir stand for two gunicorn workers: the count is in the
    store's file, not in a process."""
    mailbox, _ = smtp
    settings = {"data_dir": str(tmp_path / "shared")}
    workers = [confirming(**settings).test_client() for _ in range(2)]
    impostor = make_signer("Shared Count", email=VICTIM)
    codes = [upload(workers[n % 2], signed(impostor)).status_code for n in range(4)]
    assert codes == [202, 202, 202, 429]
    assert len(mailbox.wait(3)) == 3


def test_the_upload_page_says_the_limit_was_reached(confirming, smtp, make_signer):
    client = confirming(mails_per_recipient_per_day="1").test_client()
    impostor = make_signer("Form Filler", email=VICTIM)
    answers = [client.post("/upload", data={"file": (BytesIO(signed(impostor)), "a.xml")},
                           content_type="multipart/form-data") for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 429]
    assert "Retry-After" in answers[1].headers
    assert VICTIM in answers[1].get_data(as_text=True)
    assert len(smtp[0].wait(1)) == 1


@pytest.mark.parametrize("value", ["0", "-3", "many", ""])
def test_a_limit_that_cannot_work_is_refused_at_start(confirming, value):
    with pytest.raises(ValueError, match="MARKETPLACE_MAILS_PER_CLIENT_PER_HOUR"):
        confirming(mails_per_client_per_hour=value)


def test_an_ipv6_client_is_counted_by_its_64_network():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == \
        "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.9") == client_key("192.0.2.9") == "192.0.2.9"
