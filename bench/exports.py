"""Benchmark: the exports of a marketplace of 10,000 entries (issue 13).

Run from the repository root:  python bench/exports.py [--entries 10000] [--rounds 5]

1. Fill: a SQLite store (bench/data/exports/, git-ignored, kept for later runs) with
   ``--entries`` entries, each a real metadata document with SHA-256 and SHA-512, stored
   through ``Store.add`` (unsigned: the exports read the index, never the documents; the
   fill turns fsync off on its own connection, as bench/server.py does).
2. Serve: the marketplace app on a real threaded HTTP server on 127.0.0.1, configured with a
   list "all" (every entry) and a fresh S/MIME certificate and key.
3. Measure with one ``requests`` client: ``/api/v1/ping`` (same app, no store: the ceiling),
   then per round, after one more entry is added (so nothing rendered is reused), the first
   request of the 10,000-image signed list, of the simplestreams products and of the index
   (each rendered from the index), then repeats of the list with ``If-None-Match`` (304).
Figures are medians; the ratios against ping are what to compare between machines.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from machine import DATA, cpu_model
from werkzeug.serving import make_server

from marketplace.metadata import document, model
from marketplace.store.base import Entry
from marketplace.store.sqlite import SQLiteStore
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of

SYSTEMS = (("ubuntu", "24.04"), ("debian", "12"), ("centos", "stream9"), ("alpine", "3.20"))


def appliance(number: int, now: datetime) -> model.Appliance:
    image = number.to_bytes(8, "big")
    os_name, version = SYSTEMS[number % len(SYSTEMS)]
    email = f"endorser{number % 20}@example.org"
    created = now - timedelta(seconds=number)
    from marketplace.metadata.identifier import sha1_to_identifier

    return model.Appliance(
        identifier=sha1_to_identifier(hashlib.sha1(image).hexdigest()), bytes=1 << 30,
        checksums={"SHA-256": hashlib.sha256(image).hexdigest(),
                   "SHA-512": hashlib.sha512(image).hexdigest()},
        endorsement=model.Endorsement(created, email, f"CN=Endorser {number % 20},O=Bench"),
        os=os_name, os_version=version, os_arch="x86_64", format="qcow2", hypervisor="kvm",
        title=f"{os_name} {version} image {number}", tag=f"{os_name}-{number % 7}",
        description="An image of the benchmark", created=created,
        valid=now + timedelta(days=365), locations=[f"https://images.example.org/{number}"])


def add(store: SQLiteStore, number: int, now: datetime) -> None:
    a = appliance(number, now)
    store.add(Entry(document.serialize(model.to_document(a)), a))


def fill(directory: Path, entries: int) -> None:
    done = directory / "COMPLETE"
    if done.exists() and done.read_text() == str(entries):
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "marketplace.db").unlink(missing_ok=True)
    store = SQLiteStore(directory / "marketplace.db")
    store._db().execute("PRAGMA synchronous=OFF")  # a cache: see the module docstring
    now = datetime.now(UTC).replace(microsecond=0)
    for number in range(entries):
        add(store, number, now)
    store.close()
    done.write_text(str(entries))


def signing_files(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Lists")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    key_path, certificate_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate_path, key_path


def timed(session: requests.Session, url: str, headers: dict | None = None,
          status: int = 200) -> float:
    start = time.perf_counter()
    response = session.get(url, headers=headers or {})
    elapsed = time.perf_counter() - start
    assert response.status_code == status, (url, response.status_code, response.text[:300])
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    data = DATA / "exports"
    started = time.perf_counter()
    fill(data, options.entries)
    print(f"fill: {options.entries} entries ready in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as scratch:
        certificate, key = signing_files(Path(scratch))
        lists = Path(scratch) / "lists.ini"
        lists.write_text("[all]\ntitle = Every image\n")
        app = create_app(data_dir=str(data), IMAGELISTS=str(lists),
                         IMAGELIST_CERTIFICATE=str(certificate), IMAGELIST_KEY=str(key))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            figures = measure(app, base, options)
        finally:
            server.shutdown()
            marketplace_of(app).store.close()
    report(figures, options)
    return 0


def measure(app, base: str, options) -> dict[str, list[float]]:
    store = marketplace_of(app).store
    session = requests.Session()
    figures: dict[str, list[float]] = {"ping": [], "imagelist": [], "products": [],
                                       "index": [], "304": []}
    for _ in range(50):
        timed(session, base + "/api/v1/ping")
    figures["ping"] = [timed(session, base + "/api/v1/ping") for _ in range(200)]
    now = datetime.now(UTC).replace(microsecond=0)
    for round_number in range(options.rounds):
        add(store, options.entries + round_number, now)  # a change: nothing is reused
        figures["imagelist"].append(timed(session, base + "/imagelists/all"))
        figures["products"].append(timed(session, base + "/streams/v1/images.json"))
        figures["index"].append(timed(session, base + "/streams/v1/index.json"))
        tag = session.get(base + "/imagelists/all").headers["ETag"]
        figures["304"] += [timed(session, base + "/imagelists/all", {"If-None-Match": tag}, 304)
                           for _ in range(40)]
    size = len(session.get(base + "/imagelists/all").content)
    print(f"the signed list is {size / 1e6:.1f} MB")
    return figures


def report(figures: dict[str, list[float]], options) -> None:
    ping = statistics.median(figures["ping"])
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'request':<46} {'median':>10} {'x ping':>8}")
    for name, label in (("ping", "/api/v1/ping"),
                        ("imagelist", f"signed image list, {options.entries} images (render)"),
                        ("products", "simplestreams products (render)"),
                        ("index", "simplestreams index (render)"),
                        ("304", "image list, If-None-Match (304)")):
        median = statistics.median(figures[name])
        print(f"{label:<46} {median * 1000:>8.2f} ms {median / ping:>7.1f}x")


if __name__ == "__main__":
    sys.exit(main())
