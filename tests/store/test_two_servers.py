"""Two marketplace servers (``stratus-marketplace serve``, gunicorn, separate processes) on
one Elasticsearch: what one accepts the other serves at once, and concurrent uploads of
successive versions through both end with the newest as the latest entry on both."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests

from tests import factories
from tests.live.conftest import LiveServer
from tests.store.conftest import moment


@pytest.fixture
def servers(elasticsearch, es_prefix, tmp_path):
    """Two servers, each with its own data dir whose marketplace.cfg names the cluster."""
    started = []
    for name in ("a", "b"):
        data = tmp_path / name / "data"
        data.mkdir(parents=True)
        settings = elasticsearch.settings(es_prefix)
        (data / "marketplace.cfg").write_text(
            "[marketplace]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        server = LiveServer(data, tmp_path / name)
        started.append(server)
        server.start()
    yield started
    for server in started:
        server.stop()


def upload(server: LiveServer, document: bytes) -> requests.Response:
    return requests.post(server.url + "metadata", data=document, timeout=60,
                         headers={"Content-Type": "application/rdf+xml",
                                  "Accept": "application/json"})


def test_an_upload_through_one_server_is_served_at_once_by_the_other(servers, rsa_signer):
    first, second = servers
    document = factories.signed(rsa_signer, factories.appliance(title="shared entry"))
    response = upload(first, document)
    assert response.status_code == 201, response.text
    entry = second.get(response.headers["Location"])
    assert entry.status_code == 200 and entry.content == document
    found = second.search(q="shared")
    assert [item["title"] for item in found["items"]] == ["shared entry"]
    assert upload(second, document).status_code == 200  # a replay, wherever it arrives


def test_concurrent_versions_through_both_servers_end_with_the_newest(
        servers, rsa_signer, elasticsearch, es_prefix):
    image = b"one appliance, many builds"
    base = moment()
    documents = [factories.signed(rsa_signer, factories.appliance(image, title=f"build {n}"),
                                  now=base - timedelta(minutes=40 - n))
                 for n in range(40)]
    statuses: list[int] = []

    def send(server, batch):
        for document in batch:
            statuses.append(upload(server, document).status_code)

    threads = [threading.Thread(target=send, args=(servers[n % 2], documents[n::4]))
               for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 40 and set(statuses) <= {201, 409}
    for server in servers:
        latest = server.search(status="all")
        assert [item["title"] for item in latest["items"]] == ["build 39"]
        assert latest["total"] == 1
    store = elasticsearch.store(es_prefix)
    assert store.count() == statuses.count(201)  # every acknowledged version, nothing more
    store.close()
