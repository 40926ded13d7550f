"""Three app servers on one three-node Elasticsearch cluster (issue 14): any request through
any server.

Three ``stratus-marketplace serve`` processes (gunicorn, two workers each), each with its
own data dir whose marketplace.cfg lists the three nodes, indices with one replica, unlisted
endorsers confirming by mail (a real SMTP server on 127.0.0.1) and an admin token. Client
threads spread their requests round-robin over the servers, and every write is read back
at once through another server: uploads, confirmations through links mailed by another
server, blocks and unblocks, removals, concurrent versions of one entry, a replica pulling.
Then every server must show every acknowledged write, the same change feed with each change
once and in order, and the newest version as latest.

The second test stops the node holding the entries' primary shard in the middle of a run:
reads keep answering, a write answered 503 carries Retry-After and succeeds when retried,
nothing acknowledged is lost, and /healthz names the missing node.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller

from marketplace.store.elastic.health import address
from tests import factories, pki
from tests.elastic import ElasticServer, LocalCluster, new_prefix
from tests.live.conftest import LiveServer, clean_environ, script, wait_for
from tests.moderation.conftest import LINK, Mailbox
from tests.processes import free_port
from tests.store.conftest import moment

pytestmark = [pytest.mark.elasticsearch, pytest.mark.live, pytest.mark.slow]

TOKEN = "scaleout-admin-token-" + "Hq4Wz8Nc2Lp6Rv0Tx3Jm"
SITE = "http://marketplace.test"  # PUBLIC_URL: what the mailed links name
XML = {"Content-Type": "application/rdf+xml", "Accept": "application/json"}
JSON = {"Accept": "application/json"}
TIMEOUT = 60  # seconds for one HTTP request
RETRIES = 120  # attempts of a write answered 503 (half a second apart)
BLOCK_ROUNDS = 6  # block-unblock rounds during the outage test
Key = tuple[str, str, str]


@dataclass
class Ledger:
    """What the servers acknowledged, recorded by the client threads."""

    documents: dict[Key, bytes] = field(default_factory=dict)
    paths: dict[Key, str] = field(default_factory=dict)
    removed: set[Key] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def published(self, answer: dict, document: bytes) -> Key:
        key = (answer["identifier"], answer["email"], answer["created"])
        with self.lock:
            assert key not in self.documents, f"{key} acknowledged twice as new"
            self.documents[key] = document
            self.paths[key] = urlsplit(answer["url"]).path
        return key

    def served(self) -> dict[Key, bytes]:
        with self.lock:
            return {k: v for k, v in self.documents.items() if k not in self.removed}


@dataclass
class Site:
    """Three servers on one cluster, the mailbox their mails reach, and the clients' view:
    ``pick()`` gives the next server round-robin, ``server(n + 1)`` the one after it."""

    servers: list[LiveServer]
    mailbox: Mailbox
    cluster: LocalCluster
    prefix: str
    ledger: Ledger = field(default_factory=Ledger)
    turn: Iterator[int] = field(default_factory=itertools.count)
    admin: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})

    def pick(self) -> int:
        return next(self.turn)

    def server(self, n: int) -> LiveServer:
        return self.servers[n % len(self.servers)]

    def get(self, n: int, path: str, **kwargs) -> requests.Response:
        """GET a path (or the path of a URL naming the public address) on server ``n``."""
        return requests.get(self.server(n).url + urlsplit(path).path.lstrip("/") +
                            (f"?{urlsplit(path).query}" if urlsplit(path).query else ""),
                            timeout=TIMEOUT, **kwargs)

    def upload(self, n: int, document: bytes) -> requests.Response:
        return requests.post(self.server(n).url + "metadata", data=document, headers=XML,
                             timeout=TIMEOUT)

    def act(self, n: int, action: str, **body: str) -> requests.Response:
        """An admin API call (remove, block, unblock) on server ``n``."""
        return requests.post(self.server(n).url + f"admin/api/{action}", json=body,
                             headers=self.admin, timeout=TIMEOUT)

    def search(self, n: int, **params) -> dict:
        found = self.get(n, "api/v1/appliances", params=params, headers=JSON)
        assert found.status_code == 200, found.text
        return found.json()

    def mail_to(self, recipient: str):
        """The one confirmation mail sent to ``recipient`` (waiting for it)."""
        def sent():
            with self.mailbox.lock:
                return [m for to, m in self.mailbox.messages if recipient in to]
        mails = wait_for(sent, 60, f"the confirmation mail to {recipient}")
        assert len(mails) == 1, f"{len(mails)} mails to {recipient}"
        return mails[0]

    def changes(self, n: int) -> list[dict]:
        """The whole change feed, as server ``n`` serves it page by page."""
        found, after = [], 0
        while True:
            page = self.get(n, "api/v1/changes", params={"after": after, "limit": 100})
            assert page.status_code == 200, page.text
            batch = page.json()["changes"]
            if not batch:
                return found
            found += batch
            after = batch[-1]["serial"]


# --- the three servers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer_files(tmp_path_factory, ca) -> dict[str, str]:
    """Trust store (the session CA), whitelist and admin token files shared by the servers."""
    folder = tmp_path_factory.mktemp("scaleout-config")
    bundle = folder / "ca.pem"
    bundle.write_bytes(ca.certificate_pem())
    whitelist = folder / "whitelist"
    whitelist.write_text("jane.tester@example.org\n" +
                         "".join(f"blocked-{n}@example.org\n" for n in range(BLOCKS)))
    tokens = folder / "admin-tokens"
    tokens.write_text(f"ops:{TOKEN}\n")
    return {"trust_store": str(bundle), "endorser_whitelist": str(whitelist),
            "admin_token_file": str(tokens)}


@pytest.fixture
def site(three_nodes, signer_files, tmp_path) -> Iterator[Site]:
    """Three servers on a fresh index prefix of the three-node cluster; the indices are
    deleted at the end."""
    mailbox = Mailbox()
    port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    prefix = new_prefix()
    settings = {"store": "elasticsearch", "elasticsearch_url": three_nodes.url,
                "elasticsearch_index_prefix": prefix, "elasticsearch_replicas": "1",
                "elasticsearch_timeout": "10", **signer_files,
                "unlisted_endorsers": "confirm", "public_url": SITE,
                "trusted_hosts": "marketplace.test, 127.0.0.1", "smtp_host": "127.0.0.1",
                "smtp_port": str(port), "smtp_from": "marketplace@example.org",
                "mails_per_recipient_per_day": "100", "mails_per_client_per_hour": "100000"}
    servers = [LiveServer(configure(tmp_path / name / "data", settings), tmp_path / name)
               for name in ("a", "b", "c")]
    try:
        for server in servers:  # one after the other: the first creates the indices
            server.start()
        yield Site(servers, mailbox, three_nodes, prefix)
    finally:
        for server in servers:
            server.stop()
        smtp.stop()
        three_nodes.drop(prefix)


def configure(data: Path, settings: dict[str, str]) -> Path:
    """A data dir whose marketplace.cfg holds ``settings``."""
    data.mkdir(parents=True)
    (data / "marketplace.cfg").write_text(
        "[marketplace]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return data


def word() -> str:
    """A word of a title that no other entry's words start with (free text matches
    prefixes)."""
    return "w" + random.randbytes(6).hex()


def signed(signer: pki.Issued, title: str, image: bytes | None = None, when=None) -> bytes:
    return factories.signed(signer, factories.appliance(image, title=title), now=when)


# --- what the clients do, each write read back through the next servers -------------------

PUBLISHES, CONFIRMS, BLOCKS, REMOVALS, VERSIONS = 8, 4, 3, 3, 12


def publish(site: Site, signer: pki.Issued) -> None:
    """A listed endorser's upload (201), then read through the two other servers."""
    n, title = site.pick(), word()
    document = signed(signer, title)
    answer = site.upload(n, document)
    assert answer.status_code == 201, answer.text
    key = site.ledger.published(answer.json(), document)
    assert site.get(n + 1, site.ledger.paths[key]).content == document
    assert [i["title"] for i in site.search(n + 2, q=title)["items"]] == [title]


