"""``stratus-image-cache subscribe``: following a signed HEPiX image list with vmcatcher's
rules (signature against the CA directory, pinned signer, dates, no lower version), images
pulled from a real origin into the cache with their SHA-512 checked.

The lists are signed here exactly as the marketplace signs its own (the same S/MIME code) and
checked by the node's own code through Debian's openssl; each attack is a list a subscriber
must refuse."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from client.node import errors
from client.node.download import TransferSettings
from client.node.imagelist import Subscription, fetch_list
from client.node.session import make_session
from marketplace.exports.signing import SMIMESigner
from marketplace.metadata.hepix import DATE_FORMAT, cache_identifier, slash_dn
from tests import pki
from tests.node.conftest import command_env, image_bytes, run_command


@pytest.fixture(scope="module")
def list_signer(ca) -> pki.Issued:
    return pki.make_certificate(ca, "AppDB Lists", pki.RSA, email="appdb@example.org")


@pytest.fixture
def ca_dir(tmp_path, ca):
    directory = tmp_path / "certificates"
    directory.mkdir()
    (directory / "ca.pem").write_bytes(ca.certificate_pem())
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    return directory


def make_list(signer: pki.Issued, images: list[dict], version: str = "1",
              created: datetime | None = None, lifetime: timedelta = timedelta(days=7),
              endorser_dn: str | None = None) -> dict:
    created = created or datetime.now(UTC).replace(microsecond=0)
    return {"hv:imagelist": {
        "dc:identifier": str(uuid.uuid4()), "dc:title": "test list", "dc:description": "",
        "dc:source": "https://example.org/", "dc:date:created": created.strftime(DATE_FORMAT),
        "dc:date:expires": (created + lifetime).strftime(DATE_FORMAT),
        "hv:version": version, "hv:uri": "https://example.org/list",
        "hv:endorser": {"hv:x509": {"dc:creator": "AppDB",
                                    "hv:dn": endorser_dn or slash_dn(signer.subject),
                                    "hv:ca": slash_dn(signer.certificate.issuer),
                                    "hv:email": "appdb@example.org"}},
        "hv:images": [{"hv:image": image} for image in images]}}


def hv_image(origin, name: str, data: bytes, sha512: str | None = None) -> dict:
    return {"dc:identifier": str(uuid.uuid4()), "dc:title": name, "dc:description": "",
            "hv:uri": origin.add(name, data), "hv:size": len(data),
            "sl:checksum:sha512": sha512 or hashlib.sha512(data).hexdigest(),
            "hv:format": "RAW", "hv:version": "1", "sl:os": "Linux", "sl:osversion": "1",
            "sl:arch": "x86_64", "sl:comments": "", "hv:hypervisor": "KVM"}


def signed(signer: pki.Issued, document: dict) -> bytes:
    text = json.dumps(document, indent=2).encode()
    return SMIMESigner(signer.certificate, signer.key).sign(text)


def subscribe(origin, write_config, node_settings, list_bytes: bytes, dn: str, ca,
              *extra: str, name: str = "image.list"):
    url = origin.add(name, list_bytes)
    config = write_config(fetcher=node_settings)
    done = run_command("stratus-image-cache", "--config", str(config), "subscribe", url,
                       "--endorser-dn", dn, "--ca-dir", str(ca), "--json", *extra,
                       env=command_env())
    return done, json.loads(done.stdout) if done.stdout.strip() else None


def cached(node_settings) -> set[str]:
    from pathlib import Path

    images = Path(node_settings["cache_dir"]) / "images"
    return {p.name for p in images.iterdir()} if images.is_dir() else set()


def test_a_signed_list_is_followed_into_the_cache(origin, write_config, node_settings,
                                                  list_signer, ca_dir):
    first, second = image_bytes(3000, 1), image_bytes(5000, 2)
    images = [hv_image(origin, "a.img", first), hv_image(origin, "b.img", second)]
    done, report = subscribe(origin, write_config, node_settings,
                             signed(list_signer, make_list(list_signer, images)),
                             slash_dn(list_signer.subject), ca_dir)
    assert done.returncode == 0, done.stderr
    results = report["subscriptions"][0]["images"]
    assert [r["cached"] for r in results] == [False, False]
    assert [r["digests"]["SHA-512"] for r in results] == [
        hashlib.sha512(first).hexdigest(), hashlib.sha512(second).hexdigest()]
    assert cached(node_settings) == {cache_identifier(i["dc:identifier"]) for i in images}
    again, report = subscribe(origin, write_config, node_settings,
                              signed(list_signer, make_list(list_signer, images)),
                              slash_dn(list_signer.subject), ca_dir)
    assert again.returncode == 0, again.stderr
    assert [r["cached"] for r in report["subscriptions"][0]["images"]] == [True, True]


def test_a_list_of_another_signer_under_the_same_ca_is_refused(
        origin, write_config, node_settings, list_signer, ca, ca_dir):
    impostor = pki.make_certificate(ca, "Someone Else", pki.RSA)
    images = [hv_image(origin, "a.img", image_bytes(1000, 3))]
    document = make_list(impostor, images)
    done, _ = subscribe(origin, write_config, node_settings, signed(impostor, document),
                        slash_dn(list_signer.subject), ca_dir)
    assert done.returncode == 3, done.stderr
    assert "not by the subscribed endorser" in done.stderr
    assert cached(node_settings) == set()


def test_a_list_naming_another_endorser_than_its_signer_is_refused(
        origin, write_config, node_settings, list_signer, ca_dir):
    images = [hv_image(origin, "a.img", image_bytes(1000, 4))]
    document = make_list(list_signer, images, endorser_dn="/C=EU/O=Elsewhere/CN=Boss")
    done, _ = subscribe(origin, write_config, node_settings, signed(list_signer, document),
                        slash_dn(list_signer.subject), ca_dir)
    assert done.returncode == 3 and "names its endorser" in done.stderr
    assert cached(node_settings) == set()


def test_a_changed_list_or_an_unknown_ca_is_refused(origin, write_config, node_settings,
                                                    list_signer, other_ca, ca_dir):
    data = image_bytes(1000, 5)
    images = [hv_image(origin, "a.img", data)]
    tampered = signed(list_signer, make_list(list_signer, images)).replace(
        b'"hv:size": 1000', b'"hv:size": 1001')
    done, _ = subscribe(origin, write_config, node_settings, tampered,
                        slash_dn(list_signer.subject), ca_dir)
    assert done.returncode == 3 and "does not verify" in done.stderr
    stranger = pki.make_certificate(other_ca, "AppDB Lists", pki.RSA)
    done, _ = subscribe(origin, write_config, node_settings,
                        signed(stranger, make_list(stranger, images)),
                        slash_dn(stranger.subject), ca_dir, name="other.list")
    assert done.returncode == 3 and "does not verify" in done.stderr
    assert cached(node_settings) == set()


def test_expired_and_future_lists_are_refused(origin, write_config, node_settings,
                                              list_signer, ca_dir):
    images = [hv_image(origin, "a.img", image_bytes(1000, 6))]
    old = make_list(list_signer, images, created=datetime.now(UTC) - timedelta(days=8))
    done, _ = subscribe(origin, write_config, node_settings, signed(list_signer, old),
                        slash_dn(list_signer.subject), ca_dir)
    assert done.returncode == 3 and "expired" in done.stderr
    future = make_list(list_signer, images, created=datetime.now(UTC) + timedelta(hours=1))
    done, _ = subscribe(origin, write_config, node_settings, signed(list_signer, future),
                        slash_dn(list_signer.subject), ca_dir, name="future.list")
    assert done.returncode == 3 and "future" in done.stderr
    assert cached(node_settings) == set()


def test_a_lower_version_than_the_last_accepted_is_refused(origin, write_config,
                                                           node_settings, list_signer, ca_dir):
    images = [hv_image(origin, "a.img", image_bytes(1000, 7))]
    dn = slash_dn(list_signer.subject)
    newer = signed(list_signer, make_list(list_signer, images, version="12.3.0"))
    older = signed(list_signer, make_list(list_signer, images, version="12.2.9"))
    done, _ = subscribe(origin, write_config, node_settings, newer, dn, ca_dir)
    assert done.returncode == 0, done.stderr
    done, _ = subscribe(origin, write_config, node_settings, older, dn, ca_dir)
    assert done.returncode == 3 and "lower than 12.3.0" in done.stderr
    done, _ = subscribe(origin, write_config, node_settings, newer, dn, ca_dir)
    assert done.returncode == 0, done.stderr


def test_an_image_whose_bytes_do_not_match_its_sha512_is_not_cached(
        origin, write_config, node_settings, list_signer, ca_dir):
    good, bad = image_bytes(1000, 8), image_bytes(1000, 9)
    images = [hv_image(origin, "good.img", good),
              hv_image(origin, "bad.img", bad, sha512=hashlib.sha512(b"other").hexdigest())]
    done, report = subscribe(origin, write_config, node_settings,
                             signed(list_signer, make_list(list_signer, images)),
                             slash_dn(list_signer.subject), ca_dir)
    assert done.returncode == 4, done.stderr
    assert cached(node_settings) == {cache_identifier(images[0]["dc:identifier"])}
    assert report["subscriptions"][0]["images"][1]["kind"] == "download-failed"


def test_subscriptions_in_the_fetcher_config(origin, write_config, node_settings,
                                             list_signer, ca_dir):
    images = [hv_image(origin, "a.img", image_bytes(2000, 10))]
    url = origin.add("config.list", signed(list_signer, make_list(list_signer, images)))
    config = write_config(fetcher=node_settings, **{"subscription appdb": {
        "url": url, "endorser_dn": slash_dn(list_signer.subject), "ca_dir": str(ca_dir)}})
    done = run_command("stratus-image-cache", "--config", str(config), "subscribe",
                       env=command_env())
    assert done.returncode == 0, done.stderr
    assert "hv:version 1" in done.stdout
    assert cached(node_settings) == {cache_identifier(images[0]["dc:identifier"])}
    usage = run_command("stratus-image-cache", "--config", str(config), "subscribe", url,
                        env=command_env())
    assert usage.returncode == 2 and "--endorser-dn" in usage.stderr


def test_an_unreachable_list_is_said_in_plain_words(tmp_path):

    subscription = Subscription("http://127.0.0.1:9/image.list", "/CN=x", tmp_path)
    with pytest.raises(errors.FetchError) as raised:
        fetch_list(subscription, make_session(TransferSettings()), (5.0, 5.0))
    assert str(raised.value) == ("cannot fetch the image list http://127.0.0.1:9/image.list: "
                                 "connection refused")
