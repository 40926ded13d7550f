"""What /healthz makes of the cluster's answers (marketplace/store/elastic/health.py): which
configured node is missing, and when a server still serves. The live three-node test
(tests/live/test_scaleout.py) stops a real node; these cover the forms of addresses."""

from __future__ import annotations

from marketplace.store.elastic.health import address, published_addresses, report


def nodes(*publish: str) -> dict:
    return {"nodes": {f"id{n}": {"name": f"node-{n}", "http": {"publish_address": value}}
                      for n, value in enumerate(publish)}}


def health(status: str = "green", count: int = 3, unassigned: int = 0) -> dict:
    return {"status": status, "timed_out": False, "number_of_nodes": count,
            "unassigned_shards": unassigned}


URLS = "http://127.0.0.1:9201,http://127.0.0.1:9202, http://127.0.0.1:9203"


def test_every_listed_node_in_a_green_cluster_is_ok():
    found = report(URLS, (health(), nodes("127.0.0.1:9201", "127.0.0.1:9202",
                                          "127.0.0.1:9203")))
    assert found["status"] == "ok" and found["store"] is True and found["missing"] == []
    assert set(found["nodes"].values()) == {"up"}


def test_a_stopped_node_is_named_and_the_server_still_serves():
    found = report(URLS, (health("yellow", 2, 2), nodes("127.0.0.1:9201", "127.0.0.1:9203")))
    assert found["status"] == "degraded" and found["store"] is True
    assert found["missing"] == ["http://127.0.0.1:9202"]
    assert found["nodes"]["http://127.0.0.1:9202"] == "missing"
    assert found["cluster"] == {"status": "yellow", "nodes": 2, "unassigned_shards": 2}


def test_red_or_timed_out_does_not_serve():
    for answer in (health("red"), {**health("yellow"), "timed_out": True}):
        found = report(URLS, (answer, nodes("127.0.0.1:9201")))
        assert found["status"] == "unavailable" and found["store"] is False


def test_no_answer_names_every_node():
    found = report(URLS, None)
    assert found["status"] == "unavailable" and found["store"] is False
    assert found["cluster"] is None and len(found["missing"]) == 3


def test_credentials_in_a_url_are_never_reported():
    found = report("https://marketplace:s3cret@es1.example.org:9200", None)
    assert found["missing"] == ["https://es1.example.org:9200"]
    assert "s3cret" not in repr(found)


def test_a_node_listed_by_host_name_matches_its_published_name_or_address():
    published = published_addresses(nodes("es1.example.org/10.0.0.1:9200", "10.0.0.2:9200"))
    assert published == {"es1.example.org:9200", "10.0.0.1:9200", "10.0.0.2:9200"}
    found = report("https://es1.example.org:9200,https://10.0.0.2:9200,https://es3:9200",
                   (health(), nodes("es1.example.org/10.0.0.1:9200", "10.0.0.2:9200")))
    assert found["missing"] == ["https://es3:9200"] and found["status"] == "degraded"


def test_addresses_are_normalised():
    assert address(" es1:9201 ") == "http://es1:9201"
    assert address("http://[::1]:9200/") == "http://[::1]:9200"
    assert address("https://user@es2.example.org:9243/prefix") == "https://es2.example.org:9243"