def confirm(site: Site, signer: pki.Issued, email: str) -> None:
    """An unlisted endorser's upload held (202) on one server, its mailed link followed on
    the next, and the publication seen on the third."""
    n, title = site.pick(), word()
    document = signed(signer, title)
    held = site.upload(n, document)
    assert held.status_code == 202, held.text
    links = {m.group(1): m.group(0)
             for m in LINK.finditer(site.mail_to(email).get_content())}
    done = requests.post(site.server(n + 1).url + links["confirm"].split("/", 3)[3],
                         timeout=TIMEOUT)
    assert done.status_code == 200, done.text
    state = site.get(n + 2, held.headers["Location"], headers=JSON)
    assert state.status_code == 200 and state.json()["state"] == "published", state.text
    key = site.ledger.published(state.json(), document)
    assert site.get(n + 2, site.ledger.paths[key]).content == document


def block(site: Site, signer: pki.Issued, email: str) -> None:
    """Blocked on one server, refused on the next, unblocked on the third, published again
    on the first."""
    n, title = site.pick(), word()
    document = signed(signer, title)
    blocked = site.act(n, "block", endorser=email, reason="scale-out test")
    assert blocked.status_code == 201, blocked.text
    refused = site.upload(n + 1, document)
    assert refused.status_code == 403, refused.text
    listed = site.get(n + 2, "admin/api/blocked", headers=site.admin).json()["blocked"]
    assert email in [b["endorser"] for b in listed]
    unblocked = site.act(n + 2, "unblock", endorser=email, reason="scale-out test")
    assert unblocked.status_code == 200, unblocked.text
    answer = site.upload(n, document)
    assert answer.status_code == 201, answer.text
    key = site.ledger.published(answer.json(), document)
    assert site.get(n + 1, site.ledger.paths[key]).status_code == 200


