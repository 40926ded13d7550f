"""Signed notes (C2SP ``signed-note``), checkpoints (``tlog-checkpoint``) and cosignatures
(``tlog-cosignature``), with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then one line per signature:
``— <key name> <base64(4-byte key ID || signature)>``. The key ID is the first four bytes of
``SHA-256(name || "\\n" || type || public key)``: type 0x01 for a plain Ed25519 signature
(the log's own), 0x04 for a timestamped cosignature (a witness's), whose signed message is
``cosignature/v1\\ntime <t>\\n`` followed by the checkpoint. Keys are written in the form Go's
``golang.org/x/mod/sumdb/note`` reads, so its tools and ours exchange them:
``<name>+<hex key ID>+<base64(type || public key)>`` for a verifier key and
``PRIVATE+KEY+<name>+<hex key ID>+<base64(type || private key)>`` for a signer key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
COSIGNATURE = 0x04
DASH = "\u2014"
MAX_SIGNATURES = 100
COSIGNATURE_HEADER = "cosignature/v1\n"
TIME_LINE = "time "  # the checkpoint extension line saying when the log signed it


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or whose signatures do not check."""


def key_id(name: str, kind: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"a key name has no spaces and no '+': {name!r}")
    return name


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A public key that checks one name's signatures (or cosignatures)."""

    name: str
    kind: int
    public: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.kind, self.public)

    def vkey(self) -> str:
        payload = base64.b64encode(bytes([self.kind]) + self.public).decode()
        return f"{self.name}+{self.id.hex()}+{payload}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """A verifier key ``<name>+<hex id>+<base64(type || key)>``; NoteError if not one."""
        name, _, rest = vkey.strip().partition("+")
        hexid, _, payload = rest.partition("+")
        try:
            raw = base64.b64decode(payload, validate=True)
            expected = bytes.fromhex(hexid)
        except (binascii.Error, ValueError):
            raise NoteError(f"not a verifier key: {vkey[:80]!r}") from None
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE) or len(expected) != 4:
            raise NoteError(f"not an Ed25519 verifier key: {vkey[:80]!r}")
        verifier = cls(_check_name(name), raw[0], raw[1:])
        if verifier.id != expected:
            raise NoteError(f"the key ID of {name}'s verifier key does not match its key")
        return verifier

    def check(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key that signs as ``name`` (type 0x01) or cosigns (type 0x04)."""

    name: str
    key: Ed25519PrivateKey = field(repr=False)
    kind: int = ED25519

    @classmethod
    def generate(cls, name: str, kind: int = ED25519) -> Signer:
        return cls(_check_name(name), Ed25519PrivateKey.generate(), kind)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.kind, _raw(self.key.public_key()))

    def skey(self) -> str:
        """The key as Go's ``note.NewSigner`` reads it: keep it secret."""
        private = self.key.private_bytes_raw()
        payload = base64.b64encode(bytes([self.kind]) + private).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.id.hex()}+{payload}"

    @classmethod
    def parse(cls, skey: str) -> Signer:
        prefix, _, rest = skey.strip().partition("+KEY+")
        name, _, rest = rest.partition("+")
        hexid, _, payload = rest.partition("+")
        try:
            raw = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raw = b""
        if prefix != "PRIVATE" or len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE):
            raise NoteError("not an Ed25519 signer key (PRIVATE+KEY+name+id+key)")
        signer = cls(_check_name(name), Ed25519PrivateKey.from_private_bytes(raw[1:]), raw[0])
        if signer.verifier.id.hex() != hexid:
            raise NoteError(f"the key ID of {name}'s signer key does not match its key")
        return signer

    def signature_line(self, text: str, timestamp: int | None = None) -> str:
        """The note signature line of ``text``: a cosignature (with ``timestamp``) for a
        type 0x04 key."""
        if self.kind == COSIGNATURE:
            if timestamp is None or not 0 <= timestamp < 2 ** 63:
                raise NoteError("a cosignature needs a POSIX timestamp")
            body = struct.pack(">Q", timestamp) + self.key.sign(
                cosigned_message(text, timestamp))
        else:
            body = self.key.sign(text.encode())
        return f"{DASH} {self.name} {base64.b64encode(self.verifier.id + body).decode()}\n"


