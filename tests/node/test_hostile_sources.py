"""Hostile servers: a marketplace answering without end, locations that trickle bytes, and
signed locations that point the node at its own files and internal addresses.

Every attack is made by a real server on 127.0.0.1 (and 127.0.0.2, which Linux routes to
loopback too, as "the internal network"). The node under attack is the real download and
resolve code, with the real settings objects.
"""

from __future__ import annotations

import copy
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from client.node import download, resolve
from client.node.download import DownloadError, Sink, TransferSettings
from client.node.errors import DownloadFailed, FetchError
from client.node.fetcher import Fetcher
from client.node.resolve import MAX_LISTING_BYTES
from client.node.session import location_session, make_session
from client.node.target import Target
from tests.node.conftest import Fault, Origin, QuietServer, image_bytes
from tests.node.test_download import FAST, IMAGE, expected, failed, fetch

IDENTIFIER = "A" * 27
LOOPBACK_ORIGIN = ["127.0.0.1/32"]


def node(**rules) -> TransferSettings:
    """The fast test settings, with the node's default rules except those given."""
    settings = copy.copy(FAST)
    defaults = TransferSettings()
    rules = {"location_schemes": defaults.location_schemes,
             "allow_private_addresses": defaults.allow_private_addresses, **rules}
    for key, value in rules.items():
        setattr(settings, key, value)
    return settings


# --- finding 8: the marketplace's answer is streamed and capped ---------------------------


class FloodingMarketplace:
    """Answers every request with ``size`` bytes of XML-looking text (None: without end),
    close-delimited unless ``declare`` puts a Content-Length on it."""

    def __init__(self):
        self.size: int | None = None
        self.declare: int | None = None
        self.sent = 0
        flood = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                if flood.declare is not None:
                    self.send_header("Content-Length", str(flood.declare))
                self.end_headers()
                flood.pour(self.wfile)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pour(self, out) -> None:
        out.write(b'<?xml version="1.0"?>\n<metadata total="1">')
        chunk = b"<!-- " + b"x" * (1 << 20) + b" -->"
        try:
            while self.size is None or self.sent < self.size:
                out.write(chunk)
                self.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flood() -> Iterator[FloodingMarketplace]:
    server = FloodingMarketplace()
    yield server
    server.stop()


RESOLVE_IN_A_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))  # never take the machine down
from client.node import download
from client.node.session import make_session
from client.node.errors import FetchError
from client.node.resolve import fetch_documents
from client.node.target import Target
session = make_session(download.TransferSettings())
try:
    found = fetch_documents(Target(sys.argv[2], sys.argv[1]), session, (5.0, 30.0))
    outcome = f"{len(found)} documents"
except FetchError as exc:
    outcome = str(exc)
except MemoryError:
    outcome = "MemoryError"
