"""No acknowledged entry is ever out of the log: a real server (gunicorn, two workers)
SIGKILLed while four clients upload at once, then started again. Every upload answered 201
has the leaf its answer named -- a ``published`` leaf of its key and of its exact bytes --
and the check ``serve`` runs at start finds the store and the log in agreement.

(The finer cuts -- killed inside the transaction, after its commit, a worker alone, a fault
injected between the store write and the leaf -- are tests/live/test_feed_repair.py and
tests/store/test_feed_repair.py: an upload there is wholly in the store, feed and log, or
wholly absent.)"""

from __future__ import annotations

import hashlib
import threading

import requests

from marketplace.metadata.logleaf import LogEvent
from marketplace.store.sqlite import SQLiteStore
from tests.live.conftest import LiveServer, wait_for
from tests.moderation.conftest import signed
from tests.moderation.test_replica import configure

CLIENTS = 4
ACKNOWLEDGED_BEFORE_THE_KILL = 8


def test_a_server_killed_amid_uploads_leaves_every_acknowledged_one_in_the_log(tmp_path,
                                                                                rsa_signer):
    server = LiveServer(configure(tmp_path / "data"), tmp_path)
    documents = [signed(rsa_signer, days_ago=1 + n / 1000, title=f"entry {n}")
                 for n in range(60)]
    server.start()
    queue, lock = iter(documents), threading.Lock()
    acknowledged: list[tuple[bytes, dict]] = []

    def upload_until_killed():
        for document in iter(lambda: next(queue, None), None):
            try:
                answer = requests.post(server.url + "metadata", data=document, timeout=30,
                                       headers={"Content-Type": "application/xml",
                                                "Accept": "application/json"})
            except requests.RequestException:
                return  # the server is gone
            if answer.status_code == 201:
                with lock:
                    acknowledged.append((document, answer.json()))

    clients = [threading.Thread(target=upload_until_killed) for _ in range(CLIENTS)]
    try:
        for client in clients:
            client.start()
        wait_for(lambda: len(acknowledged) >= ACKNOWLEDGED_BEFORE_THE_KILL, 120,
                 "the first uploads to be answered")
        server.kill()
        for client in clients:
            client.join(60)
        with lock:
            answered = list(acknowledged)
        server.start()  # runs check-log before its workers start
        health = server.get("healthz").json()
        assert health["status"] == "ok" and health["log"]["ok"], health
    finally:
        server.stop()

    store = SQLiteStore(server.data_dir / "marketplace.db")
    try:
        state = store.state
        leaves = state.log_leaves(0, state.log_size())
    finally:
        store.close()
    assert len(answered) >= ACKNOWLEDGED_BEFORE_THE_KILL
    assert len({answer["log_index"] for _, answer in answered}) == len(answered)
    for document, answer in answered:
        leaf = LogEvent.parse(leaves[answer["log_index"]])
        assert (leaf.event, leaf.key) == ("published", (answer["identifier"], answer["email"],
                                                        answer["created"]))
        assert leaf.document_sha256 == hashlib.sha256(document).hexdigest()