def remove(site: Site, signer: pki.Issued) -> None:
    """Published on one server, removed on the next, gone on the third, refused again."""
    n, title = site.pick(), word()
    document = signed(signer, title)
    answer = site.upload(n, document)
    assert answer.status_code == 201, answer.text
    key = site.ledger.published(answer.json(), document)
    removed = site.act(n + 1, "remove", identifier=key[0], email=key[1], created=key[2],
                       reason="scale-out test")
    assert removed.status_code == 200, removed.text
    with site.ledger.lock:
        site.ledger.removed.add(key)
    assert site.get(n + 2, site.ledger.paths[key]).status_code == 404
    assert site.search(n + 2, q=title)["total"] == 0
    again = site.upload(n, document)
    assert again.status_code == 410, again.text


def version(site: Site, document: bytes) -> None:
    """One of many versions of one entry, uploaded concurrently: older than the latest
    is refused (409), anything else published."""
    answer = site.upload(site.pick(), document)
    assert answer.status_code in (201, 409), answer.text
    if answer.status_code == 201:
        site.ledger.published(answer.json(), document)


def replicate(site: Site, replica: Path, home: Path) -> None:
    """``stratus-marketplace replicate --once`` from the next server into a SQLite replica."""
    primary = site.server(site.pick()).url
    pulled = subprocess.run([script("stratus-marketplace"), "replicate", "--once",
                             "--primary", primary, "--data-dir", str(replica)],
                            capture_output=True, text=True, timeout=300,
                            env=clean_environ(HOME=str(home)), stdin=subprocess.DEVNULL)
    # Two versions of one entry uploaded at once through two servers may both be stored and
    # announced newest first; the replica keeps the newest (the latest it serves, checked at
    # the end) and leaves an older one out, saying why (exit 3). Anything else left out fails.
    left_out = [line for line in pulled.stderr.splitlines() if " left out " in line]
    older = [line for line in left_out if "a newer entry" in line]
    assert pulled.returncode == 0 or (pulled.returncode == 3 and left_out == older != []), \
        pulled.stderr


