"""Slide QC: metrics of one whole-slide image (a DICOM-WSI series), from its thumbnail level and a
sample of full-resolution tissue tiles.

Heuristics (each a documented, tunable rule; validated by planting defects, see ``bench/wsi.py``):

- **tissue**: on a low level (long side <= 2048 px), a pixel is tissue when its colour saturation
  ``(max-min)/max`` exceeds 0.08 and it is not near white (grey < 235), and it is not pen ink; small
  specks are removed by a 3x3 opening. Fluorescence slides (dark background) use Otsu on the grey
  level, and get no pen/fold/bubble metrics (``brightfield`` false). ``tissue_fraction`` = tissue pixels / all.
- **focus**: the variance of the Laplacian of the grey level in up to 48 full-resolution 256x256 tissue
  tiles (tiles with >= 50% tissue on the thumbnail). A tile is blurred below ``BLUR_LAPVAR`` (40 grey
  levels squared); ``blur_fraction`` = blurred / measured tissue tiles; ``focus_median`` the median.
- **pen marks**: ink is saturated (S > 0.35) with a hue outside H&E's pink-purple band
  (hue in 60-250 degrees: green, cyan, blue), or black (V < 0.15, S < 0.5), in strokes of at least
  0.05% of the image (nuclei are smaller). ``pen_fraction`` = ink / all.
- **folds**: a fold is tissue lying twice: much darker and more saturated than the tissue around it.
  Tissue pixels whose optical density is above 2.5x the tissue median and in a connected patch of at
  least 0.05% of the image; ``fold_fraction`` = those / tissue.
- **bubbles**: holes inside the filled tissue outline that are round-ish (fill of their box >= 0.5)
  and ringed by a darker rim (rim grey < 0.9 x tissue grey) — the meniscus of trapped air.
  ``bubble_fraction`` = their area / tissue area.
- **stain and colour**: Ruifrok-Johnston colour deconvolution (``skimage.color.rgb2hed``) of tissue
  pixels: mean haematoxylin and eosin densities; mean RGB and colour saturation of tissue.
- **saturation**: ``clipped_fraction`` = pixels with every channel >= 254 or <= 1 (over/under-exposure;
  a scanner's glass background sits near 240, not at 255).
- **tiles**: frames that are empty, missing, not a complete codestream (JPEG SOI...EOI, JPEG 2000
  SOC...EOC), or fail to decode:
  ``corrupted_tiles`` (each frame counted once); ``corrupted_tile`` says which was the first and why
  (its level, frame number, column and row, and the decoder's error type: never the data).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from curata.errors import DecodeError

WSM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
BLUR_LAPVAR = 40.0
TISSUE_SATURATION = 0.08
FOLD_OD_FACTOR = 2.5
THUMB_MAX = 2048
FOCUS_TILES = 48


@dataclass
class SlideLevel:
    width: int
    height: int
    tile_w: int
    tile_h: int
    frames: Sequence[bytes]  # read from the stored file on demand where its frame table allows
    encapsulated: bool
    mpp: float | None
    index: int = 0  # its place in the pyramid, largest first: names the level in a tile's error


def is_wsm(ds: Any) -> bool:
    return str(ds.get("SOPClassUID", "")) == WSM_SOP_CLASS


# ---------------------------------------------------------------------- reading DICOM-WSI
def read_levels(sources: list[Any]) -> list[SlideLevel]:
    """Every VOLUME level of a DICOM-WSI series, largest first: headers only, each frame's bytes
    read from the source when asked (``curata.collect.wsi.open_frames``)."""
    from curata.collect.wsi import open_frames, pixel_spacing_um

    levels = []
    for src in sources:
        ds, frames = open_frames(src)
        if not is_wsm(ds):
            continue
        kinds = {str(v).upper() for v in ds.get("ImageType") or []}
        if kinds & {"LABEL", "OVERVIEW", "THUMBNAIL"}:
            continue
        enc = bool(ds.file_meta.TransferSyntaxUID.is_encapsulated)
        mpp = pixel_spacing_um(ds)  # None where missing or not a positive number
        levels.append(
            SlideLevel(
                int(ds.TotalPixelMatrixColumns),
                int(ds.TotalPixelMatrixRows),
                int(ds.Columns),
                int(ds.Rows),
                frames,
                enc,
                mpp,
            )
        )
    levels.sort(key=lambda lv: -lv.width)
    for n, lv in enumerate(levels):
        lv.index = n
    return levels


# A frame's envelope by its first bytes: JPEG and JPEG-LS run from SOI to EOI, JPEG 2000 and HTJ2K
# codestreams from SOC and SIZ to EOC. Another kind (JPEG XL...) is left to its decoder.
_ENVELOPES = ((b"\xff\xd8", b"\xff\xd9"), (b"\xff\x4f\xff\x51", b"\xff\xd9"))


def _frame_ok(data: bytes) -> bool:
    """Whether a stored frame is a whole codestream (a frame cut short, or empty, is not)."""
    if len(data) <= 4:
        return False
    for head, tail in _ENVELOPES:
        if data.startswith(head):
            return data.rstrip(b"\0")[-2:] == tail
    return True


def tile_name(level: SlideLevel, i: int) -> str:
    """Which frame, in words a user can find it by: level, 1-based frame number, column and row."""
    row, col = divmod(i, -(-level.width // level.tile_w))
    return f"frame {i + 1} (column {col}, row {row}) of level {level.index}"


def decode_frame(level: SlideLevel, i: int) -> np.ndarray:
    """Frame ``i`` of a level as RGB; a frame that cannot be decoded raises :class:`DecodeError`
    naming it (``curata.collect.wsi.decode_tile``)."""
    from curata.collect.wsi import decode_tile

    return decode_tile(
        level.frames[i],
        encapsulated=level.encapsulated,
        tile_w=level.tile_w,
        tile_h=level.tile_h,
        what=tile_name(level, i),
    )


@dataclass
class BadTiles:
    """The frames of a slide found missing, incomplete or not decodable, each counted once however
    many passes meet it, and the first one's reason (a metric: the slide is excluded with it)."""

    frames: set[tuple[int, int]] = field(default_factory=set)
    first: str | None = None

    def add(self, level: SlideLevel, i: int, reason: str) -> None:
        if (level.index, i) not in self.frames:
            self.frames.add((level.index, i))
            self.first = self.first or reason

    def check(self, level: SlideLevel) -> None:
        """Every frame's envelope (a complete JPEG), and frames the grid needs but the level lacks."""
        cols, rows = -(-level.width // level.tile_w), -(-level.height // level.tile_h)
        if level.encapsulated:
            for i, f in enumerate(level.frames[: rows * cols]):
                if not _frame_ok(f):
                    self.add(level, i, f"{tile_name(level, i)}: empty or not a complete codestream")
        for i in range(len(level.frames), rows * cols):
            self.add(level, i, f"{tile_name(level, i)}: missing")

    def decode(self, level: SlideLevel, i: int) -> np.ndarray | None:
        """The frame as RGB, or None (recorded) when it is incomplete or cannot be decoded."""
        if level.encapsulated and not _frame_ok(level.frames[i]):
            self.add(level, i, f"{tile_name(level, i)}: empty or not a complete codestream")
            return None
        try:
            return decode_frame(level, i)
        except DecodeError as exc:
            self.add(level, i, exc.reason)
            return None


def assemble(level: SlideLevel, step: int = 1, bad: BadTiles | None = None) -> tuple[np.ndarray, int]:
    """The level as one RGB array (missing tiles white), keeping every ``step``-th pixel, and the
    number of bad tiles (recorded in ``bad`` too). Tile by tile: memory is the output (level size /
    step^2) plus one tile."""
    bad = bad if bad is not None else BadTiles()
    before = len(bad.frames)
    cols = -(-level.width // level.tile_w)
    rows = -(-level.height // level.tile_h)
    out_h, out_w = -(-level.height // step), -(-level.width // step)
    out = np.full((out_h, out_w, 3), 255, np.uint8)
    bad.check(level)
    for i in range(min(len(level.frames), rows * cols)):
        tile = bad.decode(level, i)
        if tile is None:
            continue
        y, x = divmod(i, cols)
        y0, x0 = y * level.tile_h, x * level.tile_w
        th = min(tile.shape[0], level.tile_h, level.height - y0)
        tw = min(tile.shape[1], level.tile_w, level.width - x0)
        ys = np.arange((-y0) % step, th, step)  # rows of this tile on the output grid
        xs = np.arange((-x0) % step, tw, step)
        if len(ys) and len(xs):
            oy, ox = (y0 + ys[0]) // step, (x0 + xs[0]) // step
            out[oy : oy + len(ys), ox : ox + len(xs)] = tile[ys[0] : th : step, xs[0] : tw : step, :3]
    return out, len(bad.frames) - before


# ---------------------------------------------------------------------- the heuristics (on arrays)
def _hsv(img: np.ndarray, hue: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees), saturation and value in [0, 1], channel by channel (fast on large images)."""
    r, g, b = (img[..., i].astype(np.float32) for i in range(3))
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    d = mx - mn
    s = d / np.maximum(mx, 1.0)
    if not hue:
        return np.zeros(0, np.float32), s, mx / 255.0
    dd = np.maximum(d, 1e-6)
    h = np.where(mx == r, ((g - b) / dd) % 6, np.where(mx == g, (b - r) / dd + 2, (r - g) / dd + 4)) * 60.0
    return h, s, mx / 255.0


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=128, range=(0.0, 1.0))
    w = np.cumsum(hist).astype(float)
    if w[-1] == 0:
        return 0.0
    mu = np.cumsum(hist * edges[:-1])
    total = mu[-1]
    w1 = w[-1] - w
    between = np.where((w > 0) & (w1 > 0), (total * w / w[-1] - mu) ** 2 / np.maximum(w * w1, 1e-9), 0)
    return float(edges[int(np.argmax(between))])


def _large(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Connected components of at least ``min_fraction`` of the image."""
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= max(4, min_fraction * mask.size)
    return keep[labels]


def pen_mask(img: np.ndarray) -> np.ndarray:
    h, s, v = _hsv(img)
    ink = ((s > 0.35) & (h >= 60) & (h <= 250) & (v > 0.15)) | ((v < 0.15) & (s < 0.5))
    return _large(ink, 0.0005)


def is_brightfield(img: np.ndarray) -> bool:
    """Brightfield slides have a light background; fluorescence slides a dark one."""
    return float(np.median(img.mean(axis=-1))) > 120


def tissue_mask(img: np.ndarray, pen: np.ndarray | None = None) -> np.ndarray:
    grey = img.mean(axis=-1)
    if not is_brightfield(img):
        mask = grey > max(20.0, 255 * _otsu(grey / 255.0))
    else:
        _h, s, _v = _hsv(img, hue=False)
        mask = (s > TISSUE_SATURATION) & (grey < 235) & ~(pen if pen is not None else pen_mask(img))
    return ndi.binary_opening(mask, structure=np.ones((3, 3), bool))


def _od(img: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(img.astype(np.float32), 1.0) / 255.0).sum(axis=-1)


def fold_mask(img: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    if tissue.sum() < 50:
        return np.zeros_like(tissue)
    od = _od(img)
    dense = tissue & (od > FOLD_OD_FACTOR * float(np.median(od[tissue])))
    return _large(dense, 0.0005)


def bubble_mask(img: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    out = np.zeros_like(tissue)
    if tissue.sum() < 50:
        return out
    holes = ndi.binary_fill_holes(tissue) & ~tissue
    labels, _n = ndi.label(holes)
    grey = img.mean(axis=-1)
    tissue_grey = float(grey[tissue].mean())
    min_area = max(9, 0.0003 * img.shape[0] * img.shape[1])
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == i
        area = int(comp.sum())
        if area < min_area or area / comp.size < 0.5:
            continue
        big = (slice(max(0, sl[0].start - 3), sl[0].stop + 3), slice(max(0, sl[1].start - 3), sl[1].stop + 3))
        region = labels[big] == i
        rim = ndi.binary_dilation(region, iterations=2) & ~region
        if rim.any() and float(grey[big][rim].mean()) < 0.9 * tissue_grey:
            out[big] |= region
    return out


def lapvar(tile: np.ndarray) -> float:
    grey = tile.astype(np.float32).mean(axis=-1)
    return float(ndi.laplace(grey).var())


def colour_metrics(img: np.ndarray, tissue: np.ndarray) -> dict[str, Any]:
    if tissue.sum() < 10:
        return {}
    from skimage.color import rgb2hed

    px = img[tissue]
    if len(px) > 200_000:
        px = px[:: len(px) // 200_000 + 1]
    hed = rgb2hed(px[None, :, :].astype(np.float32) / 255.0)[0]
    _h, s, _v = _hsv(px[None])
    mean = px.mean(axis=0)
    return {
        "stain_h": round(float(hed[:, 0].mean()), 4),
        "stain_e": round(float(hed[:, 1].mean()), 4),
        "tissue_r": round(float(mean[0]), 1),
        "tissue_g": round(float(mean[1]), 1),
        "tissue_b": round(float(mean[2]), 1),
        "colour_saturation": round(float(s.mean()), 3),
    }


def analyse(
    thumb: np.ndarray,
    tiles: list[np.ndarray],
    tissue: np.ndarray | None = None,
    pen: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every slide metric from a low-resolution view and a sample of full-resolution tissue tiles."""
    pen = pen_mask(thumb) if pen is None else pen
    tissue = tissue_mask(thumb, pen) if tissue is None else tissue
    tissue_px = int(tissue.sum())
    area = thumb.shape[0] * thumb.shape[1]
    bright = is_brightfield(thumb)
    folds, bubbles = fold_mask(thumb, tissue), bubble_mask(thumb, tissue)
    clipped = (thumb >= 254).all(axis=-1) | (thumb <= 1).all(axis=-1)
    focus = [lapvar(t) for t in tiles]
    m: dict[str, Any] = {
        "tissue_fraction": round(tissue_px / area, 4),
        "brightfield": bright,
        "pen_fraction": round(float(pen.mean()), 4) if bright else None,
        "fold_fraction": round(float(folds.sum()) / max(tissue_px, 1), 4) if bright else None,
        "bubble_fraction": round(float(bubbles.sum()) / max(tissue_px, 1), 4) if bright else None,
        "clipped_fraction": round(float(clipped.mean()), 4),
        "focus_tiles": len(focus),
        "focus_median": round(float(np.median(focus)), 1) if focus else None,
        "blur_fraction": round(sum(f < BLUR_LAPVAR for f in focus) / len(focus), 3) if focus else None,
    }
    if bright:
        m.update(colour_metrics(thumb, tissue))
    return m


def pick_focus_tiles(
    level: np.ndarray, tissue: np.ndarray, n: int = FOCUS_TILES, size: int = 256
) -> list[np.ndarray]:
    """Up to ``n`` tiles of ``size`` from a full-resolution array where the mask says tissue (>= 50%)."""
    sy, sx = tissue.shape[0] / level.shape[0], tissue.shape[1] / level.shape[1]
    cands = []
    for y in range(0, level.shape[0] - size + 1, size):
        for x in range(0, level.shape[1] - size + 1, size):
            m = tissue[
                int(y * sy) : max(int((y + size) * sy), int(y * sy) + 1),
                int(x * sx) : max(int((x + size) * sx), int(x * sx) + 1),
            ]
            if m.size and m.mean() >= 0.5:
                cands.append((y, x))
    if len(cands) > n:
        idx = np.linspace(0, len(cands) - 1, n).astype(int)
        cands = [cands[i] for i in idx]
    return [level[y : y + size, x : x + size] for y, x in cands]


def thumbnail_png(img: np.ndarray, long_side: int = 256) -> bytes:
    from PIL import Image

    im = Image.fromarray(img)
    im.thumbnail((long_side, long_side))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def measure_slide(sources: list[Any]) -> tuple[dict[str, Any], bytes | None]:
    """All metrics of one DICOM-WSI series (read from the store)."""
    return measure_levels(read_levels(sources))


def measure_levels(levels: list[SlideLevel]) -> tuple[dict[str, Any], bytes | None]:
    """All metrics of one slide from its levels (largest first)."""
    if not levels:
        raise ValueError("no VOLUME level in this slide series")
    for n, lv in enumerate(levels):
        lv.index = n
    small = [lv for lv in levels if max(lv.width, lv.height) <= THUMB_MAX]
    thumb_level = small[0] if small else levels[-1]
    # a slide without a small level (one huge level) is decimated tile by tile, never assembled whole
    step = int(np.ceil(max(thumb_level.width, thumb_level.height) / THUMB_MAX))
    bad = BadTiles()
    thumb, _ = assemble(thumb_level, max(step, 1), bad)
    pen = pen_mask(thumb)
    tissue = tissue_mask(thumb, pen)
    base = levels[0]
    if base is thumb_level and step <= 1:  # a small slide: its one level is the thumbnail
        tiles = pick_focus_tiles(thumb, tissue)
    else:  # full-resolution tissue tiles decoded one by one (every frame of the base checked)
        tiles = _sample_base_tiles(base, tissue, bad)
    for lv in levels:
        if lv is not base and lv is not thumb_level:
            bad.check(lv)
    m = analyse(thumb, tiles, tissue, pen)
    m.update(
        {
            "modality": "SM",
            "levels": len(levels),
            "slide_width": base.width,
            "slide_height": base.height,
            "mpp": round(base.mpp, 4) if base.mpp else None,
            "corrupted_tiles": len(bad.frames),
            "corrupted_tile": bad.first,
        }
    )
    return m, thumbnail_png(thumb)


def _sample_base_tiles(level: SlideLevel, tissue: np.ndarray, bad: BadTiles) -> list[np.ndarray]:
    """Decode full-resolution frames that sit on tissue (up to FOCUS_TILES) and check every frame."""
    cols = -(-level.width // level.tile_w)
    rows = -(-level.height // level.tile_h)
    bad.check(level)
    sy, sx = tissue.shape[0] / level.height, tissue.shape[1] / level.width
    cands = []
    for i in range(min(len(level.frames), rows * cols)):
        y, x = divmod(i, cols)
        y0, x0 = int(y * level.tile_h * sy), int(x * level.tile_w * sx)
        y1 = max(int(min((y + 1) * level.tile_h, level.height) * sy), y0 + 1)
        x1 = max(int(min((x + 1) * level.tile_w, level.width) * sx), x0 + 1)
        m = tissue[y0:y1, x0:x1]
        if m.size and m.mean() >= 0.5:
            cands.append(i)
    if len(cands) > FOCUS_TILES:
        cands = [cands[j] for j in np.linspace(0, len(cands) - 1, FOCUS_TILES).astype(int)]
    tiles = []
    for i in cands:
        t = bad.decode(level, i)
        if t is None:
            continue
        tiles.extend(_split(t))
    return tiles[: FOCUS_TILES * 4]


def _split(tile: np.ndarray, size: int = 256) -> list[np.ndarray]:
    if tile.shape[0] <= size and tile.shape[1] <= size:
        return [tile]
    return [
        tile[y : y + size, x : x + size]
        for y in range(0, tile.shape[0] - size + 1, size)
        for x in range(0, tile.shape[1] - size + 1, size)
    ]
