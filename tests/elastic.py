"""A real Elasticsearch for the tests: started once per session on free 127.0.0.1 ports with
a small heap, data in a temporary folder, stopped and deleted at the end.

The server comes from ``scripts/install.d/30-elasticsearch.sh`` (Maven Central's test
distribution, unpacked under /var/cache/marketplace-es); ``MARKETPLACE_ES_HOME`` names
another unpacked one. As root it runs as the unprivileged user ``elastic`` (Elasticsearch
refuses root). ``MARKETPLACE_TEST_ELASTICSEARCH_URL`` uses a running cluster instead (no
start, no stop; the tests that stop the server are skipped then).

Each test gets its own index prefix, whose indices are deleted after it.

:class:`LocalCluster` is a cluster of several such nodes (three for the scale-out tests,
``three_nodes`` in tests/live/conftest.py, always of their own: they stop a node; two for
bench/elastic.py's ``--nodes 2``, the smallest cluster where every index has a replica).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.processes import free_port, group_alive, stop_group

CACHE = Path(os.environ.get("MARKETPLACE_ES_CACHE", "/var/cache/marketplace-es"))
USER = "elastic"
HEAP = "-Xms512m -Xmx512m"
START_TIMEOUT = 240.0
STOP_TIMEOUT = 60.0
INSTALL_HINT = "run scripts/install.d/30-elasticsearch.sh as root (or `make install`)"


def find_home() -> Path | None:
    """The unpacked Elasticsearch to run: MARKETPLACE_ES_HOME, else the newest in the cache."""
    if os.environ.get("MARKETPLACE_ES_HOME"):
        return Path(os.environ["MARKETPLACE_ES_HOME"])
    found = sorted(CACHE.glob("elasticsearch-*/bin/elasticsearch"),
                   key=lambda p: [int(x) if x.isdigit() else 0
                                  for x in p.parents[1].name.split("-")[-1].split(".")])
    return found[-1].parents[1] if found else None


def java_home() -> str:
    """The JDK that runs the server (the test distribution bundles none)."""
    if os.environ.get("ES_JAVA_HOME"):
        return os.environ["ES_JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(f"no java on PATH: {INSTALL_HINT}")
    return str(Path(java).resolve().parents[1])


def missing() -> str | None:
    """Why no Elasticsearch can run for the tests here, or None: the root conftest then
    deselects the ``elasticsearch`` tests with this reason instead of failing each of them."""
    if importlib.util.find_spec("elasticsearch") is None:
        return "the elasticsearch client is not installed: pip install -e '.[test]'"
    if os.environ.get("MARKETPLACE_TEST_ELASTICSEARCH_URL"):
        return None
    if find_home() is None:
        return f"Elasticsearch is not installed under {CACHE}: {INSTALL_HINT}"
    try:
        java_home()
    except RuntimeError as exc:
        return str(exc)
    return None


@dataclass
class ElasticServer:
    """One Elasticsearch node, in its own process group, that tests can stop and restart."""

    home: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="marketplace-es-")))
    http_port: int = field(default_factory=free_port)
    transport_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    starts: int = 0
    heap: str = HEAP
    discovery: dict[str, str] = field(default_factory=lambda: {"discovery.type": "single-node"})
    cluster_name: str = "marketplace-tests"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> Path:
        return self.root / f"console-{self.starts}.log"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return "(no log)"

    def prepare(self) -> None:
        """Config, data and logs folders of our own, owned by the user that runs the server."""
        config = self.root / "config"
        if not config.exists():
            shutil.copytree(self.home / "config", config)
            for name in ("data", "logs", "tmp"):
                (self.root / name).mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(USER)
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)

    def start(self) -> ElasticServer:
        """Start the node and wait until the cluster is at least yellow."""
        self.launch()
        self.wait(self.ready, "answer")
        return self

    def launch(self) -> None:
        """Start the node's process, without waiting (the nodes of a cluster start together:
        none is ready before a majority of them has met)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.prepare()
        self.starts += 1
        settings = {**self.discovery, "network.host": "127.0.0.1",
                    "http.port": self.http_port, "transport.port": self.transport_port,
                    "xpack.security.enabled": "false", "path.data": self.root / "data",
                    "path.logs": self.root / "logs", "cluster.name": self.cluster_name,
                    "cluster.routing.allocation.disk.threshold_enabled": "false"}
        env = {**os.environ, "ES_JAVA_HOME": java_home(), "ES_PATH_CONF": str(self.root /
                                                                            "config"),
               "ES_JAVA_OPTS": f"{self.heap} -Djava.io.tmpdir={self.root / 'tmp'}",
               "ES_TMPDIR": str(self.root / "tmp")}
        command = [str(self.home / "bin" / "elasticsearch"),
                   *[arg for k, v in settings.items() for arg in ("-E", f"{k}={v}")]]
        user = USER if os.geteuid() == 0 else None
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, cwd=self.root,
                                            user=user, start_new_session=True)

    def wait(self, condition, what: str) -> None:
        """Poll ``condition`` until true; RuntimeError with the node's log if it exits or
        does not ``what`` in time (and then it is stopped)."""
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            if self.process.poll() is not None:
                raise RuntimeError(f"Elasticsearch exited with status "
                                   f"{self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Elasticsearch did not {what} in {START_TIMEOUT:.0f} s:\n"
                                   f"{self.log_text()}")
            time.sleep(0.5)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/_cluster/health",
                                params={"wait_for_status": "yellow", "timeout": "1s"},
                                timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """SIGTERM to the node's process group, SIGKILL if it does not go in time."""
        if self.process is None or self.process.poll() is not None:
            return
        group = self.process.pid
        stop_group(self.process, STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(group):
            os.killpg(group, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class LocalCluster:
    """``size`` Elasticsearch nodes forming one cluster on 127.0.0.1, each master-eligible
    and holding data, 512 MB of heap each. With three nodes and indices of one replica, any
    one node can stop and the other two keep a quorum and a copy of every shard, as on a
    production cluster.

    ``url`` lists the nodes, as an operator lists them in ELASTICSEARCH_URL."""

    home: Path
    size: int = 3
    nodes: list[ElasticServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = "marketplace-scaleout-" + uuid.uuid4().hex[:8]
        self.nodes = [ElasticServer(self.home, cluster_name=name) for _ in range(self.size)]
        seeds = ",".join(f"127.0.0.1:{node.transport_port}" for node in self.nodes)
        names = [f"node-{number}" for number in range(self.size)]
        for node, node_name in zip(self.nodes, names, strict=True):
            node.discovery = {"node.name": node_name, "discovery.seed_hosts": seeds,
                              "cluster.initial_master_nodes": ",".join(names)}

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start_all(self) -> LocalCluster:
        """Start every node at once (none is ready alone) and wait for green."""
        for node in self.nodes:
            node.launch()
        self.nodes[0].wait(lambda: self.health(self.nodes[0], "green", self.size),
                           f"form a green cluster of {self.size} nodes")
        return self

    def stop(self, node: ElasticServer) -> None:
        """Stop one node (SIGTERM, as an operator or a failing host would) and wait until
        the others see it gone."""
        node.stop()
        other = self.running()[0]
        other.wait(lambda: self.health(other, "yellow", self.size - 1), "notice a node left")

    def start(self, node: ElasticServer) -> None:
        """Start a stopped node again (it rejoins the cluster it knows: no bootstrap
        setting) and wait until every shard has its copies again (green)."""
        node.discovery.pop("cluster.initial_master_nodes", None)
        node.launch()
        node.wait(lambda: self.health(node, "green", self.size), "rejoin the cluster (green)")

    def running(self) -> list[ElasticServer]:
        return [node for node in self.nodes
                if node.process is not None and node.process.poll() is None]

    def master(self) -> ElasticServer:
        """The node elected master now."""
        found = requests.get(f"{self.running()[0].url}/_cat/master", params={"format": "json"},
                             timeout=30)
        found.raise_for_status()
        name = found.json()[0]["node"]
        return next(node for node in self.nodes if node.discovery["node.name"] == name)

    @staticmethod
    def health(node: ElasticServer, status: str, count: int) -> bool:
        """Whether the cluster, asked through ``node``, is ``status`` or better with exactly
        ``count`` nodes."""
        try:
            return requests.get(f"{node.url}/_cluster/health", timeout=10, params={
                "wait_for_status": status, "wait_for_nodes": str(count),
                "timeout": "1s"}).status_code == 200
        except requests.RequestException:
            return False

    def replicas(self, prefix: str) -> dict[str, int]:
        """The number of replicas of every index of a prefix, by index name."""
        found = requests.get(f"{self.running()[0].url}/{prefix}-*/_settings", timeout=30,
                             params={"filter_path": "*.settings.index.number_of_replicas"})
        found.raise_for_status()
        return {name: int(value["settings"]["index"]["number_of_replicas"])
                for name, value in found.json().items()}

    def drop(self, prefix: str) -> None:
        """Delete every index of a prefix (by name: action.destructive_requires_name)."""
        url = self.running()[0].url
        found = requests.get(f"{url}/{prefix}-*", params={"expand_wildcards": "all"},
                             timeout=60)
        found.raise_for_status()
        if found.json():
            requests.delete(f"{url}/{','.join(found.json())}", timeout=60).raise_for_status()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


@dataclass
class Cluster:
    """What the tests get: the URL, and the server when the tests started it.

    Creating two indices costs about a second, so index prefixes are leased from a pool: a
    returned prefix has its documents deleted (its indices stay) and goes to the next test,
    which finds its store empty. A test that needs indices of its own takes ``new_prefix()``
    and drops them."""

    url: str
    server: ElasticServer | None = None
    pool: list[str] = field(default_factory=list)
    leased: set[str] = field(default_factory=set)

    def lease(self) -> str:
        prefix = self.pool.pop() if self.pool else new_prefix()
        self.leased.add(prefix)
        return prefix

    def give_back(self, prefix: str) -> None:
        self.leased.discard(prefix)
        try:
            self.empty(prefix)
        except requests.RequestException:
            self.drop(prefix)
            return
        self.pool.append(prefix)

    def empty(self, prefix: str) -> None:
        """Delete every document of a prefix's indices, keeping the indices."""
        names = f"{prefix}-entries,{prefix}-latest,{prefix}-state"
        # the state is written without refreshes: make it all visible to the search first
        requests.post(f"{self.url}/{names}/_refresh", params={"ignore_unavailable": "true"},
                      timeout=60).raise_for_status()
        while True:
            found = requests.post(f"{self.url}/{names}/_search", timeout=60,
                                  params={"ignore_unavailable": "true"},
                                  json={"size": 1000, "_source": False})
            found.raise_for_status()
            hits = found.json()["hits"]["hits"]
            if not hits:
                return
            lines = "".join(f'{{"delete":{{"_index":"{h["_index"]}","_id":'
                            f'{json.dumps(h["_id"])}}}}}\n' for h in hits)
            requests.post(f"{self.url}/_bulk", params={"refresh": "true"}, data=lines,
                          headers={"Content-Type": "application/x-ndjson"},
                          timeout=60).raise_for_status()

    def close(self) -> None:
        for prefix in [*self.pool, *self.leased]:
            self.drop(prefix)

    def settings(self, prefix: str) -> dict[str, str]:
        """Marketplace settings (keys as create_app's overrides) for a store on ``prefix``."""
        return {"store": "elasticsearch", "elasticsearch_url": self.url,
                "elasticsearch_index_prefix": prefix, "elasticsearch_timeout": "10"}

    def store(self, prefix: str):
        from marketplace import config
        from marketplace.store.elastic import ElasticStore
        settings = config.load(environ={}, **self.settings(prefix))
        return ElasticStore.from_settings(settings)

    def drop(self, prefix: str) -> None:
        """Delete every index of a prefix (tests' cleanup)."""
        found = requests.get(f"{self.url}/{prefix}-entries-*,{prefix}-latest-*,{prefix}-state",
                             params={"expand_wildcards": "all", "ignore_unavailable": "true"},
                             timeout=60)
        found.raise_for_status()
        if found.json():  # names, not a wildcard: action.destructive_requires_name
            requests.delete(f"{self.url}/{','.join(found.json())}",
                            timeout=60).raise_for_status()


def new_prefix() -> str:
    """An index prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[Cluster]:
    """A real Elasticsearch for the whole session (or the one MARKETPLACE_TEST_ELASTICSEARCH_URL
    names)."""
    url = os.environ.get("MARKETPLACE_TEST_ELASTICSEARCH_URL")
    if url:
        cluster = Cluster(url.rstrip("/"))
        yield cluster
        cluster.close()
        return
    home = find_home()
    if home is None:
        pytest.fail(f"Elasticsearch is not installed under {CACHE}: {INSTALL_HINT}")
    server = ElasticServer(home)
    try:
        server.start()
    except RuntimeError as exc:
        server.cleanup()
        pytest.fail(str(exc))
    yield Cluster(server.url, server)
    server.cleanup()


@pytest.fixture
def es_prefix(elasticsearch) -> Iterator[str]:
    """An index prefix whose indices are empty or missing, for this test alone."""
    prefix = elasticsearch.lease()
    yield prefix
    elasticsearch.give_back(prefix)
