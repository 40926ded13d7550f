"""The node checks the marketplace's transparency log before it trusts an entry.

A real HTTP server on 127.0.0.1 plays the marketplace: it lists real signed entries, serves
each one's stored bytes with its ``Log-Index``, and serves a log built here from the leaves
of :mod:`marketplace.metadata.logleaf` with :mod:`marketplace.metadata.tlog` (C2SP hash tiles
and entry bundles) and a checkpoint signed with a real Ed25519 :class:`note.Signer`. Each
test changes what it serves the way a lying marketplace would, and the node under test is the
real :class:`~client.node.fetcher.Fetcher` with a config file, or the real commands.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.node import config as fetcher_config
from client.node import errors
from client.node.fetcher import Fetcher
from client.node.resolve import facts_of
from marketplace.metadata import logleaf, note, tlog
from marketplace.metadata.model import format_date
from marketplace.metadata.verdict import Moment, judge
from tests import factories
from tests.node.conftest import QuietServer, command_env, image_bytes, run_command

DAY = 24 * 3600


# --- a log built in the test ------------------------------------------------------------------


class Log:
    """An RFC 6962 log of leaves, served as C2SP tiles, signed by ``signer``."""

    def __init__(self, origin: str, signer: note.Signer):
        self.origin = origin
        self.signer = signer
        self.leaves: list[bytes] = []

    def append(self, leaf: bytes) -> int:
        self.leaves.append(leaf)
        return len(self.leaves) - 1

    def root(self, size: int) -> bytes:
        return tlog.root_of([tlog.leaf_hash(leaf) for leaf in self.leaves[:size]])

    def checkpoint(self, size: int | None = None, at: float | None = None,
                   cosigners: tuple[note.Signer, ...] = ()) -> str:
        """The signed note of the tree of ``size`` leaves (default all), signed at ``at``."""
        size = len(self.leaves) if size is None else size
        signed_at = int(time.time() if at is None else at)
        checkpoint = note.Checkpoint(self.origin, size, self.root(size)).signed_at(signed_at)
        text = checkpoint.text()
        return note.sign(text, self.signer) + "".join(
            c.signature_line(text, signed_at) for c in cosigners)

    def files(self, size: int | None = None) -> dict[str, bytes]:
        """Every hash tile and entry bundle of the tree of ``size`` leaves, by path."""
        size = len(self.leaves) if size is None else size
        hashes = b"".join(tlog.leaf_hash(leaf) for leaf in self.leaves[:size])

        def below(level: int, index: int) -> bytes:
            return hashes[index * tlog.TILE_WIDTH * tlog.HASH_SIZE:
                          (index + 1) * tlog.TILE_WIDTH * tlog.HASH_SIZE]

        files = {}
        for level, index, width in tlog.tiles_for(size):
            files[tlog.tile_path(level, index, width)] = tlog.tile_hashes(level, index, width,
                                                                          below)
            if level == 0:
                first = index * tlog.TILE_WIDTH
                files[tlog.tile_path(0, index, width, entries=True)] = tlog.entry_bundle(
                    self.leaves[first:first + width])
        return files


@dataclass
class Published:
    """One entry on the test marketplace."""

    identifier: str
    email: str
    created: str
    document: bytes
    index: int | None = None

    @property
    def path(self) -> str:
        return f"metadata/{self.identifier}/{self.email}/{self.created}"


def published(document: bytes) -> Published:
    facts = facts_of(judge(document, Moment.endorsement(datetime.now(UTC))).checked)
    return Published(facts.identifier, facts.email, facts.created, document)


class LogMarket:
    """A marketplace on 127.0.0.1 whose every answer the test controls.

    ``current`` maps an identifier to the entries its listing shows; ``entries`` maps entry
    paths to the entry served there; ``log_files`` and ``checkpoint`` are what ``/log/``
    serves (``serve()`` sets them from ``log``). ``requests`` counts every path asked.
    """

    def __init__(self, log: Log):
        self.log = log
        self.current: dict[str, list[Published]] = {}
        self.entries: dict[str, Published] = {}
        self.log_files: dict[str, bytes] = {}
        self.checkpoint = ""
        self.requests: Counter[str] = Counter()
        market = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                market.answer(self)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def publish(self, document: bytes, event: str = logleaf.PUBLISHED,
                current: bool = True) -> Published:
        """Store a signed document, append its leaf, and (``current``) list it as the newest
        of its endorser."""
        entry = published(document)
        entry.index = self.log.append(logleaf.LogEvent(
            event, format_date(datetime.now(UTC).replace(microsecond=0)), entry.identifier,
            entry.email, entry.created, logleaf.digest(document)).leaf())
        self.entries[entry.path] = entry
        if current:
            self.show(entry)
        return entry

    def show(self, entry: Published) -> None:
        """List ``entry`` as its endorser's newest (what a marketplace rolling back does)."""
        others = [e for e in self.current.get(entry.identifier, []) if e.email != entry.email]
        self.current[entry.identifier] = [*others, entry]

    def serve(self, size: int | None = None, at: float | None = None,
              cosigners: tuple[note.Signer, ...] = ()) -> None:
        """Serve the log's tree of ``size`` leaves (default all), signed at ``at``."""
        self.log_files = self.log.files(size)
        self.checkpoint = self.log.checkpoint(size, at, cosigners)

    def answer(self, handler) -> None:
        path = handler.path.lstrip("/").split("?", 1)[0]
        self.requests[path] += 1
        body, headers = self.body(path)
        if body is None:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def body(self, path: str) -> tuple[bytes | None, dict[str, str]]:
        if path == "log/checkpoint":
            return self.checkpoint.encode(), {"Content-Type": "text/plain; charset=utf-8"}
        if path.startswith("log/"):
            return self.log_files.get(path[len("log/"):]), {}
        if path in self.entries:
            entry = self.entries[path]
            headers = {"Content-Type": "application/rdf+xml"}
            if entry.index is not None:
                headers["Log-Index"] = str(entry.index)
            return entry.document, headers
        listed = self.current.get(path[len("metadata/"):], [])
        roots = [e.document.split(b"?>", 1)[1].strip() for e in listed]
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="{len(roots)}">\n'
                .encode() + b"\n".join(roots) + b"\n</metadata>\n"), {}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def log_signer() -> note.Signer:
    return note.Signer.generate("market.example.org/log")