def run_all(tasks: list[Callable[[], None]], clients: int) -> None:
    """Run the tasks on ``clients`` threads, in a random order; re-raise the first
    failure."""
    random.shuffle(tasks)
    with ThreadPoolExecutor(clients) as pool:
        for done in [pool.submit(task) for task in tasks]:
            done.result()


# --- the checks every server must pass -----------------------------------------------------


def check_feed(site: Site) -> None:
    """Each server serves the same feed: every acknowledged publication once, every
    removal once and after its publication, serials increasing."""
    feeds = [site.changes(n) for n in range(3)]
    assert feeds[0] == feeds[1] == feeds[2]
    serials = [c["serial"] for c in feeds[0]]
    assert serials == sorted(set(serials))
    changes = [(c["action"], (c["identifier"], c["email"], c["created"])) for c in feeds[0]]
    counted = Counter(changes)
    assert {key for (action, key) in counted if action == "publish"} == set(
        site.ledger.documents)
    assert {key for (action, key) in counted if action == "remove"} == site.ledger.removed
    assert set(counted.values()) == {1}
    for key in site.ledger.removed:
        assert changes.index(("publish", key)) < changes.index(("remove", key))


def check_served(site: Site) -> None:
    """Every acknowledged entry, byte for byte, through every server; removals gone."""
    for n in range(3):
        for key, document in site.ledger.served().items():
            found = site.get(n, site.ledger.paths[key])
            assert found.status_code == 200 and found.content == document, key
        for key in site.ledger.removed:
            assert site.get(n, site.ledger.paths[key]).status_code == 404, key


def listing(site: Site, n: int) -> set[str]:
    found = site.search(n, status="all", limit=500)
    assert found["total"] == len(found["items"])
    return {urlsplit(item["url"]).path for item in found["items"]}


def test_any_request_through_any_server(site, rsa_signer, make_signer, signer_files,
                                        tmp_path):
    assert set(site.cluster.replicas(site.prefix).values()) == {1}
    replica = configure(tmp_path / "replica" / "data",
                        {"trust_store": signer_files["trust_store"]})
    image = b"one appliance, many builds"
    base = moment()
    versions = [signed(rsa_signer, f"build {n:02d}", image, base - timedelta(minutes=40 - n))
                for n in range(VERSIONS)]
    tasks = [lambda: publish(site, rsa_signer) for _ in range(PUBLISHES)]
    for n in range(CONFIRMS):
        email = f"unlisted-{n}@example.org"
        signer = make_signer(f"Unlisted {n}", email=email)
        tasks.append(lambda signer=signer, email=email: confirm(site, signer, email))
    for n in range(BLOCKS):
        email = f"blocked-{n}@example.org"
        signer = make_signer(f"Blocked {n}", email=email)
        tasks.append(lambda signer=signer, email=email: block(site, signer, email))
    tasks += [lambda: remove(site, rsa_signer) for _ in range(REMOVALS)]
    tasks += [lambda d=d: version(site, d) for d in versions]
    tasks.append(lambda: replicate(site, replica, tmp_path))
    run_all(tasks, clients=6)

    check_feed(site)
    check_served(site)
    served = site.ledger.served()
    builds = {key for key, document in served.items() if document in versions}
    latest = {site.ledger.paths[key] for key in served.keys() - builds | {max(builds)}}
    for n in range(3):
        assert listing(site, n) == latest
        found = site.search(n, q="build", status="all")
        assert [i["title"] for i in found["items"]] == [f"build {VERSIONS - 1:02d}"]
    audits = [site.get(n, "admin/api/audit", params={"limit": 500}, headers=site.admin)
              .json()["records"] for n in range(3)]
    assert audits[0] == audits[1] == audits[2]
    done = Counter(r["action"] for r in audits[0])
    assert (done["blocked"], done["unblocked"], done["removed"], done["confirmed"]) == (
        BLOCKS, BLOCKS, REMOVALS, CONFIRMS)

    replicate(site, replica, tmp_path)  # the last pull: the replica has caught up
    assert replica_listing(replica) == latest


