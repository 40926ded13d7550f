"""A hostile marketplace against nodes that check its transparency log.

The marketplace is the real one (``stratus-marketplace serve``, gunicorn, SQLite) with a log
key made by ``stratus-marketplace init-log``; the hostility is a proxy on 127.0.0.1 in front
of it that rewrites its answers, two real servers that share one key but not one history,
or its database edited by hand while it is stopped. The nodes are the real commands
(``stratus-image-cache``, ``stratus-download-image``) run as processes with a config file.
Each attack is first shown to work on a node that does not check the log, then refused,
with its own exit status, by one that does.
"""

from __future__ import annotations

import http.server
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from client.node import errors
from marketplace.metadata import logleaf, tlog
from tests import factories
from tests.live.conftest import LiveServer, clean_environ, script
from tests.node.conftest import QuietServer, image_bytes, run_command

SIZE = 4096


class Marketplace(LiveServer):
    """The real server, ready as soon as it answers: after a hand edit its ``/healthz``
    rightly says 503 (the log disagrees with the store), and it still serves."""

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited with status {self.process.returncode}:\n"
                        f"{self.log_text()}")
        try:
            return requests.get(self.url + "healthz", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    def init_log(self) -> str:
        """Make the log key (named after this server's address); its verifier key."""
        import subprocess

        done = subprocess.run(
            [script("stratus-marketplace"), "init-log", "--data-dir", str(self.data_dir),
             "--json"], capture_output=True, text=True, timeout=60,
            env=clean_environ(HOME=str(self.home), MARKETPLACE_PUBLIC_URL=self.url))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["vkey"]

    def upload(self, document: bytes) -> dict:
        response = requests.post(self.url + "metadata", data=document, timeout=30,
                                 headers={"Content-Type": "application/rdf+xml",
                                          "Accept": "application/json"})
        assert response.status_code in (200, 201), response.text
        return response.json()

    @property
    def database(self) -> Path:
        """The store's SQLite file, which holds the moderation state and the log too."""
        return self.data_dir / "marketplace.db"


@pytest.fixture
def real(tmp_path) -> Iterator[Marketplace]:
    server = Marketplace(tmp_path / "market" / "data", tmp_path / "market")
    server.data_dir.mkdir(parents=True)
    server.vkey = server.init_log()
    server.start()
    yield server
    server.stop()


class Proxy:
    """A marketplace on 127.0.0.1 that forwards every GET to ``upstream`` and lets
    ``rewrite(path, status, headers, body)`` change the answer."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.rewrite: Callable[[str, int, dict, bytes], tuple[int, dict, bytes]] | None = None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.forward(self)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def forward(self, handler) -> None:
        path = handler.path.lstrip("/")
        answer = requests.get(self.upstream + path, timeout=30,
                              headers={"Accept": handler.headers.get("Accept", "*/*")})
        status, body = answer.status_code, answer.content
        headers = {k: v for k, v in answer.headers.items()
                   if k.lower() in ("content-type", "log-index", "cache-control")}
        if self.rewrite is not None:
            status, headers, body = self.rewrite(path.split("?", 1)[0], status, headers, body)
        handler.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(real) -> Iterator[Proxy]:
    server = Proxy(real.url)
    yield server
    server.stop()


@pytest.fixture
def publish(origin, rsa_signer) -> Callable[..., tuple[str, str, bytes]]:
    """Sign an entry of image ``seed`` dated ``hours_ago`` and upload it to ``market``:
    (identifier, created, document)."""

    def make(market: Marketplace, seed: int, hours_ago: float = 1.0) -> tuple[str, str, bytes]:
        url = origin.add(f"image-{seed}.img", image_bytes(SIZE, seed))
        entry = factories.appliance(image_bytes(SIZE, seed), locations=[url])
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
        document = factories.signed(rsa_signer, entry, now=when)
        answer = market.upload(document)
        return entry.identifier, answer["created"], document

    return make


def node(tmp_path: Path, endpoint: str, vkey: str | None, name: str = "node",
         cache: str = "cache", **settings) -> Path:
    """A fetcher.cfg of one node (``cache`` may be shared by several)."""
    values = {"cache_dir": tmp_path / cache, "marketplace_endpoint": endpoint,
              "connect_timeout": 5, "read_timeout": 30, "retries": 1, "backoff": 0.01,
              "lock_stale_after": 5, "lock_wait": 60,
              "local_lock_dir": tmp_path / name / "locks",
              "allow_private_addresses": "127.0.0.1/32", **settings}
    if vkey is not None:
        values["log_key"] = vkey
    path = tmp_path / f"{name}.cfg"
    path.write_text("[fetcher]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def pull(config: Path, identifier: str, host: str = "node-a"):
    return run_command("stratus-image-cache", "--config", config, "--json", "pull",
                       identifier, env=clean_environ(STRATUSLAB_HOSTNAME=host))


def forget(config: Path, identifier: str) -> None:
    """Take the image out of the node's cache (its memory of the log stays)."""
    done = run_command("stratus-image-cache", "--config", config, "remove", "--force",
                       identifier)
    assert done.returncode == 0, done.stderr


# --- an old document served as current ------------------------------------------------------


def test_an_old_document_served_as_current_is_refused(real, proxy, publish, tmp_path):
    identifier, old_created, old = publish(real, seed=1, hours_ago=2)
    _, new_created, _ = publish(real, seed=1, hours_ago=1)
    checked = node(tmp_path, proxy.url, real.vkey)
    first = pull(checked, identifier)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] == new_created
    forget(checked, identifier)

    root = old.split(b"?>", 1)[1].strip()
    listing = b'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="1">\n' + root + \
        b"\n</metadata>\n"

    def old_as_current(path, status, headers, body):
        if path == f"metadata/{identifier}":
            return 200, {"Content-Type": "application/xml"}, listing
        return status, headers, body

    proxy.rewrite = old_as_current
    unchecked = node(tmp_path, proxy.url, None, name="unchecked")  # the same cache, unchecked
    fooled = pull(unchecked, identifier)
    assert fooled.returncode == 0 and json.loads(fooled.stdout)["created"] == old_created
    forget(checked, identifier)

    refused = pull(checked, identifier)
    assert refused.returncode == errors.ENTRY_ROLLBACK, refused.stderr
    error = json.loads(refused.stdout)
    assert error["kind"] == "entry-rollback"
    assert old_created in error["error"] and new_created in error["error"]


