"""Signed notes, checkpoints and cosignatures (C2SP signed-note, tlog-checkpoint,
tlog-cosignature) with real Ed25519 keys."""

from __future__ import annotations

import base64
import hashlib

import pytest

from marketplace.metadata import note

TEXT = "marketplace.example.org/log\n7\n" + base64.b64encode(bytes(range(32))).decode() + "\n"


def test_a_note_signed_by_the_log_opens_with_its_key():
    signer = note.Signer.generate("marketplace.example.org/log")
    signed = note.sign(TEXT, signer)
    assert signed.startswith(TEXT + "\n\u2014 marketplace.example.org/log ")
    text, signatures = note.open_note(signed, [signer.verifier])
    assert text == TEXT
    assert [s.name for s in signatures] == ["marketplace.example.org/log"]


def test_key_ids_and_key_strings_follow_the_spec():
    signer = note.Signer.generate("example.com/log")
    public = signer.verifier.public
    expected = hashlib.sha256(b"example.com/log\n\x01" + public).digest()[:4]
    assert signer.verifier.id == expected
    vkey = signer.verifier.vkey()
    encoded = base64.b64encode(b"\x01" + public).decode()
    assert vkey == f"example.com/log+{expected.hex()}+{encoded}"
    assert note.Verifier.parse(vkey) == signer.verifier
    again = note.Signer.parse(signer.skey())
    assert again.verifier == signer.verifier
    assert signer.skey().startswith("PRIVATE+KEY+example.com/log+" + expected.hex() + "+")


@pytest.mark.parametrize("change", ["text", "signature", "other key"])
def test_a_changed_note_does_not_open(change):
    signer = note.Signer.generate("example.com/log")
    signed = note.sign(TEXT, signer)
    verifiers = [signer.verifier]
    if change == "text":
        signed = signed.replace("\n7\n", "\n8\n")
    elif change == "signature":
        line = signed.split("\n")[-2]
        payload = bytearray(base64.b64decode(line.split(" ")[2]))
        payload[10] ^= 1
        signed = signed.replace(line, " ".join(
            [*line.split(" ")[:2], base64.b64encode(payload).decode()]))
    else:
        verifiers = [note.Signer.generate("example.com/log").verifier]
    with pytest.raises(note.NoteError):
        note.open_note(signed, verifiers)


@pytest.mark.parametrize("bad", [
    TEXT, TEXT + "\n", TEXT + "\nnot a signature\n", TEXT + "\n\u2014 name !!!\n",
    "no newline" + "\n\n\u2014 a AAAAAAAA\n"])
def test_malformed_notes_are_refused(bad):
    signer = note.Signer.generate("a")
    with pytest.raises(note.NoteError):
        note.open_note(bad, [signer.verifier])


def test_bad_keys_are_refused():
    signer = note.Signer.generate("example.com/log")
    vkey = signer.verifier.vkey()
    name, hexid, payload = vkey.split("+", 2)  # base64 may hold "+" too
    for bad in (f"{name}+00000000+{payload}", f"{name}+{hexid}+AAAA", "nothing",
                f"other+{hexid}+{payload}", f"a b+{hexid}+{payload}"):
        with pytest.raises(note.NoteError):
            note.Verifier.parse(bad)
    with pytest.raises(note.NoteError):
        note.Signer.parse(vkey)


def test_cosignatures_commit_to_a_time_and_the_checkpoint():
    log = note.Signer.generate("example.com/log")
    witness = note.Signer.generate("witness.example.org/w1", kind=note.COSIGNATURE)
    signed = note.sign(TEXT, log)
    cosigned = signed + witness.signature_line(TEXT, timestamp=1_700_000_000)
    text, signatures = note.open_note(cosigned, [log.verifier, witness.verifier])
    assert text == TEXT
    assert [(s.name, s.timestamp) for s in signatures] == [
        ("example.com/log", None), ("witness.example.org/w1", 1_700_000_000)]
    # The witness's key ID uses type 0x04, so a plain verifier of the same key ignores it.
    assert witness.verifier.id == hashlib.sha256(
        b"witness.example.org/w1\n\x04" + witness.verifier.public).digest()[:4]
    # A changed timestamp breaks the cosignature.
    line = cosigned.split("\n")[-2]
    payload = bytearray(base64.b64decode(line.split(" ")[2]))
    payload[11] ^= 1  # inside the timestamp
    forged = cosigned.replace(line, " ".join([*line.split(" ")[:2],
                                              base64.b64encode(payload).decode()]))
    with pytest.raises(note.NoteError):
        note.open_note(forged, [log.verifier, witness.verifier])


def test_checkpoints_parse_and_format():
    checkpoint = note.Checkpoint.parse(TEXT)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == \
        ("marketplace.example.org/log", 7, bytes(range(32)))
    assert checkpoint.text() == TEXT
    extended = note.Checkpoint("o", 1, bytes(32), ("time 5",))
    assert note.Checkpoint.parse(extended.text()) == extended
    for bad in ("o\n07\n" + TEXT.split("\n")[2] + "\n", "o\n-1\nAAAA\n", "o\n1\nAAAA\n",
                "o\n1\n", "\n1\n" + TEXT.split("\n")[2] + "\n"):
        with pytest.raises(note.NoteError):
            note.Checkpoint.parse(bad)