def cosigned_message(text: str, timestamp: int) -> bytes:
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


def sign(text: str, *signers: Signer, timestamp: int | None = None) -> str:
    """A note: the text and a signature line per signer."""
    _check_text(text)
    return text + "\n" + "".join(s.signature_line(text, timestamp) for s in signers)


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("a note's text ends with a newline and has no blank line")


@dataclass(frozen=True)
class Signature:
    """One verified signature line of a note."""

    name: str
    key_id: bytes
    timestamp: int | None = None  # cosignatures only


def split(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text and the (name, key ID + signature) of each signature line."""
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("a signed note has its text, a blank line, then signature lines")
    text, lines = note[:cut + 1], note[cut + 2:]
    _check_text(text)
    if not lines.endswith("\n"):
        raise NoteError("a note ends with a newline")
    signatures = []
    for line in lines[:-1].split("\n"):
        dash, _, rest = line.partition(" ")
        name, _, payload = rest.partition(" ")
        try:
            raw = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raw = b""
        if dash != DASH or not name or len(raw) < 5:
            raise NoteError(f"not a signature line: {line[:80]!r}")
        signatures.append((name, raw))
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures")
    return text, signatures


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, list[Signature]]:
    """The text of a note and its signatures made by ``verifiers``; lines of unknown keys
    are passed over, a known key's bad signature is an error, and so is a note that no
    given key signed."""
    text, lines = split(note)
    by_id = {(v.name, v.id): v for v in verifiers}
    verified = []
    for name, raw in lines:
        verifier = by_id.get((name, raw[:4]))
        if verifier is None:
            continue
        body = raw[4:]
        timestamp = None
        if verifier.kind == COSIGNATURE:
            if len(body) != 72:
                raise NoteError(f"the cosignature of {name} is malformed")
            timestamp = struct.unpack(">Q", body[:8])[0]
            ok = verifier.check(cosigned_message(text, timestamp), body[8:])
        else:
            ok = verifier.check(text.encode(), body)
        if not ok:
            raise NoteError(f"the signature of {name} does not check")
        verified.append(Signature(name, raw[:4], timestamp))
    if not verified:
        raise NoteError("no known key signed the note")
    return text, verified


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement of its size and root hash (C2SP ``tlog-checkpoint``)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(),
                 *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise NoteError("a checkpoint has an origin, a size and a root hash line")
        size_text, root_text = lines[1], lines[2]
        if not size_text.isascii() or not size_text.isdigit() or \
                (len(size_text) > 1 and size_text[0] == "0"):
            raise NoteError(f"the checkpoint's size {size_text[:30]!r} is not a number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error:
            root = b""
        if len(root) != 32:
            raise NoteError("the checkpoint's root hash is not 32 bytes of base64")
        return cls(lines[0], int(size_text), root, tuple(lines[3:-1]))

    @property
    def time(self) -> int | None:
        """When the log signed this checkpoint (POSIX seconds), from its extension line
        ``time <seconds>``: a node refuses a checkpoint older than it allows (a frozen log
        would otherwise keep showing an old tree for ever). None without such a line;
        NoteError for a malformed one."""
        for line in self.extensions:
            if line.startswith(TIME_LINE):
                value = line[len(TIME_LINE):]
                if not value.isascii() or not value.isdigit() or \
                        (len(value) > 1 and value[0] == "0"):
                    raise NoteError(f"the checkpoint's time line {line[:40]!r} is not "
                                    "'time <POSIX seconds>'")
                return int(value)
        return None

    def signed_at(self, seconds: int) -> Checkpoint:
        """This checkpoint with its time line set to ``seconds`` (replacing any)."""
        others = tuple(line for line in self.extensions if not line.startswith(TIME_LINE))
        return Checkpoint(self.origin, self.size, self.root, (f"{TIME_LINE}{seconds}", *others))
