"""The checksum set of an image, computed in one pass over its bytes on two cores.

This module is the one place that knows which checksums the metadata carries
(`ALGORITHMS`, with their StratusLab names) and how they map to hashlib, which of them to
check (`choose`, in the order `PREFERRED`) and when two values are the same checksum
(`same_digest`), as pip's ``utils/hashes.py`` keeps its favourite and strong hashes and
their comparison together.

`MultiHasher` is fed chunk by chunk (by a file reader or a downloader). Each chunk is
handed to worker threads, each owning a group of hashes of about equal cost; hashlib
releases the GIL on large buffers, so the groups run in parallel while the caller reads
the next chunk. The rule for callers: do not modify a chunk after passing it to
`update` until the next `update` or `result` call has returned (chunks smaller than
`_STAGE_SIZE` are copied, so the rule only bites for large ones).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

ALGORITHMS = ("MD5", "SHA-1", "SHA-256", "SHA-512")
STRONG = ("SHA-256", "SHA-512")  # in order of preference: SHA-256 hashes faster
WEAK = ("SHA-1", "MD5")  # broken for collisions: only when a node allows them
PREFERRED = STRONG + WEAK
_HASHLIB_NAMES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}

# Single-thread cost in seconds per GB (OpenSSL 3, AMD EPYC with SHA-NI, 4 MiB updates);
# only the ratios matter: they decide which hashes share a thread.
_COST = {"MD5": 1.57, "SHA-1": 0.62, "SHA-256": 0.66, "SHA-512": 1.42}

CHUNK_SIZE = 1 << 20  # chosen by measurement, see bench/RESULTS.md
_STAGE_SIZE = 256 << 10  # smaller chunks are gathered into buffers of this size


def hashlib_name(algorithm: str) -> str:
    """The hashlib name of a StratusLab checksum algorithm name ("SHA-1" -> "sha1")."""
    try:
        return _HASHLIB_NAMES[algorithm]
    except KeyError:
        known = ", ".join(ALGORITHMS)
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {known}") from None


class WeakChecksums(ValueError):
    """The entry has no checksum that may be relied on."""


def choose(available: Iterable[str], allow_weak: bool = False,
           every: bool = False) -> list[str]:
    """The checksums to verify of those an entry carries: the first strong one in the order
    of :data:`PREFERRED` (one strong checksum is as good as all of them, and hashing is the
    cost of a download), or all known ones with ``every``; weak ones only with
    ``allow_weak``. :class:`WeakChecksums` when none may be relied on."""
    present = list(dict.fromkeys(available))
    known = [a for a in PREFERRED if a in present]
    strong = [a for a in known if a in STRONG]
    if not strong and not allow_weak:
        have = ", ".join(present) or "none"
        raise WeakChecksums(f"the entry has only weak checksums ({have}); SHA-256 or SHA-512 "
                            "is needed (--allow-weak accepts MD5/SHA-1)")
    return known if every else (strong or known)[:1]


def same_digest(a: str, b: str) -> bool:
    """Whether two hex values are the same checksum: case and leading zeros do not count
    (the format compares them as numbers, and the original Java client dropped leading
    zeros). Anything but hex digits is never equal. Constant time in the values, as the
    answer may decide whether bytes from a server are trusted."""
    left, right = _canonical_hex(a), _canonical_hex(b)
    return left is not None and right is not None and hmac.compare_digest(left, right)


def _canonical_hex(value: str) -> str | None:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not text or text.strip("0123456789abcdef"):
        return None
    return text.lstrip("0") or "0"


@dataclass(frozen=True)
class Digests:
    """Byte count and lower-case hex checksums keyed by StratusLab algorithm name."""

    size: int
    checksums: dict[str, str]


class MultiHasher:
    """Several digests and the byte count of one stream of chunks, hashed on worker threads.

    Use as a context manager (or call `close`) so that the threads stop.
    """

    def __init__(self, algorithms: Iterable[str] = ALGORITHMS, threads: int = 2):
        names = list(dict.fromkeys(algorithms))
        self._hashes = {name: hashlib.new(hashlib_name(name)) for name in names}
        self._size = 0
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._inboxes: list[queue.SimpleQueue[memoryview | None]] = []
        self._threads: list[threading.Thread] = []
        for group in _balanced_groups(names, max(1, threads)):
            self._inboxes.append(queue.SimpleQueue())
            hashes = [self._hashes[name] for name in group]
            args = (hashes, self._inboxes[-1], self._done)
            self._threads.append(threading.Thread(target=_work, args=args, daemon=True))
            self._threads[-1].start()
        self._pending = 0
        self._in_flight: memoryview | None = None
        self._stages = [bytearray(_STAGE_SIZE), bytearray(_STAGE_SIZE)]
        self._staged = 0
        self._closed = False
        self._stop = weakref.finalize(self, _stop_workers, self._inboxes)

    def __enter__(self) -> MultiHasher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add a chunk; returns once the previous chunk is hashed, while this one is."""
        self._check_open()
        view = memoryview(chunk).cast("B")
        self._size += view.nbytes
        if view.nbytes >= _STAGE_SIZE:
            self._flush_stage()
            self._dispatch(view)
            return
        while view:
            stage = self._stages[0]
            taken = min(len(view), _STAGE_SIZE - self._staged)
            stage[self._staged : self._staged + taken] = view[:taken]
            self._staged += taken
            view = view[taken:]
            if self._staged == _STAGE_SIZE:
                self._flush_stage()

    def result(self) -> Digests:
        """The byte count and digests of everything fed so far."""
        self._check_open()
        self._flush_stage()
        self._wait()
        checksums = {name: h.hexdigest() for name, h in self._hashes.items()}
        return Digests(self._size, checksums)

    def close(self) -> None:
        """Stop the worker threads (after the chunk in hand is hashed)."""
        if not self._closed:
            self._closed = True
            try:
                self._wait()
            finally:
                self._stop()
                for thread in self._threads:
                    thread.join()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("MultiHasher is closed")

    def _flush_stage(self) -> None:
        if self._staged:
            stage = self._stages[0]
            self._dispatch(memoryview(stage)[: self._staged])
            self._stages.reverse()  # fill the other buffer while this one is hashed
            self._staged = 0

    def _dispatch(self, view: memoryview) -> None:
        self._wait()
        self._in_flight = view  # keeps the buffer alive while the workers read it
        for inbox in self._inboxes:
            inbox.put(view)
        self._pending = len(self._inboxes)

    def _wait(self) -> None:
        errors = [self._done.get() for _ in range(self._pending)]
        self._pending, self._in_flight = 0, None
        for error in errors:
            if error is not None:
                raise error


