"""simplestreams: our index and products files read by the real client (``python-simplestreams``:
``sstream-query``, ``sstream-mirror`` which checks every item's sha256), plain and GPG-signed."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from marketplace.exports import simplestreams
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import gpg
from tests.live.conftest import LiveServer
from tests.node.conftest import Origin, image_bytes


@pytest.fixture(scope="module")
def gpg_home() -> Iterator[tuple[Path, str, Path]]:
    with gpg.signing_home("Marketplace Streams <streams@example.org>") as made:
        yield made


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


@pytest.fixture
def streams_server(tmp_path, list_settings, gpg_home) -> Iterator[LiveServer]:
    home, fingerprint, _ = gpg_home
    data = tmp_path / "streams-data"
    data.mkdir()
    settings = {**list_settings, "GPG_HOME": str(home), "GPG_KEY": fingerprint}
    (data / "marketplace.cfg").write_text(
        "[marketplace]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    server = LiveServer(data, tmp_path, workers=1)
    server.start()
    yield server
    server.stop()


def publish_live(server: LiveServer, rsa_signer, origin: Origin, name: str, data: bytes,
                 **fields):
    from datetime import UTC, datetime

    from tests import factories
    from tests.exports.conftest import entry

    appliance = entry(data, locations=[origin.add(name, data)], **fields)
    document = factories.signed(rsa_signer, appliance,
                                now=datetime.now(UTC).replace(microsecond=0))
    response = requests.post(server.url + "metadata", data=document, timeout=30,
                             headers={"Content-Type": "application/xml"})
    assert response.status_code == 201, response.text
    return appliance


def test_products_group_versions_and_items_redirect_to_the_image(client, publish):
    first = publish(tag="noble", title="Ubuntu")
    index = client.get("/streams/v1/index.json").get_json()
    assert index["format"] == "index:1.0"
    content = index["index"][simplestreams.CONTENT_ID]
    assert content["path"] == "streams/v1/images.json" and content["format"] == "products:1.0"
    products = client.get("/streams/v1/images.json").get_json()
    assert products["datatype"] == "image-downloads"
    assert list(products["products"]) == content["products"]
    (name, product), = products["products"].items()
    assert name == "org.stratuslab:ubuntu:24.04:x86-64:noble:jane.tester-example.org"
    (serial, version), = product["versions"].items()
    assert len(serial) == len("20260102_030405") and serial[8] == "_"
    item = version["items"]["disk"]
    assert item["sha256"] == first.checksums["SHA-256"] and item["size"] == first.bytes
    assert item["sha512"] == first.checksums["SHA-512"] and item["ftype"] == "raw"
    redirect = client.get("/" + item["path"])
    assert redirect.status_code == 302 and redirect.headers["Location"] == first.locations[0]
    assert client.get("/streams/v1/images/" + first.identifier + "/x@example.org/"
                      "2020-01-01T00:00:00Z").status_code == 404


def test_serials_sort_as_the_endorsements_do():
    dates = ["2026-01-02T03:04:05Z", "2025-12-31T23:59:59Z", "2026-01-02T03:04:06Z"]
    assert sorted(map(simplestreams.serial, dates)) == [
        simplestreams.serial(d) for d in sorted(dates)]


def test_a_repeat_is_304_until_a_change(client, publish):
    first = client.get("/streams/v1/images.json")
    tag = first.headers["ETag"]
    assert client.get("/streams/v1/images.json",
                      headers={"If-None-Match": tag}).status_code == 304
    publish()
    assert client.get("/streams/v1/images.json",
                      headers={"If-None-Match": tag}).status_code == 200


def test_signed_forms_without_a_gpg_key_are_503_naming_the_setting(client):
    response = client.get("/streams/v1/index.sjson")
    assert response.status_code == 503 and "MARKETPLACE_GPG_KEY" in response.get_data(True)


def test_sstream_query_and_mirror_read_our_streams(streams_server, rsa_signer, origin,
                                                   gpg_home, tmp_path):
    _, _, keyring = gpg_home
    wanted = publish_live(streams_server, rsa_signer, origin, "noble.img",
                          image_bytes(4000, 1), tag="noble", os_arch="amd64")
    publish_live(streams_server, rsa_signer, origin, "other.img", image_bytes(3000, 2),
                 tag="other", os_arch="arm64")
    query = subprocess.run(["sstream-query", "--json", "--path", "streams/v1/index.json",
                            streams_server.url], capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    found = {item["sha256"] for item in json.loads(query.stdout)}
    assert wanted.checksums["SHA-256"] in found and len(found) == 2
    mirror = tmp_path / "mirror"
    done = subprocess.run(["sstream-mirror", "--keyring", str(keyring), "--path",
                           "streams/v1/index.sjson", streams_server.url, str(mirror),
                           "arch=amd64"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = [p for p in (mirror / "streams/v1/images").rglob("*") if p.is_file()]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in files] == [
        wanted.checksums["SHA-256"]]


def test_sstream_mirror_refuses_an_image_that_does_not_match(streams_server, rsa_signer,
                                                             origin, gpg_home, tmp_path):
    _, _, keyring = gpg_home
    appliance = publish_live(streams_server, rsa_signer, origin, "swap.img",
                             image_bytes(2000, 3))
    origin.add("swap.img", image_bytes(2000, 4))  # the origin now serves other bytes
    done = subprocess.run(["sstream-mirror", "--keyring", str(keyring), "--path",
                           "streams/v1/index.sjson", streams_server.url,
                           str(tmp_path / "mirror")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "checksum" in done.stderr.lower(), done.stderr
    mirrored = tmp_path / "mirror" / "streams/v1/images" / appliance.identifier
    assert not mirrored.exists() or not any(p.is_file() for p in mirrored.rglob("*"))


def test_a_signed_index_with_another_key_is_refused(streams_server, tmp_path):
    other = tmp_path / "empty.gpg"
    other.write_bytes(b"")
    done = subprocess.run(["sstream-query", "--keyring", str(other), "--path",
                           "streams/v1/index.sjson", streams_server.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


def test_an_empty_marketplace_has_empty_streams(tmp_path, list_settings):
    app = create_app(data_dir=str(tmp_path / "empty"), **list_settings)
    products = app.test_client().get("/streams/v1/images.json").get_json()
    marketplace_of(app).store.close()
    assert products["products"] == {}
