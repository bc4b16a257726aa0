"""Image metrics of CT and MR series: noise, SNR/CNR, HU calibration, ghosting, truncation, clipping,
metal streaks; plus the per-series driver that reads each image once and adds the header metrics.

Each image is decoded once. Cheap per-slice statistics (minimum, maximum) cover every slice; the
region-based metrics run on up to ``ANALYSED_SLICES`` slices spread evenly along the series (slices with
metal always among them) and on an analysis grid of every k-th pixel (at most ~256 wide), which keeps
QC's cost a fraction of the decoding cost while leaving tens of thousands of pixels for every estimate.

Noise is estimated from the differences between each grid pixel and its right-hand neighbour in the
full image, both inside a region: for white noise of standard deviation sigma they have standard
deviation sigma*sqrt(2). A robust first scale (1.4826 x MAD) sets a +-3.5 sigma window that drops the
pairs straddling an edge; the standard deviation inside the window, corrected for the truncation, is
free of the MAD's quantisation on integer pixels. In MR air the magnitude signal is Rayleigh
distributed, so the background sigma is its median / sqrt(2 ln 2).
"""

from __future__ import annotations

import io
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from scipy import ndimage

from curata.errors import decoding
from curata.select.metrics.geometry import SliceHeader, geometry_metrics, is_localizer_image

ANALYSED_SLICES = 5  # at most; a short series gets fewer (one per ~10 images, at least 3)
METAL_HU = 2500.0
MAD_TO_SIGMA = 1.4826
RAYLEIGH_MEDIAN = math.sqrt(2 * math.log(2))
THUMBNAIL_PX = 160
ANALYSIS_GRID = 170  # region metrics run on every k-th pixel: a grid about 170 wide (512 -> k=3)
TRUNCATE_SIGMAS = 3.5
TRUNCATED_SD = 0.99694  # sd of a unit normal truncated at +-3.5


@dataclass
class SeriesImages:
    """What QC keeps of a series after one read: headers, and the decoded slices."""

    modality: str
    description: str
    headers: list[SliceHeader]
    pixels: list[np.ndarray | None]  # stored values as decoded; None where the reader let a slice go
    padding: float | None = None
    maxs: list[float] = field(default_factory=list)  # every slice's stored maximum and minimum
    mins: list[float] = field(default_factory=list)


def _raw(ds: pydicom.Dataset, tag: int) -> Any:
    """An element's value without pydicom's per-value conversion (raw bytes for text VRs)."""
    try:
        elem = ds.get_item(tag)
    except (KeyError, ValueError):
        return None
    return None if elem is None else elem.value


def _floats(ds: pydicom.Dataset, tag: int) -> tuple[float, ...] | None:
    """DS/IS numbers, parsed straight from the raw bytes (pydicom's DS objects cost ~50x more)."""
    value = _raw(ds, tag)
    if value is None or value == b"" or value == "":
        return None
    try:
        if isinstance(value, bytes):
            return tuple(float(v) for v in value.split(b"\\"))
        if isinstance(value, str):
            return tuple(float(v) for v in value.split("\\"))
        if isinstance(value, Sequence):
            return tuple(float(v) for v in value)
        return (float(value),)
    except (TypeError, ValueError):
        return None


def _first(ds: pydicom.Dataset, tag: int, default: float | None) -> float | None:
    values = _floats(ds, tag)
    return values[0] if values else default


def _text(ds: pydicom.Dataset, tag: int) -> str:
    value = _raw(ds, tag)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    if isinstance(value, str):
        return value.strip()
    return "\\".join(str(v) for v in value)