def replica_listing(data: Path) -> set[str]:
    """What the replica serves (read in process from its SQLite store)."""
    from marketplace.web.app import create_app
    from marketplace.web.current import marketplace_of
    app = create_app(data_dir=str(data))
    try:
        found = app.test_client().get("/api/v1/appliances?status=all&limit=500",
                                      headers=JSON).json
    finally:
        marketplace_of(app).close()
    assert found["total"] == len(found["items"])
    return {urlsplit(item["url"]).path for item in found["items"]}


# --- a node stopped in the middle ----------------------------------------------------------


@dataclass
class Outage:
    """What the clients met while a node was down."""

    unavailable: int = 0  # writes answered 503 (each with Retry-After), then retried
    replays: int = 0  # answered 200: an attempt the client or the cluster client retried
    # had stored the entry already (a node closing after the write, before its answer)
    reads: int = 0
    failed_reads: list[str] = field(default_factory=list)
    writing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def durable(site: Site, send: Callable[[int], requests.Response], outage: Outage
            ) -> tuple[int, requests.Response, bool]:
    """``send(n)`` to the next server until it is not answered 503; a 503 must carry
    Retry-After. (The server answering, the answer, whether an attempt was refused.)"""
    for attempt in range(RETRIES):
        n = site.pick()
        answer = send(n)
        if answer.status_code != 503:
            return n, answer, attempt > 0
        assert answer.headers.get("Retry-After", "").isdigit(), answer.headers
        with outage.lock:
            outage.unavailable += 1
        time.sleep(0.5)
    pytest.fail(f"a write was refused {RETRIES} times")


def durable_upload(site: Site, document: bytes, outage: Outage) -> None:
    """Upload until acknowledged, then read it through the next server: 201, or 200 when
    an earlier attempt (the client's, or the cluster client's own retry) had stored it."""
    n, answer, _ = durable(site, lambda n: site.upload(n, document), outage)
    assert answer.status_code in (200, 201), answer.text
    with outage.lock:
        outage.replays += answer.status_code == 200
    key = (answer.json()["identifier"], answer.json()["email"], answer.json()["created"])
    with site.ledger.lock:
        site.ledger.documents[key] = document
        site.ledger.paths[key] = urlsplit(answer.json()["url"]).path
    assert site.get(n + 1, site.ledger.paths[key]).content == document


def durable_block(site: Site, email: str, outage: Outage) -> None:
    """Block an endorser and unblock it, each retried until answered, each seen at once by
    the next server (a retried block may find it blocked already: 200, not 201; a retried
    unblock may find it unblocked: 404)."""
    reason = {"reason": "outage test"}
    n, blocked, _ = durable(site, lambda n: site.act(n, "block", endorser=email, **reason),
                            outage)
    assert blocked.status_code in (200, 201), blocked.text
    listed = site.get(n + 1, "admin/api/blocked", headers=site.admin).json()["blocked"]
    assert email in [b["endorser"] for b in listed]
    n, unblocked, retried = durable(
        site, lambda n: site.act(n, "unblock", endorser=email, **reason), outage)
    assert unblocked.status_code == 200 or (retried and unblocked.status_code == 404), \
        unblocked.text
    listed = site.get(n + 1, "admin/api/blocked", headers=site.admin).json()["blocked"]
    assert email not in [b["endorser"] for b in listed]


