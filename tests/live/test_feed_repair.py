"""An upload is one transaction: a real server killed in the middle of one (every process of
it SIGKILLed, or only the worker serving it) leaves the entry wholly there -- document,
change-feed row and log leaf -- or wholly absent, never one without the others, and nothing
needs repairing afterwards.

The crash is put in from outside: a ``sitecustomize`` module on the server's PYTHONPATH
wraps the log append (the last write inside the publication's transaction) or the
publication itself (after its commit, before the answer) and kills the server's process
group, or only the worker, while a marker file exists.
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

from marketplace.store import sqlite_log, sqlite_state

_append = sqlite_log.append
_publish = sqlite_state.SQLiteState.publish


def die(marker_server, marker_worker):
    if os.path.exists(marker_server):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # master and workers, as kill -9 would
    if os.path.exists(marker_worker):
        os._exit(9)  # this worker only


def append(db, event):
    die({inside_server!r}, {inside_worker!r})
    return _append(db, event)


def publish(self, *args, **kwargs):
    done = _publish(self, *args, **kwargs)
    die({after_server!r}, "")
    return done


sqlite_log.append = append
sqlite_state.SQLiteState.publish = publish
"""


class Crash:
    """The markers that make the next upload crash the server or one worker, inside the
    publication's transaction or just after its commit."""

    def __init__(self, folder: Path, monkeypatch):
        self.inside_server = folder / "kill-server-inside"
        self.inside_worker = folder / "kill-worker-inside"
        self.after_server = folder / "kill-server-after"
        hook = folder / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(textwrap.dedent(HOOK.format(
            inside_server=str(self.inside_server), inside_worker=str(self.inside_worker),
            after_server=str(self.after_server))))
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


def written(server) -> tuple[int, int, int]:
    """(documents, feed publications, log leaves) in the store's file, read from outside."""
    db = sqlite3.connect(f"file:{server.data_dir / 'marketplace.db'}?mode=ro", uri=True)
    try:
        return tuple(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                     for table in ("documents", "changes WHERE action='publish'",
                                   "log_leaves WHERE event='published'"))
    finally:
        db.close()


def published_keys(server) -> set[tuple[str, str, str]]:
    """The entries the change feed says are published now."""
    changes = server.get("api/v1/changes", params={"limit": 1000}).json()["changes"]
    last = {(c["identifier"], c["email"], c["created"]): c["action"] for c in changes}
    return {key for key, action in last.items() if action == "publish"}


def stored_keys(server) -> set[tuple[str, str, str]]:
    items = server.search(os=MARKER_OS, status="all", limit=100)["items"]
    return {(i["identifier"], i["email"], i["endorsement"]["created"]) for i in items}


def documents(signer, number: int) -> list[bytes]:
    return [factories.signed(signer, factories.appliance(os=MARKER_OS)) for _ in range(number)]


def crash_the_server(server, marker: Path, document: bytes) -> None:
    marker.touch()
    assert post(server, document) is None, "the server did not crash"
    marker.unlink()
    server.kill()  # reap what is left of the group


def test_a_server_killed_inside_an_upload_leaves_none_of_it(own_server, crash, rsa_signer):
    sent = documents(rsa_signer, 3)
    own_server.start()
    for document in sent[:2]:
        assert post(own_server, document).status_code == 201
    crash_the_server(own_server, crash.inside_server, sent[2])
    assert written(own_server) == (2, 2, 2), "a part of the killed upload was left"

    own_server.start()
    assert len(stored_keys(own_server)) == 2
    assert published_keys(own_server) == stored_keys(own_server)
    assert post(own_server, sent[2]).status_code == 201, "the upload could not be sent again"
    assert written(own_server) == (3, 3, 3)


def test_a_server_killed_after_the_commit_keeps_all_of_it(own_server, crash, rsa_signer):
    document, = documents(rsa_signer, 1)
    own_server.start()
    crash_the_server(own_server, crash.after_server, document)
    assert written(own_server) == (1, 1, 1), "the committed upload was not wholly there"

    own_server.start()
    assert published_keys(own_server) == stored_keys(own_server) != set()
    replay = post(own_server, document)
    assert replay.status_code == 200, replay.text
    assert written(own_server) == (1, 1, 1), "the replay wrote the publication twice"


def test_a_worker_killed_inside_an_upload_leaves_none_of_it(own_server, crash, rsa_signer):
    document, = documents(rsa_signer, 1)
    own_server.start()
    crash.inside_worker.touch()
    assert post(own_server, document) is None, "the worker did not crash"
    crash.inside_worker.unlink()
    assert written(own_server) == (0, 0, 0)
    answer = wait_for(lambda: post(own_server, document), 60, "a new worker to answer")
    assert answer.status_code == 201, answer.text
    assert written(own_server) == (1, 1, 1)
    assert published_keys(own_server) == stored_keys(own_server) != set()
