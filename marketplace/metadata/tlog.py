"""Merkle tree arithmetic of the transparency log: RFC 6962 hashes, proofs and C2SP tiles.

The log is an RFC 6962 tree: a leaf hashes as ``SHA-256(0x00 || entry)``, an interior node
as ``SHA-256(0x01 || left || right)``, and a tree of n leaves splits at the largest power of
two below n. It is published as C2SP ``tlog-tiles``: a tile at level L holds up to 256
hashes of the complete subtrees of 2^(8L) leaves, so any node of the tree is the root of a
run of hashes inside one tile. This module knows nothing of where hashes are kept: a
:class:`HashReader` gives the hashes of tiles (from a database on the marketplace, from the
served tiles on a node), and everything else is computed from them. The same functions
produce the proofs on one side and check them on the other, which is why they live in the
core that both import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
EMPTY_ROOT = hashlib.sha256(b"").digest()

# (level, tile index, width) -> the tile's hashes, concatenated
TileReader = Callable[[int, int, int], bytes]


class ProofError(ValueError):
    """A proof or a tree that does not check: the log is not what it claims to be."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of leaf (or same-level node) hashes, computed directly."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(root_of(hashes[:k]), root_of(hashes[k:]))


# --- tiles -----------------------------------------------------------------------------------


def tile_path(level: int, index: int, width: int = TILE_WIDTH, entries: bool = False) -> str:
    """The C2SP path of a tile: ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``,
    N written in 3-digit groups with all but the last prefixed ``x`` (1234067 is
    ``x001/x234/067``)."""
    digits = f"{index:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    number = "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/{'entries' if entries else level}/{number}{partial}"


