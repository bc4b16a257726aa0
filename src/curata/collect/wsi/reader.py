"""Curata's tile reader for tiled TIFF slides: raw tile bytes by one positioned read, decoded with
imagecodecs (JPEG tables merged by the decoder), no region compositing.

Random access to level tiles is what training loaders do; OpenSlide composites a region per call
(a cache, a cairo surface, premultiplied ARGB), which costs more than the JPEG decode itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curata.errors import DecodeError, decoding

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


class SlideReader:
    """Tiles of the tiled levels of a TIFF slide (SVS, generic tiled TIFF, Philips, OME)."""

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = str(path)
        self.levels: list[LevelInfo] = []
        with tifffile.TiffFile(self.path) as tf:
            pages = [p for p in tf.pages if isinstance(p, tifffile.TiffPage) and p.is_tiled]
            for s in tf.series:
                for lvl in s.levels[1:]:
                    kf = lvl.keyframe
                    if isinstance(kf, tifffile.TiffPage) and kf.is_tiled and kf not in pages:
                        pages.append(kf)
            for p in pages:
                tables = p.jpegtables if p.jpegtables else None
                self.levels.append(
                    LevelInfo(
                        p.imagewidth,
                        p.imagelength,
                        p.tilewidth,
                        p.tilelength,
                        int(p.compression),
                        tuple(p.dataoffsets),
                        tuple(p.databytecounts),
                        bytes(tables) if tables else None,
                    )
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
        i = row * self.grid(level)[0] + col
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