print(json.dumps({"outcome": outcome,
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def resolve_in_a_child(url: str) -> dict:
    """Ask the marketplace at ``url`` in a fresh process: its outcome and peak memory."""
    done = subprocess.run([sys.executable, "-c", RESOLVE_IN_A_CHILD, url, IDENTIFIER],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def resting_peak(liar_module) -> int:
    """The peak memory of the same child reading a small honest answer."""
    return resolve_in_a_child(liar_module)["peak"]


@pytest.fixture(scope="module")
def liar_module() -> Iterator[str]:
    from tests.node.conftest import LyingMarketplace

    server = LyingMarketplace()
    yield server.url
    server.stop()


@pytest.mark.parametrize("size", [300 << 20, None], ids=["300MB", "endless"])
def test_a_flooding_marketplace_is_cut_off_at_the_cap_with_little_memory(flood, resting_peak,
                                                                         size):
    flood.size = size
    result = resolve_in_a_child(flood.url)
    assert str(MAX_LISTING_BYTES) in result["outcome"], result
    assert flood.url in result["outcome"], "the error names the URL"
    grown = result["peak"] - resting_peak
    assert grown < 2 * MAX_LISTING_BYTES + (32 << 20), \
        f"the node grew by {grown >> 20} MiB reading the answer"
    assert flood.sent < 4 * MAX_LISTING_BYTES, "the node kept reading past the cap"


def test_an_answer_declaring_a_huge_length_is_refused_before_reading(flood, resting_peak):
    flood.declare = 300 << 20
    flood.size = 300 << 20
    result = resolve_in_a_child(flood.url)
    assert str(MAX_LISTING_BYTES) in result["outcome"] and flood.url in result["outcome"]
    assert result["peak"] - resting_peak < 32 << 20


def test_a_marketplace_trickling_its_answer_is_given_up_on(liar, monkeypatch):
    trickler = Origin()
    trickler.add(f"metadata/{IDENTIFIER}", liar.body * 100, Fault("trickle", chunk=1, delay=0.05))
    monkeypatch.setattr(resolve, "ANSWER_SECONDS", 1.0)
    session = make_session(download.TransferSettings())
    began = time.monotonic()
    try:
        with pytest.raises(FetchError, match="took longer than 1 s"):
            resolve.fetch_documents(Target(IDENTIFIER, trickler.base), session, (5.0, 5.0))
    finally:
        trickler.stop()
    assert time.monotonic() - began < 30


# --- finding 10: a slow location is given up on, the next one is tried ---------------------


def fetch_within(locations, tmp_path, settings: TransferSettings, limit: float = 60.0):
    """Run a download in a thread; fail the test if it is still running after ``limit``."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fetch(locations, tmp_path, settings=settings)
        except DownloadError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    began = time.monotonic()
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the download was still running after {limit:.0f} s"
    return outcome, time.monotonic() - began


def test_a_location_trickling_bytes_is_left_for_the_next(origin, tmp_path):
    slow = origin.add("slow.img", IMAGE, Fault("trickle", chunk=1, delay=0.05))
    good = origin.add("good.img", IMAGE)
    settings = node(allow_private_addresses=LOOPBACK_ORIGIN, min_rate=10_000, rate_window=1.0,
                    read_timeout=5)
    outcome, _ = fetch_within([slow, good], tmp_path, settings)
    result, data = outcome["result"]
    assert data == IMAGE and result.location == good


def test_every_location_trickling_fails_naming_the_rate(origin, tmp_path):
    slow = origin.add("slow.img", IMAGE, Fault("trickle", chunk=1, delay=0.05))
    settings = node(allow_private_addresses=LOOPBACK_ORIGIN, min_rate=10_000, rate_window=1.0,
                    read_timeout=5)
    outcome, _ = fetch_within([slow], tmp_path, settings)
    error = outcome["error"]
    assert "slower than 10000 bytes/s" in str(error) and "min_rate" in str(error)
    assert (tmp_path / "image.part").stat().st_size == 0


def test_a_location_past_its_deadline_is_given_up_on(origin, tmp_path):
    steady = origin.add("steady.img", IMAGE, Fault("trickle", chunk=32 * 1024, delay=0.1))
    settings = node(allow_private_addresses=LOOPBACK_ORIGIN, min_rate=1000, rate_window=1.0,
                    location_timeout=1.0)
    outcome, _ = fetch_within([steady], tmp_path, settings)
    assert "did not finish within 1 s (location_timeout)" in str(outcome["error"])


def test_a_pull_leaves_a_trickling_location_for_the_next(make_config, marketplace, origin,
                                                        rsa_signer):
    image = image_bytes(300_000, seed=int(time.time()) % 10**6 + 77)
    slow = origin.add("slow-pull.img", image, Fault("trickle", chunk=1, delay=0.05))
    good = origin.add("good-pull.img", image)
    identifier = marketplace.publish(rsa_signer, image, [slow, good])
    fetcher = Fetcher(make_config(min_rate="10K", rate_window="1"))
    outcome = fetcher.pull(identifier)
    assert outcome.record["location"] == good and outcome.path.read_bytes() == image


# --- finding 12: signed locations cannot probe the node's files and internal network ---------


@pytest.fixture
def internal() -> Iterator[Origin]:
    """A server on the 'internal network' (127.0.0.2) that counts every request it gets."""
    server = Origin("127.0.0.2")
    server.add("admin/api/audit", b'{"secret": "internal"}')
    yield server
    server.stop()


def test_file_locations_are_refused_unless_the_node_allows_them(tmp_path):
    secret = tmp_path / "shadow"
    # a size no timestamp or port of the event can contain by chance
    secret.write_bytes(b"root:$6$secret:19000:0:99999:7:::\n".ljust(987_641, b"#"))
    error = failed([secret.as_uri()], tmp_path, settings=node())
    reason = error.attempts[0]["error"]
    assert "location scheme 'file' is not allowed" in reason and "location_schemes" in reason
    assert str(secret.stat().st_size) not in str(error)


def test_file_location_errors_do_not_tell_what_is_on_the_node(tmp_path):
    secret = tmp_path / "shadow"
    # a size no timestamp or port of the event can contain by chance
    secret.write_bytes(b"root:$6$secret:19000:0:99999:7:::\n".ljust(987_641, b"#"))
    allowed = node(location_schemes=["http", "https", "file"])
    present = failed([secret.as_uri()], tmp_path, settings=allowed)
    absent = failed([(tmp_path / "nothing").as_uri()], tmp_path, settings=allowed)
    same_size = failed([secret.as_uri()], tmp_path, expected(b"x" * secret.stat().st_size),
                       settings=allowed)
    reasons = {present.attempts[0]["error"], absent.attempts[0]["error"],
               same_size.attempts[0]["error"]}
    assert len(reasons) == 1, reasons
    assert str(secret.stat().st_size) not in str(present)


def test_a_location_on_a_loopback_address_is_refused_by_default(origin, tmp_path):
    url = origin.add("a.img", IMAGE)
    error = failed([url], tmp_path, settings=node())
    assert "127.0.0.1" in str(error) and "allow_private_addresses" in str(error)
    assert origin.requests["a.img"] == 0


def test_the_address_connected_to_is_checked_not_the_name(origin, tmp_path):
    url = origin.add("a.img", IMAGE).replace("127.0.0.1", "localhost")
    error = failed([url], tmp_path, settings=node())
    assert "allow_private_addresses" in str(error) and origin.requests["a.img"] == 0


def test_a_redirect_to_an_internal_address_is_not_followed(origin, internal, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("redirect", to=f"{internal.base}/admin/api/audit"))
    error = failed([url], tmp_path, settings=node(allow_private_addresses=LOOPBACK_ORIGIN))
    assert "127.0.0.2" in str(error)
    assert sum(internal.requests.values()) == 0, "the internal server was reached"


def test_a_redirect_to_a_file_is_not_followed(origin, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret\n")
    url = origin.add("a.img", IMAGE, Fault("redirect", to=secret.as_uri()))
    error = failed([url], tmp_path, settings=node(
        allow_private_addresses=LOOPBACK_ORIGIN, location_schemes=["http", "https", "file"]))
    assert "redirect" in str(error) and "file" in str(error)


def test_redirects_within_allowed_addresses_are_followed(origin, tmp_path):
    good = origin.add("good.img", IMAGE)
    url = origin.add("moved.img", b"", Fault("redirect", to=good))
    result, data = fetch([url], tmp_path, settings=node(allow_private_addresses=["yes"]))
    assert data == IMAGE and result.location == url


@pytest.mark.parametrize("schemes", ["http https", "http https file"])
def test_the_failure_event_of_a_file_location_does_not_carry_its_size(
        make_config, marketplace, rsa_signer, tmp_path, schemes):
    secret = tmp_path / "shadow"
    # a size no timestamp or port of the event can contain by chance
    secret.write_bytes(b"root:$6$secret:19000:0:99999:7:::\n".ljust(987_641, b"#"))
    image = image_bytes(4096, seed=int(time.time()) * 10 + len(schemes))
    identifier = marketplace.publish(rsa_signer, image, [secret.as_uri()])
    fetcher = Fetcher(make_config(location_schemes=schemes))
    with pytest.raises(DownloadFailed):
        fetcher.pull(identifier)
    event = fetcher.events.sent[-1]
    assert event["event"] == "failed"
    assert str(secret.stat().st_size) not in json.dumps(event)


def test_the_sink_is_left_empty_after_a_refused_location(origin, tmp_path):
    url = origin.add("a.img", IMAGE)
    sink = Sink(tmp_path / "image.part")
    with pytest.raises(DownloadError):
        download.fetch([url], expected(), sink, node())
    sink.close()
    assert (tmp_path / "image.part").stat().st_size == 0


def test_a_redirect_from_https_down_to_http_is_not_followed(origin, https_origin, tmp_path):
    base, ca_file = https_origin
    plain = origin.add("plain.img", IMAGE)
    origin.add("a.img", IMAGE, Fault("redirect", to=plain))
    error = failed([f"{base}/a.img"], tmp_path, settings=node(
        allow_private_addresses=LOOPBACK_ORIGIN, ca_bundle=[ca_file]))
    assert "from https down to http" in str(error)
    assert origin.requests["plain.img"] == 0


def test_through_a_proxy_the_name_of_the_location_is_checked(origin, internal, tmp_path):
    session = location_session(node())
    session.proxies = {"http": origin.base}  # the origin stands in for the operator's proxy
    error = failed([f"{internal.base}/admin/api/audit"], tmp_path, settings=node(),
                   session=session)
    assert "127.0.0.2" in str(error) and "allow_private_addresses" in str(error)
    assert sum(origin.requests.values()) == 0 and sum(internal.requests.values()) == 0