def blocks_during(site: Site, outage: Outage) -> None:
    """Six block-unblock rounds spread over the uploads (a round every five), so that most
    fall while the node is down."""
    for n in range(BLOCK_ROUNDS):
        wait_for(lambda n=n: len(site.ledger.documents) >= 5 * n, 600, f"{5 * n} uploads")
        durable_block(site, f"outage-{n}@example.org", outage)


def keep_reading(site: Site, outage: Outage) -> None:
    """Searches, entries and the feed, round-robin, until the writers are done: every
    answer must be 200."""
    while outage.writing.is_set():
        n = site.pick()
        with site.ledger.lock:
            paths = list(site.ledger.paths.values())
        for path, params in (("api/v1/appliances", {"q": "outage"}),
                             ("api/v1/changes", {"limit": 10}),
                             *([(random.choice(paths), {})] if paths else [])):
            answer = site.get(n, path, params=params, headers=JSON)
            with outage.lock:
                outage.reads += 1
                if answer.status_code != 200:
                    outage.failed_reads.append(f"{path}: {answer.status_code} {answer.text}")


def entries_primary(cluster: LocalCluster, prefix: str) -> ElasticServer:
    """The node that holds the primary shard of the entries index."""
    shards = requests.get(f"{cluster.running()[0].url}/_cat/shards/{prefix}-entries",
                          params={"format": "json", "h": "prirep,node"}, timeout=30).json()
    name = next(s["node"] for s in shards if s["prirep"] == "p")
    return next(node for node in cluster.nodes if node.discovery["node.name"] == name)


def health_of(site: Site, n: int) -> tuple[int, dict]:
    answer = site.get(n, "healthz")
    return answer.status_code, answer.json()


def test_a_node_stopped_mid_run(site, three_nodes, rsa_signer):
    documents = [signed(rsa_signer, f"outage {word()}") for _ in range(36)]
    outage = Outage()
    outage.writing.set()
    victim = entries_primary(three_nodes, site.prefix)
    with ThreadPoolExecutor(7) as pool:
        readers = [pool.submit(keep_reading, site, outage) for _ in range(2)]
        writers = [pool.submit(lambda batch=documents[k::4]: [
            durable_upload(site, d, outage) for d in batch]) for k in range(4)]
        writers.append(pool.submit(blocks_during, site, outage))
        try:
            wait_for(lambda: len(site.ledger.documents) >= 8, 300, "8 acknowledged uploads")
            three_nodes.stop(victim)
            for n in range(3):  # every server names the missing node, and still serves
                status, health = wait_for(
                    lambda n=n: (h := health_of(site, n))[0] == 200 and h[1]["missing"] and h,
                    120, f"server {n}'s /healthz to name the stopped node")
                assert health["status"] == "degraded", health
                assert health["missing"] == [address(victim.url)], health
            for writer in writers:
                writer.result()
        finally:
            outage.writing.clear()
            for reader in readers:
                reader.result()
            if victim not in three_nodes.running():
                three_nodes.start(victim)
    assert outage.failed_reads == [], outage.failed_reads[:5]
    assert outage.reads > 0
    for n in range(3):
        status, health = health_of(site, n)
        assert (status, health["status"], health["missing"]) == (200, "ok", []), health
    assert len(site.ledger.documents) == len(documents)
    check_served(site)
    check_feed(site)
    audits = [site.get(n, "admin/api/audit", params={"limit": 500}, headers=site.admin)
              .json()["records"] for n in range(3)]
    assert audits[0] == audits[1] == audits[2]
    done = Counter(r["action"] for r in audits[0])
    assert (done["blocked"], done["unblocked"]) == (BLOCK_ROUNDS, BLOCK_ROUNDS)
    assert site.get(0, "admin/api/blocked", headers=site.admin).json()["blocked"] == []
    assert set(three_nodes.replicas(site.prefix).values()) == {1}
