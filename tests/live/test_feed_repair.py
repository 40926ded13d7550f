"""Store and change feed stay in step through a crash: a server killed between storing an
upload and writing its feed row (a real server: every process of it SIGKILLed at that
point) leaves an entry that replicas never learn of -- unless the marketplace repairs the
feed when it starts again, when a worker dies, and when the same document is uploaded again.

The crash is put in from outside: a ``sitecustomize`` module on the server's PYTHONPATH
wraps the feed write and kills the server's process group (or, for one test, only the
worker) while a marker file exists; another marker turns the repair off, to show that a
replay alone repairs the feed.
"""

from __future__ import annotations

import os
import sqlite3
import textwrap
from pathlib import Path

import pytest
import requests

from tests import factories
from tests.live.conftest import wait_for

XML = {"Content-Type": "application/rdf+xml", "Accept": "application/json"}
MARKER_OS = "feedcrashos"
HOOK = """\
import os
import signal

from marketplace.moderation import store, workflow

_write = store.SQLiteModerationStore.published
_repair = getattr(workflow.Moderation, "repair", None)


def published(self, *args, **kwargs):
    if os.path.exists({server!r}):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # master and workers, as kill -9 would
    if os.path.exists({worker!r}):
        os._exit(9)  # this worker only
    return _write(self, *args, **kwargs)


def repair(self, now):
    if _repair is None or os.path.exists({no_repair!r}):
        return {{"published": 0, "abandoned": 0, "removed": 0}}
    return _repair(self, now)


store.SQLiteModerationStore.published = published
workflow.Moderation.repair = repair
"""


class Crash:
    """The markers that make the next feed write crash the server or one worker."""

    def __init__(self, folder: Path, monkeypatch):
        self.server, self.worker = folder / "kill-server", folder / "kill-worker"
        self.no_repair = folder / "no-repair"
        hook = folder / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(textwrap.dedent(HOOK.format(
            server=str(self.server), worker=str(self.worker), no_repair=str(self.no_repair))))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p))


@pytest.fixture
def crash(tmp_path, monkeypatch) -> Crash:
    return Crash(tmp_path, monkeypatch)


def post(server, document: bytes) -> requests.Response | None:
    try:
        return requests.post(server.url + "metadata", data=document, headers=XML, timeout=30)
    except requests.ConnectionError:
        return None  # the server or its worker died mid-request


def published_keys(server) -> set[tuple[str, str, str]]:
    """The entries the change feed says are published now."""
    changes = server.get("api/v1/changes", params={"limit": 1000}).json()["changes"]
    last = {(c["identifier"], c["email"], c["created"]): c["action"] for c in changes}
    return {key for key, action in last.items() if action == "publish"}


def stored_keys(server) -> set[tuple[str, str, str]]:
    items = server.search(os=MARKER_OS, status="all", limit=100)["items"]
    return {(i["identifier"], i["email"], i["endorsement"]["created"]) for i in items}


def count(database: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def documents(signer, number: int) -> list[bytes]:
    return [factories.signed(signer, factories.appliance(os=MARKER_OS)) for _ in range(number)]


def crash_the_server_in_an_upload(server, crash: Crash, document: bytes) -> None:
    crash.server.touch()
    assert post(server, document) is None, "the server did not crash"
    crash.server.unlink()
    server.kill()  # reap what is left of the group
    assert count(server.data_dir / "marketplace.db", "documents") == \
        count(server.data_dir / "moderation.db", "changes") + 1, \
        "the crash did not land between the store and the feed"


def test_a_server_killed_between_store_and_feed_repairs_the_feed_on_start(
        own_server, crash, rsa_signer):
    sent = documents(rsa_signer, 4)
    own_server.start()
    for document in sent[:2]:
        assert post(own_server, document).status_code == 201
    crash_the_server_in_an_upload(own_server, crash, sent[2])

    own_server.start()
    assert len(stored_keys(own_server)) == 3
    assert published_keys(own_server) == stored_keys(own_server), \
        "an entry stored before the crash is missing from the change feed after a restart"
    assert post(own_server, sent[3]).status_code == 201
    assert published_keys(own_server) == stored_keys(own_server)


def test_uploading_the_same_document_again_repairs_the_feed(own_server, crash, rsa_signer):
    document, = documents(rsa_signer, 1)
    own_server.start()
    crash_the_server_in_an_upload(own_server, crash, document)
    crash.no_repair.touch()  # only the replay may repair it now
    own_server.start()
    assert published_keys(own_server) == set()
    replay = post(own_server, document)
    assert replay.status_code == 200, replay.text
    assert published_keys(own_server) == stored_keys(own_server), \
        "the replay answered 200 without putting the entry in the change feed"


def test_a_worker_killed_between_store_and_feed_is_repaired_without_a_restart(
        own_server, crash, rsa_signer):
    document, = documents(rsa_signer, 1)
    own_server.start()
    crash.worker.touch()
    assert post(own_server, document) is None, "the worker did not crash"
    crash.worker.unlink()
    wait_for(lambda: stored_keys(own_server) and
             published_keys(own_server) == stored_keys(own_server), 60,
             "the server to put the dead worker's entry in the change feed")
