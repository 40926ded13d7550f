"""The node's check of the marketplace's transparency log: the same history for everyone.

An endorser's signature proves who wrote an entry; it cannot prove that the marketplace shows
this node the newest one, nor the same history it shows every other node. The marketplace
appends every change to an RFC 6962 log and signs its head (a C2SP checkpoint); this module
is the node's side, as the Go checksum database client is for Go modules. Before an entry is
trusted:

1. the served checkpoint must be signed by ``log_key`` (and cosigned by ``witnesses_required``
   distinct ``witness_keys``), and not older than ``max_checkpoint_age`` (else the log is
   frozen: an old head replayed for ever);
2. it must extend the newest checkpoint this node kept for that key: a smaller tree is a
   rollback, a tree that is not an extension a split view. Both signed notes are then kept
   in the cache directory as evidence, since together they prove the log lied;
3. the entry's leaf, at the index the marketplace gives, must be a ``published`` or
   ``deprecated`` event of exactly this entry and of the SHA-256 of the exact bytes the node
   verified, and included under the checkpoint;
4. the entry must not be older than one this node already took of the same image and
   endorser (the marketplace serving an old signed document as current), unless the node is
   shown that the endorser deprecated the newer one: a signed document of the same image
   and endorser, dated at or after the newest taken, that deprecates (verified by the
   caller as every entry is), whose ``deprecated`` leaf is included under the same
   checkpoint. The marketplace's word that a version was deprecated is not enough: only the
   endorser's signature and the log's inclusion are.

Proofs are computed from the served tiles (:class:`marketplace.metadata.tlog.HashReader`)
and checked against the signed roots, so a tile cannot lie. What passed is recorded only
after the image is verified (:meth:`Transparency.record`): the checkpoint if it is newer
than the kept one, and the entry's date. A cache hit asks nothing of the log.

Kept under ``<cache>/log/`` per log key: ``<key>.checkpoint`` (the signed note),
``<key>.entries.json`` (newest date per image and endorser), and evidence files
``<key>.<kind>.<time>-<random>.{kept,served}.note``. Files are written atomically and read without
following symbolic links (:mod:`client.node.entries`), like the rest of the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from client.node import entries, errors
from client.node.config import ConfigError
from marketplace.metadata import logleaf, note, tlog
from marketplace.metadata.files import write_atomic

LOG_INDEX_HEADER = "Log-Index"
CHECKPOINT_BYTES = 1 << 16
TILE_BYTES = tlog.TILE_WIDTH * tlog.HASH_SIZE
BUNDLE_BYTES = tlog.TILE_WIDTH * (2 + logleaf.MAX_LEAF)
ENTRY_BYTES = 16 << 20
TEXT_ACCEPT = "text/plain, application/octet-stream;q=0.9"
CLOCK_SKEW = 600.0  # seconds a checkpoint may seem signed ahead of this node's clock
LOCK = "log.lock"

Key = tuple[str, str, str]  # identifier, endorser email, created


@dataclass(frozen=True)
class LogSettings:
    """The node's log settings, keys parsed: ``key`` None when the log is not checked."""

    key: note.Verifier | None
    required: bool
    max_age: float
    witnesses: tuple[note.Verifier, ...]
    quorum: int

    @classmethod
    def from_config(cls, config) -> LogSettings:
        """ConfigError naming the setting when a key is not a verifier key of its kind, or
        more cosignatures are required than witnesses are listed."""
        key = _verifier("log_key", config.log_key, note.ED25519) if config.log_key else None
        witnesses = tuple(_verifier("witness_keys", k, note.COSIGNATURE)
                          for k in config.witness_keys)
        if config.witnesses_required > len({(w.name, w.id) for w in witnesses}):
            raise ConfigError(f"witnesses_required = {config.witnesses_required}, but "
                              f"witness_keys lists {len(witnesses)} witness key(s)")
        if config.witnesses_required and key is None:
            raise ConfigError("witnesses_required needs log_key: cosignatures are of the "
                              "log's checkpoints")
        return cls(key, config.require_log, config.max_checkpoint_age, witnesses,
                   config.witnesses_required)


