"""A replica as a witness of its primary's log (C2SP ``tlog-cosignature``).

Each pull fetches the primary's signed checkpoint, verifies it with the primary's log key
(configured, never fetched), and checks that it extends the last checkpoint this witness
cosigned: same or larger tree, and a consistency proof computed from the primary's own
tiles that proves the old tree a prefix of the new one. Only then does it cosign and hand
the cosignature to the primary, which serves it with that checkpoint; nodes that require
this witness then know that the tree they see is the one the witness saw. A checkpoint that
does not extend the last one (a rollback or a split view) is refused, never cosigned, and
both signed notes are kept as evidence in a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from marketplace.log import keys
from marketplace.metadata import note, tlog
from marketplace.store.state import State

LAST_MARK = "witness:{origin}"
EVIDENCE_DIR = "witness-evidence"


class WitnessError(RuntimeError):
    """The primary's checkpoint could not be read or does not verify."""


class SplitView(WitnessError):
    """The primary signed a checkpoint that does not extend the one this witness cosigned:
    evidence of a rollback or of two views of one log (``evidence`` names the file)."""

    def __init__(self, message: str, evidence: Path):
        self.evidence = evidence
        super().__init__(f"{message}; both signed checkpoints are kept in {evidence}")


@dataclass
class Witness:
    """A cosigning key, the primary's log key, and where this replica remembers the last
    checkpoint it cosigned."""

    signer: note.Signer
    log_key: note.Verifier
    state: State
    evidence_dir: Path

    @classmethod
    def from_settings(cls, settings: dict[str, str], state: State) -> Witness | None:
        """The witness the settings make of a replica (None without REPLICA_WITNESS_KEY);
        ValueError for settings that cannot work."""
        signer = keys.witness_signer(settings)
        if signer is None:
            return None
        if not settings["REPLICA_LOG_KEY"]:
            raise ValueError("MARKETPLACE_REPLICA_WITNESS_KEY needs MARKETPLACE_REPLICA_LOG_KEY: "
                             "the primary's log verifier key (its /log/key, checked out of band)")
        try:
            log_key = note.Verifier.parse(settings["REPLICA_LOG_KEY"])
        except note.NoteError as exc:
            raise ValueError(f"MARKETPLACE_REPLICA_LOG_KEY: {exc}") from None
        return cls(signer, log_key, state, Path(settings["DATA_DIR"]) / EVIDENCE_DIR)

    def witness(self, fetch: Callable[[str], bytes], now: int) -> tuple[note.Checkpoint, str]:
        """Check the primary's current checkpoint (``fetch`` reads a path under its
        ``/log/``) and cosign it; (the checkpoint, the cosigned note to post). SplitView
        when it does not extend the last one cosigned, WitnessError when it does not
        verify."""
        signed = fetch("checkpoint").decode("utf-8", "replace")
        try:
            text, _ = note.open_note(signed, [self.log_key])
            checkpoint = note.Checkpoint.parse(text)
        except note.NoteError as exc:
            raise WitnessError(f"the primary's checkpoint does not verify with its log key "
                               f"{self.log_key.name}: {exc}") from None
        if checkpoint.origin != self.log_key.name:
            raise WitnessError(f"the primary's checkpoint is of the log {checkpoint.origin!r}, "
                               f"not {self.log_key.name!r}")
        mark = LAST_MARK.format(origin=checkpoint.origin)
        last = self.state.mark(mark)
        if last is not None:
            self._check_extends(last, signed, checkpoint, fetch)
        self.state.set_mark(mark, signed)
        return checkpoint, note.sign(text, self.signer, timestamp=now)

    def _check_extends(self, last: str, signed: str, checkpoint: note.Checkpoint,
                       fetch: Callable[[str], bytes]) -> None:
        old = note.Checkpoint.parse(note.split(last)[0])
        try:
            proof = []
            if 0 < old.size < checkpoint.size:
                reader = tlog.HashReader(checkpoint.size, _tiles(fetch))
                proof = reader.consistency_proof(old.size)
            tlog.check_consistency(old.size, old.root, checkpoint.size, checkpoint.root, proof)
        except tlog.ProofError as exc:
            raise SplitView(f"the primary's log of {checkpoint.size} leaves does not extend "
                            f"the one of {old.size} this witness cosigned: {exc}",
                            self._keep_evidence(last, signed, old.size, checkpoint.size)) \
                from None

    def _keep_evidence(self, last: str, signed: str, old: int, new: int) -> Path:
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        path = self.evidence_dir / f"{self.log_key.name.replace('/', '_')}-{old}-{new}.notes"
        path.write_text(f"# cosigned before\n{last}\n# refused now\n{signed}")
        return path


def _tiles(fetch: Callable[[str], bytes]) -> tlog.TileReader:
    def read(level: int, index: int, width: int) -> bytes:
        return fetch(tlog.tile_path(level, index, width))
    return read
