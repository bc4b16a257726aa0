"""Curata's tile reader for tiled TIFF slides: raw tile bytes by one positioned read, decoded with
imagecodecs (JPEG tables merged by the decoder), no region compositing.

Random access to level tiles is what training loaders do; OpenSlide composites a region per call
(a cache, a cairo surface, premultiplied ARGB), which costs more than the JPEG decode itself.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curata.errors import DecodeError, InputError, decoding

_HINT = "the slide's tile data is damaged; send the slide again from the scanner or archive"


@dataclass(frozen=True)
class LevelInfo:
    width: int
    height: int
    tile_w: int
    tile_h: int
    compression: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    jpegtables: bytes | None


def _tiled_pages(tf: Any) -> list[Any]:
    import tifffile

    pages = [p for p in tf.pages if isinstance(p, tifffile.TiffPage) and p.is_tiled]
    for s in tf.series:
        for lvl in s.levels[1:]:
            kf = lvl.keyframe
            if isinstance(kf, tifffile.TiffPage) and kf.is_tiled and kf not in pages:
                pages.append(kf)
    return pages


def _whole(level: LevelInfo) -> bool:
    """A level whose tile table covers its grid (a size of zero, or fewer offsets than tiles, is a
    damaged directory: reading it would fail on an index, not on the tile)."""
    if min(level.width, level.height, level.tile_w, level.tile_h) <= 0:
        return False
    tiles = -(-level.width // level.tile_w) * -(-level.height // level.tile_h)
    return min(len(level.offsets), len(level.counts)) >= tiles


class SlideReader:
    """Tiles of the tiled levels of a TIFF slide (SVS, generic tiled TIFF, Philips, OME)."""

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = str(path)
        self.levels: list[LevelInfo] = []
        try:
            with tifffile.TiffFile(self.path) as tf:
                for p in _tiled_pages(tf):
                    tables = p.jpegtables if p.jpegtables else None
                    level = LevelInfo(
                        p.imagewidth,
                        p.imagelength,
                        p.tilewidth,
                        p.tilelength,
                        int(p.compression),
                        tuple(p.dataoffsets),
                        tuple(p.databytecounts),
                        bytes(tables) if tables else None,
                    )
                    if _whole(level):
                        self.levels.append(level)
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError, struct.error) as exc:
            # a file that is no TIFF, or whose directories are cut or point outside it: said by its kind
            raise InputError(
                f"the slide cannot be opened: its TIFF structure is damaged or missing ({type(exc).__name__})",
                path=self.path,
                hint=_HINT,
            ) from None
        if not self.levels:
            raise InputError(
                "the slide cannot be opened: it has no tiled level whose tile table matches its size",
                path=self.path,
                hint=_HINT,
            )
        self.levels.sort(key=lambda lv: -lv.width)
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def grid(self, level: int = 0) -> tuple[int, int]:
        lv = self.levels[level]
        return -(-lv.width // lv.tile_w), -(-lv.height // lv.tile_h)

    def raw_tile(self, level: int, col: int, row: int) -> bytes:
        lv = self.levels[level]
        cols, rows = self.grid(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise IndexError(
                f"tile (column {col}, row {row}) is outside level {level}'s {cols} x {rows} tiles"
            )
        i = row * cols + col
        return os.pread(self._fd, lv.counts[i], lv.offsets[i])

    def tile(self, level: int, col: int, row: int) -> np.ndarray:
        """The tile at (``col``, ``row``) of a level, decoded. A tile that is empty, of the wrong size or
        that its codec refuses raises :class:`DecodeError` naming the level and tile (and the file, as
        every :class:`InputError` does; its ``reason`` leaves the path out), never the tile's bytes."""
        import imagecodecs

        lv = self.levels[level]
        i = row * self.grid(level)[0] + col
        data = self.raw_tile(level, col, row)
        what = f"tile {i} (column {col}, row {row}) of level {level}"
        if not data:  # imagecodecs.imread(b"") crashes the process: never hand a codec nothing
            raise DecodeError(f"cannot decode {what}: the tile is empty", path=self.path, hint=_HINT)
        with decoding(what, path=self.path, corrupt=(RuntimeError, ValueError, TypeError)):
            if lv.compression == 7:
                return imagecodecs.jpeg8_decode(
                    data, tables=lv.jpegtables, colorspace="RGB" if lv.jpegtables else None
                )
            if lv.compression in (8, 32946):
                arr = np.frombuffer(imagecodecs.zlib_decode(data), np.uint8)
                return arr.reshape(lv.tile_h, lv.tile_w, -1)
            if lv.compression == 1:
                return np.frombuffer(data, np.uint8).reshape(lv.tile_h, lv.tile_w, -1)
            return imagecodecs.imread(data)