@pytest.fixture
def market(log_signer) -> Iterator[LogMarket]:
    server = LogMarket(Log("market.example.org/log", log_signer))
    yield server
    server.stop()


@pytest.fixture
def node_config(tmp_path, write_config, market, log_signer) -> Callable[..., Path]:
    """Write a fetcher.cfg for one node checking the market's log; returns its path."""

    def make(name: str = "node", **settings) -> Path:
        values = {"cache_dir": str(tmp_path / name / "cache"),
                  "marketplace_endpoint": market.url, "connect_timeout": "5",
                  "read_timeout": "5", "retries": "1", "backoff": "0.01",
                  "lock_stale_after": "2", "lock_wait": "60",
                  "local_lock_dir": str(tmp_path / name / "locks"),
                  "allow_private_addresses": "127.0.0.1/32",
                  "log_key": log_signer.verifier.vkey(), **settings}
        return write_config(f"{name}.cfg", **{"fetcher": {k: v for k, v in values.items()
                                                          if v is not None}})

    return make


@pytest.fixture
def make_fetcher(node_config) -> Callable[..., Fetcher]:
    def make(name: str = "node", **settings) -> Fetcher:
        return Fetcher(fetcher_config.load(node_config(name, **settings), environ={}))

    return make


@pytest.fixture
def image(origin, market, rsa_signer) -> Callable[..., Published]:
    """Publish an entry of a fresh image served by ``origin``: ``image(seed, when)``."""

    def make(seed: int = 0, created: datetime | None = None, signer=None,
             **publish) -> Published:
        data = image_bytes(4096, seed)
        url = origin.add(f"image-{seed}.img", data)
        entry = factories.appliance(data, locations=[url])
        when = created or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        return market.publish(factories.signed(signer or rsa_signer, entry, now=when),
                              **publish)

    return make


