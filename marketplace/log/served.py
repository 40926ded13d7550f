"""What ``/log/`` serves: the signed checkpoint with its witnesses' cosignatures, the hash
tiles and entry bundles (C2SP ``tlog-tiles``), and the cosignatures witnesses post.

The checkpoint is a C2SP ``tlog-checkpoint`` whose fourth line, ``time <unix seconds>``,
says when it was signed, so that a node can refuse a frozen one. Checkpoints are kept in
the state's marks, one per tree size (``log:checkpoint:<size>``), so every server of one
store serves the same: a server serves the one of the log's current size while it is younger
than LOG_RESIGN, else signs a new one and keeps it. The log only grows, so a server never
signs a smaller tree than one any server signed before (no compare-and-set needed: two
servers signing the same size at once sign the same tree, and either note is true).

A witness's cosignature (C2SP ``tlog-cosignature``) is kept per witness with the text it
signs, and served with the checkpoint whose text is exactly that.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from marketplace.log import keys
from marketplace.metadata import note, tlog
from marketplace.store.state import State

CHECKPOINT_MARK = "log:checkpoint:{size}"
COSIGNATURE_MARK = "log:cosignature:{name}"


class NoLogKey(LookupError):
    """The log has no signing key yet: ``stratus-marketplace init-log`` makes one."""


class CosignatureRefused(ValueError):
    """A posted cosignature this log does not keep; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def witness_list(text: str) -> list[note.Verifier]:
    """The LOG_WITNESSES setting: cosigning verifier keys; ValueError naming a bad one."""
    verifiers = []
    for vkey in text.replace(",", " ").split():
        try:
            verifier = note.Verifier.parse(vkey)
        except note.NoteError as exc:
            raise ValueError(f"MARKETPLACE_LOG_WITNESSES: {exc}") from None
        if verifier.kind != note.COSIGNATURE:
            raise ValueError(f"MARKETPLACE_LOG_WITNESSES: {verifier.name}'s key is not a "
                             "cosignature (type 0x04) key")
        verifiers.append(verifier)
    return verifiers


def read_tile(state: State) -> tlog.TileReader:
    """A tile reader over the state's stored hashes, for :class:`tlog.HashReader`."""

    def read(level: int, index: int, width: int) -> bytes:
        first = index * tlog.TILE_WIDTH
        return b"".join(state.log_hashes(level, first, first + width))

    return read


