"""Reading a stored DICOM-WSI series into RGB arrays per level (frames decoded with imagecodecs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WSM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


@dataclass
class _Level:
    width: int
    height: int
    tile_w: int
    tile_h: int
    frames: list[bytes]
    encapsulated: bool
    mpp: float | None


class SlideLevels:
    """The VOLUME levels of one slide, largest first; levels are decoded on first use."""

    def __init__(self, levels: list[_Level]) -> None:
        if not levels:
            raise ValueError("no VOLUME level in this slide series")
        self.levels = sorted(levels, key=lambda lv: -lv.width)
        self._cache: dict[int, np.ndarray] = {}

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

    def image(self, idx: int) -> np.ndarray:
        if idx not in self._cache:
            self._cache[idx] = _assemble(self.levels[idx])
        return self._cache[idx]

    def thumbnail(self, max_side: int = 2048) -> np.ndarray:
        small = [i for i, lv in enumerate(self.levels) if max(lv.width, lv.height) <= max_side]
        idx = small[0] if small else len(self.levels) - 1
        img = self.image(idx)
        step = int(np.ceil(max(img.shape[:2]) / max_side))
        return img[::step, ::step] if step > 1 else img


def read_slide(sources: list[Any]) -> SlideLevels:
    import pydicom
    from pydicom.encaps import generate_frames

    levels = []
    for src in sources:
        ds = pydicom.dcmread(src)
        if str(ds.get("SOPClassUID", "")) != WSM_SOP_CLASS:
            continue
        if {str(v).upper() for v in ds.get("ImageType") or []} & {"LABEL", "OVERVIEW", "THUMBNAIL"}:
            continue
        n = int(ds.get("NumberOfFrames", 1) or 1)
        enc = ds.file_meta.TransferSyntaxUID.is_encapsulated
        if enc:
            frames = list(generate_frames(ds.PixelData, number_of_frames=n))
        else:
            size = int(ds.Rows) * int(ds.Columns) * 3
            frames = [ds.PixelData[i * size : (i + 1) * size] for i in range(n)]
        try:
            mpp = float(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0]) * 1000
        except (AttributeError, IndexError, KeyError, TypeError):
            mpp = None
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


def _assemble(level: _Level) -> np.ndarray:
    import imagecodecs

    cols = -(-level.width // level.tile_w)
    rows = -(-level.height // level.tile_h)
    out = np.full((rows * level.tile_h, cols * level.tile_w, 3), 255, np.uint8)
    for i, data in enumerate(level.frames[: rows * cols]):
        if level.encapsulated:
            try:
                tile = imagecodecs.jpeg8_decode(data) if data[:2] == b"\xff\xd8" else imagecodecs.imread(data)
            except Exception:
                continue  # a corrupted tile stays white (slide QC counts them)
        else:
            tile = np.frombuffer(data, np.uint8).reshape(level.tile_h, level.tile_w, 3)
        if tile.ndim == 2:
            tile = np.stack([tile] * 3, axis=-1)
        y, x = divmod(i, cols)
        th, tw = min(tile.shape[0], level.tile_h), min(tile.shape[1], level.tile_w)
        out[y * level.tile_h : y * level.tile_h + th, x * level.tile_w : x * level.tile_w + tw] = tile[
            :th, :tw, :3
        ]
    return out[: level.height, : level.width]
