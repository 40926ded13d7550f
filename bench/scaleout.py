"""Benchmark: one app server against three on the same three-node Elasticsearch cluster,
with the same clients (issue 14).

Run from the repository root:  python bench/scaleout.py [--uploads 400] [--requests 1000]

1. A three-node cluster (tests/elastic.py's ``LocalCluster``: 512 MB heap each, on free
   127.0.0.1 ports, data in temporary folders), indices with one replica, on a fresh
   index prefix; started here and stopped at the end.
2. Three data dirs whose marketplace.cfg names the three nodes; ``stratus-marketplace
   serve`` (gunicorn, ``--workers`` each, as bench/server.py starts it) on one of them for
   the first run, on all three for the second.
3. Each run, with ``--clients`` concurrent clients (one ``requests.Session`` each; in the
   second run request n goes to server n mod 3): ``--uploads`` distinct signed documents
   POSTed (durable: acknowledged by every copy of the shard), then the read scenarios of
   bench/server.py (ping, filtered search, free text, free text with filters; counts
   made at every request), each ``--requests`` times. The drivers, ``drive`` and
   ``summary``, and the data set's ``make_entry`` are bench/server.py's, imported.
   A third run, one server with three times the workers, tells what three servers add
   from what three times the processes add on the same cores.
   Before them, ``--warm-up`` runs on one server whose rates are reported, not compared:
   nodes just started run slowly until their JIT compiled the paths used (bench/RESULTS.md).
4. Around each measurement: the machine's load average and how busy its cores were (CPU
   seconds of every process over wall time x cores). Everything shares the machine's cores:
   the cluster, the servers and the clients.
Prints one JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import machine  # noqa: E402  (bench/machine.py)
import server as server_bench  # noqa: E402  (bench/server.py)
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from tests.elastic import LocalCluster, find_home, new_prefix  # noqa: E402

READS = ("ping", "filtered search", "free text", "free text with filters")


def signed_documents(first: int, count: int) -> list[bytes]:
    """``count`` distinct signed documents of bench/server.py's data set from number
    ``first`` on (made before the clock starts)."""
    from marketplace.metadata import document, model, signature
    from marketplace.metadata.keys import Credentials
    key, certificate = server_bench.make_signers(1)[0]
    signer = Credentials(serialization.load_pem_private_key(key, None),
                         x509.load_pem_x509_certificate(certificate))
    now = datetime.now(UTC)
    documents = []
    for number in range(first, first + count):
        root = model.to_document(server_bench.make_entry(number, now))
        signature.sign(root, signer)
        documents.append(document.serialize(root))
    return documents


def data_dirs(folder: Path, url: str, prefix: str) -> list[Path]:
    """Three data dirs, each naming the cluster's three nodes."""
    found = []
    for name in ("a", "b", "c"):
        data = folder / name
        data.mkdir(parents=True, exist_ok=True)
        (data / "marketplace.cfg").write_text(
            "[marketplace]\nstore = elasticsearch\n"
            f"elasticsearch_url = {url}\nelasticsearch_index_prefix = {prefix}\n"
            "elasticsearch_replicas = 1\n")
        found.append(data)
    return found


def measured(what, *args) -> dict:
    """``what(*args)``'s result with the load average and how busy the cores were."""
    load, busy, started = os.getloadavg()[0], machine.busy_seconds(), time.perf_counter()
    result = what(*args)
    wall = time.perf_counter() - started
    cores = os.cpu_count() or 1
    return {**result, "load_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
            "cpu_busy": round((machine.busy_seconds() - busy) / (wall * cores), 2)}


def uploads(urls: list[str], documents: list[bytes], clients: int) -> dict:
    def post(session, n):
        return session.post(urls[n % len(urls)] + "metadata", data=documents[n], timeout=60,
                            headers={"Content-Type": "application/rdf+xml",
                                     "Accept": "application/json"})
    return server_bench.summary(*server_bench.drive(post, clients, len(documents) // clients))


def reads(urls: list[str], path: str, count: int, clients: int) -> dict:
    def get(session, n):
        return session.get(urls[n % len(urls)] + path.format(
            os=server_bench.OSES[n % len(server_bench.OSES)],
            word=server_bench.TEXT_WORDS[n % len(server_bench.TEXT_WORDS)]), timeout=60)
    server_bench.drive(get, clients, max(1, min(50, count // 4)))  # warm-up, every server
    return server_bench.summary(*server_bench.drive(get, clients, count // clients))


def run(name: str, urls: list[str], documents: list[bytes], options) -> dict:
    """One run: uploads, then each read scenario, against ``urls`` round-robin."""
    results = {"uploads": measured(uploads, urls, documents, options.clients)}
    for scenario in READS:
        path = server_bench.SCENARIOS[scenario][0]
        results[scenario] = measured(reads, urls, path, options.requests, options.clients)
    for scenario, result in results.items():
        print(f"{name}: {scenario:22s} {result['per_s']:7.1f}/s  median "
              f"{result['median_ms']} ms  p99 {result['p99_ms']} ms  busy "
              f"{result['cpu_busy']:.0%}  load {result['load_1m']}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=400, help="documents per run")
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests per read scenario and run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--warm-up", type=int, default=3,
                        help="untimed runs on one server first: the fresh nodes' JIT warms "
                        "up over minutes, and the first run measured would be the slowest")
    options = parser.parse_args()
    home = find_home()
    if home is None:
        raise SystemExit("Elasticsearch is not installed: run "
                         "scripts/install.d/30-elasticsearch.sh as root")
    cluster = LocalCluster(home)
    prefix = new_prefix()
    folder = server_bench.DATA / f"scaleout-{prefix}"
    report = {"machine": {"cpu": machine.cpu_model(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "elasticsearch": home.name, "options": vars(options)}
    try:
        started = time.perf_counter()
        cluster.start_all()
        print(f"three nodes green in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        dirs = data_dirs(folder, cluster.url, prefix)
        documents = signed_documents(20_000_000, 2 * options.uploads)
        with server_bench.Server(dirs[0], options.workers) as first:
            report["warm-up"] = [
                {scenario: result["per_s"] for scenario, result in run(
                    "warm-up", [first.url], signed_documents(40_000_000 + k * options.uploads,
                                                             options.uploads), options).items()}
                for k in range(options.warm_up)]
            report["one server"] = run("1 server", [first.url], documents[:options.uploads],
                                       options)
            with server_bench.Server(dirs[1], options.workers) as second, \
                    server_bench.Server(dirs[2], options.workers) as third:
                report["three servers"] = run(
                    "3 servers", [first.url, second.url, third.url],
                    documents[options.uploads:], options)
        with server_bench.Server(dirs[0], 3 * options.workers) as alone:
            report["one server, three times the workers"] = run(
                "1 server x3 workers", [alone.url], signed_documents(30_000_000,
                                                                     options.uploads), options)
        report["against one server"] = {
            name: {scenario: round(report[name][scenario]["per_s"] /
                                   report["one server"][scenario]["per_s"], 2)
                   for scenario in report["one server"]}
            for name in ("three servers", "one server, three times the workers")}
    finally:
        cluster.cleanup()  # the nodes' data folders, indices and all
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