def header_of(ds: pydicom.Dataset) -> SliceHeader:
    ts = ""
    if getattr(ds, "file_meta", None) is not None and "TransferSyntaxUID" in ds.file_meta:
        ts = str(ds.file_meta.TransferSyntaxUID)
    return SliceHeader(
        position=_floats(ds, 0x00200032),
        orientation=_floats(ds, 0x00200037),
        rows=int(ds.Rows) if "Rows" in ds else None,
        columns=int(ds.Columns) if "Columns" in ds else None,
        pixel_spacing=_floats(ds, 0x00280030),
        image_type=_text(ds, 0x00080008),
        lossy=_text(ds, 0x00282110) == "01",
        lossy_ratio=_first(ds, 0x00282112, None),
        transfer_syntax=ts,
        gantry_tilt=_first(ds, 0x00181120, None),
        slope=_first(ds, 0x00281053, 1.0) or 1.0,
        intercept=_first(ds, 0x00281052, 0.0) or 0.0,
    )


def images_of(datasets: Iterable[pydicom.Dataset], keep: Collection[int] | None = None) -> SeriesImages:
    """Headers and decoded pixels of a series' datasets, each decoded exactly once.

    With ``keep`` (the positions in the stream of the slices to analyse), every other slice is reduced
    to its minimum and maximum and let go at once, so a series never sits in memory whole (holding it
    costs more than the analysis); slices with metal are kept too (up to 3).
    """
    images = SeriesImages("", "", [], [])
    metal_kept = 0
    for i, ds in enumerate(datasets):
        with decoding("pixel data"):
            pairs = (
                _frames_of(ds)
                if int(ds.get("NumberOfFrames", 1) or 1) > 1
                else [(header_of(ds), ds.pixel_array)]
            )
        if i == 0:
            images.modality = str(ds.get("Modality", "") or "").upper()
            images.description = str(ds.get("SeriesDescription", "") or "")
            padding = ds.get("PixelPaddingValue")
            images.padding = float(padding) if isinstance(padding, int | float) else None
        for header, arr in pairs:
            mx, mn = float(arr.max()), float(arr.min())
            metal = images.modality == "CT" and mx * header.slope + header.intercept >= METAL_HU
            kept = keep is None or len(pairs) > 1 or i in keep or (metal and metal_kept < 3)
            metal_kept += int(kept and metal)
            images.headers.append(header)
            images.pixels.append(arr if kept else None)
            images.maxs.append(mx)
            images.mins.append(mn)
    if not images.headers:
        raise ValueError("the series has no images")
    return images


