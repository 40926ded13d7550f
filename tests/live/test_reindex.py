"""``stratus-marketplace reindex`` on a stopped server's data dir: same answers after."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import requests

from tests import factories
from tests.live.conftest import clean_environ, script

QUERIES = ({"status": "all", "limit": 100}, {"status": "valid"}, {"status": "deprecated"},
           {"os": "debian"}, {"q": "server"}, {"arch": "aarch64", "status": "all"})


def answers(server) -> list[tuple[int, list[str]]]:
    """Total and identifiers in order, for each query."""
    found = []
    for params in QUERIES:
        page = server.search(**params)
        found.append((page["total"], [item["identifier"] for item in page["items"]]))
    return found


def upload(server, data: bytes) -> None:
    response = requests.post(server.url + "metadata", data=data, timeout=30,
                             headers={"Content-Type": "application/rdf+xml",
                                      "Accept": "application/json"})
    assert response.status_code == 201, response.text


def test_reindex_rebuilds_the_same_results(own_server, ec_signer, rsa_signer, tmp_path):
    own_server.start()
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(12):
        fields = {"os": ("ubuntu", "debian", "centos")[n % 3],
                  "os_arch": ("x86_64", "aarch64")[n % 2],
                  "title": ("Plain server", "Desktop")[n % 2]}
        if n % 5 == 0:
            fields["deprecated"] = "superseded"
        signer = (ec_signer, rsa_signer)[n % 2]
        upload(own_server, factories.signed(signer, factories.appliance(**fields),
                                            now=now - timedelta(minutes=n)))
    before = answers(own_server)
    assert before[0][0] == 12
    own_server.stop()

    result = subprocess.run([script("stratus-marketplace"), "reindex", "--data-dir",
                             str(own_server.data_dir)], capture_output=True, text=True,
                            env=clean_environ(HOME=str(tmp_path)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "reindexed 12 entries" in result.stdout

    own_server.start()
    assert answers(own_server) == before