def _verifier(setting: str, vkey: str, kind: int) -> note.Verifier:
    try:
        verifier = note.Verifier.parse(vkey)
    except note.NoteError as exc:
        raise ConfigError(f"setting {setting}: {exc}") from None
    if verifier.kind != kind:
        wanted = "an Ed25519 log key (type 0x01)" if kind == note.ED25519 else \
            "a witness cosignature key (type 0x04)"
        raise ConfigError(f"setting {setting}: {verifier.name}'s key is not {wanted}")
    return verifier


@dataclass(frozen=True)
class Deprecation:
    """A signed document that deprecates, offered as proof that an older entry may be taken
    again: its key, its stored bytes (their signature and endorser already verified by the
    caller, :func:`client.node.resolve.verified_candidate`) and the log index the
    marketplace gives them."""

    key: Key
    document: bytes
    index: int


@dataclass(frozen=True)
class Inclusion:
    """What the log showed for one entry: recorded once the image is verified."""

    key: Key
    index: int
    checkpoint: note.Checkpoint
    signed: str  # the checkpoint's signed note, as served
    deprecation: Deprecation | None = None  # what let an older entry be taken

    def summary(self) -> dict:
        summary = {"checked": True, "log_index": self.index, "tree_size": self.checkpoint.size,
                   "origin": self.checkpoint.origin, "signed_at": self.checkpoint.time}
        if self.deprecation is not None:
            summary["deprecated_by"] = {"created": self.deprecation.key[2],
                                        "log_index": self.deprecation.index}
        return summary


