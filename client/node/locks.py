"""Locks across processes on one host and across hosts sharing the cache on a network mount.

Why two locks. The cache may live on NFS, shared by many hosts. POSIX locks there go
through the NFS lock manager: when the holding host dies, the lock is only released when
that host reboots and tells the server, so a waiter could block for ever. They are also
per process, not per open file. So:

1. **Same host, fast and exact**: ``fcntl.flock`` on a file in a *host-local* directory
   (``/run/lock/stratuslab-fetcher`` or ``/tmp``), named after the cache and the lock. The
   kernel drops it when its holder dies (even by SIGKILL), and it never touches NFS. Only
   the process holding it goes on to contend for the shared lock, so the processes of one
   host poll the shared directory once, not once each. These small files are never
   deleted (removing a flock file while another process opens it would split the lock);
   ``/run`` is emptied at boot.

2. **Across hosts**: a lock file in the cache's ``locks/`` directory, created atomically
   with ``link(2)`` -- the method ``open(2)`` recommends for NFS, where ``O_EXCL`` is not
   reliable on every version: write the owner to a unique file, hard-link it to the lock
   name (fails if the name exists), and count success when the link succeeded or the
   unique file's link count is 2 (a retried NFS request). The owner record says host,
   boot id, pid, the process's start time and a random token.

   While it holds the lock, a heartbeat thread touches the file's mtime every
   ``stale_after / 4`` seconds (and notices if someone broke the lock). A waiter judges
   the holder abandoned when:

   - it is on this host (same host name and boot id) and its pid is gone or now belongs
     to another process (start time differs) -- seen at once; or the boot id differs (the
     host rebooted);
   - it is on another host and the lock's mtime is older than ``stale_after``, measured
     against the *file server's* clock (a probe file touched in the same directory), so
     clock skew between hosts does not matter.

   Breaking a stale lock: rename it to a unique grave name (only one breaker can win the
   rename), read the grave, and if it is not the owner judged stale (the stale lock was
   released and a live one created in between), link it back and leave. Then try again.

No lock file is followed through a symlink someone planted (:mod:`client.node.entries`):
files are created with ``O_NOFOLLOW | O_EXCL``, the clock probe has an unguessable name,
heartbeats touch the lock itself, and the host-local directory must be our own.

A lock judged stale wrongly (a holder stalled for longer than ``stale_after``) cannot
corrupt the cache: each puller writes its own partial file, takes over another's only by
copying it, and only renames a file whose bytes it hashed into the cache. Standard library
only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from client.node import entries

LOCAL_LOCK_DIRS = (Path("/run/lock/stratuslab-fetcher"),)
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class LockTimeout(TimeoutError):
    """Gave up waiting for a lock; says who holds it."""


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True when ``pid`` runs on this host (and, when ``start`` is given, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is not None:
        now = process_start(pid)
        return now is None or now == start
    return True


@dataclass(frozen=True)
class Owner:
    """Who holds a lock or a lease."""

    host: str
    boot: str
    pid: int
    start: str | None
    token: str
    since: float = 0.0

    @classmethod
    def of(cls, host: str, pid: int | None = None) -> Owner:
        pid = os.getpid() if pid is None else pid
        return cls(host, boot_id(), pid, process_start(pid), os.urandom(8).hex(), time.time())

    def on_this_host(self, host: str) -> bool:
        return self.host == host and self.boot == boot_id()

    def alive_here(self) -> bool:
        """Is this owner, which is on this host, still running?"""
        return pid_alive(self.pid, self.start)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Owner | None:
        try:
            return cls.from_dict(json.loads(data))
        except ValueError:
            return None

    @classmethod
    def from_dict(cls, value: object) -> Owner | None:
        try:
            return cls(**{k: value[k] for k in ("host", "boot", "pid", "start", "token")},
                       since=float(value.get("since", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def read_owner(path: Path, trusted: frozenset[int] | None = None) -> Owner | None:
    """The owner written in a lock or lease file; None when absent, planted or unreadable."""
    try:
        data = entries.read(path, trusted)
    except OSError:
        return None
    return None if data is None else Owner.from_json(data)


def local_lock_dir(configured: Path | None = None) -> Path:
    """A writable host-local directory for flock files, of our own (in /tmp anyone could have
    made the name first, as a link or a directory of theirs)."""
    import tempfile

    candidates = [configured] if configured else [
        *LOCAL_LOCK_DIRS, Path(tempfile.gettempdir()) / f"stratuslab-fetcher-{os.getuid()}"]
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            entries.lstat(directory, "dir", frozenset({os.geteuid()}))
        except OSError:
            continue
        if os.access(directory, os.W_OK | os.X_OK):
            return directory
    raise OSError(f"no writable directory for local locks among {', '.join(map(str, candidates))}")


class LocalLock:
    """An exclusive ``flock`` on a host-local file; the kernel releases it when we die."""

    def __init__(self, directory: Path, scope: Path, name: str):
        key = hashlib.sha256(str(Path(scope).resolve()).encode()).hexdigest()[:16]
        self.path = directory / f"{key}-{name.removesuffix('.lock')}.lock"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        if self.fd is not None:
            return True
        fd = entries.open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


class SharedLock:
    """The cross-host lock file: atomic creation by link(2), heartbeat, staleness, breaking."""

    def __init__(self, path: Path, owner: Owner, stale_after: float):
        self.path = Path(path)
        self.owner = owner
        self.stale_after = stale_after
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self) -> bool:
        unique = self.path.with_name(f"{self.path.name}.{self.owner.token}")
        entries.write(unique, self.owner.to_json(), exclusive=True)
        try:
            os.link(unique, self.path)
            won = True
        except FileExistsError:
            won = os.lstat(unique).st_nlink == 2
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(unique)
        if won:
            self._start_heartbeat()
        return won

    def holder(self) -> Owner | None:
        return read_owner(self.path)

    def age(self) -> float | None:
        """Seconds since the lock's last heartbeat, by the file server's clock."""
        try:
            mtime = os.lstat(self.path).st_mtime
        except FileNotFoundError:
            return None
        return filesystem_now(self.path.parent, self.owner) - mtime

    def is_stale(self, holder: Owner | None, host: str) -> bool:
        if holder is not None and holder.on_this_host(host):
            return not holder.alive_here()
        if holder is not None and holder.host == host and holder.boot != boot_id():
            return True  # this host rebooted since
        age = self.age()
        return age is not None and age > self.stale_after

    def break_stale(self, holder: Owner | None) -> None:
        """Remove the lock of ``holder`` (judged stale); leave any other owner's lock be."""
        self._remove("stale", None if holder is None else holder.token)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        self._remove("released", self.owner.token)

    def _remove(self, why: str, token: str | None) -> None:
        """Remove the lock file if its owner has ``token`` (None: whoever owns it). It is
        first renamed aside, an atomic take; a lock found to be someone else's is linked
        back under its name."""
        grave = self.path.with_name(f"{self.path.name}.{why}.{self.owner.token}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        taken = read_owner(grave)
        if token is not None and (taken is None or taken.token != token):
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)  # not the one meant: give it back
        with contextlib.suppress(FileNotFoundError):
            os.unlink(grave)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"heartbeat {self.path.name}")
        self._beat.start()

    def _heartbeat(self) -> None:
        interval = max(self.stale_after / 4, 0.05)
        while not self._stop.wait(interval):
            holder = read_owner(self.path)
            if holder is None or holder.token != self.owner.token:
                self.lost = True
                return
            with contextlib.suppress(OSError):
                os.utime(self.path, follow_symlinks=False)


