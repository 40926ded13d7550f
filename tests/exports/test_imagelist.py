"""HEPiX image lists: signed as ``openssl smime -sign`` does, verified by real subscribers
(Debian's ``openssl smime -verify``, atrope), made from the index, cached until a change."""

from __future__ import annotations

import email
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from marketplace.exports.changes import marker
from marketplace.exports.entries import all_matching
from marketplace.metadata.hepix import DATE_FORMAT, image_uuid, slash_dn, version_key
from marketplace.store.base import Entry, Query
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def openssl_verify(signed: bytes, tmp_path, ca) -> tuple[subprocess.CompletedProcess, bytes]:
    """``openssl smime -verify`` against the CA: the run, and the signer's certificate."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.certificate_pem())
    signer = tmp_path / "signer.pem"
    done = subprocess.run(["openssl", "smime", "-verify", "-CAfile", str(ca_file),
                           "-signer", str(signer)], input=signed, capture_output=True,
                          check=False)
    return done, signer.read_bytes() if signer.exists() else b""


def openssl_name(certificate: bytes, which: str) -> str:
    """The certificate's subject or issuer as OpenSSL prints it in the slash form."""
    done = subprocess.run(["openssl", "x509", "-noout", f"-{which}", "-nameopt", "compat"],
                          input=certificate, capture_output=True, check=True)
    return done.stdout.decode().strip().split("=", 1)[1]


def listed(client, path: str = "/imagelists/ubuntu") -> dict:
    """The JSON of a served list (its first MIME part), unverified: openssl tests verify."""
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    signed = email.message_from_bytes(response.get_data())
    assert signed.get_content_type() == "multipart/signed"
    # The first part is the list itself with no MIME headers, as `openssl smime -sign`
    # (without -text) makes it and vmcaster published: a MIME parser sees no body in it.
    boundary = b"--" + signed.get_boundary().encode()
    content = response.get_data().split(boundary)[1]
    return json.loads(content)["hv:imagelist"]


def test_the_list_verifies_with_openssl_and_its_endorser_is_the_signer(client, publish, ca,
                                                                       tmp_path):
    ubuntu = publish(title="Ubuntu 24.04", tag="noble")
    publish(os="centos")
    response = client.get("/imagelists/ubuntu")
    assert response.status_code == 200
    assert b'multipart/signed; protocol="application/x-pkcs7-signature"' in response.data
    done, signer = openssl_verify(response.data, tmp_path, ca)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["hv:imagelist"]
    endorser = data["hv:endorser"]["hv:x509"]
    assert endorser["hv:dn"] == openssl_name(signer, "subject")
    assert endorser["hv:ca"] == openssl_name(signer, "issuer")
    assert endorser["hv:email"] == "lists@example.org"
    created = datetime.strptime(data["dc:date:created"], DATE_FORMAT).replace(tzinfo=UTC)
    expires = datetime.strptime(data["dc:date:expires"], DATE_FORMAT).replace(tzinfo=UTC)
    assert created <= datetime.now(UTC) and expires - created == timedelta(days=7)
    assert [i["hv:image"]["dc:title"] for i in data["hv:images"]] == ["Ubuntu 24.04"]
    image = data["hv:images"][0]["hv:image"]
    assert image["dc:identifier"] == image_uuid(ubuntu.identifier)
    assert image["sl:identifier"] == ubuntu.identifier
    assert image["sl:checksum:sha512"] == ubuntu.checksums["SHA-512"]
    assert image["hv:size"] == ubuntu.bytes and image["hv:uri"] == ubuntu.locations[0]
    assert image["ad:mpuri"].startswith("http://localhost/metadata/" + ubuntu.identifier)
    assert image["dc:date:expires"] == ubuntu.valid.strftime(DATE_FORMAT)


def test_a_changed_list_fails_openssl(client, publish, ca, tmp_path):
    publish(title="Original title")
    signed = client.get("/imagelists/ubuntu").data
    done, _ = openssl_verify(signed.replace(b"Original title", b"Changed title!"), tmp_path, ca)
    assert done.returncode != 0


def test_deprecated_expired_and_unhashed_entries_leave_the_list(client, publish):
    kept = publish(title="kept")
    publish(title="deprecated", deprecated="superseded")
    publish(title="no sha512", sha512=False)
    publish(title="pdisk only", locations=["pdisk:127.0.0.1:8445/abc"])
    response = client.get("/imagelists/ubuntu")
    data = listed(client)
    assert [i["hv:image"]["sl:identifier"] for i in data["hv:images"]] == [kept.identifier]
    assert response.headers["X-Image-List-Images"] == "1"
    assert "1 without SHA-512" in response.headers["X-Image-List-Left-Out"]
    assert "1 without a web location" in response.headers["X-Image-List-Left-Out"]


def test_an_entry_leaves_when_its_validity_ends_and_the_version_grows(app, publish):
    """No document changes when an entry expires; the marker's version grows all the same."""
    store = marketplace_of(app).store
    now = datetime.now(UTC)
    publish(valid=(now + timedelta(hours=1)).replace(microsecond=0))
    later = now + timedelta(hours=2)
    before, after = marker(store, now), marker(store, later)
    assert before.serial == after.serial
    assert version_key(after.version) > version_key(before.version)
    assert len(list(all_matching(store, Query(status="valid", now=now)))) == 1
    assert list(all_matching(store, Query(status="valid", now=later))) == []