def test_an_older_entry_is_taken_once_its_endorser_deprecated_the_newer(real, publish,
                                                                        origin, rsa_signer,
                                                                        tmp_path):
    identifier, old_created, _ = publish(real, seed=8, hours_ago=3)
    _, new_created, _ = publish(real, seed=8, hours_ago=2)
    checked = node(tmp_path, real.url, real.vkey)
    assert json.loads(pull(checked, identifier).stdout)["created"] == new_created
    forget(checked, identifier)
    old_entry = f"{identifier}/jane.tester@example.org/{old_created}"
    refused = pull(checked, old_entry)
    assert refused.returncode == errors.ENTRY_ROLLBACK, refused.stderr
    assert "no signed deprecation" in json.loads(refused.stdout)["error"]

    data = image_bytes(SIZE, 8)
    deprecation = factories.appliance(data, locations=[origin.add("image-8.img", data)],
                                      deprecated="a broken build")
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    answer = real.upload(factories.signed(rsa_signer, deprecation, now=when))
    taken = pull(checked, old_entry)
    assert taken.returncode == 0, taken.stderr
    outcome = json.loads(taken.stdout)
    assert outcome["created"] == old_created
    assert outcome["resolution"]["log"]["deprecated_by"]["created"] == answer["created"]


# --- an entry removed from the served history -----------------------------------------------


