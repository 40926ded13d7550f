"""Independent verification: Go's checksum-database packages (golang.org/x/mod/sumdb/tlog
and .../note, from the Go module proxy) read a log we publish over real HTTP, check its
signed checkpoint, recompute the tree from its tiles, and check every inclusion proof and
every consistency proof. A tampered tile or checkpoint must make it fail."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import subprocess
import threading
from pathlib import Path

import pytest

from marketplace.metadata import note, tlog

ORIGIN = "marketplace.test/log"


def publish(directory: Path, entries: list[bytes], signer: note.Signer) -> bytes:
    """Write a log of ``entries`` as C2SP tiles, entry bundles and a signed checkpoint;
    its root hash."""
    hashes = b"".join(tlog.leaf_hash(e) for e in entries)

    def level0(_, index):
        return hashes[index * tlog.TILE_WIDTH * 32:(index + 1) * tlog.TILE_WIDTH * 32]

    for level, index, width in tlog.tiles_for(len(entries)):
        path = directory / tlog.tile_path(level, index, width)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tlog.tile_hashes(level, index, width, level0))
        if level == 0:
            bundle = entries[index * tlog.TILE_WIDTH:index * tlog.TILE_WIDTH + width]
            path = directory / tlog.tile_path(0, index, width, entries=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tlog.entry_bundle(bundle))
    root = tlog.root_of([tlog.leaf_hash(e) for e in entries])
    checkpoint = note.Checkpoint(ORIGIN, len(entries), root)
    (directory / "checkpoint").write_text(note.sign(checkpoint.text(), signer))
    return root


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "log"``."""
    root = tmp_path / "log"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def verify(binary: Path, url: str, vkey: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "-url", url, "-vkey", vkey], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("size", [1, 7, 256, 600])
def test_go_verifies_what_we_publish(go_verifier, served, size):
    directory, url = served
    signer = note.Signer.generate(ORIGIN)
    entries = [f"event {n}\n".encode() for n in range(size)]
    root = publish(directory, entries, signer)
    result = verify(go_verifier, url, signer.verifier.vkey())
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["size"], summary["entries_checked"], summary["signer"]) == \
        (size, size, ORIGIN)
    assert base64.b64decode(summary["root"]) == root
    # Go's tree hash of every smaller size equals ours.
    for old, old_root in summary["old_roots"].items():
        ours = tlog.root_of([tlog.leaf_hash(e) for e in entries[:int(old)]])
        assert base64.b64decode(old_root) == ours


@pytest.mark.parametrize("tamper", ["tile", "entry", "checkpoint", "key"])
def test_go_refuses_a_tampered_log(go_verifier, served, tamper):
    directory, url = served
    signer = note.Signer.generate(ORIGIN)
    publish(directory, [f"event {n}\n".encode() for n in range(300)], signer)
    vkey = signer.verifier.vkey()
    if tamper == "tile":
        tile = directory / tlog.tile_path(0, 0)
        data = bytearray(tile.read_bytes())
        data[40] ^= 1
        tile.write_bytes(bytes(data))
    elif tamper == "entry":
        bundle = directory / tlog.tile_path(0, 1, 44, entries=True)
        bundle.write_bytes(bundle.read_bytes().replace(b"event 299", b"event 999"))
    elif tamper == "checkpoint":
        checkpoint = directory / "checkpoint"
        checkpoint.write_text(checkpoint.read_text().replace("\n300\n", "\n299\n"))
    else:
        vkey = note.Signer.generate(ORIGIN).verifier.vkey()
    result = verify(go_verifier, url, vkey)
    assert result.returncode == 1
    assert result.stderr.startswith("verifier: ")
