"""The log's signing key and a witness's cosigning key: made once, kept in a file only their
owner can read, never overwritten by accident.

A key file holds one line in the form Go's ``golang.org/x/mod/sumdb/note`` reads
(``PRIVATE+KEY+<name>+<id>+<key>``, :mod:`marketplace.metadata.note`). The log key's name is
its origin, ``<host of PUBLIC_URL>/log``, so that a checkpoint says which marketplace
signed it; a witness key's is ``<host of PUBLIC_URL>/witness``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from marketplace.metadata import note

LOG_KEY_FILE = "log-key"


class KeyFileError(ValueError):
    """A key file that is missing, unreadable, open to others, or not a key of its kind."""


def host_name(settings: dict[str, str], what: str) -> str:
    """``<host of PUBLIC_URL>/<what>``: the name a key of this marketplace signs as."""
    host = urlsplit(settings["PUBLIC_URL"]).hostname
    if not host:
        raise KeyFileError("set MARKETPLACE_PUBLIC_URL: its host names the log "
                           f"(the key signs as <host>/{what})")
    return f"{host}/{what}"


def log_key_path(settings: dict[str, str]) -> Path:
    return Path(settings["LOG_KEY"] or Path(settings["DATA_DIR"]) / LOG_KEY_FILE)


def witness_key_path(settings: dict[str, str]) -> Path:
    if not settings["REPLICA_WITNESS_KEY"]:
        raise KeyFileError("set MARKETPLACE_REPLICA_WITNESS_KEY to the file of the "
                           "witness key")
    return Path(settings["REPLICA_WITNESS_KEY"])


def create(path: Path, signer: note.Signer, force: bool = False) -> None:
    """Write a new key file, mode 0600, atomically: a file already there is an error unless
    ``force`` (a lost log key cannot be made again; a replaced one breaks every node's
    trust in the old checkpoints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(signer.skey() + "\n")
            file.flush()
            os.fsync(file.fileno())
        if force:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)  # fails, atomically, when the path exists
            except FileExistsError:
                raise FileExistsError(f"{path} exists: keep it (it is the key nodes "
                                      "trust), or give --force to replace it") from None
    finally:
        temporary.unlink(missing_ok=True)


def load(path: Path, kind: int) -> note.Signer:
    """The key in ``path``; KeyFileError when it is missing, readable by group or others
    (a signing key others can read signs for them too), or not a key of ``kind``."""
    try:
        with open(path, encoding="ascii") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"the key file {path} is readable by others (mode "
                           f"{stat.S_IMODE(mode):04o}): chmod 600 it, and make a new key if "
                           "someone may have read it")
    try:
        signer = note.Signer.parse(text)
    except note.NoteError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if signer.kind != kind:
        held, wanted = (("a cosigning", "signing") if signer.kind == note.COSIGNATURE
                        else ("a signing", "cosigning"))
        raise KeyFileError(f"{path} holds {held} key; a {wanted} key is needed here")
    return signer


def init_log(settings: dict[str, str], force: bool = False) -> note.Signer:
    """``init-log``: a new log key in its file; the signer (print its verifier key)."""
    signer = note.Signer.generate(host_name(settings, "log"))
    create(log_key_path(settings), signer, force)
    return signer


def init_witness(settings: dict[str, str], force: bool = False) -> note.Signer:
    """``init-log --witness``: a new cosigning key for a replica that witnesses its
    primary's log; the primary lists its verifier key in LOG_WITNESSES."""
    signer = note.Signer.generate(host_name(settings, "witness"), note.COSIGNATURE)
    create(witness_key_path(settings), signer, force)
    return signer


def log_signer(settings: dict[str, str]) -> note.Signer | None:
    """The log's signing key, or None when there is none yet (``init-log`` not run)."""
    path = log_key_path(settings)
    if not path.exists():
        return None
    return load(path, note.ED25519)


def witness_signer(settings: dict[str, str]) -> note.Signer | None:
    """A replica's cosigning key, or None when it does not witness."""
    if not settings["REPLICA_WITNESS_KEY"]:
        return None
    return load(witness_key_path(settings), note.COSIGNATURE)