def kept_checkpoint(fetcher: Fetcher) -> list[Path]:
    return sorted((fetcher.cache.root / "log").glob("*.checkpoint"))


# --- the checkpoint's time line (marketplace.metadata.note) -------------------------------


def test_a_checkpoint_says_when_it_was_signed():
    root = hashlib.sha256(b"r").digest()
    checkpoint = note.Checkpoint("o/log", 5, root, ("other",)).signed_at(1_700_000_000)
    parsed = note.Checkpoint.parse(checkpoint.text())
    assert parsed.time == 1_700_000_000 and "other" in parsed.extensions
    assert parsed.signed_at(1_700_000_500).time == 1_700_000_500
    assert note.Checkpoint("o/log", 5, root).time is None
    with pytest.raises(note.NoteError, match="time line"):
        _ = note.Checkpoint("o/log", 5, root, ("time 0123",)).time


# --- the happy path and the cache hit -----------------------------------------------------


def test_an_entry_in_the_log_is_pulled_and_the_checkpoint_kept(market, image, make_fetcher):
    image(seed=1)
    entry = image(seed=2)
    market.serve()
    fetcher = make_fetcher()
    outcome = fetcher.pull(entry.identifier)
    assert outcome.cached is False and outcome.path.read_bytes() == image_bytes(4096, 2)
    assert outcome.resolution["log"] == {
        "checked": True, "log_index": 1, "tree_size": 2, "origin": "market.example.org/log",
        "signed_at": note.Checkpoint.parse(note.split(market.checkpoint)[0]).time}
    [kept] = kept_checkpoint(fetcher)
    assert kept.read_text() == market.checkpoint
    assert stat.S_IMODE(kept.stat().st_mode) == 0o644
    assert (fetcher.cache.root / "records" / f"{entry.identifier}.xml").read_bytes() == \
        entry.document  # the stored bytes the log speaks of, not the listing's copy


def test_a_cache_hit_asks_nothing_of_the_marketplace_or_its_log(market, origin, image,
                                                              make_fetcher):
    entry = image(seed=3)
    market.serve()
    make_fetcher().pull(entry.identifier)
    market.requests.clear()
    origin.requests.clear()
    again = make_fetcher().pull(entry.identifier)
    assert again.cached is True
    assert not market.requests and not origin.requests


def test_the_log_grows_between_pulls_and_each_tree_extends_the_last(market, image,
                                                                   make_fetcher):
    first = image(seed=4)
    market.serve()
    fetcher = make_fetcher()
    fetcher.pull(first.identifier)
    for seed in range(5, 5 + 300):  # past a full tile: proofs cross tiles and levels
        market.log.append(f"filler {seed}".encode())
    second = image(seed=400)
    market.serve()
    assert fetcher.pull(second.identifier).resolution["log"]["tree_size"] == 302
    assert note.Checkpoint.parse(note.split(kept_checkpoint(fetcher)[0].read_text())[0]
                                 ).size == 302


def test_without_a_log_key_the_node_says_the_log_is_not_checked(market, image,
                                                                 node_config):
    entry = image(seed=6)
    notes: list[str] = []
    config = fetcher_config.load(node_config(log_key=None), environ={})
    outcome = Fetcher(config, log=notes.append).pull(entry.identifier)
    assert outcome.resolution["log"] == {"checked": False}
    assert any("transparency log is not checked" in n for n in notes)
    assert not market.requests["log/checkpoint"]


