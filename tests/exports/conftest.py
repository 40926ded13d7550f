"""Fixtures of the export tests: a marketplace (real SQLite file) configured to sign image
lists with a certificate of the test CA, entries with SHA-512 published through
``POST /metadata``, and the same marketplace served by the real server for real subscribers."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories, pki
from tests.live.conftest import LiveServer

LISTS = """\
[ubuntu]
title = Ubuntu images
description = Every valid Ubuntu image
os = ubuntu

[nothing]
title = Nothing yet
os = plan9
"""


def entry(image: bytes | None = None, sha512: bool = True, **fields):
    """An unsigned entry of ``image`` with SHA-512 (what image lists need) unless not."""
    image = os.urandom(64) if image is None else image
    appliance = factories.appliance(image, **fields)
    if sha512:
        appliance.checksums["SHA-512"] = hashlib.sha512(image).hexdigest()
    return appliance


@pytest.fixture(scope="session")
def list_signer(ca) -> pki.Issued:
    """The marketplace's own certificate that signs its image lists."""
    return pki.make_certificate(ca, "Marketplace Lists", pki.RSA, email="lists@example.org")


@pytest.fixture
def list_settings(tmp_path, list_signer) -> dict[str, str]:
    """The export settings: a definitions file and the signing certificate and key."""
    key, certificate = pki.write_pem(list_signer, tmp_path, "lists")
    definitions = tmp_path / "imagelists.ini"
    definitions.write_text(LISTS)
    return {"IMAGELISTS": str(definitions), "IMAGELIST_CERTIFICATE": str(certificate),
            "IMAGELIST_KEY": str(key)}


@pytest.fixture
def app(tmp_path, list_settings):
    app = create_app(data_dir=str(tmp_path / "data"), **list_settings)
    yield app
    marketplace_of(app).store.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def publish(client, rsa_signer) -> Callable:
    """Sign an entry (``entry(...)`` arguments) and upload it; returns the appliance."""

    def publish_one(signer=None, when: datetime | None = None, **fields):
        appliance = entry(**fields)
        document = factories.signed(signer or rsa_signer, appliance,
                                    now=when or datetime.now(UTC).replace(microsecond=0))
        response = client.post("/metadata", data=document, content_type="application/xml")
        assert response.status_code == 201, response.get_data(as_text=True)
        return appliance

    return publish_one


@pytest.fixture
def ca_dir(tmp_path, ca) -> Path:
    """A CA directory as /etc/grid-security/certificates is: hashed names (openssl rehash)."""
    directory = tmp_path / "certificates"
    directory.mkdir()
    (directory / "test-ca.pem").write_bytes(ca.certificate_pem())
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    return directory


@pytest.fixture
def live(tmp_path, list_settings) -> Iterator[LiveServer]:
    """The real server (one worker) with the export settings."""
    data = tmp_path / "live-data"
    data.mkdir()
    lines = "".join(f"{key} = {value}\n" for key, value in list_settings.items())
    (data / "marketplace.cfg").write_text("[marketplace]\n" + lines)
    server = LiveServer(data, tmp_path, workers=1)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_publish(live, rsa_signer) -> Callable:
    """Publish a signed entry on the live server; returns the appliance."""

    def publish_one(signer=None, **fields):
        appliance = entry(**fields)
        document = factories.signed(signer or rsa_signer, appliance,
                                    now=datetime.now(UTC).replace(microsecond=0))
        response = requests.post(live.url + "metadata", data=document, timeout=30,
                                 headers={"Content-Type": "application/xml"})
        assert response.status_code == 201, response.text
        return appliance

    return publish_one