def test_every_change_raises_the_version_and_a_repeat_is_304(client, publish):
    first = client.get("/imagelists/ubuntu")
    version = listed(client)["hv:version"]
    assert first.headers["ETag"] and first.headers["Last-Modified"]
    repeat = client.get("/imagelists/ubuntu", headers={"If-None-Match": first.headers["ETag"]})
    assert repeat.status_code == 304 and repeat.data == b""
    image = publish()
    second = client.get("/imagelists/ubuntu", headers={"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 200
    grown = listed(client)["hv:version"]
    assert version_key(grown) > version_key(version)
    publish(image=None, title="deprecated", deprecated="gone")
    assert version_key(listed(client)["hv:version"]) > version_key(grown)
    assert image.identifier in {i["hv:image"]["sl:identifier"]
                                for i in listed(client)["hv:images"]}


def test_one_list_per_endorser(client, publish, ec_signer):
    jane = publish()
    publish(signer=ec_signer, os="debian")
    data = listed(client, "/imagelists/endorsers/jane.tester@example.org")
    assert [i["hv:image"]["sl:identifier"] for i in data["hv:images"]] == [jane.identifier]
    assert data["hv:uri"].endswith("/imagelists/endorsers/jane.tester@example.org")


def test_unknown_lists_are_404_and_an_empty_one_is_served_empty(client, publish):
    publish()
    assert client.get("/imagelists/nosuch").status_code == 404
    assert client.get("/imagelists/endorsers/nobody@example.org").status_code == 404
    assert listed(client, "/imagelists/nothing")["hv:images"] == []
    assert set(client.get("/imagelists").get_json()["lists"]) == {"ubuntu", "nothing"}


def test_without_a_signing_key_the_list_is_503_naming_the_setting(tmp_path, list_settings):
    app = create_app(data_dir=str(tmp_path / "plain"), IMAGELISTS=list_settings["IMAGELISTS"])
    response = app.test_client().get("/imagelists/ubuntu")
    marketplace_of(app).store.close()
    assert response.status_code == 503
    assert "MARKETPLACE_IMAGELIST_CERTIFICATE" in response.get_data(as_text=True)
    assert "MARKETPLACE_IMAGELIST_KEY" in response.get_data(as_text=True)


def test_a_bad_search_in_the_definitions_is_503_naming_the_list(tmp_path, list_settings):
    definitions = tmp_path / "bad.ini"
    definitions.write_text("[broken]\ncolour = blue\n")
    app = create_app(data_dir=str(tmp_path / "bad"), **{**list_settings,
                                                         "IMAGELISTS": str(definitions)})
    response = app.test_client().get("/imagelists/broken")
    marketplace_of(app).store.close()
    assert response.status_code == 503
    assert "[broken]" in response.get_data(as_text=True)


def test_entries_of_the_list_come_from_the_index_not_the_documents(app, publish, monkeypatch):
    publish()

    def no_parsing(*args, **kwargs):
        raise AssertionError("an export parsed a stored document")

    monkeypatch.setattr(Entry, "from_document", classmethod(no_parsing))
    assert len(listed(app.test_client())["hv:images"]) == 1


def test_atrope_subscribes_to_the_list(live, live_publish, list_signer, ca_dir, tmp_path):
    from atrope import smime as atrope_smime  # noqa: F401 - registers ca_path
    from atrope.image_list import hepix as atrope_hepix
    from oslo_config import cfg

    image = live_publish(title="for atrope")
    cfg.CONF.set_override("ca_path", str(ca_dir))
    cfg.CONF.set_override("download_ca_file", str(tmp_path / "atrope-bundle.pem"))
    try:
        endorser = {"dn": slash_dn(list_signer.subject),
                    "ca": slash_dn(list_signer.certificate.issuer)}
        source = atrope_hepix.HepixImageListSource(
            "ours", url=live.url + "imagelists/ubuntu", endorser=endorser)
        source.fetch()
        assert source.verified and source.trusted and not source.expired
        assert [i.sha512 for i in source.image_list.get_images()] == [
            image.checksums["SHA-512"]]
        impostor = atrope_hepix.HepixImageListSource(
            "impostor", url=live.url + "imagelists/ubuntu",
            endorser={**endorser, "dn": "/C=EU/O=Elsewhere/CN=Someone Else"})
        try:
            impostor.fetch()
            trusted = impostor.trusted
        except TypeError:  # atrope 2.0.0 formats its own DN-mismatch message wrongly
            trusted = False
        assert not trusted
    finally:
        cfg.CONF.clear_override("ca_path")
        cfg.CONF.clear_override("download_ca_file")


def test_our_node_follows_our_own_list(live, list_signer, rsa_signer, ca_dir, tmp_path):
    """The marketplace's list, served by the real server, followed by ``stratus-image-cache
    subscribe`` into a cache, each image checked against the list's SHA-512."""
    from tests.exports.test_simplestreams import publish_live
    from tests.node.conftest import Origin, command_env, image_bytes, run_command

    origin = Origin()
    try:
        published = publish_live(live, rsa_signer, origin, "ours.img", image_bytes(3000, 11))
        config = tmp_path / "fetcher.cfg"
        config.write_text(f"[fetcher]\ncache_dir = {tmp_path / 'cache'}\n"
                          f"local_lock_dir = {tmp_path / 'locks'}\n"
                          "allow_private_addresses = 127.0.0.1/32\n")
        done = run_command("stratus-image-cache", "--config", str(config), "--json",
                           "subscribe", live.url + "imagelists/ubuntu", "--endorser-dn",
                           slash_dn(list_signer.subject), "--ca-dir", str(ca_dir),
                           env=command_env())
    finally:
        origin.stop()
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)["subscriptions"]
    (image,) = report["images"]
    assert image["uuid"] == image_uuid(published.identifier)
    assert image["digests"]["SHA-512"] == published.checksums["SHA-512"]
