"""Fixtures of the fetcher tests: real HTTP origins on 127.0.0.1 (with injected faults), the
real marketplace server (the live tests' gunicorn fixture) with real signed entries, a
lying marketplace, and fetcher configs in temporary directories.

Every server is started on a free port by the test session and stopped after it; nothing
depends on the internet or on how fast the machine is (waits are bounded, never measured).
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import re
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from client.node import config as fetcher_config
from tests import factories, pki
from tests.live.conftest import LiveServer, clean_environ, script, wait_for  # noqa: F401

RANGE = re.compile(r"bytes=(\d+)-(\d*)")


# --- the origin: a file server with Range, ETag and faults ---------------------------------


@dataclass
class Fault:
    """What the origin does wrong for one file, for its first ``times`` requests (0: always).

    kind: ``drop`` (close after ``after`` bytes of the body), ``status`` (answer ``status``),
    ``wrong`` (flip a byte at ``after``), ``short`` (serve only ``after`` bytes, announced so),
    ``long`` (append ``extra`` bytes), ``slow`` (wait ``delay`` s before the body),
    ``trickle`` (``delay`` s between chunks of ``chunk`` bytes), ``no-range`` (ignore Range),
    ``redirect`` (answer 302 to ``to``).
    """

    kind: str
    times: int = 0
    after: int = 0
    status: int = 500
    extra: int = 100
    delay: float = 0.0
    chunk: int = 64 * 1024
    to: str = ""
    used: int = 0

    def active(self) -> bool:
        return self.times == 0 or self.used < self.times


@dataclass
class Served:
    data: bytes
    faults: list[Fault] = field(default_factory=list)


class QuietServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server that does not print the resets our faults cause."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class Origin:
    """A threaded HTTP server on 127.0.0.1 serving in-memory files; counts what it serves."""

    def __init__(self, host: str = "127.0.0.1"):
        self.files: dict[str, Served] = {}
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.complete: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.ranges: list[tuple[str, int]] = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                origin.handle(self)

        self.server = QuietServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, name: str, data: bytes, *faults: Fault) -> str:
        with self.lock:
            self.files[name] = Served(data, list(faults))
        return f"{self.base}/{name}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        name = handler.path.lstrip("/").split("?", 1)[0]
        with self.lock:
            self.requests[name] += 1
            served = self.files.get(name)
            faults = [f for f in served.faults if f.active()] if served else []
            for fault in faults:
                fault.used += 1
        if served is None:
            return self._answer(handler, 404, b"not found")
        kinds = {f.kind: f for f in faults}
        if "redirect" in kinds:
            handler.send_response(302)
            handler.send_header("Location", kinds["redirect"].to)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        if "status" in kinds:
            return self._answer(handler, kinds["status"].status, b"injected failure")
        data = self._body(served.data, kinds)
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start, status = self._range(handler, data, etag, "no-range" in kinds)
        if status == 416:
            return self._answer(handler, 416, b"")
        body = memoryview(data)[start:]
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("ETag", etag)
        handler.send_header("Accept-Ranges", "bytes")
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.ranges.append((name, start))
        handler.end_headers()
        self._send(handler, name, body, start, kinds)

    @staticmethod
    def _body(data: bytes, kinds: dict[str, Fault]) -> bytes:
        if "wrong" in kinds:
            at = kinds["wrong"].after
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        if "short" in kinds:
            data = data[:kinds["short"].after]
        if "long" in kinds:
            data = data + b"\0" * kinds["long"].extra
        return data

    @staticmethod
    def _range(handler, data: bytes, etag: str, ignore: bool) -> tuple[int, int]:
        header = handler.headers.get("Range")
        if not header or ignore:
            return 0, 200
        if_range = handler.headers.get("If-Range")
        if if_range and if_range != etag:
            return 0, 200
        match = RANGE.fullmatch(header.strip())
        if not match:
            return 0, 200
        start = int(match.group(1))
        if start >= len(data):
            return 0, 416
        return start, 206

    def _send(self, handler, name: str, body: memoryview, start: int,
              kinds: dict[str, Fault]) -> None:
        if "slow" in kinds:
            time.sleep(kinds["slow"].delay)
        limit = kinds["drop"].after - start if "drop" in kinds else None
        chunk = kinds["trickle"].chunk if "trickle" in kinds else 256 * 1024
        sent = 0
        try:
            while sent < len(body):
                if limit is not None and sent >= max(limit, 0):
                    handler.close_connection = True
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    return
                end = min(len(body), sent + chunk, len(body) if limit is None else limit)
                handler.wfile.write(body[sent:end])
                with self.lock:
                    self.bytes[name] += end - sent
                sent = end
                if "trickle" in kinds:
                    time.sleep(kinds["trickle"].delay)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        with self.lock:
            self.complete[name] += 1

    @staticmethod
    def _answer(handler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


# --- the origin over HTTPS ------------------------------------------------------------------


def _server_certificate(ca: pki.Issued, directory: Path) -> tuple[Path, Path]:
    key = pki.make_key(pki.EC)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca.key, hashes.SHA256()))
    key_path, cert_path = directory / "server-key.pem", directory / "server-cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture
def https_origin(origin, ca, tmp_path):
    """The origin's files over HTTPS, with a certificate from the test CA."""
    key_path, cert_path = _server_certificate(ca, tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = QuietServer(("127.0.0.1", 0), origin.server.RequestHandlerClass)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ca_file = tmp_path / "test-ca.pem"
    ca_file.write_bytes(ca.certificate_pem())
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()


# --- the real marketplace --------------------------------------------------------------


@dataclass
class Market:
    """The running marketplace and a way to publish signed entries on it."""

    server: LiveServer

    @property
    def url(self) -> str:
        return self.server.url

    def upload(self, document: bytes) -> None:
        response = requests.post(self.url + "metadata", data=document, timeout=30,
                                 headers={"Content-Type": "application/rdf+xml",
                                          "Accept": "application/json"})
        assert response.status_code in (200, 201), response.text

    def publish(self, signer, image: bytes, locations: list[str], now: datetime | None = None,
                **fields) -> str:
        """Sign an entry of ``image`` served at ``locations`` and upload it; its identifier."""
        entry = factories.appliance(image, locations=locations, **fields)
        self.upload(factories.signed(signer, entry, now=now))
        return entry.identifier


@pytest.fixture(scope="session")
def marketplace(tmp_path_factory) -> Iterator[Market]:
    """One real marketplace (gunicorn, SQLite) for the whole fetcher test session."""
    root = tmp_path_factory.mktemp("node-marketplace")
    server = LiveServer(root / "data", root)
    server.start()
    yield Market(server)
    server.stop()


def image_bytes(size: int, seed: int = 0) -> bytes:
    """Reproducible, incompressible-enough test image content."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def entry_time(seconds_ago: int) -> datetime:
    return datetime.fromtimestamp(int(time.time()) - seconds_ago, UTC)


# --- fetcher configs --------------------------------------------------------------------


@pytest.fixture
def write_config(tmp_path) -> Callable[..., Path]:
    """Write a fetcher.cfg: ``write_config(fetcher={...}, endorsers={...}, ...)``."""

    def write(name: str = "fetcher.cfg", directory: Path | None = None, **sections) -> Path:
        path = (directory or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                if isinstance(value, list | tuple):
                    value = "\n    " + "\n    ".join(map(str, value))
                lines.append(f"{key} = {value}")
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture
def node_settings(tmp_path, marketplace) -> dict[str, str]:
    """Fast, test-sized [fetcher] settings with a fresh cache (no real waits)."""
    return {"cache_dir": str(tmp_path / "cache"), "marketplace_endpoint": marketplace.url,
            "connect_timeout": "5", "read_timeout": "5", "retries": "3", "backoff": "0.01",
            "backoff_max": "0.05", "lock_stale_after": "2", "lock_wait": "120",
            "local_lock_dir": str(tmp_path / "local-locks"),
            "allow_private_addresses": "127.0.0.1/32"}  # the origin serves on loopback


@pytest.fixture
def make_config(write_config, node_settings) -> Callable[..., fetcher_config.FetcherConfig]:
    """A loaded FetcherConfig: ``make_config(fetcher_overrides..., endorsers={...})``."""

    def make(sections: dict | None = None, **settings) -> fetcher_config.FetcherConfig:
        path = write_config(fetcher={**node_settings, **settings}, **(sections or {}))
        return fetcher_config.load(path, environ={})

    return make


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a fetcher command run as a subprocess (no inherited settings)."""
    return clean_environ(**extra)


def run_command(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
                **kwargs):
    import subprocess

    return subprocess.run([script(name), *map(str, args)], capture_output=True, text=True,
                          env=env or command_env(), timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)


def debris(cache: Path) -> list[str]:
    """Files in a cache that are not verified images or bookkeeping of a finished state."""
    found = []
    for directory in ("partial", "trash"):
        found += [str(p) for p in (cache / directory).glob("*")]
    found += [str(p) for p in (cache / "locks").glob("*")]
    found += [str(p) for p in (cache / "records").glob(".*")]
    found += [str(p) for p in (cache / "images").glob(".*")]
    return found


# --- a lying marketplace --------------------------------------------------------------------


class LyingMarketplace:
    """Answers every /metadata/... request with the listing it was given."""

    def __init__(self):
        self.body = b'<?xml version="1.0"?>\n<metadata total="0"/>\n'
        liar = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(liar.body)))
                self.end_headers()
                self.wfile.write(liar.body)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def serve(self, *documents: bytes) -> None:
        """Serve these signed documents as a listing (their XML declarations dropped)."""
        roots = [d.split(b"?>", 1)[1].strip() if d.startswith(b"<?xml") else d
                 for d in documents]
        self.body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="{len(roots)}" '
                     'offset="0" limit="100">\n').encode() + b"\n".join(roots) + b"\n</metadata>\n"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def liar() -> Iterator[LyingMarketplace]:
    server = LyingMarketplace()
    yield server
    server.stop()
