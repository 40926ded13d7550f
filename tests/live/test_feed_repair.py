"""Store and change feed stay in step through a crash: a worker that dies between storing
an upload and writing its feed row (a real server, the worker ended by ``os._exit`` at that
point) leaves an entry that replicas never learn of -- unless the marketplace repairs the
feed when it starts again, and when the same document is uploaded again.

The crash is put in from outside: a ``sitecustomize`` module on the server's PYTHONPATH
wraps the feed write and exits the process while a marker file exists.
"""

from __future__ import annotations

import os
import textwrap

import requests

from tests import factories
from tests.live.conftest import wait_for

XML = {"Content-Type": "application/rdf+xml", "Accept": "application/json"}
MARKER_OS = "feedcrashos"


def crash_hook(folder, marker) -> str:
    """A sitecustomize that ends the process in the feed write while ``marker`` exists."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(textwrap.dedent(f"""\
        import os
        from marketplace.moderation import store

        _write = store.SQLiteModerationStore.published

        def published(self, *args, **kwargs):
            if os.path.exists({str(marker)!r}):
                os._exit(9)  # the entry is stored; its feed row is not written
            return _write(self, *args, **kwargs)

        store.SQLiteModerationStore.published = published
        """))
    return str(folder)


def post(server, document: bytes) -> requests.Response | None:
    try:
        return requests.post(server.url + "metadata", data=document, headers=XML, timeout=30)
    except requests.ConnectionError:
        return None  # the worker died mid-request


def published_keys(server) -> set[tuple[str, str, str]]:
    changes = server.get("api/v1/changes", params={"limit": 1000}).json()["changes"]
    keys: dict = {}
    for change in changes:
        keys[(change["identifier"], change["email"], change["created"])] = change["action"]
    return {key for key, action in keys.items() if action == "publish"}


def stored_keys(server) -> set[tuple[str, str, str]]:
    items = server.search(os=MARKER_OS, status="all", limit=100)["items"]
    return {(i["identifier"], i["email"], i["endorsement"]["created"]) for i in items}


def test_a_crash_between_store_and_feed_is_repaired_on_start(own_server, rsa_signer,
                                                              tmp_path, monkeypatch):
    marker = tmp_path / "crash-now"
    hook = crash_hook(tmp_path / "hook", marker)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (hook, os.environ.get("PYTHONPATH", "")) if p))
    documents = [factories.signed(rsa_signer, factories.appliance(os=MARKER_OS))
                 for _ in range(4)]
    own_server.start()
    for document in documents[:2]:
        assert post(own_server, document).status_code == 201
    marker.touch()
    assert post(own_server, documents[2]) is None, "the worker did not crash"
    marker.unlink()
    wait_for(lambda: len(stored_keys(own_server)) == 3, 60, "the third entry to be stored")
    assert len(published_keys(own_server)) == 2  # the crash left the feed one short
    own_server.kill()

    own_server.start()
    assert published_keys(own_server) == stored_keys(own_server), \
        "an entry stored before the crash is missing from the change feed after a restart"
    assert post(own_server, documents[3]).status_code == 201
    assert published_keys(own_server) == stored_keys(own_server)


def test_uploading_the_same_document_again_repairs_the_feed(own_server, rsa_signer,
                                                           tmp_path, monkeypatch):
    marker = tmp_path / "crash-now"
    hook = crash_hook(tmp_path / "hook", marker)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (hook, os.environ.get("PYTHONPATH", "")) if p))
    document = factories.signed(rsa_signer, factories.appliance(os=MARKER_OS))
    own_server.start()
    marker.touch()
    assert post(own_server, document) is None, "the worker did not crash"
    marker.unlink()
    wait_for(lambda: len(stored_keys(own_server)) == 1, 60, "the entry to be stored")
    replay = wait_for(lambda: post(own_server, document), 60, "a worker to answer")
    assert replay.status_code == 200, replay.text
    assert published_keys(own_server) == stored_keys(own_server), \
        "the replay answered 200 without putting the entry in the change feed"
