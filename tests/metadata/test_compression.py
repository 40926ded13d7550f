"""Streaming decompression: every format made by the real compressors, and damaged input."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest
import zstandard

from marketplace.metadata.compression import (
    COMPRESSIONS,
    CompressionError,
    compression_from_name,
    decompressing_reader,
)

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}
CLI = {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd"}


@pytest.fixture(scope="module")
def content() -> bytes:
    """Random bytes with a long run of zeros, as disk images have."""
    return os.urandom(700_000) + bytes(3_000_000) + os.urandom(12_345)


def decompress(blob: bytes, compression: str | None, read_size: int = 1 << 20) -> bytes:
    """Read the stream in fixed-size pieces, as the digest code does."""
    stream = decompressing_reader(io.BytesIO(blob), compression)
    pieces = []
    while piece := stream.read(read_size):
        pieces.append(piece)
    return b"".join(pieces)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("debian.img.gz", "gz"),
        ("debian.img.GZ", "gz"),
        ("image.bz2", "bz2"),
        ("/var/images/ttylinux.img.xz", "xz"),
        ("disk.qcow2.zst", "zst"),
        ("https://example.org/a/ttylinux.img.xz?sig=a.b&x=1.gz", "xz"),
        ("https://example.org/a/ttylinux.img?name=x.gz", None),
        ("ttylinux.img", None),
        ("archive.gz/plain", None),
        ("image.zip", None),
        ("", None),
    ],
)
def test_compression_is_guessed_from_the_name(name: str, expected: str | None) -> None:
    assert compression_from_name(name) == expected


def test_all_formats_are_known() -> None:
    assert set(COMPRESSIONS) == set(COMPRESSORS)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("size", [0, 1, 1 << 20, 3_712_345])
def test_round_trip_with_the_library_compressors(
    content: bytes, compression: str, size: int
) -> None:
    original = content[:size]
    assert decompress(COMPRESSORS[compression](original), compression) == original


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_concatenated_streams_are_all_read(content: bytes, compression: str) -> None:
    parts = [content[:1000], content[1000:2_000_000], b"", content[2_000_000:]]
    blob = b"".join(COMPRESSORS[compression](part) for part in parts)
    assert decompress(blob, compression) == content


def test_multi_member_gzip_written_by_gzipfile(content: bytes) -> None:
    out = io.BytesIO()
    for part in (content[:5], content[5:1_000_000], content[1_000_000:]):
        with gzip.GzipFile(fileobj=out, mode="ab") as member:
            member.write(part)
    assert out.getvalue().count(b"\x1f\x8b\x08") >= 3
    assert decompress(out.getvalue(), "gz") == content


def test_zstd_frames_written_by_a_streaming_compressor(content: bytes) -> None:
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_checksum=True).stream_writer(out, closefd=False) as w:
        for start in range(0, len(content), 100_000):
            w.write(content[start : start + 100_000])
    assert decompress(out.getvalue(), "zst", read_size=4096) == content


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_files_made_by_the_command_line_tools(
    tmp_path, content: bytes, compression: str
) -> None:
    tool = CLI[compression]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    image = tmp_path / "image.img"
    image.write_bytes(content)
    subprocess.run([tool, "-q", "-k", str(image)], check=True)
    with open(f"{image}.{compression}", "rb") as raw:
        assert decompressing_reader(raw, compression).read() == content


def test_none_and_empty_mean_uncompressed() -> None:
    raw = io.BytesIO(b"plain bytes")
    assert decompressing_reader(raw, None) is raw
    assert decompressing_reader(raw, "") is raw


def test_unknown_compression_is_named() -> None:
    with pytest.raises(ValueError, match="'lz4'"):
        decompressing_reader(io.BytesIO(b""), "lz4")


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("keep", [0.5, -1, -4, 10])
def test_truncated_input_raises(content: bytes, compression: str, keep: float) -> None:
    blob = COMPRESSORS[compression](content)
    cut = int(len(blob) * keep) if isinstance(keep, float) else keep % len(blob)
    with pytest.raises(CompressionError, match=compression) as caught:
        decompress(blob[:cut], compression)
    assert caught.value.compression == compression


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_truncated_second_stream_raises(content: bytes, compression: str) -> None:
    first, second = (COMPRESSORS[compression](part) for part in (content[:9], content[9:]))
    with pytest.raises(CompressionError):
        decompress(first + second[: len(second) // 2], compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_empty_input_raises(compression: str) -> None:
    with pytest.raises(CompressionError, match="empty"):
        decompress(b"", compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_uncompressed_input_raises(content: bytes, compression: str) -> None:
    with pytest.raises(CompressionError, match=compression):
        decompress(content, compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_garbage_after_the_last_stream_raises(content: bytes, compression: str) -> None:
    blob = COMPRESSORS[compression](content[:100_000]) + b"this is not a stream"
    with pytest.raises(CompressionError):
        decompress(blob, compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_damaged_second_stream_header_raises(content: bytes, compression: str) -> None:
    """Not taken for 'trailing garbage' and dropped, which would shorten the image."""
    blob = COMPRESSORS[compression](content[:100_000])
    with pytest.raises(CompressionError):
        decompress(blob + b"\x00" + blob[1:], compression)


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_flipped_byte_raises(content: bytes, compression: str) -> None:
    blob = bytearray(COMPRESSORS[compression](content))
    blob[len(blob) // 3] ^= 0x55
    with pytest.raises(CompressionError):
        decompress(bytes(blob), compression)


def test_flipped_byte_raises_in_zstd_frame_with_checksum(content: bytes) -> None:
    blob = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(content))
    blob[len(blob) // 3] ^= 0x55
    with pytest.raises(CompressionError, match="zst"):
        decompress(bytes(blob), "zst")


def test_xz_stream_padding_is_allowed(content: bytes) -> None:
    blob = lzma.compress(content[:1000])
    assert decompress(blob + bytes(8) + blob, "xz") == content[:1000] * 2


def test_errors_of_the_raw_stream_are_not_compression_errors() -> None:
    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            raise ConnectionResetError("peer went away")

    for compression in COMPRESSIONS:
        with pytest.raises(ConnectionResetError):
            decompressing_reader(Failing(), compression).read()


def test_closing_the_reader_leaves_the_raw_stream_open(content: bytes) -> None:
    raw = io.BytesIO(gzip.compress(content[:10]))
    with decompressing_reader(raw, "gz") as stream:
        assert stream.read() == content[:10]
    assert not raw.closed
