"""kill -9 of the whole server (gunicorn master and workers) while uploads stream in.

Afterwards every upload that got a 201 is there, byte for byte, and the store holds only
complete signed documents, each one of those sent; the derived index agrees with the
documents, and ``reindex`` counts the same.
"""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from dataclasses import dataclass, field

import requests

from marketplace.metadata.checks import check_document
from marketplace.metadata.model import format_date
from tests import factories
from tests.live.conftest import clean_environ, script, wait_for

DOCUMENTS = 200
ACKED_BEFORE_KILL = 40
MARKER = "crashtestos"


@dataclass
class Uploads:
    """A thread that POSTs documents one after the other and records the 201s."""

    url: str
    documents: list[bytes]
    acked: dict[str, bytes] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    killed: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        for data in self.documents:
            try:
                response = session.post(self.url + "metadata", data=data, timeout=30,
                                        headers={"Content-Type": "application/rdf+xml",
                                                 "Accept": "application/json"})
            except requests.RequestException as exc:
                if self.killed.is_set():
                    return
                self.unexpected.append(f"before the kill: {exc}")
                return
            if response.status_code == 201:
                self.acked[response.headers["Location"]] = data
            else:
                self.unexpected.append(f"{response.status_code}: {response.text[:300]}")


def stored_documents(database) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT identifier, email, created, document FROM documents"
                          ).fetchall()
    finally:
        db.close()


def test_sigkill_mid_upload_loses_nothing_acknowledged_and_leaves_nothing_partial(
        own_server, ec_signer, tmp_path):
    documents = [factories.signed(ec_signer, factories.appliance(os=MARKER))
                 for _ in range(DOCUMENTS)]
    sent = set(documents)
    own_server.start()
    uploads = Uploads(own_server.url, documents)
    thread = threading.Thread(target=uploads.run, daemon=True)
    thread.start()
    wait_for(lambda: len(uploads.acked) >= ACKED_BEFORE_KILL or not thread.is_alive(), 120,
             f"{ACKED_BEFORE_KILL} acknowledged uploads")
    uploads.killed.set()
    own_server.kill()
    thread.join(60)
    assert not thread.is_alive(), "the upload thread did not notice the server was gone"
    assert not uploads.unexpected, uploads.unexpected
    assert ACKED_BEFORE_KILL <= len(uploads.acked) < DOCUMENTS, \
        "the kill did not land in the middle of the uploads"

    own_server.start()
    for location, data in uploads.acked.items():
        response = own_server.get(location)
        assert response.status_code == 200, f"{location} lost after the crash"
        assert response.content == data, f"{location} changed after the crash"

    rows = stored_documents(own_server.data_dir / "marketplace.db")
    for row in rows:
        document = bytes(row["document"])
        assert document in sent, f"stored bytes of {row['identifier']} are not a sent document"
        entry = check_document(document).appliance
        assert (entry.identifier, entry.endorsement.email,
                format_date(entry.endorsement.created)) == tuple(row)[:3]
    assert len({bytes(r["document"]) for r in rows}) == len(rows)
    assert set(uploads.acked.values()) <= {bytes(r["document"]) for r in rows}
    assert own_server.search(os=MARKER, status="all", limit=1)["total"] == len(rows), \
        "the index does not agree with the stored documents"
    own_server.stop()

    result = subprocess.run([script("stratus-marketplace"), "reindex", "--data-dir",
                             str(own_server.data_dir)], capture_output=True, text=True,
                            env=clean_environ(HOME=str(tmp_path)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"reindexed {len(rows)} entries" in result.stdout
