"""Benchmark: the marketplace server (gunicorn) searching 100,000 signed entries.

Run from the repository root:  python bench/server.py [--entries 100000] [--requests 2000]

1. Fill: a store of ``--entries`` signed entries, each made, signed (ECDSA P-256) and
   accepted through ``Marketplace.accept`` (every check an upload gets) in a process pool,
   one process per core. The fill turns SQLite's fsync off on its own connections (it is a
   cache: an interrupted fill is thrown away, a COMPLETE file marks a finished one) and is
   kept in bench/data/ (git-ignored) for later runs; a kept store is brought up to this
   code by ``init-store`` first (see prepare).
2. Serve: ``stratus-marketplace serve`` (gunicorn, 2 workers, the default 4 threads each)
   on a free 127.0.0.1 port, on that data dir, durability as configured (WAL, fsync on
   every commit).
3. Measure, with clients in this script (one ``requests.Session`` per thread, a bounded
   number of requests each, after a warm-up): latency with one client (median, p99) and
   throughput with ``--clients`` concurrent clients, for the trivial ``/api/v1/ping``
   (the ceiling: same app, same server, no store) and each search of SCENARIOS: filters,
   free text, free text with filters, other sort orders, and first pages with facet
   counts. Every request's total and facets are counted afresh (no store keeps counts),
   and consecutive requests ask for other filter values and words.
4. Upload rate: distinct signed documents POSTed by ``--clients`` threads to a server on a
   copy of the filled store, with durability on (each 201 is fsynced).
The client shares the machine's cores with the server: the figures are for this machine
as a whole, and the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
SIGNERS = 20
WARMUP_UPLOADS = 200  # untimed uploads before the timed ones (measure_uploads)
CHUNK = 500
SYSTEMS = {"ubuntu": ("18.04", "20.04", "22.04", "24.04"), "debian": ("10", "11", "12"),
           "centos": ("7", "stream8", "stream9"), "fedora": ("38", "39", "40"),
           "alpine": ("3.18", "3.19", "3.20"), "rocky": ("8", "9"), "opensuse": ("15.5",),
           "ttylinux": ("16.1",)}
ARCHS = (("x86_64", 70), ("aarch64", 25), ("i686", 5))
FLAVOURS = ("server", "minimal", "desktop", "docker host", "hpc node", "web server",
            "database", "grid worker node", "jupyter notebook", "build machine")
WORDS = ("cloud-init", "openssh", "hardened", "nightly", "lts", "python", "gpu", "mpi",
         "postgres", "nginx", "kubernetes", "ansible", "monitoring", "backup", "science")
# name: (path, share of --requests). No store keeps counts between requests: every total
# and facet count is made afresh. {os} and {word} take the next of OSES and TEXT_WORDS at
# each request, so that no two requests in a row ask the same; the facet queries are slow
# enough to get a tenth.
SCENARIOS = {
    "ping": ("api/v1/ping", 1),
    "filtered search": ("api/v1/appliances?os={os}&status=valid&limit=20", 1),
    "free text": ("api/v1/appliances?q={word}&limit=20", 1),
    "free text with filters": ("api/v1/appliances?q={word}&os={os}&arch=x86_64&limit=20", 1),
    "filters, by title": ("api/v1/appliances?os={os}&sort=title&limit=20", 1),
    "free text with filters, by title": ("api/v1/appliances?q={word}&os={os}&sort=-title"
                                         "&limit=20", 1),
    "first page with facets": ("api/v1/appliances?os={os}&status=valid&limit=20&facets=true",
                               0.1),
    "free text, first page with facets": ("api/v1/appliances?q={word}&limit=20&facets=true",
                                          0.1),
}
OSES = tuple(sorted(SYSTEMS))
TEXT_WORDS = ("docker", "nginx", "python", "desktop", "minimal", "hardened")


# --- fill ---------------------------------------------------------------------------------


def make_signers(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` ECDSA signers (key PEM, certificate PEM) from one throw-away CA."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    signers = []
    for n in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"Publisher {n}")])
        certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - timedelta(days=1))
                       .not_valid_after(now + timedelta(days=3650))
                       .add_extension(x509.SubjectAlternativeName(
                           [x509.RFC822Name(f"publisher{n}@bench.example.org")]), False)
                       .sign(ca_key, hashes.SHA256()))
        signers.append((key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()),
                        certificate.public_bytes(serialization.Encoding.PEM)))
    return signers


def make_entry(number: int, now: datetime):
    """Entry ``number`` of the data set: the same fields on every run, a random image."""
    import hashlib

    from marketplace.metadata import model
    from marketplace.metadata.identifier import sha1_to_identifier
    pick = random.Random(number)
    system = pick.choice(sorted(SYSTEMS))
    version = pick.choice(SYSTEMS[system])
    flavour = pick.choice(FLAVOURS)
    arch = pick.choices([a for a, _ in ARCHS], [w for _, w in ARCHS])[0]
    words = " ".join(pick.sample(WORDS, 3))
    image = pick.randbytes(32) + number.to_bytes(8, "big")
    sha1 = hashlib.sha1(image).hexdigest()
    created = now - timedelta(days=pick.uniform(1, 1000))
    fate = pick.random()
    return model.Appliance(
        identifier=sha1_to_identifier(sha1), bytes=pick.randrange(1 << 26, 1 << 34),
        checksums={"SHA-1": sha1, "SHA-256": hashlib.sha256(image).hexdigest()},
        type="base", kind="disk" if pick.random() < 0.1 else "machine", os=system,
        os_version=version, os_arch=arch, format=pick.choice(("qcow2", "raw", "vmdk")),
        hypervisor=pick.choice(("kvm", "kvm", "xen")), compression="gz",
        title=f"{system.capitalize()} {version} {flavour}",
        description=f"{system} {version} {flavour} image for {arch}: {words}.",
        tag=f"{system}-{version}-{flavour.split()[0]}", created=created,
        valid=created + timedelta(days=60) if fate < 0.1 else now + timedelta(days=3650),
        deprecated="superseded by a newer build" if 0.1 <= fate < 0.2 else None,
        locations=[f"https://images.example.org/{system}/{version}/{number}.img.gz"])


_worker: dict = {}


def _start_worker(data_dir: str, signers: list[tuple[bytes, bytes]]) -> None:
    from marketplace import config
    from marketplace.metadata.keys import Credentials
    from marketplace.service import Marketplace, open_store
    settings = config.load(data_dir, environ={})
    store = open_store(settings)
    store._db().execute("PRAGMA synchronous=OFF")  # a cache: see the module docstring
    _worker["marketplace"] = Marketplace.from_settings(settings, store)
    _worker["signers"] = [Credentials(serialization.load_pem_private_key(k, None),
                                      x509.load_pem_x509_certificate(c)) for k, c in signers]


def _fill_chunk(numbers: range, now: datetime) -> int:
    from marketplace.metadata import document, model, signature
    added = 0
    for number in numbers:
        root = model.to_document(make_entry(number, now))
        signer = _worker["signers"][number % len(_worker["signers"])]
        endorsed = (now - timedelta(minutes=number % 1000)).replace(microsecond=0)
        signature.sign(root, signer, now=endorsed)
        added += _worker["marketplace"].accept(document.serialize(root))[1].new
    return added


def fill(data_dir: Path, entries: int) -> float:
    """A complete store of ``entries`` entries in ``data_dir`` (reused when complete);
    the seconds it took (0 when reused)."""
    marker = data_dir / "COMPLETE"
    if marker.exists() and marker.read_text().strip() == str(entries):
        prepare(data_dir)
        return 0.0
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    workers = os.cpu_count() or 2
    chunks = [range(n, min(n + CHUNK, entries)) for n in range(0, entries, CHUNK)]
    done = 0
    with ProcessPoolExecutor(workers, initializer=_start_worker,
                             initargs=(str(data_dir), make_signers(SIGNERS))) as pool:
        for added in pool.map(_fill_chunk, chunks, [now] * len(chunks)):
            done += added
            print(f"\rfilling: {done}/{entries} entries", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    import sqlite3
    with sqlite3.connect(data_dir / "marketplace.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("ANALYZE")
    marker.write_text(f"{entries}\n")
    return time.perf_counter() - started


def prepare(data_dir: Path) -> None:
    """Bring a cached store up to this code before a server is timed on it: ``init-store``
    rebuilds indexes of an older shape and takes in the moderation file of an older
    version, which can take minutes at 100,000 entries (more than a server's start is
    given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    subprocess.run([sys.executable, "-m", "marketplace.cli", "init-store", "--data-dir",
                    str(data_dir)], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


# --- server and clients ---------------------------------------------------------------------


@dataclass
class Server:
    """``stratus-marketplace serve`` in its own process group."""

    data_dir: Path
    workers: int
    process: subprocess.Popen | None = None
    port: int = 0

    def __enter__(self) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "marketplace.cli", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--workers", str(self.workers)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "healthz", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {self.log.name}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def drive(send, clients: int, per_client: int) -> tuple[list[float], float]:
    """Run ``send(session, n)`` ``per_client`` times in each of ``clients`` threads; every
    latency in ms and the wall time in s."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        session = requests.Session()
        barrier.wait()
        for n in range(per_client):
            started = time.perf_counter()
            response = send(session, index * per_client + n)
            latencies[index].append((time.perf_counter() - started) * 1000)
            if response.status_code >= 300:
                failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return [x for per in latencies for x in per], wall


def summary(latencies: list[float], wall: float) -> dict:
    ordered = sorted(latencies)
    return {"requests": len(ordered), "median_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
            "per_s": round(len(ordered) / wall, 1)}


def measure_reads(server: Server, requests_count: int, clients: int) -> dict:
    """Latency alone and throughput under ``clients`` concurrent clients, per scenario."""
    results = {}
    for name, (path, share) in SCENARIOS.items():
        url = server.url + path
        count = max(int(requests_count * share), 4 * clients)

        def get(session, n, url=url):
            return session.get(url.format(os=OSES[n % len(OSES)],
                                          word=TEXT_WORDS[n % len(TEXT_WORDS)]), timeout=60)

        drive(get, 1, min(50, count // 4))  # warm-up: connections, caches, code paths
        alone = summary(*drive(get, 1, count // 2))
        loaded = summary(*drive(get, clients, count // clients))
        results[name] = {"one client": alone, f"{clients} clients": loaded}
        print(f"{name:34s} alone: median {alone['median_ms']} ms, p99 {alone['p99_ms']} ms; "
              f"{clients} clients: {loaded['per_s']}/s, p99 {loaded['p99_ms']} ms",
              file=sys.stderr)
    return results


def measure_uploads(data_dir: Path, workers: int, count: int, clients: int,
                    warmup: int = WARMUP_UPLOADS) -> dict:
    """POST ``count`` distinct signed documents to a server on a copy of the store, timed
    after ``warmup`` others: the first uploads to a server (and to an Elasticsearch node
    just started, whose JIT compiles its write path then) cost up to twice a later one,
    and a marketplace serves for weeks."""
    from marketplace.metadata import document, model, signature
    from marketplace.metadata.keys import Credentials
    key, certificate = make_signers(1)[0]
    signer = Credentials(serialization.load_pem_private_key(key, None),
                         x509.load_pem_x509_certificate(certificate))
    now = datetime.now(UTC)
    documents = []
    for n in range(warmup + count):
        root = model.to_document(make_entry(10_000_000 + n, now))
        signature.sign(root, signer)
        documents.append(document.serialize(root))
    scratch = data_dir.with_name(data_dir.name + "-upload")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(data_dir, scratch)
    os.sync()  # else the first checkpoint's fsync writes the whole fresh copy, in a request
    try:
        with Server(scratch, workers) as server:
            def post(session, n, first=0):
                return session.post(server.url + "metadata", data=documents[first + n],
                                    timeout=60, headers={"Content-Type": "application/rdf+xml",
                                                         "Accept": "application/json"})
            drive(post, clients, warmup // clients)
            result = summary(*drive(functools.partial(post, first=warmup), clients,
                                    count // clients))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"uploads: {result['per_s']}/s with {clients} clients, median "
          f"{result['median_ms']} ms, p99 {result['p99_ms']} ms", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests per scenario under load, half as many alone "
                        "(default 1000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--uploads", type=int, default=400, help="documents to upload")
    options = parser.parse_args()
    data_dir = DATA / f"server-{options.entries}"
    fill_seconds = fill(data_dir, options.entries)
    with Server(data_dir, options.workers) as server:
        reads = measure_reads(server, options.requests, options.clients)
    uploads = measure_uploads(data_dir, options.workers, options.uploads, options.clients)
    loaded = f"{options.clients} clients"
    ping = reads["ping"][loaded]["per_s"]
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
                   f"Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv),
        "entries": options.entries, "fill_seconds": round(fill_seconds, 1),
        "reads": reads, "uploads": uploads,
        "ratios": {name: round(reads[name][loaded]["per_s"] / ping, 2)
                   for name in SCENARIOS if name != "ping"},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