def parse_tile_path(path: str) -> tuple[int | None, int, int]:
    """(level, or None for an entry bundle; index; width) of a tile path; ValueError when it
    is not one in canonical form."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise ValueError(f"not a tile path: {path!r}")
    level = None if parts[1] == "entries" else _number(parts[1], 63)
    groups, width = parts[2:], TILE_WIDTH
    if len(groups) >= 2 and groups[-2].endswith(".p"):
        width = _number(groups[-1], TILE_WIDTH - 1)
        if width == 0:
            raise ValueError("a partial tile has a width of 1 to 255")
        groups = [*groups[:-2], groups[-2][:-2]]
    digits = "".join(g[1:] for g in groups[:-1]) + groups[-1]
    if not digits.isascii() or not digits.isdigit() or \
            tile_path(0, int(digits)) != "tile/0/" + "/".join(groups):
        raise ValueError(f"not a canonical tile index: {'/'.join(groups)!r}")
    return level, int(digits), width


def _number(text: str, highest: int) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > highest:
        raise ValueError(f"{text!r} is not a number from 0 to {highest}")
    return int(text)


def tiles_for(size: int) -> list[tuple[int, int, int]]:
    """Every (level, index, width) hash tile of a tree of ``size`` leaves, the last tile of
    each level partial unless full."""
    tiles, level = [], 0
    while True:
        count = size >> (TILE_HEIGHT * level)
        if count == 0:
            return tiles
        tiles += [(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH)]
        if count % TILE_WIDTH:
            tiles.append((level, count // TILE_WIDTH, count % TILE_WIDTH))
        if count < TILE_WIDTH:
            return tiles
        level += 1


def tile_hashes(level: int, index: int, width: int,
                below: Callable[[int, int], bytes]) -> bytes:
    """The hashes of tile (level, index, width) for a log that keeps its level-0 tiles:
    each hash of level L > 0 is the root of one full tile of level L - 1, read through
    ``below(level, index)`` (which, for level 0, is the log's own storage)."""
    if level == 0:
        return below(0, index)[:width * HASH_SIZE]
    first = index * TILE_WIDTH
    out = bytearray()
    for child in range(first, first + width):
        data = tile_hashes(level - 1, child, TILE_WIDTH, below)
        out += root_of([data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
    return bytes(out)


def completed_tiles(size: int) -> list[tuple[int, int]]:
    """The (level, index) of the hash tiles that the leaf making a tree of ``size`` leaves
    fills: the root of each becomes a hash of the level above, lowest first. A log that keeps
    its hashes per level stores those roots with the leaf, so that any tile is a range read."""
    filled, level, count = [], 0, size
    while count and count % TILE_WIDTH == 0:
        filled.append((level, count // TILE_WIDTH - 1))
        count //= TILE_WIDTH
        level += 1
    return filled


class HashReader:
    """The hashes of one tree of ``size`` leaves, read tile by tile through ``read_tile``.

    A tile read is kept for the next question, so a proof costs a few tile reads.
    """

    def __init__(self, size: int, read_tile: TileReader):
        self.size = size
        self._read_tile = read_tile
        self._tiles: dict[tuple[int, int, int], list[bytes]] = {}

    def _tile(self, level: int, index: int) -> list[bytes]:
        count = self.size >> (TILE_HEIGHT * level)
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        key = (level, index, width)
        if key not in self._tiles:
            data = self._read_tile(level, index, width)
            if len(data) != width * HASH_SIZE:
                raise ProofError(f"tile {tile_path(level, index, width)} holds {len(data)} "
                                 f"bytes, not {width * HASH_SIZE}")
            self._tiles[key] = [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        return self._tiles[key]

    def subtree(self, height: int, index: int) -> bytes:
        """The hash of the complete subtree of 2^height leaves starting at leaf
        ``index * 2^height``."""
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest
        tile = self._tile(level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        return root_of(tile[offset:offset + (1 << rest)])

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), for the ranges RFC 6962's recursion produces."""
        count = end - start
        if count & (count - 1) == 0 and start % count == 0:
            return self.subtree(count.bit_length() - 1, start // count)
        k = _split(count)
        return node_hash(self.range_hash(start, start + k), self.range_hash(start + k, end))

    def root(self) -> bytes:
        return self.range_hash(0, self.size) if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 PATH(index, D[size])."""
        if not 0 <= index < self.size:
            raise ProofError(f"leaf {index} is not in a tree of {self.size}")
        return self._path(index, 0, self.size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = _split(end - start)
        if index < start + k:
            return [*self._path(index, start, start + k), self.range_hash(start + k, end)]
        return [*self._path(index, start + k, end), self.range_hash(start, start + k)]

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[size])."""
        if not 0 < old_size <= self.size:
            raise ProofError(f"no consistency proof from {old_size} to {self.size}")
        return self._subproof(old_size, 0, self.size, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        if m == end - start:
            return [] if whole else [self.range_hash(start, end)]
        k = _split(end - start)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self.range_hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.range_hash(start, start + k)]


# --- checking proofs -------------------------------------------------------------------------


def check_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                    root: bytes) -> None:
    """RFC 9162 2.1.3.2: raise ProofError unless ``leaf`` is leaf ``index`` of the tree."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn, hashed = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            hashed = node_hash(sibling, hashed)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            hashed = node_hash(hashed, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or hashed != root:
        raise ProofError(f"leaf {index} is not in the tree of {size} with that root")


def check_consistency(old_size: int, old_root: bytes, size: int, root: bytes,
                      proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2: raise ProofError unless the tree of ``old_size`` is a prefix of
    the tree of ``size``."""
    if old_size > size:
        raise ProofError(f"the tree shrank from {old_size} to {size} leaves")
    if old_size == size:
        if proof or old_root != root:
            raise ProofError(f"two different trees of {size} leaves")
        return
    if old_size == 0:
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != root:
        raise ProofError(f"the tree of {size} leaves does not extend the tree of {old_size}")


# --- entry bundles ---------------------------------------------------------------------------


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """C2SP entry bundle: each entry as a 2-byte big-endian length, then its bytes."""
    out = bytearray()
    for entry in entries:
        if len(entry) > 0xFFFF:
            raise ValueError("a log entry is at most 65535 bytes")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def read_entry_bundle(data: bytes) -> list[bytes]:
    entries, position = [], 0
    while position < len(data):
        if position + 2 > len(data):
            raise ProofError("an entry bundle ends inside a length")
        length = int.from_bytes(data[position:position + 2], "big")
        position += 2
        if position + length > len(data):
            raise ProofError("an entry bundle ends inside an entry")
        entries.append(data[position:position + length])
        position += length
    return entries