def test_an_entry_removed_from_the_served_history_is_refused(real, proxy, publish, tmp_path):
    publish(real, seed=2)
    hidden, _, _ = publish(real, seed=3)
    later, _, _ = publish(real, seed=4)
    leaves = tlog.read_entry_bundle(requests.get(real.url + "log/tile/entries/000.p/3",
                                                 timeout=30).content)
    kept = [leaf for leaf in leaves if logleaf.LogEvent.parse(leaf).identifier != hidden]
    assert len(kept) == 2
    bundle = tlog.entry_bundle(kept)  # the history without the hidden entry, made whole
    hashes = b"".join(tlog.leaf_hash(leaf) for leaf in kept)

    def without_hidden(path, status, headers, body):
        if path.startswith("log/tile/entries/"):
            return 200, headers, bundle
        if path.startswith("log/tile/0/"):
            return 200, headers, hashes
        if "log-index" in {k.lower() for k in headers} and path.startswith(
                f"metadata/{later}/"):
            return status, {**headers, "Log-Index": "1"}, body
        return status, headers, body

    proxy.rewrite = without_hidden
    refused = pull(node(tmp_path, proxy.url, real.vkey), later)
    assert refused.returncode == errors.LOG_NOT_INCLUDED, refused.stderr
    assert "is not in the signed tree" in json.loads(refused.stdout)["error"]
    fooled = pull(node(tmp_path, proxy.url, None, name="unchecked", cache="other"), later)
    assert fooled.returncode == 0, fooled.stderr


# --- two nodes shown two trees -------------------------------------------------------------


def test_two_nodes_shown_two_trees_see_the_split_view(real, publish, tmp_path):
    publish(real, seed=5)
    real.stop()
    twin = Marketplace(tmp_path / "twin" / "data", tmp_path / "twin")
    shutil.copytree(real.data_dir, twin.data_dir)  # one key, one history so far
    real.start()
    twin.start()
    try:
        first, _, _ = publish(real, seed=6)
        second, _, _ = publish(twin, seed=7)  # the same key signs another history
        a = node(tmp_path, real.url, real.vkey, name="a", cache="shared")
        b = node(tmp_path, twin.url, real.vkey, name="b", cache="shared")
        assert pull(a, first, host="node-a").returncode == 0
        fooled = pull(node(tmp_path, twin.url, None, name="c", cache="c"), second, "node-c")
        assert fooled.returncode == 0, fooled.stderr
        refused = pull(b, second, host="node-b")
        assert refused.returncode == errors.LOG_SPLIT_VIEW, refused.stderr
        evidence = json.loads(refused.stdout)["evidence"]
        kept, served = (Path(p).read_text() for p in evidence)
        assert kept == requests.get(real.url + "log/checkpoint", timeout=30).text
        assert served == requests.get(twin.url + "log/checkpoint", timeout=30).text
    finally:
        twin.stop()


