"""Entries of a cache that others may write into: never through a symlink, never someone else's.

The cache may be a shared mount where other users or hosts can create names. A symbolic
link planted where the fetcher creates a pin, writes a lease or saves state would make it
create or write a file anywhere it may (and it often runs as root); a link planted as an
image would make it serve or hash any file. So every entry is opened with ``O_NOFOLLOW``
(a link fails with ``ELOOP``), checked with ``lstat`` before it is used by name, and must be
the expected kind (a regular file or a directory) owned by a trusted user: the owner of the
cache directory or the user the fetcher runs as. A FIFO could block a reader for ever, so
readers open with ``O_NONBLOCK`` and read regular files only.

What does not pass is :class:`UnsafeEntry`, an ``OSError`` naming the entry, which the
commands report as an error. Standard library only: this module is on the cache-hit path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

READ_LIMIT = 1 << 20  # records, states and owner files are small
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeEntry(OSError):
    """A symlink, an entry of the wrong kind, or one owned by an untrusted user."""


def trusted_users(root: Path) -> frozenset[int]:
    """The cache directory's owner and the user we run as."""
    return frozenset({os.stat(root).st_uid, os.geteuid()})


def check(path: Path, st: os.stat_result, kind: str, trusted: frozenset[int] | None) -> None:
    """Raise UnsafeEntry unless ``st`` (an lstat) is a ``kind`` ("file" or "dir") owned by
    a trusted user (``trusted`` None: any owner)."""
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeEntry(f"{path} is a symbolic link; the cache never follows one (remove it)")
    wanted = stat.S_ISDIR if kind == "dir" else stat.S_ISREG
    if not wanted(st.st_mode):
        raise UnsafeEntry(f"{path} is not a {'directory' if kind == 'dir' else 'regular file'}")
    if trusted is not None and st.st_uid not in trusted:
        raise UnsafeEntry(f"{path} is owned by uid {st.st_uid}, not by the cache's owner "
                          f"(uids {', '.join(map(str, sorted(trusted)))})")


def lstat(path: Path, kind: str = "file",
          trusted: frozenset[int] | None = None) -> os.stat_result | None:
    """The entry's own status if it is safe to use, None if absent; else UnsafeEntry."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    check(path, st, kind, trusted)
    return st


def is_safe(path: Path, kind: str = "file", trusted: frozenset[int] | None = None) -> bool:
    """True when the entry exists and passes :func:`check` (no exception: for tests of state)."""
    try:
        return lstat(path, kind, trusted) is not None
    except UnsafeEntry:
        return False


def directory(path: Path, trusted: frozenset[int] | None) -> Path:
    """``path``, created if absent, once it is a real directory owned by a trusted user."""
    if lstat(path, "dir", trusted) is None:
        with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
            os.mkdir(path, 0o755)
        lstat(path, "dir", trusted)
    return path


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that fails with UnsafeEntry instead of following a symlink."""
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeEntry(f"{path} is a symbolic link; the cache never follows one "
                              "(remove it)") from None
        raise


def read(path: Path, trusted: frozenset[int] | None = None,
         limit: int = READ_LIMIT) -> bytes | None:
    """A small regular file's bytes; None when absent; UnsafeEntry when not safe."""
    try:
        fd = open_fd(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        check(path, os.fstat(fd), "file", trusted)
        chunks = []
        while data := os.read(fd, limit + 1 - sum(map(len, chunks))):
            chunks.append(data)
            if sum(map(len, chunks)) > limit:
                raise UnsafeEntry(f"{path} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, exclusive: bool = False, mode: int = 0o644) -> None:
    """Create (``exclusive``) or overwrite a small regular file, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = open_fd(path, flags, mode)
    try:
        check(path, os.fstat(fd), "file", None)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
