"""What ``/healthz`` says of the cluster: whether it can serve, and which configured node is
missing.

A cluster knows only the nodes that are in it: a stopped node is simply absent. So the
missing node is found by comparing the nodes the operator listed (``ELASTICSEARCH_URL``) with
the HTTP addresses the cluster's nodes publish. The answer has three levels, so that a load
balancer keeps a server that can still serve:

- ``ok``: green, every listed node in the cluster;
- ``degraded``: the indices are yellow (some shard lacks a copy, as while one node of three
  is down) or a listed node is missing, yet reads and writes work: 200;
- ``unavailable``: red, no answer, or no answer in time: 503.

Node addresses are reported without any user or password an operator may have put in the
URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

OK = "ok"
DEGRADED = "degraded"
UNAVAILABLE = "unavailable"
TIMEOUT = 5.0  # seconds for each question to the cluster: /healthz must answer quickly
SERVING = ("green", "yellow")


def ask(client, indices: list[str]) -> tuple[dict, dict]:
    """The cluster's health for the marketplace's indices and the HTTP addresses of its
    nodes: two requests, each bounded by TIMEOUT (errors are the caller's to judge)."""
    quick = client.options(request_timeout=TIMEOUT)
    health = quick.cluster.health(index=indices, timeout="2s")
    nodes = quick.nodes.info(metric="http", filter_path="nodes.*.name,nodes.*.http")
    return dict(health), dict(nodes)


def report(urls: str, answers: tuple[dict, dict] | None) -> dict:
    """The /healthz document for the configured ``urls`` (comma-separated), from the
    cluster's ``answers`` (:func:`ask`), or None when it gave none."""
    listed = [address(url) for url in urls.split(",") if url.strip()]
    if answers is None:
        return {"status": UNAVAILABLE, "store": False, "cluster": None,
                "nodes": {node: "no answer" for node in listed}, "missing": listed}
    health, nodes = answers
    published = published_addresses(nodes)
    missing = [node for node in listed if urlsplit(node).netloc not in published]
    serving = not health.get("timed_out") and health.get("status") in SERVING
    if not serving:
        status = UNAVAILABLE
    elif health["status"] != "green" or missing:
        status = DEGRADED
    else:
        status = OK
    return {"status": status, "store": serving,
            "cluster": {"status": health.get("status"), "nodes": health.get("number_of_nodes"),
                        "unassigned_shards": health.get("unassigned_shards")},
            "nodes": {node: "missing" if node in missing else "up" for node in listed},
            "missing": missing}


def published_addresses(nodes: dict) -> set[str]:
    """Every ``host:port`` under which the cluster's nodes serve HTTP: a publish address is
    ``ip:port`` or ``hostname/ip:port``, and an operator may list either form."""
    found = set()
    for node in nodes.get("nodes", {}).values():
        publish = node.get("http", {}).get("publish_address", "")
        host, _, ip_port = publish.rpartition("/")
        found.add(ip_port)
        if host:
            found.add(f"{host}:{ip_port.rpartition(':')[2]}")
    return found


def address(url: str) -> str:
    """A node's URL as scheme://host:port, without credentials or path (the client's
    defaults: http, port 9200)."""
    parts = urlsplit(url.strip() if "://" in url else f"http://{url.strip()}")
    port = parts.port or 9200
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"
