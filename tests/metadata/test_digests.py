"""One-pass multi-digest hashing, checked against hashlib run independently on the same bytes."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import random
import threading
from pathlib import Path

import pytest
import zstandard

from marketplace.metadata.compression import CompressionError
from marketplace.metadata.digests import (
    ALGORITHMS,
    CHUNK_SIZE,
    STRONG,
    Digests,
    MultiHasher,
    digest_file,
    digest_stream,
    hashlib_name,
)

REFERENCE = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
SIZES = [0, 1, 4095, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE - 7, 5 * 2**20 + 3]
COMPRESS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


def expected(data: bytes, algorithms=ALGORITHMS) -> dict[str, str]:
    return {name: hashlib.new(REFERENCE[name], data).hexdigest() for name in algorithms}


@pytest.fixture(scope="module")
def random_bytes() -> bytes:
    return os.urandom(max(SIZES))


def test_algorithm_names() -> None:
    assert ALGORITHMS == ("MD5", "SHA-1", "SHA-256", "SHA-512")
    assert STRONG == ("SHA-256", "SHA-512")
    assert {name: hashlib_name(name) for name in ALGORITHMS} == REFERENCE


@pytest.mark.parametrize("name", ["SHA1", "sha-1", "SHA-3", "", "CRC32"])
def test_unknown_algorithm_raises(name: str) -> None:
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        hashlib_name(name)
    with pytest.raises(ValueError, match=repr(name)):
        MultiHasher([*ALGORITHMS, name])


def test_no_threads_are_left_behind_by_a_failed_constructor() -> None:
    before = threading.active_count()
    with pytest.raises(ValueError):
        MultiHasher(["SHA-1", "SHA-3"])
    assert threading.active_count() == before


@pytest.mark.parametrize("size", SIZES)
def test_digest_file_matches_hashlib(tmp_path: Path, random_bytes: bytes, size: int) -> None:
    data = random_bytes[:size]
    path = tmp_path / "image.img"
    path.write_bytes(data)
    assert digest_file(path) == Digests(size, expected(data))


@pytest.mark.parametrize("compression", list(COMPRESS))
@pytest.mark.parametrize(("size", "zeros"), [(0, 0), (1, 0), (CHUNK_SIZE, 1), (2**20, 5 * 2**20)])
def test_compressed_files_are_hashed_uncompressed(
    tmp_path: Path, random_bytes: bytes, compression: str, size: int, zeros: int
) -> None:
    data = random_bytes[:size] + bytes(zeros)  # a run of zeros, like a disk image
    path = tmp_path / f"image.img.{compression}"
    path.write_bytes(COMPRESS[compression](data))
    assert digest_file(path) == Digests(len(data), expected(data))
    assert digest_file(path, compression=compression).size == len(data)


def test_multi_member_gzip_file(tmp_path: Path, random_bytes: bytes) -> None:
    data = random_bytes[: 3 * 2**20]
    path = tmp_path / "image.gz"
    members = [gzip.compress(data[i : i + 2**20]) for i in range(0, len(data), 2**20)]
    path.write_bytes(b"".join(members))
    assert digest_file(path) == Digests(len(data), expected(data))


def test_compression_none_hashes_the_file_as_it_is(tmp_path: Path) -> None:
    blob = gzip.compress(b"appliance")
    path = tmp_path / "image.gz"
    path.write_bytes(blob)
    assert digest_file(path, compression=None) == Digests(len(blob), expected(blob))


def test_explicit_compression_overrides_the_name(tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(lzma.compress(b"appliance"))
    assert digest_file(path, compression="xz").checksums == expected(b"appliance")


def test_corrupt_compressed_file_raises(tmp_path: Path, random_bytes: bytes) -> None:
    blob = gzip.compress(random_bytes[: 2**20])
    path = tmp_path / "image.img.gz"
    path.write_bytes(blob[: len(blob) - 100])
    with pytest.raises(CompressionError, match="gz"):
        digest_file(path)


def test_subset_of_algorithms(tmp_path: Path, random_bytes: bytes) -> None:
    path = tmp_path / "image.img"
    path.write_bytes(random_bytes[:12345])
    digests = digest_file(path, algorithms=["SHA-512", "SHA-1"])
    assert digests.checksums == expected(random_bytes[:12345], ["SHA-512", "SHA-1"])


@pytest.mark.parametrize("size", [0, 1, 3 * CHUNK_SIZE - 7])
def test_progress_reaches_the_total(tmp_path: Path, random_bytes: bytes, size: int) -> None:
    path = tmp_path / "image.img"
    path.write_bytes(random_bytes[:size])
    seen: list[int] = []
    digest_file(path, progress=seen.append)
    assert seen, "progress was never called"
    assert seen[-1] == size
    assert seen == sorted(seen)
    assert len(seen) <= size // CHUNK_SIZE + 2


def test_digest_stream_with_short_reads(random_bytes: bytes) -> None:
    """A stream that returns a few bytes per read, as sockets and decoders do."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes):
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            count = min(len(buffer), random.randint(1, 70_000), len(self.data) - self.pos)
            buffer[:count] = self.data[self.pos : self.pos + count]
            self.pos += count
            return count

    data = random_bytes[: 2 * 2**20 + 5]
    assert digest_stream(Trickle(data), chunk_size=2**18) == Digests(len(data), expected(data))


def test_multi_hasher_fed_odd_sized_chunks(random_bytes: bytes) -> None:
    data = random_bytes
    rng = random.Random(7)
    sizes = [1, 2, 3, 1000, 4097, 65_537, 262_143, 262_144, 262_145, 1_000_003, 2_500_000]
    with MultiHasher() as hasher:
        pos = 0
        while pos < len(data):
            step = rng.choice(sizes)
            hasher.update(data[pos : pos + step])
            pos += step
        assert hasher.result() == Digests(len(data), expected(data))


def test_multi_hasher_takes_bytearray_and_memoryview(random_bytes: bytes) -> None:
    data = random_bytes[: 2**20]
    with MultiHasher(["SHA-256"]) as hasher:
        hasher.update(bytearray(data[:10]))
        hasher.update(memoryview(data)[10:500_000])
        hasher.update(b"")
        hasher.update(memoryview(data[500_000:]))
        assert hasher.result() == Digests(len(data), expected(data, ["SHA-256"]))


def test_multi_hasher_reused_buffer_after_next_update(random_bytes: bytes) -> None:
    """The documented rule: a buffer may be refilled once the next update has returned."""
    data = random_bytes[: 4 * 2**20]
    buffers = [bytearray(2**20), bytearray(2**20)]
    with MultiHasher() as hasher:
        for index in range(4):
            buffer = buffers[index % 2]
            buffer[:] = data[index * 2**20 : (index + 1) * 2**20]
            hasher.update(buffer)
        assert hasher.result().checksums == expected(data)


def test_result_can_be_taken_more_than_once(random_bytes: bytes) -> None:
    with MultiHasher(["MD5"]) as hasher:
        hasher.update(random_bytes[:100])
        assert hasher.result().checksums == expected(random_bytes[:100], ["MD5"])
        hasher.update(random_bytes[100:300_000])
        assert hasher.result() == Digests(300_000, expected(random_bytes[:300_000], ["MD5"]))


def test_closed_hasher_stops_its_threads_and_refuses_work() -> None:
    before = threading.active_count()
    with MultiHasher() as hasher:
        hasher.update(b"x" * 300_000)
        assert threading.active_count() > before
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="closed"):
        hasher.update(b"more")
    with pytest.raises(ValueError, match="closed"):
        hasher.result()