def test_require_log_without_a_key_refuses(image, make_fetcher):
    entry = image(seed=7)
    with pytest.raises(errors.LogUntrusted, match="no log_key"):
        make_fetcher(log_key=None, require_log="yes").pull(entry.identifier)


# --- freeze, rollback, split view -----------------------------------------------------------


def test_a_checkpoint_older_than_max_checkpoint_age_is_a_frozen_log(market, image,
                                                                   make_fetcher):
    entry = image(seed=8)
    market.serve(at=time.time() - DAY - 60)
    with pytest.raises(errors.LogFrozen, match=r"frozen: its checkpoint .* 24.0 h ago"):
        make_fetcher().pull(entry.identifier)
    market.serve(at=time.time() - 3600)
    assert make_fetcher(max_checkpoint_age="7200").pull(entry.identifier).cached is False


def test_a_checkpoint_dated_ahead_is_refused(market, image, make_fetcher):
    entry = image(seed=34)
    market.serve(at=time.time() + 3600)  # would stay "fresh" for a day and an hour
    with pytest.raises(errors.LogUntrusted, match="s from now"):
        make_fetcher().pull(entry.identifier)


def test_a_checkpoint_of_another_origin_is_refused(market, image, make_fetcher):
    entry = image(seed=35)
    market.log.origin = "elsewhere.example.org/log"
    market.serve()
    with pytest.raises(errors.LogUntrusted, match=r"is of the log 'elsewhere\.example\.org/log'"):
        make_fetcher().pull(entry.identifier)


def test_a_smaller_tree_than_one_seen_is_a_rollback_with_both_notes_kept(market, image,
                                                                        make_fetcher):
    old = image(seed=9)
    newer = image(seed=10)
    market.serve()
    fetcher = make_fetcher()
    fetcher.pull(newer.identifier)
    seen = market.checkpoint
    market.serve(size=1)  # the tree before ``newer``, signed again now
    with pytest.raises(errors.LogRollback) as raised:
        fetcher.pull(old.identifier)
    assert "ROLLBACK" in raised.value.message and "now has 1 leaves" in raised.value.message
    kept, served = map(Path, raised.value.evidence)
    assert kept.read_text() == seen and served.read_text() == market.checkpoint
    assert str(kept) in raised.value.message
    assert not fetcher.cache.present(old.identifier)


def test_a_fork_of_the_log_is_a_split_view(market, image, make_fetcher, log_signer):
    entry = image(seed=11)
    market.serve()
    fetcher = make_fetcher()
    fetcher.pull(entry.identifier)
    seen = market.checkpoint
    fork = Log(market.log.origin, log_signer)  # the same key signs another history
    fork.leaves = [b"a leaf the first tree never had", *market.log.leaves]
    market.log = fork
    other = image(seed=12)
    market.serve()
    with pytest.raises(errors.LogSplitView) as raised:
        fetcher.pull(other.identifier)
    assert "SPLIT VIEW" in raised.value.message
    assert [Path(p).read_text() for p in raised.value.evidence] == [seen, market.checkpoint]


def test_two_trees_of_one_size_are_a_split_view(market, image, make_fetcher):
    entry = image(seed=13)
    market.serve()
    fetcher = make_fetcher()
    fetcher.pull(entry.identifier)
    fetcher.remove(entry.identifier, force=True)
    market.log.leaves = [b"another first leaf"]  # one leaf again, another root
    market.serve()
    with pytest.raises(errors.LogSplitView, match="two different trees of one size"):
        fetcher.pull(entry.identifier)


