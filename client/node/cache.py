"""The on-disk image cache: layout, verified-once records, pins, leases, quota with LRU.

Layout under the cache directory (which may be a shared mount)::

    images/<ID>             verified images, and nothing else: a file appears here only by
                            rename(2) of a partial file whose bytes were counted and hashed
    records/<ID>.json       what was verified: size, digests, inode, mtime, the entry's facts;
                            its mtime is the image's last use (for LRU eviction)
    records/<ID>.xml        the signed entry the image was accepted under
    pins/<ID>               pinned: never evicted
    leases/<ID>/<token>     in use by a process (owner host, pid, start time); never evicted
                            while one of them is alive
    locks/<ID>.lock         the cross-host pull lock (see locks.py); locks/prune.lock
    partial/<ID>.<token>    a download in progress (+ .json: where from, for resuming)
    trash/                  images being evicted (renamed away first, then deleted)
    log/                    the transparency log as this node saw it: the newest checkpoint
                            per log key, entry dates, evidence (client.node.transparency)

**Verified once**: a hit compares the image's inode, size and mtime with the record; when
they agree the bytes are the ones hashed at download and are not read again. When they do
not, the image is hashed again and removed if it no longer matches. ``verify`` re-hashes
on demand.

**Eviction without races against users**: a user first creates its lease, then looks at
the image. The evictor first renames the image into ``trash/`` (new users then miss it and
pull), then looks at the leases; if one appeared it links the image back. Either the
evictor sees the lease or the user sees no image.

**Planted entries**: whoever else can write into a shared cache cannot make the fetcher
follow a symlink or use an entry someone else owns (:mod:`client.node.entries`): a planted
image or record is a miss, a planted pin or lease directory an error naming it.

Standard library only on the hit path; hashing (``verify``) loads the digests module.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from client.node import entries, locks
from client.node.entries import UnsafeEntry
from client.node.locks import Owner
from client.node.policy import Facts
from marketplace.metadata.digests import STRONG, same_digest
from marketplace.metadata.identifier import is_identifier

DIRECTORIES = ("images", "records", "pins", "leases", "locks", "partial", "trash", "log")
PRUNE_LOCK = "prune.lock"
RECORD_KEYS = {"size", "digests", "inode", "mtime_ns", "facts"}


@dataclass
class Hit:
    """A cached image and its record; ``intact`` when inode, size and mtime still agree."""

    identifier: str
    path: Path
    record: dict
    intact: bool

    @property
    def facts(self) -> Facts:
        return Facts.from_dict(self.record.get("facts", {}))


@dataclass
class Item:
    """One cached image as ``list`` and the evictor see it."""

    identifier: str
    size: int
    last_used: float
    pinned: bool
    leases: list[Owner] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        facts = self.record.get("facts", {})
        return {"identifier": self.identifier, "size": self.size,
                "last_used": _iso(self.last_used), "pinned": self.pinned,
                "in_use": [o.describe() for o in self.leases],
                "verified_at": self.record.get("verified_at"),
                "digests": self.record.get("digests", {}),
                "endorser": facts.get("email"), "created": facts.get("created"),
                "valid": facts.get("valid"), "location": self.record.get("location")}


class Cache:
    """One cache directory, seen from one host."""

    def __init__(self, root: Path, host: str, stale_after: float = 60.0,
                 local_lock_dir: Path | None = None):
        self.root = Path(root)
        self.host = host
        self.stale_after = stale_after
        self._local_lock_dir = local_lock_dir
        self._trusted: frozenset[int] | None = None

    # --- layout ------------------------------------------------------------------------

    @property
    def trusted(self) -> frozenset[int]:
        """Who may own the cache's entries: the cache directory's owner and us."""
        if self._trusted is None:
            try:
                self._trusted = entries.trusted_users(self.root)
            except FileNotFoundError:
                return frozenset({os.geteuid()})  # no cache yet: nothing in it to trust
        return self._trusted

    def dir(self, name: str, entry: str | None = None) -> Path:
        """The directory ``name`` (or ``entry`` in it), checked to be a real directory of a
        trusted owner, created if absent; before the cache exists, just the path."""
        directory = self.root / name
        with contextlib.suppress(FileNotFoundError):  # no cache yet: nothing to follow
            entries.directory(directory, self.trusted)
        return directory / entry if entry else directory

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name in DIRECTORIES:
            self.dir(name)

    def image_path(self, identifier: str) -> Path:
        return self.dir("images", checked_identifier(identifier))

    def record_path(self, identifier: str, suffix: str = ".json") -> Path:
        return self.dir("records", f"{checked_identifier(identifier)}{suffix}")

    def _safe_file(self, path: Path) -> os.stat_result | None:
        """The entry's status when it is a regular file of a trusted owner, else None."""
        try:
            return entries.lstat(path, "file", self.trusted)
        except UnsafeEntry:
            return None

    def local_lock_dir(self) -> Path:
        return locks.local_lock_dir(self._local_lock_dir)

    # --- records and hits ----------------------------------------------------------------

    def read_record(self, identifier: str) -> dict | None:
        return _read_json(self.record_path(identifier), self.trusted)

    def lookup(self, identifier: str) -> Hit | None:
        """The cached image of ``identifier`` with its record, or None when there is none."""
        record = self.read_record(identifier)
        if record is None or not set(record) >= RECORD_KEYS:
            return None  # no record, or not one this version wrote: a miss, pulled again
        path = self.image_path(identifier)
        st = self._safe_file(path)
        if st is None:
            return None  # absent, or planted (a link, someone else's): pulled again
        intact = (st.st_ino, st.st_size, st.st_mtime_ns) == (
            record.get("inode"), record.get("size"), record.get("mtime_ns"))
        return Hit(identifier, path, record, intact)

    def present(self, identifier: str) -> bool:
        """A quick test for waiters: is there an intact verified image?"""
        hit = self.lookup(identifier)
        return hit is not None and hit.intact

    def touch(self, identifier: str) -> None:
        """Record a use now (the record's mtime orders LRU eviction)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.record_path(identifier), follow_symlinks=False)

    def write_record(self, identifier: str, record: dict, document: bytes | None = None,
                     keep_last_use: bool = False) -> None:
        """Write an image's record; ``keep_last_use`` when the image was not used, only
        looked after (a verify), as the record's mtime is its last use for eviction."""
        from marketplace.metadata.files import write_atomic

        path = self.record_path(identifier)
        used = self._safe_file(path) if keep_last_use else None
        if document is not None:
            write_atomic(self.record_path(identifier, ".xml"), document)
        write_atomic(path, json.dumps(record, indent=1).encode())
        if used is not None:
            os.utime(path, ns=(used.st_atime_ns, used.st_mtime_ns), follow_symlinks=False)

    def update_record(self, identifier: str, **changes) -> dict | None:
        record = self.read_record(identifier)
        if record is None:
            return None
        record.update(changes)
        self.write_record(identifier, record)
        return record

    def stamp(self, identifier: str, record: dict) -> dict:
        """Put the image's current inode, size and mtime into ``record``."""
        path = self.image_path(identifier)
        st = entries.lstat(path, "file", self.trusted)
        if st is None:
            raise FileNotFoundError(f"{path} is gone")
        record.update(inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns)
        return record

    def commit(self, identifier: str, partial: Path, record: dict,
               document: bytes | None) -> dict:
        """Move a verified, fsynced partial file into place and write its record."""
        from marketplace.metadata.files import fsync_directory

        final = self.image_path(identifier)
        fd = entries.open_fd(partial, os.O_RDONLY)
        try:
            entries.check(partial, os.fstat(fd), "file", self.trusted)
            os.fchmod(fd, 0o444)
        finally:
            os.close(fd)
        os.replace(partial, final)
        fsync_directory(final.parent)
        record = self.stamp(identifier, record)
        self.write_record(identifier, record, document)
        return record

    # --- partial downloads ---------------------------------------------------------------

    def partial_path(self, identifier: str, token: str) -> Path:
        return self.dir("partial", f"{checked_identifier(identifier)}.{token}")

    def partials(self, identifier: str | None = None) -> list[Path]:
        pattern = f"{identifier}.*" if identifier else "*"
        return sorted(p for p in self.dir("partial").glob(pattern)
                      if not p.name.endswith(".json"))

    def adopt_partial(self, identifier: str, token: str) -> tuple[Path, dict | None]:
        """Our partial file for ``identifier``, taking over the largest one a dead puller left.

        Called with the pull lock held, so other partials belong to pullers that died (or
        stalled past the stale time). One of this host's dead processes is taken over by
        rename; any other is copied, so a stalled writer cannot write into our file. The
        rest are deleted. Returns the path and the saved state (None: start afresh).
        """
        ours = self.partial_path(identifier, token)
        left = [p for p in self.partials(identifier) if p != ours]
        sizes = {p: st.st_size for p in left if (st := self._safe_file(p)) is not None}
        state = None
        best = max(sizes, key=sizes.__getitem__, default=None)  # planted ones: never
        if best is not None:
            state = _read_json(best.with_name(best.name + ".json"), self.trusted)
            if state is not None and state.get("compression") is None and sizes[best] > 0:
                owner = Owner.from_dict(state.get("owner"))
                if owner is not None and owner.on_this_host(self.host) \
                        and not owner.alive_here():
                    os.replace(best, ours)
                else:
                    _copy_file(best, ours)
            else:
                state = None
        for path in left:
            _remove(path, path.with_name(path.name + ".json"))
        return ours, state

    def save_partial_state(self, partial: Path, state: dict) -> None:
        entries.write(partial.with_name(partial.name + ".json"), json.dumps(state).encode())

    def drop_partial(self, partial: Path) -> None:
        _remove(partial, partial.with_name(partial.name + ".json"))

    # --- locks ---------------------------------------------------------------------------

    def owner(self, pid: int | None = None) -> Owner:
        return Owner.of(self.host, pid)

    def lock(self, name: str, wait: float, done=None, on_wait=None) -> locks.Held | None:
        return locks.acquire(self.dir("locks", name), self.owner(),
                             stale_after=self.stale_after, wait=wait,
                             local_dir=self.local_lock_dir(), scope=self.root, done=done,
                             on_wait=on_wait)

    def pull_lock(self, identifier: str, wait: float, done=None, on_wait=None):
        return self.lock(f"{identifier}.lock", wait, done, on_wait)

    def lock_holder(self, identifier: str) -> Owner | None:
        return locks.read_owner(self.dir("locks", f"{identifier}.lock"))

    # --- pins and leases -----------------------------------------------------------------

    def pin(self, identifier: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        entries.write(self.dir("pins", checked_identifier(identifier)), b"")

    def unpin(self, identifier: str) -> bool:
        try:
            self.dir("pins", checked_identifier(identifier)).unlink()
        except FileNotFoundError:
            return False
        return True

    def pinned(self, identifier: str) -> bool:
        """A pin counts when it is a regular file of a trusted owner (not a planted link)."""
        return self._safe_file(self.dir("pins", checked_identifier(identifier))) is not None

    def add_lease(self, identifier: str, pid: int) -> Path:
        """Mark the image in use by process ``pid`` of this host (until it exits)."""
        owner = self.owner(pid)
        directory = entries.directory(self.dir("leases", checked_identifier(identifier)),
                                      self.trusted)
        path = directory / f"{owner.host}.{owner.pid}.{owner.token}"
        entries.write(path, owner.to_json(), exclusive=True)
        return path

    def leases(self, identifier: str, clean: bool = True) -> list[Owner]:
        """The live leases of an image; this host's dead ones are removed on the way."""
        directory = self.dir("leases", identifier)
        if not entries.is_safe(directory, "dir", self.trusted):
            return []  # absent, or planted: no lease can be in it
        try:
            names = sorted(directory.iterdir())
        except FileNotFoundError:
            return []
        live = []
        for path in names:
            owner = locks.read_owner(path, self.trusted)
            if owner is None:
                continue
            if owner.host == self.host and (not owner.on_this_host(self.host)
                                            or not owner.alive_here()):
                if clean:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                continue
            live.append(owner)
        if clean and not live:
            with contextlib.suppress(OSError):
                directory.rmdir()
        return live

    def release_lease(self, lease: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            lease.unlink()
        with contextlib.suppress(OSError):
            lease.parent.rmdir()

    # --- listing and eviction ------------------------------------------------------------

    def items(self) -> list[Item]:
        items = []
        for record_path in sorted(self.dir("records").glob("*.json")):
            identifier = record_path.name[:-len(".json")]
            if not is_identifier(identifier):
                continue
            record = _read_json(record_path, self.trusted)
            image, used = self._safe_file(self.image_path(identifier)), \
                self._safe_file(record_path)
            if image is None or used is None:
                continue
            size, last_used = image.st_size, used.st_mtime
            items.append(Item(identifier, size, last_used, self.pinned(identifier),
                              self.leases(identifier), record or {}))
        return items

    def usage(self) -> int:
        return sum(item.size for item in self.items())

    def evict(self, identifier: str) -> bool:
        """Remove an image unless it is in use; True when it is gone."""
        final = self.image_path(identifier)
        grave = self.dir("trash", f"{identifier}.{os.urandom(6).hex()}")
        try:
            os.rename(final, grave)
        except FileNotFoundError:
            self._forget(identifier)
            return True
        if self.leases(identifier):
            with contextlib.suppress(FileExistsError):
                os.link(grave, final)  # a user came: put it back
            grave.unlink()
            return False
        self._forget(identifier)
        grave.unlink()
        return True

    def _forget(self, identifier: str) -> None:
        if os.path.lexists(self.image_path(identifier)):
            return  # pulled again meanwhile: that record describes the new file
        for suffix in (".json", ".xml"):
            with contextlib.suppress(FileNotFoundError):
                self.record_path(identifier, suffix).unlink()

    def over_quota(self, quota: int | None, incoming: int = 0) -> bool:
        return quota is not None and self.usage() + incoming > quota

    def plan_eviction(self, quota: int, incoming: int = 0,
                      protect: set[str] | frozenset[str] = frozenset()) -> tuple[list[Item], int]:
        """Least recently used first: what to evict to fit ``incoming`` bytes under ``quota``,
        and the total that stays (over the quota when pinned or in-use images fill it)."""
        items = self.items()
        total = sum(i.size for i in items) + incoming
        chosen = []
        for item in sorted(items, key=lambda i: i.last_used):
            if total <= quota:
                break
            if item.pinned or item.leases or item.identifier in protect:
                continue
            chosen.append(item)
            total -= item.size
        return chosen, total

    def enforce_quota(self, quota: int | None, incoming: int = 0,
                      protect: set[str] | frozenset[str] = frozenset(),
                      wait: float = 60.0) -> tuple[list[Item], int]:
        """Evict least recently used images until ``incoming`` more bytes fit under the quota.

        Returns the evicted items and the size left (still over the quota when pinned or
        in-use images take the room). One evictor at a time, across hosts.
        """
        if quota is None or not self.over_quota(quota, incoming):
            return [], self.usage()
        held = self.lock(PRUNE_LOCK, wait)
        try:
            evicted = []
            plan, _ = self.plan_eviction(quota, incoming, protect)
            for item in plan:
                if self.evict(item.identifier):
                    evicted.append(item)
            return evicted, self.usage()
        finally:
            if held is not None:
                held.release()

    def remove(self, identifier: str, force: bool = False) -> bool:
        """Remove one image (``force``: even if pinned or in use); False when absent."""
        if not (os.path.lexists(self.image_path(identifier)) or self.read_record(identifier)):
            return False
        if force:
            self.unpin(identifier)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.image_path(identifier))
            self._forget(identifier)
            return True
        if self.pinned(identifier):
            raise PermissionError(f"{identifier} is pinned (unpin it, or --force)")
        if not self.evict(identifier):
            users = ", ".join(o.describe() for o in self.leases(identifier))
            raise PermissionError(f"{identifier} is in use by {users} (--force removes it)")
        return True

    def clean(self) -> list[str]:
        """Remove debris: partials no live puller owns (a live one holds the image's lock, or
        runs on this host), evicted files left in trash, dead leases. Returns what went."""
        removed = []
        for partial in self.partials():
            identifier = partial.name.rsplit(".", 1)[0]
            holder = self.lock_holder(identifier)
            if holder is not None and partial.name.endswith("." + holder.token):
                continue
            state = _read_json(partial.with_name(partial.name + ".json"), self.trusted) or {}
            owner = Owner.from_dict(state.get("owner"))
            if owner is not None and owner.on_this_host(self.host) and owner.alive_here():
                continue
            _remove(partial, partial.with_name(partial.name + ".json"))
            removed.append(str(partial))
        for grave in self.dir("trash").glob("*"):
            with contextlib.suppress(FileNotFoundError):
                grave.unlink()
                removed.append(str(grave))
        for directory in self.dir("leases").glob("*"):
            if is_identifier(directory.name):
                self.leases(directory.name)
        return removed

    # --- hashing at rest -----------------------------------------------------------------

    def rehash(self, identifier: str, progress=None) -> tuple[bool, dict]:
        """Hash a cached image again; (matches the record, the digests found)."""
        from marketplace.metadata.digests import digest_file

        record = self.read_record(identifier) or {}
        expected = record.get("digests", {})
        if self._safe_file(self.image_path(identifier)) is None:
            return False, {}  # gone, or planted: never hash what a link points to
        digests = digest_file(self.image_path(identifier), list(expected), compression=None,
                              progress=progress)
        found = {"size": digests.size, **digests.checksums}
        good = bool(expected) and digests.size == record.get("size") and all(
            same_digest(digests.checksums.get(a, ""), v) for a, v in expected.items())
        return good, found


def checked_identifier(identifier: str) -> str:
    """The identifier, which names files here: refuse anything else (``..``, slashes)."""
    if not is_identifier(identifier):
        raise ValueError(f"{identifier!r} is not an image identifier")
    return identifier


def verified_strongly(record: dict) -> bool:
    return any(a in STRONG for a in record.get("digests", {}))


def _read_json(path: Path, trusted: frozenset[int] | None) -> dict | None:
    """A small JSON object of the cache; None when absent, planted or not JSON."""
    try:
        value = json.loads(entries.read(path, trusted) or b"null")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _copy_file(source: Path, target: Path) -> None:
    """Copy another puller's partial file, reading and writing no symlink."""
    with open(entries.open_fd(source, os.O_RDONLY), "rb") as src, \
            open(entries.open_fd(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                 "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
