"""Downloads against real HTTP(S) servers on 127.0.0.1 that misbehave on purpose.

Each fault is produced by the origin server itself (a real socket closed mid-body, a real
404, a real read timeout...). After every failure the sink is empty, and the error names
the location and what went wrong.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import shutil
import subprocess
import time

import pytest
import zstandard

from client.node import download
from client.node.download import DownloadError, Expected, Sink, TransferSettings
from tests.node.conftest import Fault, image_bytes

SIZE = 1024 * 1024 + 12345
IMAGE = image_bytes(SIZE, seed=7)
SHA256 = hashlib.sha256(IMAGE).hexdigest()
# The origin serves on loopback: the node must be told it may fetch from there.
LOOPBACK = ["127.0.0.1/32"]
FAST = TransferSettings(connect_timeout=5, read_timeout=5, retries=3, backoff=0.01,
                        backoff_max=0.05, location_schemes=["http", "https", "file"],
                        allow_private_addresses=LOOPBACK)


def expected(data: bytes = IMAGE, compression: str | None = None, **checksums) -> Expected:
    values = checksums or {"SHA-256": hashlib.sha256(data).hexdigest()}
    return Expected(len(data), values, compression)


def fetch(locations, tmp_path, want: Expected | None = None,
          settings: TransferSettings = FAST, **kw):
    sink = Sink(tmp_path / "image.part")
    try:
        result = download.fetch(locations, want or expected(), sink, settings, **kw)
        sink.finish()
    except BaseException:
        sink.close()
        raise
    return result, (tmp_path / "image.part").read_bytes()


def failed(locations, tmp_path, want: Expected | None = None,
           settings: TransferSettings = FAST, **kw) -> DownloadError:
    with pytest.raises(DownloadError) as raised:
        fetch(locations, tmp_path, want, settings, **kw)
    assert (tmp_path / "image.part").stat().st_size == 0, "unverified bytes were left"
    return raised.value


def test_a_plain_download_is_verified(origin, tmp_path):
    result, data = fetch([origin.add("a.img", IMAGE)], tmp_path)
    assert data == IMAGE
    assert result.digests.checksums == {"SHA-256": SHA256} and result.digests.size == SIZE
    assert origin.complete["a.img"] == 1 and result.reconnects == 0


def test_a_dropped_connection_is_resumed_with_range(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("drop", times=2, after=300_000))
    result, data = fetch([url], tmp_path)
    assert data == IMAGE
    assert result.reconnects == 2
    assert ("a.img", 300_000) in origin.ranges, "the second request did not ask for the rest"
    assert origin.bytes["a.img"] == SIZE, "bytes already received were fetched again"


def test_a_server_ignoring_range_is_skipped_forward(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("drop", times=1, after=200_000), Fault("no-range"))
    result, data = fetch([url], tmp_path)
    assert data == IMAGE and result.reconnects == 1


def test_a_connection_that_keeps_dropping_gives_up_naming_the_cause(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("drop", after=0))
    error = failed([url], tmp_path)
    assert "gave up after" in str(error) and "connection" in str(error)
    assert error.attempts[0]["location"] == url


def test_wrong_bytes_are_refused_and_the_next_location_used(origin, tmp_path):
    bad = origin.add("bad.img", IMAGE, Fault("wrong", after=SIZE // 2))
    good = origin.add("good.img", IMAGE)
    result, data = fetch([bad, good], tmp_path)
    assert data == IMAGE and result.location == good


def test_wrong_bytes_everywhere_fail_with_the_checksums_named(origin, tmp_path):
    bad = origin.add("bad.img", IMAGE, Fault("wrong", after=10))
    error = failed([bad], tmp_path)
    assert f"SHA-256 mismatch: the entry says {SHA256}" in str(error)


def test_a_short_file_is_refused_before_downloading(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("short", after=SIZE - 1000))
    error = failed([url], tmp_path)
    assert f"the server offers {SIZE - 1000} bytes; the entry declares {SIZE}" in str(error)


def test_a_long_file_is_refused(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("long", extra=10))
    error = failed([url], tmp_path)
    assert f"the entry declares {SIZE}" in str(error)


def test_a_compressed_stream_longer_than_declared_stops_at_the_limit(origin, tmp_path):
    url = origin.add("a.img.gz", gzip.compress(IMAGE + b"tail", compresslevel=1))
    error = failed([url], tmp_path)
    assert f"delivers more than the {SIZE} bytes the entry declares" in str(error)


def test_a_compressed_stream_shorter_than_declared_is_refused(origin, tmp_path):
    url = origin.add("a.img.gz", gzip.compress(IMAGE[:-5], compresslevel=1))
    error = failed([url], tmp_path)
    assert f"ended after {SIZE - 5} bytes; the entry declares {SIZE}" in str(error)


def test_a_truncated_compressed_file_is_damaged_not_short(origin, tmp_path):
    url = origin.add("a.img.xz", lzma.compress(IMAGE)[:-100])
    error = failed([url], tmp_path)
    assert "the xz stream is damaged" in str(error)


def test_a_slow_server_times_out_and_is_retried(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("slow", times=1, delay=2.0))
    settings = TransferSettings(connect_timeout=5, read_timeout=0.5, retries=3, backoff=0.01,
                                allow_private_addresses=LOOPBACK)
    result, data = fetch([url], tmp_path, settings=settings)
    assert data == IMAGE and result.reconnects == 1


def test_a_server_too_slow_every_time_is_given_up_on(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("slow", delay=1.5))
    settings = TransferSettings(connect_timeout=5, read_timeout=0.3, retries=1, backoff=0.01,
                                allow_private_addresses=LOOPBACK)
    error = failed([url], tmp_path, settings=settings)
    assert "read timeout" in str(error)


def test_404_on_the_first_location_falls_back_to_the_second(origin, tmp_path):
    good = origin.add("good.img", IMAGE)
    result, data = fetch([f"{origin.base}/missing.img", good], tmp_path)
    assert data == IMAGE and result.location == good
    assert origin.requests["missing.img"] == 1, "a 404 must not be retried"


def test_500_is_retried_then_falls_back(origin, tmp_path):
    broken = origin.add("broken.img", IMAGE, Fault("status", status=500))
    good = origin.add("good.img", IMAGE)
    result, data = fetch([broken, good], tmp_path)
    assert data == IMAGE and result.location == good
    assert origin.requests["broken.img"] == FAST.retries + 1


def test_a_passing_503_is_retried_on_the_same_location(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("status", times=2, status=503))
    _result, data = fetch([url], tmp_path)
    assert data == IMAGE and origin.requests["a.img"] == 3


def test_every_location_failing_lists_each_reason(origin, tmp_path):
    broken = origin.add("broken.img", IMAGE, Fault("status", status=502))
    error = failed([f"{origin.base}/missing.img", broken, "ftp://example.org/a.img",
                    "http://127.0.0.1:9/closed.img"], tmp_path)
    reasons = [a["error"] for a in error.attempts]
    assert "HTTP 404" in reasons[0]
    assert "HTTP 502" in reasons[1] and "gave up after" in reasons[1]
    assert "unsupported location scheme 'ftp'" in reasons[2]
    assert "cannot connect" in reasons[3]


def test_a_dead_first_location_costs_no_backoff_with_the_default_retries(origin, tmp_path):
    """With 5 retries doubling from 1 s, a mirror that refuses connections cost 31 s on every
    pull before the next location was tried."""
    good = origin.add("good.img", IMAGE)
    defaults = TransferSettings(allow_private_addresses=LOOPBACK)
    began = time.monotonic()
    result, data = fetch(["http://127.0.0.1:9/dead.img", good], tmp_path, settings=defaults)
    assert data == IMAGE and result.location == good
    assert time.monotonic() - began < 5


def test_a_location_that_answered_once_is_still_retried(origin, tmp_path):
    url = origin.add("a.img", IMAGE, Fault("status", times=1, status=503))
    _result, data = fetch([url], tmp_path)
    assert data == IMAGE and origin.requests["a.img"] == 2


def test_an_unreachable_location_is_named_in_plain_words(tmp_path):
    error = failed(["http://127.0.0.1:9/closed.img"], tmp_path)
    assert error.attempts[0]["error"] == "cannot connect: connection refused"


def test_file_locations_are_read_and_checked(tmp_path):
    source = tmp_path / "source.img"
    source.write_bytes(IMAGE)
    result, data = fetch([source.as_uri()], tmp_path)
    assert data == IMAGE and result.location == source.as_uri()
    error = failed([(tmp_path / "missing.img").as_uri()], tmp_path)
    assert str(error).endswith(download.FILE_FAILED), "a file location's reason stays untold"


@pytest.mark.parametrize("suffix,tool", [("gz", "gzip"), ("bz2", "bzip2"), ("xz", "xz"),
                                         ("zst", "zstd")])
def test_images_compressed_by_the_real_tools(origin, tmp_path, suffix, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    plain = tmp_path / "image.raw"
    plain.write_bytes(IMAGE)
    subprocess.run([tool, "-k", "-q", str(plain)], check=True)
    packed = plain.with_name(f"image.raw.{suffix}").read_bytes()
    url = origin.add(f"image.{suffix}", packed)
    result, data = fetch([url], tmp_path)
    assert data == IMAGE and result.compression == suffix
    # the same bytes under a name without suffix: the entry's dcterms:compression decides
    bare = origin.add(f"image-{suffix}", packed)
    result, data = fetch([bare], tmp_path, expected(compression=suffix))
    assert data == IMAGE and result.compression == suffix


def test_a_dropped_compressed_download_resumes_mid_stream(origin, tmp_path):
    packed = zstandard.ZstdCompressor(level=1).compress(IMAGE)
    url = origin.add("a.img.zst", packed, Fault("drop", times=1, after=len(packed) // 2))
    result, data = fetch([url], tmp_path)
    assert data == IMAGE and result.reconnects == 1
    assert ("a.img.zst", len(packed) // 2) in origin.ranges


def test_concatenated_bz2_streams(origin, tmp_path):
    half = len(IMAGE) // 2
    url = origin.add("a.img.bz2", bz2.compress(IMAGE[:half]) + bz2.compress(IMAGE[half:]))
    assert fetch([url], tmp_path)[1] == IMAGE


def test_verify_all_checks_every_checksum(origin, tmp_path):
    want = expected(**{"SHA-256": SHA256, "SHA-1": hashlib.sha1(IMAGE).hexdigest(),
                       "MD5": "0" * 32})
    error = failed([origin.add("a.img", IMAGE)], tmp_path, want)
    assert "MD5 mismatch" in str(error)


def test_resuming_a_partial_file_rehashes_it_first(origin, tmp_path):
    url = origin.add("a.img", IMAGE)
    part = tmp_path / "image.part"
    part.write_bytes(IMAGE[:400_000])
    sink = Sink(part, keep=True)
    result = download.fetch([url], expected(), sink, FAST,
                            resume={"location": url, "validator": None})
    sink.finish()
    assert part.read_bytes() == IMAGE and result.resumed_from == 400_000
    assert origin.bytes["a.img"] == SIZE - 400_000


def test_a_corrupt_partial_file_is_detected_and_the_download_restarted(origin, tmp_path):
    url = origin.add("a.img", IMAGE)
    part = tmp_path / "image.part"
    part.write_bytes(b"\0" * 400_000)  # not the image's first bytes
    sink = Sink(part, keep=True)
    result = download.fetch([url], expected(), sink, FAST,
                            resume={"location": url, "validator": None})
    sink.finish()
    assert part.read_bytes() == IMAGE and result.resumed_from == 0


# --- TLS -------------------------------------------------------------------------------


def test_tls_certificates_are_always_verified(origin, https_origin, tmp_path):
    base, ca_file = https_origin
    origin.add("a.img", IMAGE)
    error = failed([f"{base}/a.img"], tmp_path)
    assert "TLS" in str(error) and "certificate verify failed" in str(error)
    settings = TransferSettings(**{**FAST.__dict__, "ca_bundle": [ca_file]})
    _result, data = fetch([f"{base}/a.img"], tmp_path, settings=settings)
    assert data == IMAGE


def test_the_settings_offer_no_way_to_skip_tls_verification():
    fields = set(TransferSettings.__dataclass_fields__)
    assert not {f for f in fields if "verify" in f or "insecure" in f}


def test_a_complete_partial_file_needs_no_download(origin, tmp_path):
    url = origin.add("a.img", IMAGE)
    part = tmp_path / "image.part"
    part.write_bytes(IMAGE)  # the puller died after fsync, before the rename
    sink = Sink(part, keep=True)
    result = download.fetch([url], expected(), sink, FAST,
                            resume={"location": url, "validator": None})
    sink.finish()
    assert result.resumed_from == SIZE and origin.requests["a.img"] == 0


def test_a_partial_file_larger_than_the_image_is_discarded(origin, tmp_path):
    url = origin.add("a.img", IMAGE)
    part = tmp_path / "image.part"
    part.write_bytes(IMAGE + b"junk")
    sink = Sink(part, keep=True)
    result = download.fetch([url], expected(), sink, FAST,
                            resume={"location": url, "validator": None})
    sink.finish()
    assert part.read_bytes() == IMAGE and result.resumed_from == 0
