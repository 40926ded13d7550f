"""Entry URLs: one path rule in the core, the same for the server's links and the clients'
requests, and the server finds the entry at the address it gave."""

from __future__ import annotations

import pytest

from marketplace.metadata.identifier import entry_path, metadata_path
from tests import pki

PLUS = "jane+images@example.org"


def test_an_entry_path_keeps_at_plus_and_colon_and_quotes_the_rest():
    assert entry_path("ID", PLUS, "2024-01-01T00:00:00Z") == \
        "/metadata/ID/jane+images@example.org/2024-01-01T00:00:00Z"
    assert metadata_path("ID", "a b/c") == "metadata/ID/a%20b%2Fc"


@pytest.fixture
def plus_signer(ca) -> pki.Issued:
    return pki.make_certificate(ca, "Jane Tester", pki.RSA, email=PLUS)


def test_the_server_gives_and_serves_the_path_the_clients_build(client, publish, plus_signer):
    """Location, the JSON url and the listing name the entry by the core's path, and a
    client's request built by that path gets the stored bytes back."""
    document, location = publish(signer=plus_signer)
    entry = client.get(location, headers={"Accept": "application/json"}).get_json()
    key = (entry["identifier"], entry["email"], entry["endorsement"]["created"])
    assert location == "http://localhost" + entry["url"]
    assert entry["url"] == entry_path(*key)
    assert client.get("/" + metadata_path(*key)).data == document
    listed = client.get(f"/endorsers/{PLUS}", headers={"Accept": "application/json"})
    assert [e["url"] for e in listed.get_json()["entries"]] == [entry_path(*key)]
