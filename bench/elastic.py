"""Benchmark: the server benchmark of bench/server.py on both stores, side by side, at
100,000 entries, plus the time to migrate those entries from SQLite to Elasticsearch.

Run from the repository root:  python bench/elastic.py [--entries 100000] [--requests 1000]
                               [--nodes 2 | --es-url URL,URL] [--uploads-only] [--replicas 1]
                               [--translog request,auto] [--rounds 3]

1. The SQLite data set of bench/server.py (``fill``: made once, kept in bench/data/).
2. Elasticsearch: the test distribution that scripts/install.d/30-elasticsearch.sh installs,
   one node on free 127.0.0.1 ports (heap ``--heap``, data in a temporary folder), or
   ``--nodes`` N forming one cluster (512 MB heap each), started by this script and stopped
   at the end; ``--es-url`` uses a running cluster instead (its nodes separated by commas).
   Issue 14's comparison wants a cluster of two nodes or more, so that every index has a
   replica and an upload is acknowledged by the primary and its replica
   (ELASTICSEARCH_WAIT_FOR_ACTIVE_SHARDS=all, the default): the report records the nodes,
   the replicas of the prefix's indices and that setting, and warns when there is no
   replica. The prefix's indices get ``--replicas`` (ELASTICSEARCH_REPLICAS, default 1: a
   replica that does not go away with a node, as issue 14's cluster has).
3. Migration: ``marketplace.store.migrate.migrate`` (what ``stratus-marketplace migrate``
   runs) copies the SQLite store into a fresh index prefix, timed end to end: reading and
   parsing every document, bulk creation, the latest copies, the final refresh.
4. The read and upload measurements of bench/server.py (``measure_reads``,
   ``measure_uploads``, imported, not copied), run here for SQLite and then for
   Elasticsearch, one after the other on the same machine, so the figures are comparable.
   The Elasticsearch server's data dir holds only a marketplace.cfg naming the cluster.
   ``--uploads-only`` measures the uploads alone (issue 14's upload comparison), on an
   Elasticsearch store that starts empty: ``migrate`` copies the entries, not their
   transparency log, and a server whose store disagrees with its log answers /healthz 503,
   which bench/server.py takes for a failed start (an upload writes a few documents by id
   and reads none by search: the index's size does not change its cost).
   ``--translog`` measures Elasticsearch once per ELASTICSEARCH_TRANSLOG_DURABILITY named
   (its server applies it to the indices as it opens the store; each measurement records
   the durability the indices had), and ``--rounds`` repeats SQLite and those in turn, so
   that load from other work on the machine falls on every store alike.
Prints one JSON report; the prefix is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import server as server_bench  # noqa: E402  (bench/server.py)

from marketplace import config  # noqa: E402
from marketplace.store import migrate as migration  # noqa: E402
from marketplace.store.elastic import ElasticStore  # noqa: E402


def start_cluster(options) -> tuple[str, object | None]:
    """The cluster's URL, and what this script started (None for --es-url): one node of
    ``--heap``, or with ``--nodes`` N > 1 a cluster of N nodes of 512 MB each
    (tests/elastic.py's ``LocalCluster``), so that every index can have its replica."""
    if options.es_url:
        return options.es_url.rstrip("/"), None
    from tests.elastic import ElasticServer, LocalCluster, find_home
    home = find_home()
    if home is None:
        raise SystemExit("Elasticsearch is not installed: run "
                         "scripts/install.d/30-elasticsearch.sh as root")
    started = time.perf_counter()
    if options.nodes > 1:
        cluster = LocalCluster(home, size=options.nodes).start_all()
    else:
        cluster = ElasticServer(home, heap=f"-Xms{options.heap} -Xmx{options.heap}").start()
    print(f"Elasticsearch {home.name}: {options.nodes} node(s) up in "
          f"{time.perf_counter() - started:.0f} s at {cluster.url}", file=sys.stderr)
    return cluster.url, cluster


def es_settings(url: str, prefix: str, replicas: str, translog: str = "auto") -> dict:
    """The settings (as overrides) of a store on the cluster and prefix measured."""
    return {"store": "elasticsearch", "elasticsearch_url": url,
            "elasticsearch_index_prefix": prefix, "elasticsearch_replicas": replicas,
            "elasticsearch_translog_durability": translog}


def elastic_data_dir(settings: dict, entries: int) -> Path:
    """A data dir whose marketplace.cfg points the server at the cluster."""
    data_dir = server_bench.DATA / f"elastic-{entries}"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / config.CONFIG_FILE).write_text(
        "[marketplace]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    return data_dir


def migrate(sqlite_dir: Path, overrides: dict) -> dict:
    settings = config.load(str(sqlite_dir), environ={}, **overrides)
    store = ElasticStore.from_settings(settings)
    try:
        def progress(done: int, total: int) -> None:
            print(f"\rmigrating: {done}/{total}", end="", file=sys.stderr, flush=True)

        done = migration.migrate(sqlite_dir / migration.DB_NAME, store, progress)
        print(file=sys.stderr)
        sizes = store.client.indices.stats(index=[store.entries, store.latest],
                                           metric="store")["indices"]
    finally:
        store.close()
    result = {**done.as_dict(), "per_s": round(done.entries / done.seconds, 1),
              "index_mb": {name: round(v["primaries"]["store"]["size_in_bytes"] / 2**20)
                           for name, v in sizes.items()}}
    print(f"migration: {done.entries} entries in {done.seconds:.0f} s "
          f"({result['per_s']}/s)", file=sys.stderr)
    return result


def measure(data_dir: Path, options) -> dict:
    """bench/server.py's reads and uploads against the store of ``data_dir``, with the
    machine's load average before and after (other work on the machine skews the figures)."""
    load_before = os.getloadavg()
    reads = {}
    if not options.uploads_only:
        with server_bench.Server(data_dir, options.workers) as running:
            reads = server_bench.measure_reads(running, options.requests, options.clients)
    uploads = server_bench.measure_uploads(data_dir, options.workers, options.uploads,
                                           options.clients)
    return {"reads": reads, "uploads": uploads,
            "load_average": {"before": load_before, "after": os.getloadavg()}}


def cluster_shape(overrides: dict) -> dict:
    """The nodes of the cluster, the replicas of the prefix's indices and the copies a write
    waits for: what "durable" means in this run."""
    settings = config.load(environ={}, **overrides)
    store = ElasticStore.from_settings(settings)
    prefix = settings["ELASTICSEARCH_INDEX_PREFIX"]
    try:
        store.init()
        indices = store.client.indices.get_settings(index=f"{prefix}-*")
        shape = {"nodes": store.client.cluster.health()["number_of_nodes"],
                 "replicas": {name: int(value["settings"]["index"]["number_of_replicas"])
                              for name, value in indices.items()},
                 "wait_for_active_shards": settings["ELASTICSEARCH_WAIT_FOR_ACTIVE_SHARDS"]}
    finally:
        store.close()
    if min(shape["replicas"].values()) < 1:
        print(f"warning: {shape['nodes']} node(s), no replica: an upload is on one copy, not "
              "the comparison issue 14 asks for (use --es-url with two nodes or more)",
              file=sys.stderr)
    return shape


def durabilities(overrides: dict) -> dict[str, str]:
    """The translog durability each index of the prefix has now."""
    settings = config.load(environ={}, **overrides)
    store = ElasticStore.from_settings(settings)
    try:
        found = store.client.indices.get_settings(
            index=f"{settings['ELASTICSEARCH_INDEX_PREFIX']}-*", name="index.translog.durability",
            flat_settings=True)
    finally:
        store.close()
    return {name: value["settings"]["index.translog.durability"]
            for name, value in found.items()}


def measure_elastic(overrides: dict, options) -> dict:
    """The measurement on Elasticsearch under one translog setting, with the durability the
    indices had once the servers opened the store."""
    result = measure(elastic_data_dir(overrides, options.entries), options)
    return {**result, "durability": durabilities(overrides)}


def rounds(sqlite_dir: Path, overrides: dict, options) -> list[dict]:
    """SQLite then Elasticsearch under each ``--translog`` setting, ``--rounds`` times, with
    each round's upload ratios to SQLite."""
    done = []
    for _ in range(options.rounds):
        found = {}
        if options.only != "elasticsearch":
            found["sqlite"] = measure(sqlite_dir, options)
        if options.only != "sqlite":
            found["elasticsearch"] = {
                translog: measure_elastic({**overrides,
                                           "elasticsearch_translog_durability": translog},
                                          options)
                for translog in options.translog.split(",")}
        if len(found) == 2:
            sqlite = found["sqlite"]["uploads"]["per_s"]
            found["upload_ratio"] = {translog: round(value["uploads"]["per_s"] / sqlite, 2)
                                     for translog, value in found["elasticsearch"].items()}
        done.append(found)
    return done


def warm_up(overrides: dict, options) -> list[float]:
    """Upload phases on Elasticsearch alone before anything is timed, ``--warm-up`` of them
    (their rates are reported): a node just started runs its write path interpreted until
    its JIT compiled it, and on two shared cores that took 2-3 minutes of uploads, the
    rate rising from 50 to 130 per second (bench/RESULTS.md); a cluster in service has
    long been warm."""
    rates = []
    for _ in range(options.warm_up):
        result = measure(elastic_data_dir(overrides, options.entries), options)
        rates.append(result["uploads"]["per_s"])
    return rates


def drop(overrides: dict) -> None:
    store = ElasticStore.from_settings(config.load(environ={}, **overrides))
    store.drop()
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests per scenario under load (bench/server.py's meaning)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--uploads", type=int, default=400, help="documents to upload")
    parser.add_argument("--heap", default="1g", help="Elasticsearch heap (default 1g)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="nodes of the cluster this script starts (default 1; 2 or more: "
                        "512 MB heap each, --heap is for one node)")
    parser.add_argument("--es-url", help="a running cluster instead of a node of our own")
    parser.add_argument("--only", choices=("sqlite", "elasticsearch"),
                        help="measure one store only (the migration runs regardless)")
    parser.add_argument("--uploads-only", action="store_true",
                        help="measure the uploads alone, not the reads")
    parser.add_argument("--replicas", default="1",
                        help="ELASTICSEARCH_REPLICAS of the indices (default 1)")
    parser.add_argument("--translog", default="auto",
                        help="ELASTICSEARCH_TRANSLOG_DURABILITY to measure, several separated "
                        "by commas (default auto)")
    parser.add_argument("--warm-up", type=int, default=0,
                        help="untimed upload phases on Elasticsearch first (a fresh node's "
                        "JIT warms up over minutes; 8 measured enough with --nodes 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times SQLite and Elasticsearch are measured in turn")
    options = parser.parse_args()
    sqlite_dir = server_bench.DATA / f"server-{options.entries}"
    fill_seconds = server_bench.fill(sqlite_dir, options.entries)
    url, started = start_cluster(options)
    overrides = es_settings(url, "bench-" + uuid.uuid4().hex[:8], options.replicas)
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
                   f"Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv), "entries": options.entries,
        "sqlite_fill_seconds": round(fill_seconds, 1),
    }
    try:
        if not options.uploads_only:
            report["migration"] = migrate(sqlite_dir, overrides)
        report["cluster"] = cluster_shape(overrides)
        report["warm-up uploads/s"] = warm_up(overrides, options)
        report["rounds"] = rounds(sqlite_dir, overrides, options)
    finally:
        drop(overrides)
        if started is not None:
            started.cleanup()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
