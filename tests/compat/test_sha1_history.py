"""SHA-1-issued certificates end to end (issue 12, 4): an original marketplace's documents,
endorsed in 2013 under a SHA-1 grid CA, come over with ``stratus-marketplace import``
(judged as of their endorsement); the same CA's SHA-1 certificates are refused at upload
now, by the rule ``weak-certificate-signature``. Real server, real command, real files.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.hazmat.primitives import hashes

from tests import factories, pki
from tests.live.conftest import COMMAND_TIMEOUT, LiveServer, clean_environ, script

SHA1 = hashes.SHA1()
ERA = (datetime(2010, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))
ENDORSED = datetime(2013, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def grid_ca() -> pki.Issued:
    return pki.make_ca("Grid CA", validity=ERA, hash_algorithm=SHA1)


@pytest.fixture(scope="module")
def trust_store(tmp_path_factory, grid_ca):
    path = tmp_path_factory.mktemp("grid") / "grid-ca.pem"
    path.write_bytes(grid_ca.certificate_pem())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, trust_store) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("sha1-server")
    (root / "data").mkdir()
    (root / "data" / "marketplace.cfg").write_text(
        f"[marketplace]\nTRUST_STORE = {trust_store}\n")
    live = LiveServer(root / "data", root)
    live.start()
    yield live
    live.stop()


def test_a_sha1_issued_certificate_is_refused_at_upload_by_its_own_rule(server, grid_ca):
    signer = pki.make_certificate(grid_ca, "Grid User", email="grid.user@example.org",
                                  validity=pki.window(days_before=30),
                                  hash_algorithm=SHA1)
    data = factories.signed(signer, profile="stratuslab")
    answer = requests.post(server.url + "metadata", data=data, timeout=30,
                           headers={"Content-Type": "application/xml",
                                    "Accept": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "weak-certificate-signature" in answer.text
    assert "no trusted CA" not in answer.text


def test_an_original_directory_signed_under_a_sha1_ca_is_imported_as_of_2013(
        tmp_path, grid_ca, trust_store):
    signer = pki.make_certificate(grid_ca, "Grid User", email="grid.user@example.org",
                                  validity=(datetime(2012, 1, 1, tzinfo=UTC),
                                            datetime(2015, 1, 1, tzinfo=UTC)),
                                  hash_algorithm=SHA1)
    written = []
    for number in range(3):
        created = ENDORSED + timedelta(days=number)
        entry = factories.appliance(created=created)
        path = (tmp_path / "original" / "metadata" / entry.identifier /
                "grid.user@example.org" / f"{created:%Y-%m-%dT%H:%M:%SZ}.xml")
        path.parent.mkdir(parents=True)
        path.write_bytes(factories.signed(signer, entry, now=created, profile="stratuslab"))
        written.append(str(path))
    done = subprocess.run(
        [script("stratus-marketplace"), "import", str(tmp_path / "original"),
         "--data-dir", str(tmp_path / "data"), "--json"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
        env=clean_environ(HOME=str(tmp_path), MARKETPLACE_TRUST_STORE=str(trust_store)))
    assert done.returncode == 0, done.stderr
    verdicts = {v["file"]: v for v in map(json.loads, done.stdout.splitlines())}
    assert set(verdicts) == set(written)
    assert {(v["outcome"], v["rule"]) for v in verdicts.values()} == {("accepted", "")}
