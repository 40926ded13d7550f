"""The Merkle tree arithmetic of the transparency log against RFC 6962's test vectors and
against itself: every proof of every small tree checks, and every altered proof fails."""

from __future__ import annotations

import hashlib

import pytest

from marketplace.metadata import tlog

# The Certificate Transparency test inputs (RFC 6962 test vectors, golang/mod sumdb/tlog).
VECTOR_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]


def leaves(count: int) -> list[bytes]:
    return [f"entry {n}".encode() for n in range(count)]


def reader_for(entries: list[bytes]) -> tlog.HashReader:
    """A HashReader over tiles built the way the log builds them (from level 0 up)."""
    hashes = b"".join(tlog.leaf_hash(e) for e in entries)

    def level0(_, index):
        return hashes[index * tlog.TILE_WIDTH * 32:(index + 1) * tlog.TILE_WIDTH * 32]

    return tlog.HashReader(len(entries),
                           lambda level, index, width: tlog.tile_hashes(level, index, width,
                                                                        level0))


def test_rfc6962_vectors():
    hashes = [tlog.leaf_hash(e) for e in VECTOR_LEAVES]
    assert tlog.root_of(hashes).hex() == \
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert tlog.root_of(hashes[:5]).hex() == \
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"
    assert tlog.root_of([]) == hashlib.sha256(b"").digest()
    assert reader_for(VECTOR_LEAVES).root() == tlog.root_of(hashes)


@pytest.mark.parametrize("size", [*range(1, 34), 255, 256, 257, 600])
def test_every_proof_of_a_tree_checks(size):
    entries = leaves(size)
    reader = reader_for(entries)
    root = reader.root()
    assert root == tlog.root_of([tlog.leaf_hash(e) for e in entries])
    indices = range(size) if size < 64 else sorted({0, 1, 254, size // 2, size - 1})
    for index in indices:
        proof = reader.inclusion_proof(index)
        tlog.check_inclusion(tlog.leaf_hash(entries[index]), index, size, proof, root)
    olds = range(1, size + 1) if size < 64 else sorted({1, 2, 255, size - 1, size})
    for old in olds:
        old_root = reader_for(entries[:old]).root()
        tlog.check_consistency(old, old_root, size, root, reader.consistency_proof(old))


@pytest.mark.parametrize("size", [2, 5, 8, 13, 257])
def test_an_altered_inclusion_proof_fails(size):
    entries = leaves(size)
    reader = reader_for(entries)
    root, index = reader.root(), size - 2
    proof = reader.inclusion_proof(index)
    leaf = tlog.leaf_hash(entries[index])
    for position in range(len(proof)):
        bad = list(proof)
        bad[position] = bytes([bad[position][0] ^ 1]) + bad[position][1:]
        with pytest.raises(tlog.ProofError):
            tlog.check_inclusion(leaf, index, size, bad, root)
    with pytest.raises(tlog.ProofError):
        tlog.check_inclusion(leaf, index + 1, size, proof, root)
    with pytest.raises(tlog.ProofError):
        tlog.check_inclusion(tlog.leaf_hash(b"forged"), index, size, proof, root)
    with pytest.raises(tlog.ProofError):
        tlog.check_inclusion(leaf, index, size, [*proof, proof[0]], root)


@pytest.mark.parametrize(("old", "size"), [(1, 2), (3, 7), (4, 8), (5, 13), (200, 257)])
def test_a_forked_or_shrunk_tree_is_not_consistent(old, size):
    entries = leaves(size)
    reader = reader_for(entries)
    old_root = reader_for(entries[:old]).root()
    proof = reader.consistency_proof(old)
    # the same old size with other contents: a split view
    forked = reader_for([b"other", *entries[1:old]]).root()
    with pytest.raises(tlog.ProofError):
        tlog.check_consistency(old, forked, size, reader.root(), proof)
    with pytest.raises(tlog.ProofError):  # a rollback
        tlog.check_consistency(size, reader.root(), old, old_root, proof)
    with pytest.raises(tlog.ProofError):
        tlog.check_consistency(size, reader.root(), size, forked, [])
    for position in range(len(proof)):
        bad = list(proof)
        bad[position] = bytes(32)
        with pytest.raises(tlog.ProofError):
            tlog.check_consistency(old, old_root, size, reader.root(), bad)


def test_tile_paths():
    assert tlog.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tlog.tile_path(1, 5, 3) == "tile/1/005.p/3"
    assert tlog.tile_path(0, 1000, entries=True) == "tile/entries/x001/000"
    for path, parsed in (("tile/0/x001/x234/067", (0, 1234067, 256)),
                         ("tile/2/000.p/17", (2, 0, 17)),
                         ("tile/entries/x001/000.p/255", (None, 1000, 255))):
        assert tlog.parse_tile_path(path) == parsed
        level, index, width = parsed
        assert tlog.tile_path(level or 0, index, width, entries=level is None) == path
    for bad in ("tile/0/1", "tile/0/x000/001", "tile/0/001.p/0", "tile/0/001.p/256",
                "tile/01/001", "tile/0/00a", "tile/0/001.p/07", "tiles/0/001",
                "tile/0/x1/001", "tile/0/x001/0012"):
        with pytest.raises(ValueError):
            tlog.parse_tile_path(bad)


def test_tiles_for_a_size():
    assert tlog.tiles_for(0) == []
    assert tlog.tiles_for(3) == [(0, 0, 3)]
    assert tlog.tiles_for(256) == [(0, 0, 256), (1, 0, 1)]
    assert tlog.tiles_for(600) == [(0, 0, 256), (0, 1, 256), (0, 2, 88), (1, 0, 2)]


def test_entry_bundles_round_trip():
    entries = [b"", b"a", bytes(300), b"x" * 65535]
    bundle = tlog.entry_bundle(entries)
    assert bundle[:2] == b"\x00\x00"
    assert tlog.read_entry_bundle(bundle) == entries
    with pytest.raises(tlog.ProofError):
        tlog.read_entry_bundle(bundle[:-1])
    with pytest.raises(ValueError):
        tlog.entry_bundle([bytes(65536)])
