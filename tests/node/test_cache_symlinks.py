"""A cache on a shared mount, with symlinks planted in it: nothing outside is created or written.

Whoever else can write into the cache directory (another user or host of a shared mount)
may plant a symbolic link where the fetcher will create, write, touch, rename into or read
a file: a pin, a lease, a lock, the same-host lock, the clock probe, an image, a record, a
partial download and its saved state, or one of the directories themselves. Each test plants
one, runs the real cache operation, and checks that the directory the link points to is
exactly as it was; where the operation cannot go on, it fails naming the entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from client.node import locks
from client.node.cache import Cache
from client.node.download import Sink
from client.node.locks import LockTimeout, Owner

IDENTIFIER = "B" * 27
HOST = "node1"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory outside the cache, with one precious file."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "victim").write_bytes(b"precious\n")
    os.utime(directory / "victim", (1_000_000, 1_000_000))
    return directory


@pytest.fixture
def cache(tmp_path) -> Cache:
    made = Cache(tmp_path / "cache", HOST, stale_after=2.0, local_lock_dir=tmp_path / "local")
    made.ensure()
    return made


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None,
                                             p.lstat().st_mtime_ns, p.lstat().st_mode)
            for p in sorted(directory.rglob("*"))}


@pytest.fixture
def untouched(outside):
    """Call at the end of a test: the outside directory is as it was."""
    before = snapshot(outside)
    return lambda: snapshot(outside) == before


def plant(link: Path, target: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        link.rmdir()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def refused(call, *args) -> str:
    with pytest.raises(OSError) as raised:
        call(*args)
    assert "symbolic link" in str(raised.value)
    return str(raised.value)


def an_image(cache: Cache, data: bytes = b"image bytes") -> Path:
    partial = cache.partial_path(IDENTIFIER, "t0ken")
    sink = Sink(partial)
    sink.write(memoryview(data))
    sink.finish()
    record = {"identifier": IDENTIFIER, "digests": {"SHA-256": "00"}, "facts": {}}
    cache.commit(IDENTIFIER, partial, record, b"<rdf/>")
    return cache.image_path(IDENTIFIER)


# --- pins and leases ------------------------------------------------------------------------


def test_a_pin_planted_as_a_symlink_creates_nothing(cache, outside, untouched):
    plant(cache.root / "pins" / IDENTIFIER, outside / "created-by-pin")
    message = refused(cache.pin, IDENTIFIER)
    assert f"pins/{IDENTIFIER}" in message
    assert not cache.pinned(IDENTIFIER)
    assert untouched()


@pytest.mark.parametrize("name", ["pins", "leases", "records", "trash"])
def test_a_cache_directory_planted_as_a_symlink_is_refused(cache, outside, untouched, name):
    plant(cache.root / name, outside)
    operations = {"pins": lambda: cache.pin(IDENTIFIER),
                  "leases": lambda: cache.add_lease(IDENTIFIER, os.getpid()),
                  "records": lambda: cache.write_record(IDENTIFIER, {"size": 1}, b"<rdf/>"),
                  "trash": lambda: cache.evict(IDENTIFIER)}
    if name == "trash":
        an_image(cache)
    message = refused(operations[name])
    assert name in message
    assert untouched()


def test_a_lease_directory_planted_as_a_symlink_gets_no_lease(cache, outside, untouched):
    plant(cache.root / "leases" / IDENTIFIER, outside)
    refused(cache.add_lease, IDENTIFIER, os.getpid())
    assert cache.leases(IDENTIFIER) == []
    assert untouched()


def test_an_images_directory_planted_as_a_symlink_gets_no_image(cache, outside, untouched):
    plant(cache.root / "images", outside)
    with pytest.raises(OSError, match="symbolic link"):
        an_image(cache)
    assert untouched()


# --- images and records ----------------------------------------------------------------------


def test_an_image_planted_as_a_symlink_is_no_hit(cache, outside, untouched):
    an_image(cache)
    image = cache.image_path(IDENTIFIER)
    image.unlink()
    plant(image, outside / "victim")
    st = os.stat(outside / "victim")
    cache.update_record(IDENTIFIER, inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns)
    assert cache.lookup(IDENTIFIER) is None
    assert not cache.present(IDENTIFIER)
    assert untouched()


def test_a_record_planted_as_a_symlink_is_neither_read_nor_touched(cache, outside, untouched):
    an_image(cache)
    record = cache.record_path(IDENTIFIER)
    (outside / "record.json").write_bytes(record.read_bytes())
    os.utime(outside / "record.json", (1_000_000, 1_000_000))
    before = snapshot(outside)
    record.unlink()
    plant(record, outside / "record.json")
    cache.touch(IDENTIFIER)
    assert cache.lookup(IDENTIFIER) is None
    assert snapshot(outside) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_an_image_owned_by_another_user_is_no_hit(cache):
    image = an_image(cache)
    os.chown(image, 12345, 12345, follow_symlinks=False)
    assert cache.lookup(IDENTIFIER) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_pin_owned_by_another_user_does_not_count(cache):
    cache.pin(IDENTIFIER)
    os.chown(cache.root / "pins" / IDENTIFIER, 12345, 12345)
    assert not cache.pinned(IDENTIFIER)


# --- partial downloads and their saved state -------------------------------------------------


def _left_partial(cache: Cache, target: Path, owner: Owner) -> None:
    left = cache.partial_path(IDENTIFIER, "deadbeef")
    plant(left, target)
    state = {"location": "http://example.org/a.img", "validator": None, "compression": None,
             "owner": json.loads(owner.to_json())}
    left.with_name(left.name + ".json").write_text(json.dumps(state))


@pytest.mark.parametrize("who", ["dead-here", "other-host"])
def test_a_partial_file_planted_as_a_symlink_is_not_taken_over(cache, outside, untouched, who):
    dead = Owner(HOST, locks.boot_id(), 2**22 + 17, "1", "deadbeef")
    _left_partial(cache, outside / "victim", dead if who == "dead-here" else
                  Owner("other", "boot", 1, "1", "deadbeef"))
    ours, state = cache.adopt_partial(IDENTIFIER, "mytoken")
    sink = Sink(ours, keep=state is not None)
    sink.truncate()
    sink.write(memoryview(b"downloaded"))
    sink.finish()
    assert state is None and ours.read_bytes() == b"downloaded"
    assert untouched()


def test_a_partial_state_planted_as_a_symlink_is_not_written(cache, outside, untouched):
    partial = cache.partial_path(IDENTIFIER, "mytoken")
    plant(partial.with_name(partial.name + ".json"), outside / "victim")
    refused(cache.save_partial_state, partial, {"location": "http://example.org/a.img"})
    assert untouched()


def test_a_partial_file_planted_as_a_symlink_is_not_opened_for_writing(cache, outside,
                                                                       untouched):
    partial = cache.partial_path(IDENTIFIER, "mytoken")
    plant(partial, outside / "victim")
    refused(Sink, partial, True)
    assert untouched()


# --- locks ----------------------------------------------------------------------------------


def _held_elsewhere(cache: Cache) -> None:
    lock = cache.root / "locks" / f"{IDENTIFIER}.lock"
    lock.write_bytes(Owner("other-host", "boot", 1, "1", "cafe").to_json())


def test_the_clock_probe_planted_as_a_symlink_creates_nothing(cache, outside, untouched):
    _held_elsewhere(cache)
    plant(cache.root / "locks" / f".clock.{HOST}.{os.getpid()}", outside / "created-by-probe")
    with pytest.raises(LockTimeout):
        cache.pull_lock(IDENTIFIER, wait=0.3)
    assert untouched()


def test_a_lock_planted_as_a_symlink_is_broken_not_followed(cache, outside, untouched):
    plant(cache.root / "locks" / f"{IDENTIFIER}.lock", outside / "victim")
    held = cache.pull_lock(IDENTIFIER, wait=30)
    assert held is not None
    held.release()
    assert untouched()


def test_the_local_lock_planted_as_a_symlink_creates_nothing(cache, outside, untouched):
    local = locks.LocalLock(cache.local_lock_dir(), cache.root, f"{IDENTIFIER}.lock")
    plant(local.path, outside / "created-by-flock")
    refused(cache.pull_lock, IDENTIFIER, 0.3)
    assert untouched()


def test_a_locks_directory_planted_as_a_symlink_is_refused(cache, outside, untouched):
    plant(cache.root / "locks", outside)
    refused(cache.pull_lock, IDENTIFIER, 0.3)
    assert untouched()
