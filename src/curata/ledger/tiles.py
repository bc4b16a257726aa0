"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the log as static files any web server can serve.

Layout under the log's folder::

    checkpoint                      the latest signed checkpoint
    tile/<L>/<N>[.p/<W>]            level-L Merkle tiles: up to 256 concatenated 32-byte node hashes
    tile/entries/<N>[.p/<W>]        entry bundles: up to 256 entries, each a big-endian uint16 length
                                    and the entry bytes

A level-L tile holds the hashes of the perfect subtrees of height 8·L; ``N`` is written in groups of
three digits, all but the last prefixed by ``x`` (1234067 -> ``x001/x234/067``); ``.p/W`` marks a
partial tile of width W. Full tiles never change, so only the tail is rewritten as the log grows.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from curata._io import atomic_write
from curata.ledger.merkle import HASH_SIZE, MerkleTree

TILE_WIDTH = 256
TILE_HEIGHT = 8
MAX_ENTRY_SIZE = 0xFFFF


class TileError(ValueError):
    """A tile on disk disagrees with the log, or is missing."""


def encode_index(n: int) -> str:
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    base = f"tile/{level}/{encode_index(index)}"
    return base if width == TILE_WIDTH else f"{base}.p/{width}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    return tile_path("entries", index, width)


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write to a temporary name in the same folder, fsync, rename into place (:func:`curata._io.atomic_write`)."""
    atomic_write(path, data, fsync=fsync)


def bundle(entries: list[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TileError(f"an entry of {len(e)} bytes is over the tiles' 65535-byte limit")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def unbundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError("truncated entry bundle")
        (n,) = struct.unpack_from(">H", data, pos)
        if pos + 2 + n > len(data):
            raise TileError("truncated entry bundle")
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def _changed_tiles(old_size: int, new_size: int) -> Iterator[tuple[int, int, int, int]]:
    """(level, tile index, first node, width) of every tile that differs between the two sizes."""
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        height = TILE_HEIGHT * level
        old_nodes, new_nodes = old_size >> height, new_size >> height
        first = old_nodes // TILE_WIDTH
        last = (new_nodes - 1) // TILE_WIDTH
        for n in range(first, last + 1):
            width = min(TILE_WIDTH, new_nodes - n * TILE_WIDTH)
            if n * TILE_WIDTH + width > old_nodes:  # grew since the last publication
                yield level, n, n * TILE_WIDTH, width
        level += 1


def tile_bytes(tree: MerkleTree, level: int, first: int, width: int) -> bytes:
    row = tree.levels[TILE_HEIGHT * level]
    return b"".join(row[first : first + width])


def publish(
    folder: Path,
    tree: MerkleTree,
    entries: Callable[[int, int], list[bytes]],
    old_size: int,
    new_size: int,
    *,
    fsync: bool = True,
) -> int:
    """Write every tile and entry bundle that changed between ``old_size`` and ``new_size``.

    ``entries(start, end)`` returns the log's entry bytes in that range. Returns the files written.
    """
    written = 0
    for level, n, first, width in _changed_tiles(old_size, new_size):
        write_atomic(folder / tile_path(level, n, width), tile_bytes(tree, level, first, width), fsync=fsync)
        written += 1
        _drop_narrower(folder, tile_path(level, n), width)
        if level == 0:
            write_atomic(folder / entries_path(n, width), bundle(entries(first, first + width)), fsync=fsync)
            written += 1
            _drop_narrower(folder, entries_path(n), width)
    return written


def _drop_narrower(folder: Path, full: str, width: int) -> None:
    """Remove the partial tiles of ``full``'s index narrower than ``width``, just written: a wider tile
    (or the full one) holds their hashes as its first ones, and C2SP tlog-tiles lets a log delete a
    partial tile once a wider one is published (clients read the tiles of the latest checkpoint, or
    take a wider tile's first hashes). Signed on every append, the log kept one file of each width per
    tile and level: about 29 KB and 3 files per entry (outside review 17). Nothing here is durable
    state: a removal lost to a crash leaves a file the next publication removes."""
    partials = folder / f"{full}.p"
    if not partials.is_dir():
        return
    for old in partials.iterdir():
        if old.name.isdigit() and int(old.name) < width:
            old.unlink(missing_ok=True)
    if width == TILE_WIDTH:
        with contextlib.suppress(OSError):
            partials.rmdir()  # empty now, unless a temporary file of a concurrent write is in it


def check(folder: Path, tree: MerkleTree, entries: Callable[[int, int], list[bytes]], size: int) -> list[str]:
    """Problems found comparing the published tiles of a tree of ``size`` with the log itself."""
    problems = []
    for level, n, first, width in _changed_tiles(0, size):
        path = folder / tile_path(level, n, width)
        if not path.exists():
            problems.append(f"missing tile {tile_path(level, n, width)}")
        elif path.read_bytes() != tile_bytes(tree, level, first, width):
            problems.append(f"tile {tile_path(level, n, width)} differs from the log")
        if level == 0:
            epath = folder / entries_path(n, width)
            if not epath.exists():
                problems.append(f"missing entry bundle {entries_path(n, width)}")
            elif epath.read_bytes() != bundle(entries(first, first + width)):
                problems.append(f"entry bundle {entries_path(n, width)} differs from the log")
    return problems


def read_hashes(folder: Path, level: int, n: int, width: int) -> list[bytes]:
    data = (folder / tile_path(level, n, width)).read_bytes()
    if len(data) != width * HASH_SIZE:
        raise TileError(f"tile {tile_path(level, n, width)} has {len(data)} bytes, not {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
