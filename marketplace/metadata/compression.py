"""Streaming decompression of appliance images (gz, bz2, xz, zst), strict about damage.

Images are never held in memory: `decompressing_reader` wraps a raw binary stream in a
readable stream of the uncompressed bytes. Multi-member gzip and concatenated bz2, xz and
zstd streams are read to the end. A damaged or truncated stream, an empty input and
bytes after the last stream that do not start a new one raise `CompressionError`, so a
cut-off download is reported as such instead of yielding a silently shorter image.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import zstandard

COMPRESSIONS = ("gz", "bz2", "xz", "zst")

_INPUT_CHUNK = 1 << 20
_DECODE_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


class CompressionError(ValueError):
    """A compressed stream that cannot be decoded; says which compression and why."""

    def __init__(self, compression: str, reason: str):
        self.compression = compression
        self.reason = reason
        super().__init__(f"corrupt {compression} stream: {reason}")


def compression_from_name(name: str) -> str | None:
    """Guess the compression from a file name or URL path suffix; None when uncompressed."""
    path = urlsplit(name).path if "://" in name else name.split("?", 1)[0]
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return suffix if suffix in COMPRESSIONS else None


def decompressing_reader(raw: BinaryIO, compression: str | None) -> BinaryIO:
    """A readable binary stream of the uncompressed content of `raw`.

    `raw` is returned as is when `compression` is None or empty (metadata's "none").
    Closing the returned stream does not close `raw`; the caller owns it.
    """
    if not compression:
        return raw
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; known: {', '.join(COMPRESSIONS)}")
    source = _Source(raw, _ZstdFrames() if compression == "zst" else None)
    reader = _CheckedReader(compression, source, _open_decoder(compression, source))
    return cast(BinaryIO, io.BufferedReader(reader, buffer_size=_INPUT_CHUNK))


def _open_decoder(compression: str, source: _Source) -> Any:
    if compression == "gz":
        return gzip.GzipFile(fileobj=source, mode="rb")
    if compression == "zst":
        return zstandard.ZstdDecompressor().stream_reader(
            source, read_size=_INPUT_CHUNK, read_across_frames=True, closefd=False
        )
    factory = bz2.BZ2Decompressor if compression == "bz2" else lzma.LZMADecompressor
    return _StreamsDecoder(source, factory, compression)


class _Source(io.RawIOBase):
    """The compressed input: counts bytes, remembers its own errors, feeds the zstd walker."""

    def __init__(self, raw: BinaryIO, frames: _ZstdFrames | None):
        self.raw, self.frames, self.count, self.error = raw, frames, 0, None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.raw.read(_INPUT_CHUNK if size is None or size < 0 else size)
        except BaseException as exc:
            self.error = exc
            raise
        self.count += len(data)
        if self.frames is not None:
            self.frames.feed(data)
        return data


class _CheckedReader(io.RawIOBase):
    """Turns decoder errors into CompressionError and checks the end of the input."""

    def __init__(self, compression: str, source: _Source, decoder: Any):
        self.compression, self.source, self.decoder = compression, source, decoder

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        try:
            n = self.decoder.readinto(buffer)
        except _DECODE_ERRORS as exc:
            if exc is self.source.error:
                raise
            raise CompressionError(self.compression, str(exc) or type(exc).__name__) from exc
        if not n:
            self._check_end()
        return n

    def _check_end(self) -> None:
        if self.source.count == 0:
            raise CompressionError(self.compression, "the input is empty")
        frames = self.source.frames
        if frames is not None and not frames.complete():
            raise CompressionError(self.compression, frames.problem())

    def close(self) -> None:
        if not self.closed:
            self.decoder.close()
        super().close()


class _StreamsDecoder(io.RawIOBase):
    """bz2 or xz: one stream after another until the input ends; anything else is an error."""

    def __init__(self, source: _Source, factory: Callable[[], Any], compression: str):
        self.source, self.factory, self.compression = source, factory, compression
        self.decoder = factory()
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        while True:
            if self.decoder.eof and not self._next_stream():
                return 0
            data = b""
            if self.decoder.needs_input:
                data, self.pending = self.pending or self.source.read(_INPUT_CHUNK), b""
                if not data:
                    raise EOFError(_ended_early(self.source.count))
            out = self.decoder.decompress(data, max_length=len(buffer))
            if out:
                buffer[: len(out)] = out
                return len(out)

    def _next_stream(self) -> bool:
        rest = self.decoder.unused_data or self.source.read(_INPUT_CHUNK)
        if self.compression == "xz":  # xz allows NUL stream padding between streams
            while rest and not rest.strip(b"\0"):
                rest = self.source.read(_INPUT_CHUNK)
            rest = rest.lstrip(b"\0")
        if not rest:
            return False
        self.decoder, self.pending = self.factory(), rest
        return True


def _ended_early(count: int) -> str:
    return "the input is empty" if count == 0 else "the input ended inside a stream (truncated)"


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # low four bits free
_DICT_ID_SIZES = (0, 1, 2, 4)
_CONTENT_SIZE_SIZES = (0, 2, 4, 8)


class _ZstdFrames:
    """Walks zstd frame and block headers so that a stream cut inside a frame is noticed.

    libzstd's stream reader ends quietly when its input stops mid-frame; this walker skips
    block contents and only reads the few header bytes, so it costs next to nothing.
    """

    def __init__(self) -> None:
        self.header = bytearray()
        self.need, self.skip, self.frames = 4, 0, 0
        self.step: Callable[[bytes], None] | None = self._magic
        self.checksum = False

    def feed(self, data: bytes) -> None:
        view, pos = memoryview(data), 0
        while pos < len(view) and self.step is not None:
            if self.skip:
                taken = min(self.skip, len(view) - pos)
                self.skip -= taken
            else:
                taken = min(self.need - len(self.header), len(view) - pos)
                self.header += view[pos : pos + taken]
                if len(self.header) == self.need:
                    header = bytes(self.header)
                    self.header.clear()
                    self.step(header)
            pos += taken

    def complete(self) -> bool:
        return self.step == self._magic and not self.header and not self.skip and self.frames > 0

    def problem(self) -> str:
        if self.step is None:
            return "found bytes that are not a zstd frame"
        if self.frames == 0 and self.step == self._magic and not self.header:
            return "no zstd frame in the input"
        return "the input ended inside a frame (truncated)"

    def _magic(self, header: bytes) -> None:
        magic = int.from_bytes(header, "little")
        if magic == _ZSTD_MAGIC:
            self.need, self.step = 1, self._descriptor
        elif magic & ~0xF == _ZSTD_SKIPPABLE:
            self.need, self.step = 4, self._skippable
        else:
            self.step = None

    def _skippable(self, header: bytes) -> None:
        self.skip, self.need, self.step = int.from_bytes(header, "little"), 4, self._magic

    def _descriptor(self, header: bytes) -> None:
        flags = header[0]
        single_segment = bool(flags & 0x20)
        content_size = _CONTENT_SIZE_SIZES[flags >> 6] or int(single_segment)
        self.checksum = bool(flags & 0x04)
        self.skip = (not single_segment) + _DICT_ID_SIZES[flags & 3] + content_size
        self.need, self.step = 3, self._block

    def _block(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        kind, size = (value >> 1) & 3, value >> 3
        if kind == 3:
            self.step = None
            return
        self.skip = 1 if kind == 1 else size
        if value & 1:  # last block of the frame
            self.skip += 4 * self.checksum
            self.frames += 1
            self.need, self.step = 4, self._magic
