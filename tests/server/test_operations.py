"""Health, ping, Prometheus metrics (one process and several), and store outages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from marketplace.store.base import StoreError
from marketplace.store.elastic import health as cluster_health
from tests import factories

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple, float]:
    """Every sample of a Prometheus exposition, by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["store"] is True
    assert response.json.get("missing", []) == []  # Elasticsearch: every listed node is in


def test_healthz_when_store_is_down(client, store, monkeypatch):
    """SQLite: its file does not answer; Elasticsearch: the cluster does not."""
    def no_answer(*args):
        raise StoreError("does not answer")

    monkeypatch.setattr(store, "healthy", lambda: False)
    monkeypatch.setattr(cluster_health, "ask", no_answer)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable" and response.json["store"] is False


def test_ping_does_not_touch_the_store(client, store, monkeypatch):
    def broken(*args, **kwargs):
        raise AssertionError("ping touched the store")

    for name in ("search", "count", "healthy", "get"):
        monkeypatch.setattr(store, name, broken)
    response = client.get("/api/v1/ping")
    assert response.status_code == 200 and response.json == {"pong": True}


def test_store_outage_is_503_with_retry_after(client, store, post, rsa_signer, monkeypatch):
    def down(*args, **kwargs):
        raise StoreError("database is locked")

    monkeypatch.setattr(store, "search", down)
    monkeypatch.setattr(store.state, "publish", down)  # an upload is one publication
    for response in (client.get("/metadata", headers={"Accept": "application/json"}),
                     client.get("/api/v1/appliances"),
                     post(factories.signed(rsa_signer), headers={"Accept": "application/json"})):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert "try again later" in response.json["error"]


def test_metrics_move_after_uploads_and_requests(client, post, rsa_signer):
    before = scrape(client)
    document = factories.signed(rsa_signer)
    post(document)
    post(document)
    post(b"<not-xml", headers={"Accept": "application/json"})
    post(document, "text/plain")
    client.get("/api/v1/appliances")
    after = scrape(client)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("marketplace_uploads_accepted_total", outcome="created") == 1
    assert moved("marketplace_uploads_accepted_total", outcome="replayed") == 1
    assert moved("marketplace_uploads_rejected_total", reason="invalid") == 1
    assert moved("marketplace_uploads_rejected_total", reason="unsupported_media") == 1
    assert moved("marketplace_http_requests_total", route="/metadata", method="POST",
                 status="201") == 1
    assert moved("marketplace_http_requests_total", route="/metadata", method="POST",
                 status="415") == 1
    assert moved("marketplace_http_request_duration_seconds_count",
                 route="/api/v1/appliances") == 1
    assert after[("marketplace_store_entries", ())] == 1


def test_unmatched_paths_share_one_label(client):
    for index in range(3):
        client.get(f"/random/{index}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "/random/" not in text
    assert 'route="<unmatched>"' in text


def test_metrics_of_several_processes_are_summed(tmp_path):
    """Worker processes write to PROMETHEUS_MULTIPROC_DIR; any one scrape sums them all."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder),
           "PYTHONPATH": str(ROOT)}
    worker = textwrap.dedent("""
        import sys
        from marketplace.web.app import create_app
        client = create_app(data_dir=sys.argv[1]).test_client()
        for _ in range(int(sys.argv[2])):
            assert client.get("/api/v1/ping").status_code == 200
        if sys.argv[3] == "scrape":
            sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    """)
    for count in (3, 2):
        subprocess.run([sys.executable, "-c", worker, str(tmp_path / "data"), str(count), "-"],
                       env=env, check=True, cwd=ROOT)
    scraped = subprocess.run([sys.executable, "-c", worker, str(tmp_path / "data"), "1",
                              "scrape"], env=env, check=True, cwd=ROOT, capture_output=True,
                             text=True).stdout
    found = samples(scraped)
    key = ("marketplace_http_requests_total",
           (("method", "GET"), ("route", "/api/v1/ping"), ("status", "200")))
    assert found[key] == 6
    assert found[("marketplace_store_entries", ())] == 0
    assert len(list(folder.glob("*.db"))) >= 3