class Transparency:
    """One log (one ``log_key``) as this node's cache remembers it.

    ``get(url, room, accept)`` answers (body, headers), or None for a 404 (the marketplace
    session's reads, capped); ``lock()`` serializes the records of every puller of the
    cache; ``now()`` is POSIX seconds.
    """

    def __init__(self, settings: LogSettings, directory: Path, trusted: frozenset[int],
                 get: Callable[[str, int, str], tuple[bytes, dict] | None],
                 lock: Callable[[], object], now: Callable[[], float] = time.time):
        self.settings = settings
        self.directory = directory
        self.trusted = trusted
        self._get = get
        self._lock = lock
        self._now = now

    @property
    def checked(self) -> bool:
        return self.settings.key is not None

    # --- the checks, before a download ------------------------------------------------------

    def entry(self, url: str, identifier: str) -> tuple[bytes, int]:
        """The stored bytes of one entry and the log index the marketplace gives them."""
        answer = self._get(url, ENTRY_BYTES, "application/rdf+xml")
        if answer is None:
            raise errors.NotInLog(f"the marketplace does not serve the entry {url} it listed",
                                  identifier)
        document, headers = answer
        index = _header(headers, LOG_INDEX_HEADER)
        if index is None or not index.isascii() or not index.isdigit():
            raise errors.NotInLog(f"the marketplace gives no {LOG_INDEX_HEADER} for {url} "
                                  f"(got {index!r}): the entry is not in its log",
                                  identifier)
        return document, int(index)

    def check(self, base: str, key: Key, document: bytes, index: int,
              deprecation: Deprecation | None = None) -> Inclusion:
        """Every check of the module's docstring for the entry ``key`` whose verified bytes
        are ``document``, at ``index`` of the log served under ``base``, with the
        ``deprecation`` the node found if the entry is older than one taken; raises the
        LogError of the first that fails."""
        identifier = key[0]
        signed = self._served_checkpoint(base, identifier)
        checkpoint = self.open(signed, identifier)
        reader = tlog.HashReader(checkpoint.size, self._tile_reader(base))
        self._check_extends(checkpoint, signed, reader, identifier)
        used = self._check_not_older(base, key, deprecation, checkpoint, reader)
        self._check_included(base, key, document, index, checkpoint, reader)
        return Inclusion(key, index, checkpoint, signed, used)

    def newest_taken(self, key: Key) -> str | None:
        """The date of the newest entry of ``key``'s image and endorser this node took."""
        identifier, email, _ = key
        return self.entries().get(_entry_name(identifier, email))

    def open(self, signed: str, identifier: str | None = None) -> note.Checkpoint:
        """The checkpoint of a signed note whose signature checks with the log key, with the
        witness cosignatures required, signed no longer ago than allowed."""
        checkpoint = self._verified(signed, identifier)
        try:
            signed_at = checkpoint.time
        except note.NoteError as exc:
            raise errors.LogUntrusted(f"the log's checkpoint was refused: {exc}",
                                      identifier) from None
        if signed_at is None:
            raise errors.LogFrozen(f"the checkpoint of {checkpoint.origin} (size "
                                   f"{checkpoint.size}) says nothing of when it was signed "
                                   "(no 'time' line): its age cannot be checked", identifier)
        age = self._now() - signed_at
        if age < -CLOCK_SKEW:
            raise errors.LogUntrusted(
                f"the checkpoint of {checkpoint.origin} (size {checkpoint.size}) says it was "
                f"signed {_when(signed_at)}, {-age:.0f} s from now: a checkpoint dated ahead "
                "would outlive max_checkpoint_age", identifier)
        if age > self.settings.max_age:
            raise errors.LogFrozen(
                f"the log {checkpoint.origin} is frozen: its checkpoint (size "
                f"{checkpoint.size}) was signed {_when(signed_at)}, {age / 3600:.1f} h ago; "
                f"max_checkpoint_age is {self.settings.max_age / 3600:g} h", identifier)
        return checkpoint

    def _verified(self, signed: str, identifier: str | None) -> note.Checkpoint:
        key = self.settings.key
        try:
            text, signatures = note.open_note(signed, [key, *self.settings.witnesses])
            checkpoint = note.Checkpoint.parse(text)
        except note.NoteError as exc:
            raise errors.LogUntrusted(f"the log's checkpoint was refused: {exc}",
                                      identifier) from None
        if not any(s.name == key.name and s.key_id == key.id for s in signatures):
            raise errors.LogUntrusted(f"the log's checkpoint is not signed by {key.name} "
                                      "(log_key)", identifier)
        if checkpoint.origin != key.name:
            raise errors.LogUntrusted(f"the checkpoint is of the log {checkpoint.origin!r}, "
                                      f"not {key.name!r} (log_key)", identifier)
        witnessed = {(s.name, s.key_id) for s in signatures if s.timestamp is not None}
        if len(witnessed) < self.settings.quorum:
            names = ", ".join(sorted(name for name, _ in witnessed)) or "none"
            raise errors.LogUntrusted(
                f"the checkpoint of {checkpoint.origin} (size {checkpoint.size}) carries "
                f"{len(witnessed)} cosignature(s) of witness_keys ({names}); "
                f"witnesses_required is {self.settings.quorum}", identifier)
        return checkpoint

    def _served_checkpoint(self, base: str, identifier: str) -> str:
        url = urljoin(base, "log/checkpoint")
        answer = self._get(url, CHECKPOINT_BYTES, TEXT_ACCEPT)
        if answer is None:
            raise errors.LogUntrusted(f"the marketplace serves no log checkpoint at {url}",
                                      identifier)
        try:
            return answer[0].decode("utf-8")
        except UnicodeDecodeError:
            raise errors.LogUntrusted(f"the checkpoint at {url} is not UTF-8 text",
                                      identifier) from None

    def _tile_reader(self, base: str) -> tlog.TileReader:
        def read(level: int, index: int, width: int) -> bytes:
            return self._tile(base, level, index, width, entries=False)

        return read

    def _tile(self, base: str, level: int, index: int, width: int, entries: bool) -> bytes:
        """A hash tile or an entry bundle; a partial one may be served whole (C2SP lets a
        log serve the full tile once it is)."""
        room = BUNDLE_BYTES if entries else TILE_BYTES
        for tried in dict.fromkeys([width, tlog.TILE_WIDTH]):
            path = tlog.tile_path(level, index, tried, entries=entries)
            answer = self._get(urljoin(base, "log/" + path), room, "application/octet-stream")
            if answer is not None:
                data = answer[0]
                return data if entries or tried == width else data[:width * tlog.HASH_SIZE]
        raise tlog.ProofError(f"the marketplace serves no log tile {path}")

    def _check_extends(self, checkpoint: note.Checkpoint, signed: str,
                       reader: tlog.HashReader, identifier: str) -> None:
        kept_note = self.kept()
        if kept_note is None:
            return
        kept = _checkpoint_of(kept_note)
        if checkpoint.size < kept.size:
            evidence = self._keep_evidence("rollback", kept_note, signed)
            raise errors.LogRollback(
                f"ROLLBACK: the log {checkpoint.origin} now has {checkpoint.size} leaves, "
                f"but this node saw it at {kept.size}; both signed checkpoints kept in "
                f"{' and '.join(evidence)}", identifier, evidence)
        if checkpoint.size == kept.size and checkpoint.root != kept.root:
            self._split_view(kept_note, signed, checkpoint, kept, identifier,
                             "two different trees of one size")
        proof = None
        try:
            proof = reader.consistency_proof(kept.size) if 0 < kept.size < checkpoint.size \
                else []
            tlog.check_consistency(kept.size, kept.root, checkpoint.size, checkpoint.root,
                                   proof)
        except tlog.ProofError as exc:
            if proof is not None and _proves_fork(reader, kept, checkpoint, proof):
                self._split_view(kept_note, signed, checkpoint, kept, identifier, str(exc))
            raise errors.LogUntrusted(f"the log {checkpoint.origin} cannot be checked against "
                                      f"the tree this node saw: the served tiles are not its "
                                      f"signed tree ({exc})", identifier) from None

    def _split_view(self, kept_note: str, signed: str, checkpoint: note.Checkpoint,
                    kept: note.Checkpoint, identifier: str, reason: str) -> None:
        evidence = self._keep_evidence("split-view", kept_note, signed)
        raise errors.LogSplitView(
            f"SPLIT VIEW: the log {checkpoint.origin} of {checkpoint.size} leaves does not "
            f"extend the tree of {kept.size} leaves this node saw ({reason}); both signed "
            f"checkpoints kept in {' and '.join(evidence)}", identifier, evidence)

    def _check_not_older(self, base: str, key: Key, deprecation: Deprecation | None,
                         checkpoint: note.Checkpoint,
                         reader: tlog.HashReader) -> Deprecation | None:
        """Refuse an entry older than the newest taken unless ``deprecation`` proves that the
        endorser deprecated it; the deprecation used, if one was needed."""
        identifier, email, created = key
        newest = self.newest_taken(key)
        if newest is None or created >= newest:
            return None
        refused = (f"ROLLBACK: the marketplace serves the entry of {identifier} by {email} "
                   f"dated {created} as the newest, but this node already took one dated "
                   f"{newest}")
        if deprecation is None:
            raise errors.EntryRollback(f"{refused}, and was shown no signed deprecation of "
                                       "it", identifier)
        of, by, dated = deprecation.key
        if (of, by.lower()) != (identifier, email.lower()):
            raise errors.EntryRollback(f"{refused}; the deprecation shown is of {of} by {by}",
                                       identifier)
        if dated < newest:
            raise errors.EntryRollback(f"{refused}; the deprecation shown is dated {dated}, "
                                       "before it: it does not deprecate it", identifier)
        try:
            self._check_included(base, deprecation.key, deprecation.document,
                                 deprecation.index, checkpoint, reader,
                                 (logleaf.DEPRECATED,))
        except errors.NotInLog as exc:
            raise errors.EntryRollback(f"{refused}; the deprecation shown, dated {dated}, is "
                                       f"not proven by the log: {exc.message}",
                                       identifier) from None
        return deprecation

    def _check_included(self, base: str, key: Key, document: bytes, index: int,
                        checkpoint: note.Checkpoint, reader: tlog.HashReader,
                        events: tuple[str, ...] = logleaf.SERVES) -> None:
        identifier = key[0]
        where = f"leaf {index} of the log {checkpoint.origin} ({checkpoint.size} leaves)"
        if index >= checkpoint.size:
            raise errors.NotInLog(f"the entry's {where.replace('of the', 'is beyond the')}",
                                  identifier)
        try:
            leaf = self._leaf(base, index, checkpoint.size)
            proof = reader.inclusion_proof(index)
            tlog.check_inclusion(tlog.leaf_hash(leaf), index, checkpoint.size, proof,
                                 checkpoint.root)
        except tlog.ProofError as exc:
            raise errors.NotInLog(f"{where} is not in the signed tree: {exc}",
                                  identifier) from None
        try:
            event = logleaf.LogEvent.parse(leaf)
        except logleaf.LeafError as exc:
            raise errors.NotInLog(f"{where} is not a log event: {exc}", identifier) from None
        wanted = hashlib.sha256(document).hexdigest()
        if event.event not in events or event.key != key or \
                event.document_sha256 != wanted:
            raise errors.NotInLog(
                f"{where} is not the {_NAMES.get(events, 'event')} of this entry: it records "
                f"{event.event} of "
                f"{'/'.join(str(part) for part in event.key)} (document "
                f"{event.document_sha256}), not {'/'.join(key)} (document {wanted})",
                identifier)

    def _leaf(self, base: str, index: int, size: int) -> bytes:
        bundle, offset = divmod(index, tlog.TILE_WIDTH)
        width = min(tlog.TILE_WIDTH, size - bundle * tlog.TILE_WIDTH)
        leaves = tlog.read_entry_bundle(self._tile(base, 0, bundle, width, entries=True))
        if len(leaves) < width:
            raise tlog.ProofError(f"entry bundle {bundle} holds {len(leaves)} leaves, not "
                                  f"{width}")
        return leaves[offset]

    # --- what this node remembers ----------------------------------------------------------

    @property
    def _prefix(self) -> str:
        return hashlib.sha256(self.settings.key.vkey().encode()).hexdigest()[:16]

    def _path(self, suffix: str) -> Path:
        return self.directory / f"{self._prefix}.{suffix}"

    def kept(self) -> str | None:
        """The newest checkpoint this node accepted for the key, as its signed note."""
        try:
            data = entries.read(self._path("checkpoint"), self.trusted, CHECKPOINT_BYTES)
        except entries.UnsafeEntry as exc:
            raise errors.FetchError(f"the kept log checkpoint is not safe to read: {exc}") \
                from None
        return None if data is None else data.decode("utf-8")

    def entries(self) -> dict[str, str]:
        """Newest endorsement date taken per ``<identifier> <email>``."""
        try:
            data = entries.read(self._path("entries.json"), self.trusted, 64 << 20)
            value = json.loads(data) if data else {}
        except (entries.UnsafeEntry, ValueError) as exc:
            raise errors.FetchError(f"the node's record of log entries is unreadable: {exc}") \
                from None
        return value if isinstance(value, dict) else {}

    def record(self, inclusion: Inclusion) -> None:
        """Keep the checkpoint if it is newer than the kept one, and the entry's date if it
        is newer than the one kept (an older entry taken after a deprecation leaves it: an
        entry older than the deprecated one still needs that proof): after the image was
        verified, under the cache's log lock (pullers of several hosts)."""
        held = self._lock()
        try:
            kept_note = self.kept()
            kept_size = -1 if kept_note is None else _checkpoint_of(kept_note).size
            if inclusion.checkpoint.size > kept_size:
                write_atomic(self._path("checkpoint"), inclusion.signed.encode())
            identifier, email, created = inclusion.key
            seen = self.entries()
            name = _entry_name(identifier, email)
            if created > seen.get(name, ""):
                seen[name] = created
                write_atomic(self._path("entries.json"),
                             json.dumps(seen, sort_keys=True, indent=0).encode())
        finally:
            if held is not None:
                held.release()

    def _keep_evidence(self, kind: str, kept: str, served: str) -> list[str]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._now())) + \
            f"-{os.urandom(3).hex()}"  # two refusals in one second keep both pairs
        paths = []
        for which, signed in (("kept", kept), ("served", served)):
            path = self._path(f"{kind}.{stamp}.{which}.note")
            write_atomic(path, signed.encode())
            paths.append(str(path))
        return paths


_NAMES = {logleaf.SERVES: "publication", (logleaf.DEPRECATED,): "deprecation"}


def _proves_fork(reader: tlog.HashReader, kept: note.Checkpoint, checkpoint: note.Checkpoint,
                 proof: list[bytes]) -> bool:
    """Whether the served tree's first ``kept.size`` leaves, proven by the served tiles to be
    a prefix of the signed tree, have another root than the kept checkpoint: then the two
    signed notes are of two histories. Tiles that prove nothing prove no fork."""
    try:
        prefix = reader.range_hash(0, kept.size)
        tlog.check_consistency(kept.size, prefix, checkpoint.size, checkpoint.root, proof)
    except tlog.ProofError:
        return False
    return prefix != kept.root


def _checkpoint_of(kept: str) -> note.Checkpoint:
    """The checkpoint of the note this node kept (verified when it was served)."""
    try:
        return note.Checkpoint.parse(note.split(kept)[0])
    except note.NoteError as exc:
        raise errors.FetchError(f"the kept log checkpoint is damaged ({exc}): remove it to "
                                "trust the log's next checkpoint afresh") from None


def _entry_name(identifier: str, email: str) -> str:
    return f"{identifier} {email.lower()}"


def _header(headers: dict, name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.strip()
    return None


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