def filesystem_now(directory: Path, owner: Owner) -> float:
    """The current time by the clock that stamps files in ``directory`` (the NFS server's)."""
    probe = directory / f".clock.{owner.host}.{owner.pid}.{os.urandom(6).hex()}"
    try:
        entries.write(probe, b"", exclusive=True)
        return os.lstat(probe).st_mtime
    except OSError:
        return time.time()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


@dataclass
class Held:
    """Both locks, held; release them in reverse order."""

    local: LocalLock
    shared: SharedLock

    @property
    def token(self) -> str:
        return self.shared.owner.token

    @property
    def lost(self) -> bool:
        return self.shared.lost

    def release(self) -> None:
        try:
            self.shared.release()
        finally:
            self.local.release()


def acquire(path: Path, owner: Owner, *, stale_after: float, wait: float,
            local_dir: Path, scope: Path, done: Callable[[], bool] | None = None,
            on_wait: Callable[[Owner | None], None] | None = None) -> Held | None:
    """Take the lock at ``path`` (and its same-host flock), waiting at most ``wait`` seconds.

    Returns None without the lock when ``done()`` becomes true while waiting (another
    process did the work). Raises LockTimeout naming the holder after ``wait``.
    """
    local = LocalLock(local_dir, scope, path.name)
    shared = SharedLock(path, owner, stale_after)
    deadline = time.monotonic() + wait
    delay, told = 0.02, False
    holder: Owner | None = None
    while True:
        if done is not None and done():
            local.release()
            return None
        if local.try_acquire():
            if shared.try_acquire():
                return Held(local, shared)
            holder = shared.holder()
            if shared.is_stale(holder, owner.host):
                shared.break_stale(holder)
                continue
        if not told and on_wait is not None:
            on_wait(holder)
            told = True
        if time.monotonic() > deadline:
            local.release()
            who = holder.describe() if holder else "another process"
            raise LockTimeout(f"gave up after {wait:.0f} s waiting for {who} holding {path}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
