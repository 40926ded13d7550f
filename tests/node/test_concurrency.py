"""Many pullers, crashes and abandoned locks, with real processes and a real origin.

The origin trickles its bytes so that a download is surely in progress while the other
processes start or while one is killed; no assertion depends on how long anything takes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from client.node import errors, locks
from client.node.fetcher import Fetcher
from tests.node.conftest import Fault, command_env, debris, image_bytes, script, wait_for

SIZE = 4 * 1024 * 1024 + 321
PROCESSES = 20

# A puller that waits at a start line, so that all of them start pulling together.
STARTER = """
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.01)
from client.image_cache import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def slow_image(marketplace, origin, rsa_signer):
    """An image whose origin sends 64 KiB every 50 ms (about 3 s in all)."""
    image = image_bytes(SIZE, seed=int(time.time() * 1000) % 10**9)
    url = origin.add("slow.img", image, Fault("trickle", chunk=64 * 1024, delay=0.05))
    identifier = marketplace.publish(rsa_signer, image, [url])
    return identifier, image


def config_file(write_config, node_settings, **settings) -> Path:
    return write_config(fetcher={**node_settings, **settings})


def test_twenty_processes_on_two_hosts_download_once(slow_image, origin, write_config,
                                                     node_settings, tmp_path):
    identifier, image = slow_image
    config = config_file(write_config, node_settings)
    go = tmp_path / "go"
    pullers = []
    for number in range(PROCESSES):
        host = "node-a" if number % 2 else "node-b"  # two "hosts": separate local locks
        env = command_env(STRATUSLAB_HOSTNAME=host,
                          STRATUSLAB_LOCAL_LOCK_DIR=str(tmp_path / f"locks-{host}"))
        pullers.append(subprocess.Popen(
            [sys.executable, "-c", STARTER, str(go), "pull", identifier, "--config",
             str(config), "--json", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, text=True))
    go.touch()
    results = []
    for puller in pullers:
        out, err = puller.communicate(timeout=300)
        assert puller.returncode == 0, err
        results.append(json.loads(out))
    assert origin.requests["slow.img"] == 1 and origin.complete["slow.img"] == 1
    assert origin.bytes["slow.img"] == SIZE
    assert sum(not r["cached"] for r in results) == 1
    assert {r["path"] for r in results} == {str(tmp_path / "cache" / "images" / identifier)}
    assert (tmp_path / "cache" / "images" / identifier).read_bytes() == image
    assert debris(tmp_path / "cache") == []


def test_a_pull_killed_mid_download_is_resumed_and_leaves_no_debris(
        slow_image, origin, write_config, node_settings, tmp_path):
    identifier, image = slow_image
    config = config_file(write_config, node_settings)
    cache = tmp_path / "cache"
    victim = subprocess.Popen([script("stratus-image-cache"), "pull", identifier, "--config",
                               str(config), "-q"], env=command_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def partial_size() -> int:
        sizes = [p.stat().st_size for p in (cache / "partial").glob(f"{identifier}.*")
                 if not p.name.endswith(".json")] if (cache / "partial").exists() else []
        return max(sizes, default=0)

    wait_for(lambda: partial_size() >= 512 * 1024, 120, "the download to be under way")
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    kept = partial_size()
    assert 0 < kept < SIZE, "the pull was not killed mid-download"
    assert (cache / "locks" / f"{identifier}.lock").exists(), "the dead puller's lock"
    assert not (cache / "images" / identifier).exists()

    outcome = Fetcher(_load(config)).pull(identifier)
    assert outcome.path.read_bytes() == image
    assert outcome.fetched["resumed_from"] >= kept
    assert ("slow.img", outcome.fetched["resumed_from"]) in origin.ranges
    assert origin.bytes["slow.img"] < 2 * SIZE, "the partial bytes were fetched again"
    assert debris(cache) == []
    assert sorted(p.name for p in (cache / "images").iterdir()) == [identifier]


def test_an_abandoned_lock_of_another_host_is_broken_when_stale(slow_image, make_config,
                                                                origin):
    identifier, image = slow_image
    origin.files["slow.img"].faults.clear()
    fetcher = Fetcher(make_config())
    fetcher.cache.ensure()
    lock = fetcher.cache.dir("locks") / f"{identifier}.lock"
    lock.write_bytes(locks.Owner("node-z", "other-boot", 4242, None, "cafe").to_json())
    old = time.time() - 3600
    os.utime(lock, (old, old))
    outcome = fetcher.pull(identifier)
    assert outcome.path.read_bytes() == image
    assert not lock.exists() and debris(fetcher.cache.root) == []


def test_a_dead_process_of_this_host_is_seen_at_once(slow_image, make_config, origin):
    identifier, _ = slow_image
    origin.files["slow.img"].faults.clear()
    fetcher = Fetcher(make_config(lock_stale_after="3600"))
    fetcher.cache.ensure()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = locks.Owner.of(fetcher.config.hostname, dead.pid)
    (fetcher.cache.dir("locks") / f"{identifier}.lock").write_bytes(owner.to_json())
    assert not fetcher.pull(identifier).cached  # no 3600 s wait: the pid is gone


def test_a_live_lock_of_another_host_is_waited_for_then_given_up_on(slow_image, make_config):
    identifier, _ = slow_image
    fetcher = Fetcher(make_config(lock_wait="1", lock_stale_after="30"))
    fetcher.cache.ensure()
    lock = fetcher.cache.dir("locks") / f"{identifier}.lock"
    lock.write_bytes(locks.Owner("node-z", "other-boot", 4242, None, "cafe").to_json())
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(0.1):
            os.utime(lock)

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    try:
        with pytest.raises(errors.Busy, match="pid 4242 on node-z"):
            fetcher.pull(identifier)
    finally:
        stop.set()
        beating.join()
    assert lock.exists(), "a live lock was broken"


def test_waiters_use_the_result_of_the_puller_they_waited_for(slow_image, make_config):
    identifier, _image = slow_image
    config = make_config()
    outcomes, failures = [], []

    def pull():
        try:
            outcomes.append(Fetcher(config).pull(identifier))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures
    assert sum(not o.cached for o in outcomes) == 1
    assert sum(o.waited for o in outcomes) + sum(o.cached for o in outcomes) >= 3


def test_the_shared_lock_is_created_atomically(tmp_path):
    path = tmp_path / "x.lock"
    first = locks.SharedLock(path, locks.Owner.of("h"), 60)
    second = locks.SharedLock(path, locks.Owner.of("h"), 60)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert second.holder().token == first.owner.token
    assert not second.is_stale(second.holder(), "h"), "our own live process"
    first.release()
    assert not path.exists() and second.try_acquire()
    second.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _load(path: Path):
    from client.node.config import load

    return load(path, environ={})