def marketplace_command(data_dir: Path, *args: str, **env: str):
    import subprocess

    return subprocess.run([script("stratus-marketplace"), *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120,
                          env=clean_environ(HOME=str(data_dir.parent), **env))


def test_a_witness_keeps_nodes_apart_from_a_fork_they_never_shared(real, publish, tmp_path):
    replica = tmp_path / "replica" / "data"
    replica.mkdir(parents=True)
    (replica / "marketplace.cfg").write_text(
        f"[marketplace]\nREPLICA_WITNESS_KEY = {replica / 'witness-key'}\n"
        f"REPLICA_LOG_KEY = {real.vkey}\n")
    made = marketplace_command(replica, "init-log", "--witness", "--json",
                               MARKETPLACE_PUBLIC_URL="http://replica.example.org/")
    assert made.returncode == 0, made.stderr
    witness = json.loads(made.stdout)["vkey"]
    publish(real, seed=14)
    real.stop()
    (real.data_dir / "marketplace.cfg").write_text(
        f"[marketplace]\nLOG_WITNESSES = {witness}\n")
    twin = Marketplace(tmp_path / "twin" / "data", tmp_path / "twin")
    shutil.copytree(real.data_dir, twin.data_dir)  # one key, one history so far
    real.start()
    twin.start()
    try:
        first, _, _ = publish(real, seed=15)
        second, _, _ = publish(twin, seed=16)  # the same key signs another history
        pulled = marketplace_command(replica, "replicate", "--once", "--primary", real.url)
        assert pulled.returncode == 0, pulled.stderr
        assert witness.split("+")[0] in requests.get(real.url + "log/checkpoint",
                                                     timeout=30).text
        settings = {"witness_keys": witness, "witnesses_required": 1}
        a = node(tmp_path, real.url, real.vkey, name="a", cache="a", **settings)
        b = node(tmp_path, twin.url, real.vkey, name="b", cache="b", **settings)
        alone = node(tmp_path, twin.url, real.vkey, name="alone", cache="alone")
        assert pull(a, first, host="node-a").returncode == 0
        fooled = pull(alone, second, host="node-alone")  # no witness: its own history only
        assert fooled.returncode == 0, fooled.stderr
        refused = pull(b, second, host="node-b")
        assert refused.returncode == errors.LOG_UNTRUSTED, refused.stderr
        assert "carries 0 cosignature(s) of witness_keys" in json.loads(refused.stdout)["error"]
    finally:
        twin.stop()


# --- a checkpoint replayed after max_checkpoint_age -----------------------------------------


def test_a_checkpoint_replayed_after_max_checkpoint_age_is_a_frozen_log(real, proxy, publish,
                                                                        tmp_path):
    publish(real, seed=8)
    recorded = requests.get(real.url + "log/checkpoint", timeout=30).content
    age = 5
    time.sleep(age + 1)
    later, _, _ = publish(real, seed=9)  # a new tree: the marketplace signs a new checkpoint

    def replay(path, status, headers, body):
        return (200, headers, recorded) if path == "log/checkpoint" else (status, headers, body)

    proxy.rewrite = replay
    config = node(tmp_path, proxy.url, real.vkey, max_checkpoint_age=age)
    refused = run_command("stratus-download-image", "--config", config, "--json", later,
                          "-o", tmp_path / "out.img")
    assert refused.returncode == errors.LOG_FROZEN, refused.stderr
    assert "frozen" in json.loads(refused.stdout)["error"]
    assert not (tmp_path / "out.img").exists()
    proxy.rewrite = None
    honest = run_command("stratus-download-image", "--config", config, later,
                         "-o", tmp_path / "out.img")
    assert honest.returncode == 0, honest.stderr
    assert (tmp_path / "out.img").read_bytes() == image_bytes(SIZE, 9)


# --- the database edited by hand --------------------------------------------------------------


def test_a_log_edited_by_hand_is_refused(real, publish, tmp_path):
    untouched, _, _ = publish(real, seed=10)
    erased, _, _ = publish(real, seed=11)
    config = node(tmp_path, real.url, real.vkey)
    assert pull(config, erased).returncode == 0
    real.stop()
    with sqlite3.connect(real.database) as db:  # the last leaf and its checkpoint, gone
        db.execute("DELETE FROM log_leaves WHERE position = 1")
        db.execute("DELETE FROM log_hashes WHERE level = 0 AND position = 1")
        db.execute("DELETE FROM marks WHERE name LIKE 'log:checkpoint:%'")
    real.start()
    rolled = pull(config, untouched)  # leaf 0, under a tree of one leaf: smaller than seen
    assert rolled.returncode == errors.LOG_ROLLBACK, rolled.stderr
    assert "now has 1 leaves, but this node saw it at 2" in rolled.stderr
    other, _, _ = publish(real, seed=12)  # the log grows again, over another leaf 1
    split = pull(config, other)
    assert split.returncode == errors.LOG_SPLIT_VIEW, split.stderr


def test_a_leaf_altered_by_hand_is_refused(real, publish, tmp_path):
    identifier, _, _ = publish(real, seed=13)
    real.stop()
    with sqlite3.connect(real.database) as db:
        leaf = db.execute("SELECT leaf FROM log_leaves WHERE position = 0").fetchone()[0]
        event = logleaf.LogEvent.parse(bytes(leaf))
        altered = logleaf.LogEvent(**{**event.__dict__, "time": "2020-01-01T00:00:00Z"})
        db.execute("UPDATE log_leaves SET leaf = ? WHERE position = 0", (altered.leaf(),))
    real.start()
    refused = pull(node(tmp_path, real.url, real.vkey), identifier)
    assert refused.returncode == errors.LOG_NOT_INCLUDED, refused.stderr
    assert "not in the signed tree" in json.loads(refused.stdout)["error"]
