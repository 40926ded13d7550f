"""``stratus-marketplace demo``: signed demo entries in an empty store, served by gunicorn."""

from __future__ import annotations

import stat

from marketplace.metadata.checks import check_document
from tests.live.conftest import LiveServer


def test_demo_serves_signed_entries_once_and_keeps_its_keys_private(tmp_path):
    server = LiveServer(tmp_path / "data", tmp_path, command="demo")
    try:
        server.start()
        page = server.search(status="all", limit=100)
        assert page["total"] == 9
        statuses = [item["status"] for item in page["items"]]
        assert statuses.count("deprecated") == 1 and statuses.count("expired") == 1
        assert {"ubuntu", "debian", "centos", "ttylinux"} <= {i["os"] for i in page["items"]}
        item = page["items"][0]
        email, created = item["endorsement"]["email"], item["endorsement"]["created"]
        stored = server.get(f"metadata/{item['identifier']}/{email}/{created}")
        assert check_document(stored.content).appliance.identifier == item["identifier"]
        server.stop()

        keys = sorted((tmp_path / "data" / "demo-pki").glob("*-key.pem"))
        assert [k.name for k in keys] == ["alice-key.pem", "bob-key.pem", "ca-key.pem"]
        for key in keys:
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key

        server.start()
        assert server.search(status="all")["total"] == 9
        assert "not empty" in server.log_text()
    finally:
        server.stop()
