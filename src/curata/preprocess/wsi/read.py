"""Reading a stored DICOM-WSI series into RGB arrays per level (frames decoded with imagecodecs)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WSM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
FRAME_CACHE = 64  # decoded frames kept for neighbouring regions (64 x 512^2 x 3 = 48 MB at most)


@dataclass
class _Level:
    width: int
    height: int
    tile_w: int
    tile_h: int
    frames: Sequence[bytes]  # read from the stored file on demand where its frame table allows
    encapsulated: bool
    mpp: float | None


class SlideLevels:
    """The VOLUME levels of one slide, largest first; levels are decoded on first use."""

    def __init__(self, levels: list[_Level]) -> None:
        if not levels:
            raise ValueError("no VOLUME level in this slide series")
        self.levels = sorted(levels, key=lambda lv: -lv.width)
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def mpp(self, idx: int) -> float | None:
        lv = self.levels[idx]
        if lv.mpp:
            return lv.mpp
        base = self.levels[0]
        return base.mpp * base.width / lv.width if base.mpp else None

    def level_for_mpp(self, mpp: float | None) -> int:
        """The coarsest level at least as fine as ``mpp`` (level 0 when unknown)."""
        if mpp is None:
            return 0
        best = 0
        for i in range(len(self.levels)):
            m = self.mpp(i)
            if m is not None and m <= mpp * 1.05:
                best = i
        return best

    def size(self, idx: int) -> tuple[int, int]:
        """(height, width) of a level."""
        return self.levels[idx].height, self.levels[idx].width

    def image(self, idx: int, step: int = 1) -> np.ndarray:
        """A whole level (every ``step``-th pixel), assembled tile by tile. For small levels only:
        large ones are read with :meth:`region`."""
        if (idx, step) not in self._cache:
            self._cache[(idx, step)] = _assemble(self.levels[idx], idx, step)
        return self._cache[(idx, step)]

    def region(self, idx: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Pixels [y, y+h) x [x, x+w) of a level (white outside), decoding only the frames they touch
        (the last few decoded frames are kept: neighbouring regions share them)."""
        lv = self.levels[idx]
        out = np.full((h, w, 3), 255, np.uint8)
        cols = -(-lv.width // lv.tile_w)
        for ty in range(max(y, 0) // lv.tile_h, (min(y + h, lv.height) - 1) // lv.tile_h + 1):
            for tx in range(max(x, 0) // lv.tile_w, (min(x + w, lv.width) - 1) // lv.tile_w + 1):
                i = ty * cols + tx
                if i >= len(lv.frames):
                    continue
                tile = self._frame(idx, i)
                y0, x0 = ty * lv.tile_h, tx * lv.tile_w
                ya, yb = max(y, y0), min(y + h, y0 + tile.shape[0], lv.height)
                xa, xb = max(x, x0), min(x + w, x0 + tile.shape[1], lv.width)
                if yb > ya and xb > xa:
                    out[ya - y : yb - y, xa - x : xb - x] = tile[ya - y0 : yb - y0, xa - x0 : xb - x0]
        return out

    def _frame(self, idx: int, i: int) -> np.ndarray:
        key = (idx, i)
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        tile = _decode(self.levels[idx], self.levels[idx].frames[i], _what(idx, i))
        self._frames[key] = tile
        if len(self._frames) > FRAME_CACHE:
            self._frames.popitem(last=False)
        return tile

    def thumbnail(self, max_side: int = 2048) -> np.ndarray:
        small = [i for i, lv in enumerate(self.levels) if max(lv.width, lv.height) <= max_side]
        idx = small[0] if small else len(self.levels) - 1
        lv = self.levels[idx]
        step = int(np.ceil(max(lv.width, lv.height) / max_side))
        return self.image(idx, max(step, 1))


def read_slide(sources: list[Any]) -> SlideLevels:
    """The VOLUME levels of a DICOM-WSI series (paths or seekable files): headers only; each frame's
    bytes are read when a region needs it (``curata.collect.wsi.open_frames``)."""
    from curata.collect.wsi import open_frames, pixel_spacing_um

    levels = []
    for src in sources:
        ds, frames = open_frames(src)
        if str(ds.get("SOPClassUID", "")) != WSM_SOP_CLASS:
            continue
        if {str(v).upper() for v in ds.get("ImageType") or []} & {"LABEL", "OVERVIEW", "THUMBNAIL"}:
            continue
        enc = ds.file_meta.TransferSyntaxUID.is_encapsulated
        mpp = pixel_spacing_um(ds)  # None where missing or not a positive number
        levels.append(
            _Level(
                int(ds.TotalPixelMatrixColumns),
                int(ds.TotalPixelMatrixRows),
                int(ds.Columns),
                int(ds.Rows),
                frames,
                enc,
                mpp,
            )
        )
    return SlideLevels(levels)


def _decode(level: _Level, data: bytes, what: str) -> np.ndarray:
    """A frame as RGB, cropped to the tile. A damaged or empty frame raises ``DecodeError`` naming
    ``what``: a tile left white would pass into a dataset as tissue-free background."""
    from curata.collect.wsi import decode_tile

    tile = decode_tile(
        data, encapsulated=level.encapsulated, tile_w=level.tile_w, tile_h=level.tile_h, what=what
    )
    return np.asarray(tile[: level.tile_h, : level.tile_w, :3])


def _what(level: int, frame: int) -> str:
    return f"frame {frame + 1} of level {level}"


def _assemble(level: _Level, index: int, step: int = 1) -> np.ndarray:
    """The level (every ``step``-th pixel), tile by tile: memory is the output plus one tile."""
    cols = -(-level.width // level.tile_w)
    rows = -(-level.height // level.tile_h)
    out = np.full((-(-level.height // step), -(-level.width // step), 3), 255, np.uint8)
    for i, data in enumerate(level.frames[: rows * cols]):
        tile = _decode(level, data, _what(index, i))
        y, x = divmod(i, cols)
        y0, x0 = y * level.tile_h, x * level.tile_w
        th, tw = min(tile.shape[0], level.height - y0), min(tile.shape[1], level.width - x0)
        ys, xs = (-y0) % step, (-x0) % step
        if ys < th and xs < tw:
            part = tile[ys:th:step, xs:tw:step]
            oy, ox = (y0 + ys) // step, (x0 + xs) // step
            out[oy : oy + part.shape[0], ox : ox + part.shape[1]] = part
    return out