def _balanced_groups(names: list[str], threads: int) -> list[list[str]]:
    """Split the hashes into at most `threads` groups of about equal cost (greedy, costly first)."""
    groups: list[list[str]] = [[] for _ in range(min(threads, len(names)))]
    loads = [0.0] * len(groups)
    for name in sorted(names, key=lambda n: -_COST[n]):
        lightest = loads.index(min(loads))
        groups[lightest].append(name)
        loads[lightest] += _COST[name]
    return groups


def _work(hashes: list, inbox: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
    while (chunk := inbox.get()) is not None:
        try:
            for h in hashes:
                h.update(chunk)
        except BaseException as exc:  # handed to the feeding thread, raised there
            done.put(exc)
        else:
            done.put(None)


def _stop_workers(inboxes: list[queue.SimpleQueue]) -> None:
    for inbox in inboxes:
        inbox.put(None)


def digest_stream(
    stream: BinaryIO,
    algorithms: Iterable[str] = ALGORITHMS,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Digests:
    """Digests of everything `stream` yields; `progress(bytes_so_far)` after each chunk."""
    buffers = [memoryview(bytearray(chunk_size)) for _ in range(2)]
    with MultiHasher(algorithms) as hasher:
        total, turn = 0, 0
        while count := _fill(stream, buffers[turn]):
            hasher.update(buffers[turn][:count])
            total += count
            turn ^= 1
            if progress is not None:
                progress(total)
            if count < chunk_size:
                break
        if progress is not None and total == 0:
            progress(0)
        return hasher.result()


def _fill(stream: BinaryIO, buffer: memoryview) -> int:
    """Read into `buffer` until it is full or the stream ends; the number of bytes read."""
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled


def digest_file(
    path: str | os.PathLike[str],
    algorithms: Iterable[str] = ALGORITHMS,
    compression: str | None = "auto",
    progress: Callable[[int], None] | None = None,
) -> Digests:
    """Digests of the uncompressed content of a file.

    `compression="auto"` guesses it from the file name; None reads the file as it is.
    """
    # Imported here: the checksum rule above is on the node's cache-hit path, which must
    # not load the decompressors (zstandard).
    from marketplace.metadata.compression import compression_from_name, decompressing_reader

    if compression == "auto":
        compression = compression_from_name(os.fspath(path))
    buffering = -1 if compression else 0  # plain files: read straight into our buffers
    with open(path, "rb", buffering=buffering) as raw, decompressing_reader(raw, compression) as s:
        return digest_stream(s, algorithms, progress)