def analysis_ranks(n: int) -> list[int]:
    """Which of ``n`` slices (in position order) the region metrics analyse: evenly spread."""
    k = min(n, max(3, min(ANALYSED_SLICES, n // 10)))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def _group_value(item: Any, shared: Any, sequence: str, keyword: str) -> Any:
    """A value from a frame's functional group, else from the shared functional groups."""
    for holder in (item, shared):
        if holder is None:
            continue
        seq = holder.get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value not in (None, ""):
                return value
    return None


def _frames_of(ds: pydicom.Dataset) -> list[tuple[SliceHeader, np.ndarray]]:
    """Each frame of an enhanced multi-frame image as its own slice, placed by its functional groups."""
    base = header_of(ds)
    frames = ds.pixel_array
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    out = []
    for i in range(frames.shape[0]):
        item = per[i] if i < len(per) else None

        def pick(sequence: str, keyword: str, item: Any = item) -> Any:
            return _group_value(item, shared, sequence, keyword)

        position = pick("PlanePositionSequence", "ImagePositionPatient")
        orientation = pick("PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = pick("PixelMeasuresSequence", "PixelSpacing")
        slope = pick("PixelValueTransformationSequence", "RescaleSlope")
        intercept = pick("PixelValueTransformationSequence", "RescaleIntercept")
        frame_type = pick("CTImageFrameTypeSequence", "FrameType") or pick(
            "MRImageFrameTypeSequence", "FrameType"
        )
        header = SliceHeader(
            position=tuple(float(v) for v in position) if position else None,
            orientation=tuple(float(v) for v in orientation) if orientation else None,
            rows=base.rows,
            columns=base.columns,
            pixel_spacing=tuple(float(v) for v in spacing) if spacing else base.pixel_spacing,
            image_type="\\".join(str(v) for v in frame_type) if frame_type else base.image_type,
            lossy=base.lossy,
            lossy_ratio=base.lossy_ratio,
            transfer_syntax=base.transfer_syntax,
            gantry_tilt=base.gantry_tilt,
            slope=float(slope) if slope not in (None, "") else base.slope,
            intercept=float(intercept) if intercept not in (None, "") else base.intercept,
        )
        out.append((header, frames[i]))
    return out


def read_images(paths: Sequence[Any], keep: Collection[int] | None = None) -> SeriesImages:
    """Read a series from files or binary streams, one at a time, each once (see ``images_of``)."""
    return images_of((pydicom.dcmread(p) for p in paths), keep)


# -- region helpers -------------------------------------------------------------------------------------


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` with its holes filled."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    return ~_touching_border(~mask)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a (2r+1)-square, as a separable box filter (much faster than iterated dilation)."""
    return ndimage.uniform_filter(mask.astype(np.float32), 2 * r + 1, mode="constant") > 1e-3


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(mask.astype(np.float32), 2 * r + 1, mode="constant") > 1 - 1e-3


def _touching_border(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` connected to the image edge (padding outside the reconstructed field)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    keep = np.zeros(n + 1, bool)
    keep[edge] = True
    keep[0] = False
    return keep[labels]


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centers = (edges[:-1] + edges[1:]) / 2
    w = np.cumsum(hist)
    total = w[-1]
    mu = np.cumsum(hist * centers)
    w0, w1 = w[:-1], total - w[:-1]
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros_like(w0, dtype=float)
    m0 = mu[:-1][valid] / w0[valid]
    m1 = (mu[-1] - mu[:-1][valid]) / w1[valid]
    between[valid] = w0[valid] * w1[valid] * (m0 - m1) ** 2
    return float(centers[int(np.argmax(between)) + 1])


def _pair_noise(img: np.ndarray, nb: np.ndarray, mask: np.ndarray) -> tuple[float | None, int]:
    """Sigma from differences between each pixel and its right-hand neighbour inside ``mask``.

    A first robust scale (1.4826 x MAD) sets a +-3.5 sigma window that drops the pairs straddling an
    edge; the standard deviation inside the window, corrected for the truncation (x 1/0.99694), is
    then free of the MAD's quantisation on integer data. Returns (sigma, pairs used).
    """
    mask = mask[::2]  # every other row of the grid: plenty of pairs, half the cost
    n = int(mask.sum())
    if n < 50:
        return None, n
    d = (nb[::2] - img[::2])[mask]
    sample = d[:: max(1, d.size // 20000)]  # the rough scale needs no more
    d = d - np.median(sample)
    s0 = MAD_TO_SIGMA * float(np.median(np.abs(sample - np.median(sample)))) or float(d.std())
    if s0 == 0:
        return 0.0, n
    kept = d[np.abs(d) < TRUNCATE_SIGMAS * s0]
    return float(kept.std()) / TRUNCATED_SD / math.sqrt(2), n


def _pool(values: list[tuple[float | None, int]]) -> float | None:
    """Pair-weighted mean of per-slice estimates."""
    got = [(v, n) for v, n in values if v is not None and n > 0]
    if not got:
        return None
    return float(sum(v * n for v, n in got) / sum(n for _, n in got))


def _contact_fraction(
    body: np.ndarray, outside_fov: np.ndarray | None, open_edge: str | None = None
) -> float:
    """Share of the body's outline lying on the image edge or on the edge of the reconstructed field.

    ``open_edge`` ('top', 'bottom', 'left', 'right') is the image edge facing the patient's feet in a
    sagittal or coronal image: the body goes on through it (the neck below a head, the legs below a
    pelvis), as it goes on past the first slice of an axial series. Crossing it is not truncation.
    """
    edge = body & ~_erode(body, 1)
    n = int(edge.sum())
    if n == 0:
        return 0.0
    border = np.zeros_like(body)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    if open_edge is not None:
        open_mask = np.zeros_like(body)
        row_or_col = {"top": (0, slice(None)), "bottom": (-1, slice(None))}.get(open_edge)
        if row_or_col is not None:
            open_mask[row_or_col] = True
        else:
            open_mask[:, 0 if open_edge == "left" else -1] = True
        # the outline running along the open edge, and the pixels beside it, are the body's cut end
        edge = edge & ~_dilate(open_mask, 1)
        n = int(edge.sum())
        if n == 0:
            return 0.0
        border &= ~open_mask
    touching = edge & border
    if outside_fov is not None and outside_fov.any():
        touching |= edge & _dilate(outside_fov, 1)
    return float(touching.sum()) / n


def _ghost_bands(img: np.ndarray, body: np.ndarray) -> tuple[float, float] | None:
    """Mean background signal above+below vs left+right of the body (the ACR ghosting bands)."""
    rows = np.flatnonzero(body.any(axis=1))
    cols = np.flatnonzero(body.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    margin = max(3, img.shape[0] // 50)
    bg = ~_dilate(body, margin)
    top_bottom = np.zeros_like(bg)
    top_bottom[: max(0, r0 - margin), c0 : c1 + 1] = True
    top_bottom[r1 + margin + 1 :, c0 : c1 + 1] = True
    left_right = np.zeros_like(bg)
    left_right[r0 : r1 + 1, : max(0, c0 - margin)] = True
    left_right[r0 : r1 + 1, c1 + margin + 1 :] = True
    tb, lr = top_bottom & bg, left_right & bg
    if tb.sum() < 50 or lr.sum() < 50:
        return None
    return float(img[tb].mean()), float(img[lr].mean())


def _choose_slices(n: int, metal: np.ndarray) -> list[int]:
    chosen = set(analysis_ranks(n))
    metal_idx = np.flatnonzero(metal)
    if metal_idx.size:
        chosen.update(
            metal_idx[np.linspace(0, metal_idx.size - 1, min(3, metal_idx.size)).astype(int)].tolist()
        )
    return sorted(chosen)


def _thumbnail(img: np.ndarray, modality: str) -> bytes:
    """A small PNG of one slice (CT soft-tissue window, MR 1-99.5 percentiles), by striding."""
    from PIL import Image

    if modality == "CT":
        lo, hi = -160.0, 240.0
    else:
        lo, hi = (float(v) for v in np.percentile(img[::2, ::2], [1, 99.5]))
    step = max(1, math.ceil(max(img.shape) / THUMBNAIL_PX))
    small = img[::step, ::step]
    scaled = np.clip((small - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, format="PNG")
    return buf.getvalue()


# -- the metrics ----------------------------------------------------------------------------------------


def _ct_slice(
    img: np.ndarray, nb: np.ndarray, padding_mask: np.ndarray, streaks: bool, smooth_px: int = 5
) -> dict[str, Any]:
    body = _largest_filled((img > -500) & ~padding_mask)
    near = _dilate(body, 5)
    air = ~near & ~padding_mask & (img > -1500) & (img < -500)
    smooth = ndimage.uniform_filter(img, smooth_px)
    inner = _erode(body, 3)
    tissue = inner & (smooth > -30) & (smooth < 150)
    fat = inner & (smooth > -150) & (smooth < -60)
    metal = img >= METAL_HU
    s: dict[str, Any] = {
        "body": body,
        "air_values": img[air][::7],
        "noise_air": _pair_noise(img, nb, air),
        "noise_tissue": _pair_noise(img, nb, tissue),
        "tissue_values": img[tissue][::7],
        "fat_values": img[fat][::7],
        "contact": _contact_fraction(body, padding_mask),
    }
    if not streaks:  # only series with metal somewhere need the streak measure
        return s
    streak_zone = inner & ~_dilate(metal, 6) & (smooth < 300) & (smooth > -300)
    if streak_zone.sum() > 100:
        dev = np.abs(img - smooth)[streak_zone]
        s["streak_fraction"] = float(np.mean(dev > 120))
    return s


MR_MIN_BODY_FRACTION = 0.01  # a body smaller than 1% of the image is no body
MR_MIN_BODY_SHARE = 0.5  # share of the above-threshold pixels the body must hold


MR_MIN_OBJECT_FRACTION = 0.0005  # an object of tissue holds at least 0.05% of the image (8 px of 128^2)


def _tissue_objects(above: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Anatomy outside the largest object (a neck below a sagittal head, the scalp around the brain,
    an arm beside a torso), with a 1-pixel rim for the partial-volume edge.

    Ghost bands must measure background, not tissue. Objects are the connected parts of the bright
    mask outside the body that are not specks: Rician noise above the tissue threshold is single
    pixels, while the scalp is a thin but long ring (an opening, which erases anything thinner than
    its element, let a sagittal head's scalp and neck count as background ghosts). Motion ghosts sit
    well below the tissue threshold, so the ghost measure still sees them.
    """
    if not body.any():
        return body
    rest = above & ~body
    labels, n = ndimage.label(rest, structure=np.ones((3, 3), bool))
    if n == 0:
        return rest
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= max(8, MR_MIN_OBJECT_FRACTION * rest.size)
    return _dilate(keep[labels], 1)


def _holds_body(above: np.ndarray, body: np.ndarray) -> bool:
    """A real body gathers most bright pixels into one object; noise alone scatters them everywhere."""
    n_above = int(above.sum())
    if body.sum() < MR_MIN_BODY_FRACTION * body.size or n_above == 0:
        return False
    return int((body & above).sum()) >= MR_MIN_BODY_SHARE * n_above


def _mr_slice(img: np.ndarray, nb: np.ndarray) -> dict[str, Any]:
    positive = img[img > 0]
    thr = _otsu(positive[:: max(1, positive.size // 50000)]) if positive.size > 100 else float("inf")
    above = img > thr
    body = _largest_filled(above)
    background = ~_dilate(body, max(3, img.shape[0] // 50))
    if not _holds_body(above, body):
        # A slice past the end of the anatomy: Otsu then splits the noise itself, and its "largest
        # object" is noise that touches the image edge. Such a slice has no body to measure.
        body = np.zeros_like(body)
        background = np.ones_like(body)
    inner = _erode(body, 3)
    s: dict[str, Any] = {
        "body": body,
        "bg_median": float(np.median(img[background])) if background.sum() > 100 else None,
        "noise_tissue": _pair_noise(img, nb, inner),
        "body_values": img[inner][::5],
        "contact": _contact_fraction(body, None),
        "ghost": _ghost_bands(img, body | _tissue_objects(above, body)),
    }
    return s


def _feet_edge(orientation: Sequence[float] | None) -> str | None:
    """The image edge facing the patient's feet when rows or columns run head to feet (LPS z)."""
    if not orientation or len(orientation) != 6:
        return None
    row_cos, col_cos = orientation[:3], orientation[3:]
    if abs(col_cos[2]) > math.sqrt(0.5):  # going down the rows moves along z
        return "bottom" if col_cos[2] < 0 else "top"
    if abs(row_cos[2]) > math.sqrt(0.5):  # going along a row moves along z
        return "right" if row_cos[2] < 0 else "left"
    return None


def pixel_metrics(images: SeriesImages) -> tuple[dict[str, Any], bytes | None]:
    """Image metrics of a series (see ``metrics.registry``), and a PNG thumbnail of its middle slice."""
    headers, pixels = images.headers, images.pixels
    order = list(range(len(pixels)))
    if all(h.position and h.orientation and len(h.orientation) == 6 for h in headers):
        o = np.asarray(headers[0].orientation, dtype=float)
        n = np.cross(o[:3], o[3:])
        order = sorted(order, key=lambda i: float(np.dot(headers[i].position, n)))  # type: ignore[arg-type]
    pixels = [pixels[i] for i in order]
    headers = [headers[i] for i in order]
    ct = images.modality == "CT"
    open_edge = _feet_edge(headers[0].orientation)
    raw_max = np.array([images.maxs[i] for i in order])
    raw_min = np.array([images.mins[i] for i in order])
    vmax, vmin = float(raw_max.max()), float(raw_min.min())
    hu_max = np.array([m * h.slope + h.intercept for m, h in zip(raw_max, headers, strict=True)])
    metal = hu_max >= METAL_HU if ct else np.zeros(len(pixels), bool)
    available = [i for i, p in enumerate(pixels) if p is not None]
    chosen = _choose_slices(len(pixels), metal) if len(available) == len(pixels) else available
    if not chosen:
        return {}, None
    per: list[dict[str, Any]] = []
    clip_hi = clip_lo = body_px = 0
    thumb = None
    mid = chosen[len(chosen) // 2]
    for i in chosen:
        raw, h = pixels[i], headers[i]
        assert raw is not None
        if raw.ndim != 2:
            raise ValueError(f"image {i} is not a single 2D frame (shape {raw.shape})")
        # the analysis grid: every f-th pixel (a), and each one's right-hand neighbour (b) for noise
        f = max(1, round(min(raw.shape) / ANALYSIS_GRID))
        cols = raw.shape[1]
        a, b = raw[::f, 0 : cols - 1 : f], raw[::f, 1:cols:f]
        slope, inter = np.float32(h.slope), np.float32(h.intercept)
        img = a.astype(np.float32) * slope + inter
        nb = b.astype(np.float32) * slope + inter
        if ct:
            pad = (a == images.padding) if images.padding is not None else np.zeros(a.shape, bool)
            pad |= img <= -1500
            if pad.any():
                pad = _touching_border(pad)
            s = _ct_slice(img, nb, pad, bool(metal.any()), 5 if f <= 2 else 3)
        else:
            s = _mr_slice(img, nb)
        s["metal"] = bool(metal[i])
        body = s["body"]
        if open_edge is not None:
            s["contact"] = _contact_fraction(body, pad if ct else None, open_edge)
        body_px += int(body.sum())
        if not (ct and vmax * h.slope + h.intercept >= METAL_HU):  # metal pegged at the top is expected
            clip_hi += int(np.count_nonzero(a[body] == vmax))
        clip_lo += int(np.count_nonzero(a[body] == vmin))
        s.pop("body")
        per.append(s)
        if i == mid:
            thumb = _thumbnail(img, images.modality)
    m: dict[str, Any] = {
        "fov_truncation": round(max(s["contact"] for s in per), 4),
        "clip_high_fraction": round(clip_hi / body_px, 5) if body_px else None,
        "clip_low_fraction": round(clip_lo / body_px, 5) if body_px else None,
    }
    m.update(_ct_metrics(per, metal) if ct else _mr_metrics(per))
    return m, thumb


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _ct_metrics(per: list[dict[str, Any]], metal: np.ndarray) -> dict[str, Any]:
    clean = [s for s in per if not s["metal"]] or per
    air = np.concatenate([s["air_values"] for s in per])
    tissue = np.concatenate([s["tissue_values"] for s in clean])
    fat = np.concatenate([s["fat_values"] for s in clean])
    air_hu = float(np.median(air)) if air.size > 100 else None
    tissue_hu = float(np.median(tissue)) if tissue.size > 100 else None
    fat_hu = float(np.median(fat)) if fat.size > 100 else None
    noise_t = _pool([s["noise_tissue"] for s in clean])
    noise_a = _pool([s["noise_air"] for s in per])
    m: dict[str, Any] = {
        "noise_hu": _r(noise_t),
        "noise_air_hu": _r(noise_a),
        "air_hu": _r(air_hu, 1),
        "soft_tissue_hu": _r(tissue_hu, 1),
        "fat_hu": _r(fat_hu, 1),
        "hu_air_offset": _r(air_hu + 1000 if air_hu is not None else None, 1),
        "snr": _r((tissue_hu + 1000) / noise_t if tissue_hu is not None and noise_t else None, 2),
        "cnr": _r(
            abs(tissue_hu - fat_hu) / noise_t
            if tissue_hu is not None and fat_hu is not None and noise_t
            else None,
            2,
        ),
        "metal_slices": int(metal.sum()),
        "metal_streak_fraction": None,
        "ghost_ratio": None,
    }
    if metal.any():
        with_metal = [s["streak_fraction"] for s in per if s["metal"] and "streak_fraction" in s]
        without = [s["streak_fraction"] for s in per if not s["metal"] and "streak_fraction" in s]
        if with_metal:
            base = float(np.median(without)) if without else 0.0
            m["metal_streak_fraction"] = _r(max(0.0, max(with_metal) - base), 4)
    else:
        m["metal_streak_fraction"] = 0.0
    return m


def _mr_metrics(per: list[dict[str, Any]]) -> dict[str, Any]:
    bg = [s["bg_median"] for s in per if s["bg_median"] is not None]
    noise_bg = float(np.median(bg)) / RAYLEIGH_MEDIAN if bg else None
    noise_t = _pool([s["noise_tissue"] for s in per])
    values = np.concatenate([s["body_values"] for s in per])
    signal = float(values.mean()) if values.size else None
    noise = noise_bg if noise_bg else noise_t
    cnr = None
    if values.size > 200 and noise:
        t = _otsu(values)
        lo, hi = values[values <= t], values[values > t]
        if lo.size > 50 and hi.size > 50:
            cnr = (float(hi.mean()) - float(lo.mean())) / noise
    ghosts = [s["ghost"] for s in per if s["ghost"] is not None]
    ghost = None
    if ghosts and signal:
        ghost = max(abs(tb - lr) for tb, lr in ghosts) / signal
    return {
        "noise_background": _r(noise_bg),
        "noise_tissue": _r(noise_t),
        "signal_mean": _r(signal, 2),
        "snr": _r(signal / noise if signal is not None and noise else None, 2),
        "cnr": _r(cnr, 2),
        "ghost_ratio": _r(ghost, 4),
    }


def measure(images: SeriesImages) -> tuple[dict[str, Any], bytes | None]:
    """All metrics of one series: header metrics, then image metrics where the pixels allow them.

    Localizer images mixed into a series are counted (``localizer_images``) and left out of the
    geometry and image metrics, which describe the series' real images; a series of localizers only
    gets its header metrics and a thumbnail.
    """
    scouts = [i for i, h in enumerate(images.headers) if is_localizer_image(h)]
    main = images
    if scouts and len(scouts) < len(images.headers):
        keep = [i for i in range(len(images.headers)) if i not in set(scouts)]
        main = SeriesImages(
            images.modality,
            images.description,
            [images.headers[i] for i in keep],
            [images.pixels[i] for i in keep],
            images.padding,
            [images.maxs[i] for i in keep],
            [images.mins[i] for i in keep],
        )
    metrics = geometry_metrics(main.headers, description=images.description)
    metrics["slice_count"] = len(images.headers)
    metrics["localizer_images"] = len(scouts)
    metrics["modality"] = images.modality
    thumb = None
    if metrics["is_localizer"]:
        i, first = next(((i, p) for i, p in enumerate(images.pixels) if p is not None), (0, None))
        if first is not None and first.ndim == 2:
            h = images.headers[i]
            thumb = _thumbnail(
                first.astype(np.float32) * np.float32(h.slope) + np.float32(h.intercept), images.modality
            )
    elif images.modality in ("CT", "MR") and any(p is not None for p in main.pixels):
        px, thumb = pixel_metrics(main)
        metrics.update(px)
    return metrics, thumb
