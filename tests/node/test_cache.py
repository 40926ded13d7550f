"""The cache through the fetcher: verified once, quota with LRU, pins, leases, verify, events.

Real marketplace, real origin server, real files; the only hand-made states are the ones a
test needs to be exact (a record's last-use time, an image's bytes changed behind the
cache's back).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from client.node import errors
from client.node.fetcher import Fetcher
from tests.node.conftest import Fault, debris, image_bytes

SIZE = 200_000


@pytest.fixture
def publish(marketplace, origin, rsa_signer):
    """Publish a fresh image served by the origin: ``publish(seed, **fields)`` -> (id, bytes)."""
    def make(seed: int, size: int = SIZE, name: str | None = None, **fields):
        image = image_bytes(size, seed=seed + int(time.time() * 1000) % 10**9)
        url = origin.add(name or f"img-{seed}-{len(origin.files)}.img", image)
        return marketplace.publish(rsa_signer, image, fields.pop("locations", [url]),
                                   **fields), image
    return make


def names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def set_last_use(fetcher: Fetcher, identifier: str, seconds_ago: float) -> None:
    moment = time.time() - seconds_ago
    os.utime(fetcher.cache.record_path(identifier), (moment, moment))


def test_a_pull_caches_the_verified_image_and_a_hit_answers_from_the_record(
        make_config, publish, origin):
    identifier, image = publish(1)
    fetcher = Fetcher(make_config())
    outcome = fetcher.pull(identifier)
    assert not outcome.cached and outcome.path.read_bytes() == image
    assert outcome.path == fetcher.cache.image_path(identifier)
    assert outcome.path.stat().st_mode & 0o222 == 0, "cached images are read-only"
    record = fetcher.cache.read_record(identifier)
    assert record["size"] == SIZE and list(record["digests"]) == ["SHA-256"]
    assert record["inode"] == outcome.path.stat().st_ino
    again = fetcher.pull(identifier)
    assert again.cached and again.path == outcome.path
    assert sum(origin.requests.values()) == 1
    assert debris(fetcher.cache.root) == []


def test_a_hit_trusts_the_record_and_verify_finds_the_damage(make_config, publish):
    identifier, image = publish(2)
    fetcher = Fetcher(make_config())
    path = fetcher.pull(identifier).path
    st = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:  # same inode, same size, and the mtime put back
        handle.seek(1000)
        handle.write(b"X")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(path, 0o444)
    assert fetcher.pull(identifier).cached, "a hit must not hash the image again"
    results = fetcher.verify()
    assert results[0]["identifier"] == identifier and results[0]["status"] == "damaged"
    assert not path.exists() and fetcher.cache.read_record(identifier) is None
    assert fetcher.events.sent[-1] == {**fetcher.events.sent[-1], "event": "evicted",
                                       "reason": "damaged"}
    fresh = fetcher.pull(identifier)
    assert not fresh.cached and fresh.path.read_bytes() == image
    assert fetcher.verify([identifier])[0]["status"] == "ok"


def test_a_file_changed_behind_the_caches_back_is_hashed_again(make_config, publish, origin):
    identifier, image = publish(3)
    fetcher = Fetcher(make_config())
    path = fetcher.pull(identifier).path
    os.utime(path)  # a touch: same bytes, new mtime
    assert fetcher.pull(identifier).cached
    assert fetcher.cache.read_record(identifier)["mtime_ns"] == path.stat().st_mtime_ns
    os.chmod(path, 0o644)
    path.write_bytes(image[:-1] + b"!")  # new bytes, new mtime
    outcome = fetcher.pull(identifier)
    assert not outcome.cached and outcome.path.read_bytes() == image
    assert [e["reason"] for e in fetcher.events.sent if e["event"] == "evicted"] == ["damaged"]
    assert sum(origin.requests.values()) == 2


def test_the_least_recently_used_image_is_evicted_first(make_config, publish):
    fetcher = Fetcher(make_config(quota=str(int(2.5 * SIZE))))
    first, _ = publish(10)
    second, _ = publish(11)
    fetcher.pull(first)
    fetcher.pull(second)
    set_last_use(fetcher, first, 60)
    set_last_use(fetcher, second, 120)  # used before the first one
    third, _ = publish(12)
    outcome = fetcher.pull(third)
    assert outcome.evicted == [second]
    assert sorted(names(fetcher.cache.dir("images"))) == sorted([first, third])
    evicted = [e for e in fetcher.events.sent if e["event"] == "evicted"]
    assert evicted == [{**evicted[0], "identifier": second, "reason": "quota", "size": SIZE}]


def test_verify_keeps_each_images_last_use_so_eviction_order_survives(make_config, publish):
    """A nightly verify used to make every image "just used": eviction order became the
    order in which verify went through them."""
    fetcher = Fetcher(make_config(quota=str(int(2.5 * SIZE))))
    first, _ = publish(13)
    second, _ = publish(14)
    fetcher.pull(first)
    fetcher.pull(second)
    set_last_use(fetcher, first, 60)
    set_last_use(fetcher, second, 120)
    before = {i.identifier: i.last_used for i in fetcher.cache.items()}
    assert [r["status"] for r in fetcher.verify([second, first])] == ["ok", "ok"]
    assert {i.identifier: i.last_used for i in fetcher.cache.items()} == before
    third, _ = publish(15)
    assert fetcher.pull(third).evicted == [second]


def test_room_is_made_before_downloading(make_config, publish):
    fetcher = Fetcher(make_config(quota=str(2 * SIZE)))
    first, _ = publish(20)
    second, _ = publish(21)
    fetcher.pull(first)
    fetcher.pull(second)
    third, _ = publish(22)
    outcome = fetcher.pull(third)
    assert outcome.evicted == [first]
    assert fetcher.cache.usage() == 2 * SIZE


def test_the_over_quota_note_counts_the_incoming_image_in_human_units(make_config, publish):
    """It read "holds 400000 bytes, over the quota of 500000": raw bytes, and not over."""
    notes: list[str] = []
    fetcher = Fetcher(make_config(quota=str(int(2.5 * SIZE))), log=notes.append)
    for seed in (23, 24):
        identifier, _ = publish(seed)
        fetcher.pull(identifier)
        fetcher.cache.pin(identifier)
    third, _ = publish(25)
    fetcher.pull(third)
    assert ("the cache holds 390.6 KiB and 195.3 KiB more are coming, 97.7 KiB over the quota "
            "of 488.3 KiB: what stays is pinned, in use or being pulled") in notes, notes


def test_pinned_and_in_use_images_are_never_evicted(make_config, publish):
    fetcher = Fetcher(make_config(quota=str(int(2.5 * SIZE))))
    pinned, _ = publish(30)
    used, _ = publish(31)
    fetcher.pull(pinned)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = fetcher.pull(used, hold_for=sleeper.pid)
        assert held.lease is not None
        fetcher.cache.pin(pinned)
        set_last_use(fetcher, pinned, 300)
        set_last_use(fetcher, used, 200)
        newest, _ = publish(32)
        outcome = fetcher.pull(newest)
        assert outcome.evicted == []
        assert sorted(names(fetcher.cache.dir("images"))) == sorted([pinned, used, newest])
        assert [i.identifier for i in fetcher.cache.items() if i.leases] == [used]
        with pytest.raises(PermissionError, match="in use by pid"):
            fetcher.remove(used)
        with pytest.raises(PermissionError, match="pinned"):
            fetcher.remove(pinned)
    finally:
        sleeper.kill()
        sleeper.wait()
    evicted, _ = fetcher.prune()
    assert evicted == [used], "a lease of a process that exited holds nothing"
    fetcher.cache.unpin(pinned)
    assert fetcher.prune(SIZE)[0] == [pinned]
    assert fetcher.remove(newest, force=True)
    assert names(fetcher.cache.dir("images")) == []


def test_a_failed_download_leaves_nothing_in_the_cache(make_config, marketplace, origin,
                                                       rsa_signer):
    image = image_bytes(SIZE, seed=40)
    bad = origin.add("bad.img", image, Fault("wrong", after=5))
    identifier = marketplace.publish(rsa_signer, image, [f"{origin.base}/missing.img", bad])
    fetcher = Fetcher(make_config())
    with pytest.raises(errors.DownloadFailed) as raised:
        fetcher.pull(identifier)
    text = "\n".join(raised.value.lines())
    assert f"{origin.base}/missing.img: HTTP 404" in text
    assert f"{bad}: SHA-256 mismatch" in text
    assert names(fetcher.cache.dir("images")) == [] and debris(fetcher.cache.root) == []
    assert fetcher.events.sent[-1]["event"] == "failed"


def test_a_compressed_image_is_cached_uncompressed(make_config, marketplace, origin,
                                                   rsa_signer):
    image = image_bytes(SIZE, seed=50)
    url = origin.add("image.raw.gz", gzip.compress(image))
    identifier = marketplace.publish(rsa_signer, image, [url], compression="gz")
    outcome = Fetcher(make_config()).pull(identifier)
    assert outcome.path.read_bytes() == image and outcome.record["compression"] == "gz"


def test_events_reach_the_configured_command(make_config, publish, tmp_path, origin):
    log = tmp_path / "events.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text("import os, sys\n"
                    f"with open({str(log)!r}, 'a') as f:\n"
                    "    f.write(os.environ['STRATUSLAB_EVENT'] + ' ' + sys.stdin.read())\n")
    command = f"{sys.executable} {hook}"
    fetcher = Fetcher(make_config(event_command=command, quota=str(SIZE)))
    first, _ = publish(60)
    second, _ = publish(61)
    fetcher.pull(first)
    fetcher.pull(second)  # evicts the first
    blocked = Fetcher(make_config(event_command=command))
    blocked.policy.blacklist_images = [first]
    with pytest.raises(errors.NoAcceptableEntry):
        blocked.pull(first)
    lines = [line.split(" ", 1) for line in log.read_text().splitlines()]
    events = [(kind, json.loads(body)) for kind, body in lines]
    assert [(k, e["event"], e["identifier"]) for k, e in events] == [
        ("available", "available", first), ("evicted", "evicted", first),
        ("available", "available", second), ("refused", "refused", first)]
    available = events[0][1]
    assert available["path"].endswith(first) and available["size"] == SIZE
    assert available["endorser"] == "jane.tester@example.org"
    assert available["location"].startswith(origin.base)
    assert events[1][1]["reason"] == "quota"
    assert events[3][1]["reasons"][0]["reasons"] == [f"image {first} is blacklisted"]


def test_a_broken_event_command_is_only_a_warning(make_config, publish):
    notes = []
    fetcher = Fetcher(make_config(event_command="/nonexistent/hook --flag"), log=notes.append)
    identifier, _ = publish(70)
    assert not fetcher.pull(identifier).cached
    assert any("event command /nonexistent/hook failed" in n for n in notes)


def test_a_cached_image_refused_by_a_new_policy_is_not_served(make_config, publish):
    identifier, _ = publish(80)
    Fetcher(make_config()).pull(identifier)
    strict = Fetcher(make_config())
    strict.policy.whitelist_endorsers = ["someone.else@example.org"]
    with pytest.raises(errors.NoAcceptableEntry):
        strict.pull(identifier)
    assert strict.cache.lookup(identifier) is not None, "refused, but not deleted"


def test_clean_removes_debris_of_dead_pullers(make_config, publish):
    fetcher = Fetcher(make_config())
    fetcher.cache.ensure()
    identifier, _ = publish(90)
    dead = fetcher.cache.partial_path(identifier, "deadbeef")
    dead.write_bytes(b"partial")
    state = {"owner": {"host": fetcher.config.hostname, "boot": "an-earlier-boot", "pid": 1,
                       "start": None, "token": "deadbeef"}, "location": "x",
             "compression": None}
    fetcher.cache.save_partial_state(dead, state)
    (fetcher.cache.dir("trash") / f"{identifier}.abc").write_bytes(b"x")
    evicted, removed = fetcher.prune()
    assert evicted == [] and str(dead) in removed
    assert debris(fetcher.cache.root) == []