def test_tiles_that_are_not_the_signed_tree_are_no_evidence_of_a_split_view(market, image,
                                                                           make_fetcher):
    entry = image(seed=32)
    market.serve()
    fetcher = make_fetcher()
    fetcher.pull(entry.identifier)
    for n in range(300):
        market.log.append(f"filler {n}".encode())
    later = image(seed=33)
    market.serve()
    tile = bytearray(market.log_files["tile/0/000"])
    tile[5 * 32] ^= 1  # a hash the consistency proof uses, not the root's right edge
    market.log_files["tile/0/000"] = bytes(tile)
    with pytest.raises(errors.LogUntrusted, match="cannot be checked against the tree"):
        fetcher.pull(later.identifier)
    assert not list((fetcher.cache.root / "log").glob("*.note"))
    del market.log_files["tile/0/000"]
    with pytest.raises(errors.LogUntrusted, match="serves no log tile tile/0/000"):
        fetcher.pull(later.identifier)


# --- inclusion ------------------------------------------------------------------------------


def test_an_entry_without_a_leaf_is_refused(market, image, make_fetcher):
    entry = image(seed=14)
    entry.index = None  # served without Log-Index: published outside the log
    market.serve()
    with pytest.raises(errors.NotInLog, match="no Log-Index"):
        make_fetcher().pull(entry.identifier)


def test_an_index_pointing_at_another_entrys_leaf_is_refused(market, image, make_fetcher):
    other = image(seed=15)
    entry = image(seed=16)
    entry.index = other.index
    market.serve()
    with pytest.raises(errors.NotInLog, match="is not the publication of this entry"):
        make_fetcher().pull(entry.identifier)


def test_an_entry_beyond_the_signed_tree_is_refused(market, image, make_fetcher):
    image(seed=17)
    entry = image(seed=18)
    market.serve(size=1)
    with pytest.raises(errors.NotInLog, match="beyond the log"):
        make_fetcher().pull(entry.identifier)