@dataclass
class TransparencyLog:
    """The log of one store's state, as served."""

    state: State
    signer: note.Signer | None
    witnesses: list[note.Verifier] = field(default_factory=list)
    resign_after: int = 3600
    clock: Callable[[], float] = time.time

    @classmethod
    def from_settings(cls, settings: dict[str, str], state: State) -> TransparencyLog:
        """ValueError (KeyFileError) for settings that cannot work."""
        resign = int(settings["LOG_RESIGN"]) if settings["LOG_RESIGN"].isdigit() else 0
        if resign < 1:
            raise ValueError("MARKETPLACE_LOG_RESIGN must be a whole number of seconds, at "
                             f"least 1; got {settings['LOG_RESIGN']!r}")
        return cls(state, keys.log_signer(settings), witness_list(settings["LOG_WITNESSES"]),
                   resign)

    def vkey(self) -> str:
        return self._signer().verifier.vkey()

    def _signer(self) -> note.Signer:
        if self.signer is None:
            raise NoLogKey("this marketplace has no log key yet: its operator runs "
                           "`stratus-marketplace init-log` (the key file is "
                           "MARKETPLACE_LOG_KEY, else DATA_DIR/log-key)")
        return self.signer

    # --- the checkpoint ---

    def checkpoint(self) -> str:
        """The signed checkpoint of the log's current size, not older than ``resign_after``,
        with the cosignatures kept for exactly its text."""
        signed = self.signed_checkpoint()
        text, _ = note.split(signed)
        return signed + "".join(self._cosignatures(text))

    def signed_checkpoint(self) -> str:
        """The log's own signed note of its current size (kept, or signed now and kept)."""
        signer = self._signer()
        size = self.state.log_size()
        name = CHECKPOINT_MARK.format(size=size)
        kept = self.state.mark(name)
        if kept is not None and self._fresh(kept, signer):
            return kept
        root = tlog.HashReader(size, read_tile(self.state)).root()
        text = note.Checkpoint(signer.name, size, root).signed_at(int(self.clock())).text()
        signed = note.sign(text, signer)
        self.state.set_mark(name, signed)
        return signed

    def _fresh(self, kept: str, signer: note.Signer) -> bool:
        """Whether a kept note is this key's and younger than ``resign_after``."""
        try:
            text, _ = note.open_note(kept, [signer.verifier])
            at = note.Checkpoint.parse(text).time
        except note.NoteError:
            return False  # another key's (rotated), or damaged: sign again
        return at is not None and self.clock() - at < self.resign_after

    def checkpoint_of(self, size: int) -> str | None:
        """The text of the checkpoint kept for ``size`` (served now or before)."""
        kept = self.state.mark(CHECKPOINT_MARK.format(size=size))
        return None if kept is None else note.split(kept)[0]

    # --- witnesses ---

    def _cosignatures(self, text: str) -> list[str]:
        lines = []
        for witness in self.witnesses:
            kept = self.state.mark(COSIGNATURE_MARK.format(name=witness.name))
            if kept is not None:
                record = json.loads(kept)
                if record["text"] == text:
                    lines.append(record["line"])
        return lines

    def add_cosignature(self, posted: str) -> list[str]:
        """Keep the cosignatures of listed witnesses in a posted note (a checkpoint this log
        signed, with the witnesses' signature lines); the names of the witnesses kept.
        CosignatureRefused: 400 for what is not a cosigned checkpoint, 403 when no listed
        witness's cosignature checks, 409 for a checkpoint this log did not serve."""
        try:
            text, lines = note.split(posted)
            checkpoint = note.Checkpoint.parse(text)
        except note.NoteError as exc:
            raise CosignatureRefused(400, f"not a cosigned checkpoint: {exc}") from None
        if self.checkpoint_of(checkpoint.size) != text:
            raise CosignatureRefused(409, f"this log did not serve that checkpoint of size "
                                     f"{checkpoint.size} (it was signed again since, or "
                                     "never): cosign the one /log/checkpoint serves now")
        try:
            _, signatures = note.open_note(posted, self.witnesses)
        except note.NoteError as exc:
            raise CosignatureRefused(403, f"no cosignature of a witness this log lists: "
                                     f"{exc}") from None
        verified = {(s.name, s.key_id) for s in signatures}
        kept = []
        for name, raw in lines:
            if (name, raw[:4]) in verified:
                line = f"{note.DASH} {name} {base64.b64encode(raw).decode()}\n"
                if self._keep(name, text, checkpoint.size, line):
                    kept.append(name)
        return kept

    def _keep(self, witness: str, text: str, size: int, line: str) -> bool:
        """Keep a witness's cosignature unless it already cosigned a larger tree."""
        name = COSIGNATURE_MARK.format(name=witness)
        kept = self.state.mark(name)
        if kept is not None and json.loads(kept)["size"] > size:
            return False
        self.state.set_mark(name, json.dumps({"text": text, "size": size, "line": line}))
        return True

    # --- tiles ---

    def tile(self, level: int | None, index: int, width: int) -> bytes | None:
        """A hash tile (level) or an entry bundle (level None) as C2SP serves it; None when
        the tree does not reach that far yet."""
        size = self.state.log_size()
        first, end = index * tlog.TILE_WIDTH, index * tlog.TILE_WIDTH + width
        if level is None:
            if end > size:
                return None
            return tlog.entry_bundle(self.state.log_leaves(first, end))
        if end > size >> (tlog.TILE_HEIGHT * level):
            return None
        hashes = self.state.log_hashes(level, first, end)
        return b"".join(hashes) if len(hashes) == width else None