def test_a_leaf_for_another_document_of_the_same_entry_is_refused(market, image, origin,
                                                                 ec_signer, make_fetcher):
    logged = image(seed=19, signer=ec_signer)
    data = image_bytes(4096, 19)
    entry = factories.appliance(data, locations=[origin.base + "/image-19.img"])
    created = datetime.strptime(logged.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    swapped = published(factories.signed(ec_signer, entry, now=created))  # ECDSA: new bytes
    assert swapped.path == logged.path and swapped.document != logged.document
    swapped.index = logged.index
    market.entries[logged.path] = swapped
    market.show(swapped)
    market.serve()
    with pytest.raises(errors.NotInLog, match="document"):
        make_fetcher().pull(logged.identifier)


def test_a_leaf_swapped_in_the_served_bundle_is_not_in_the_signed_tree(market, image,
                                                                      make_fetcher):
    other = image(seed=20)
    entry = image(seed=21)
    market.serve()
    bundle = tlog.tile_path(0, 0, 2, entries=True)
    leaves = tlog.read_entry_bundle(market.log_files[bundle])
    forged = leaves[other.index].replace(other.identifier.encode(), entry.identifier.encode())
    forged = forged.replace(logleaf.digest(other.document).encode(),
                            logleaf.digest(entry.document).encode())
    forged = logleaf.LogEvent(**{**json.loads(forged), "email": entry.email,
                                 "created": entry.created}).leaf()
    entry.index = other.index
    market.log_files[bundle] = tlog.entry_bundle([forged, leaves[1]])
    with pytest.raises(errors.NotInLog, match="not in the signed tree"):
        make_fetcher().pull(entry.identifier)


def test_a_removal_leaf_does_not_publish(market, image, make_fetcher):
    entry = image(seed=22, event=logleaf.REMOVED)
    market.serve()
    with pytest.raises(errors.NotInLog, match="records removed"):
        make_fetcher().pull(entry.identifier)


# --- the log's key and the witnesses --------------------------------------------------------


def test_a_checkpoint_signed_by_another_key_is_refused(market, image, make_fetcher):
    entry = image(seed=23)
    market.log.signer = note.Signer.generate("market.example.org/log")
    market.serve()
    with pytest.raises(errors.LogUntrusted, match="no known key signed"):
        make_fetcher().pull(entry.identifier)


@pytest.fixture
def witnesses() -> list[note.Signer]:
    return [note.Signer.generate(f"witness-{n}.example.org", note.COSIGNATURE)
            for n in range(3)]


def test_k_of_n_witness_cosignatures_are_required(market, image, make_fetcher, witnesses):
    entry = image(seed=24)
    keys = [w.verifier.vkey() for w in witnesses]
    settings = {"witness_keys": keys, "witnesses_required": "2"}
    market.serve(cosigners=(witnesses[0],))
    with pytest.raises(errors.LogUntrusted, match=r"carries 1 cosignature.*required is 2"):
        make_fetcher(**settings).pull(entry.identifier)
    market.serve(cosigners=(witnesses[0], witnesses[0]))  # one witness twice counts once
    with pytest.raises(errors.LogUntrusted, match="carries 1 cosignature"):
        make_fetcher(**settings).pull(entry.identifier)
    unknown = note.Signer.generate("stranger.example.org", note.COSIGNATURE)
    market.serve(cosigners=(witnesses[2], unknown))
    with pytest.raises(errors.LogUntrusted, match="carries 1 cosignature"):
        make_fetcher(**settings).pull(entry.identifier)
    market.serve(cosigners=(witnesses[2], witnesses[1]))
    assert make_fetcher(**settings).pull(entry.identifier).cached is False


def test_a_forged_witness_cosignature_is_refused(market, image, make_fetcher, witnesses):
    entry = image(seed=25)
    market.serve(cosigners=(witnesses[0],))
    name, _, payload = market.checkpoint.rstrip("\n").rsplit("\n", 1)[1][2:].partition(" ")
    raw = bytearray(base64.b64decode(payload))
    raw[-1] ^= 1
    market.checkpoint = market.checkpoint.rsplit("\n", 2)[0] + "\n" + \
        f"{note.DASH} {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(errors.LogUntrusted, match="does not check"):
        make_fetcher(witness_keys=witnesses[0].verifier.vkey(),
                     witnesses_required="1").pull(entry.identifier)


@pytest.mark.parametrize(("settings", "message"), [
    ({"log_key": "not a key"}, "setting log_key: not an Ed25519 verifier key"),
    ({"witness_keys": "x+00000000+AAAA", "witnesses_required": "1"}, "setting witness_keys"),
    ({"witnesses_required": "1"}, "witnesses_required = 1, but witness_keys lists 0"),
])
def test_bad_log_settings_are_named(image, make_fetcher, settings, message):
    entry = image(seed=26)
    with pytest.raises(fetcher_config.ConfigError, match=message):
        make_fetcher(**settings).pull(entry.identifier)


def test_a_log_key_of_the_wrong_kind_is_refused(image, make_fetcher, witnesses):
    entry = image(seed=27)
    with pytest.raises(fetcher_config.ConfigError, match="not an Ed25519 log key"):
        make_fetcher(log_key=witnesses[0].verifier.vkey()).pull(entry.identifier)


# --- rollback of one entry ------------------------------------------------------------------


def test_an_entry_older_than_one_taken_before_is_refused(market, image, make_fetcher):
    now = datetime.now(UTC).replace(microsecond=0)
    old = image(seed=28, created=now - timedelta(hours=2), current=False)
    newer = image(seed=28, created=now - timedelta(hours=1))
    market.serve()
    fetcher = make_fetcher()
    assert fetcher.pull(newer.identifier).record["facts"]["created"] == newer.created
    fetcher.remove(newer.identifier, force=True)
    market.show(old)  # the old signed document served as current: it is in the log too
    with pytest.raises(errors.EntryRollback) as raised:
        fetcher.pull(old.identifier)
    assert f"dated {old.created} as the newest" in raised.value.message
    assert newer.created in raised.value.message


# --- an older entry again, once its endorser deprecated the newer one ----------------------


@dataclass
class Versions:
    """Two versions of one image by one endorser; ``fetcher`` took ``newer``, then dropped it
    from its cache, and the old one is asked for by its own entry URL."""

    fetcher: Fetcher
    old: Published
    newer: Published
    now: datetime

    @property
    def old_target(self) -> str:
        return f"{self.old.identifier}/{self.old.email}/{self.old.created}"

    def hours(self, hours: float) -> datetime:
        return self.now + timedelta(hours=hours)


@pytest.fixture
def versions(market, image, make_fetcher) -> Versions:
    now = datetime.now(UTC).replace(microsecond=0)
    old = image(seed=36, created=now - timedelta(hours=3), current=False)
    newer = image(seed=36, created=now - timedelta(hours=2))
    market.serve()
    fetcher = make_fetcher()
    assert fetcher.pull(newer.identifier).record["facts"]["created"] == newer.created
    fetcher.remove(newer.identifier, force=True)
    return Versions(fetcher, old, newer, now)


@pytest.fixture
def deprecate(market, origin, rsa_signer) -> Callable[..., Published]:
    """Publish a signed document of image 36 that deprecates it, listed as its endorser's
    newest: ``deprecate(created, signer=..., email=..., event=..., logged=...)``."""

    def make(created: datetime, signer=None, email: str | None = None,
             event: str = logleaf.DEPRECATED, logged: bool = True) -> Published:
        data = image_bytes(4096, 36)
        entry = factories.appliance(data, locations=[origin.add("image-36.img", data)],
                                    deprecated="superseded by a fixed build")
        document = factories.signed(signer or rsa_signer, entry, now=created, email=email)
        if logged:
            deprecation = market.publish(document, event=event)
        else:  # served and listed, with the index of the log's last leaf: another entry's
            deprecation = published(document)
            deprecation.index = len(market.log.leaves) - 1
            market.entries[deprecation.path] = deprecation
            market.show(deprecation)
        market.serve()
        return deprecation

    return make


def test_an_older_entry_without_a_deprecation_is_refused(market, versions):
    market.show(versions.old)  # the old signed document served as current: it is in the log
    with pytest.raises(errors.EntryRollback, match="shown no signed deprecation"):
        versions.fetcher.pull(versions.old.identifier)
    with pytest.raises(errors.EntryRollback, match="shown no signed deprecation"):
        versions.fetcher.pull(versions.old_target)  # the listing shows only the newer one


def test_an_older_entry_is_taken_after_a_signed_logged_deprecation(market, versions,
                                                                   deprecate):
    deprecation = deprecate(versions.hours(-1))
    outcome = versions.fetcher.pull(versions.old_target)
    assert outcome.cached is False and outcome.record["facts"]["created"] == versions.old.created
    assert outcome.resolution["log"]["log_index"] == versions.old.index
    assert outcome.resolution["log"]["deprecated_by"] == {"created": deprecation.created,
                                                          "log_index": deprecation.index}
    # the newest date taken stays: an entry older than the deprecated one still needs proof
    assert versions.fetcher.transparency().newest_taken(
        (versions.old.identifier, versions.old.email, "")) == versions.newer.created


def test_a_deprecation_dated_as_the_newest_taken_is_enough(market, versions, deprecate):
    at = datetime.strptime(versions.newer.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    deprecate(at)
    assert versions.fetcher.pull(versions.old_target).cached is False


def test_a_deprecation_not_in_the_log_is_refused(market, versions, deprecate):
    deprecate(versions.hours(-1), logged=False)
    with pytest.raises(errors.EntryRollback,
                       match=r"not proven by the log: .* is not the deprecation of this entry"):
        versions.fetcher.pull(versions.old_target)


def test_a_deprecation_logged_as_a_publication_is_refused(market, versions, deprecate):
    deprecate(versions.hours(-1), event=logleaf.PUBLISHED)
    with pytest.raises(errors.EntryRollback, match="records published"):
        versions.fetcher.pull(versions.old_target)


def test_a_deprecation_signed_by_another_endorser_is_refused(market, versions, deprecate,
                                                            signer_without_email, ec_signer):
    claimed = deprecate(versions.hours(-1), signer=signer_without_email,
                        email=versions.old.email)  # the email is the signer's claim only
    assert claimed.path.split("/")[2] == versions.old.email
    with pytest.raises(errors.EntryRollback, match="shown no signed deprecation"):
        versions.fetcher.pull(versions.old_target)
    deprecate(versions.hours(-0.5), signer=ec_signer)  # another endorser's own
    with pytest.raises(errors.EntryRollback, match="shown no signed deprecation"):
        versions.fetcher.pull(versions.old_target)


def test_a_deprecation_older_than_the_newest_taken_is_refused(market, versions, deprecate):
    deprecation = deprecate(versions.hours(-2.5))  # deprecates the old one, not the newer
    with pytest.raises(errors.EntryRollback,
                       match=f"deprecation shown is dated {deprecation.created}, before it"):
        versions.fetcher.pull(versions.old_target)


def test_a_deprecation_served_other_than_listed_is_refused(market, versions, deprecate,
                                                          signer_without_email):
    deprecation = deprecate(versions.hours(-1))
    forged = deprecate(versions.hours(-1), signer=signer_without_email,
                       email=versions.old.email)
    assert forged.path == deprecation.path  # its URL now serves the forgery
    market.show(deprecation)  # while the listing shows the endorser's own
    with pytest.raises(errors.FetchError, match=r"deprecation the marketplace serves at .* is "
                                                "not the one it listed"):
        versions.fetcher.pull(versions.old_target)


# --- the commands -----------------------------------------------------------------------------


def test_the_commands_exit_with_the_log_errors_own_status(market, image, node_config,
                                                         tmp_path):
    entry = image(seed=29)
    other = image(seed=30)
    market.serve()
    config = node_config()
    pulled = run_command("stratus-image-cache", "--config", config, "--json", "pull",
                         entry.identifier)
    assert pulled.returncode == errors.OK, pulled.stderr
    assert json.loads(pulled.stdout)["resolution"]["log"]["log_index"] == 0
    market.serve(size=1)
    rolled = run_command("stratus-image-cache", "--config", config, "pull", other.identifier)
    assert rolled.returncode == errors.LOG_ROLLBACK, rolled.stderr
    assert "ROLLBACK" in rolled.stderr and ".kept.note" in rolled.stderr
    market.serve(at=time.time() - 2 * DAY)
    frozen = run_command("stratus-download-image", "--config", config, "--json",
                         other.identifier, "-o", tmp_path / "out.img", env=command_env())
    assert frozen.returncode == errors.LOG_FROZEN, frozen.stderr
    assert json.loads(frozen.stdout)["kind"] == "log-frozen"
    assert not (tmp_path / "out.img").exists()
    market.serve()
    downloaded = run_command("stratus-download-image", "--config", config,
                             other.identifier, "-o", tmp_path / "out.img")
    assert downloaded.returncode == errors.OK, downloaded.stderr
    assert (tmp_path / "out.img").read_bytes() == image_bytes(4096, 30)


def test_the_kept_checkpoint_is_never_written_through_a_planted_link(market, image,
                                                                     make_fetcher, tmp_path):
    entry = image(seed=31)
    market.serve()
    fetcher = make_fetcher()
    fetcher.cache.ensure()
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    prefix = hashlib.sha256(fetcher.transparency().settings.key.vkey().encode()).hexdigest()
    link = fetcher.cache.root / "log" / f"{prefix[:16]}.checkpoint"
    os.symlink(victim, link)
    with pytest.raises(errors.FetchError, match="symbolic link"):
        fetcher.pull(entry.identifier)
    assert victim.read_text() == "untouched"
