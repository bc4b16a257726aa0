"""Stain normalisation, Macenko and Reinhard: fit once per target (and once per source slide), then
apply to any number of tiles with a few vectorised numpy operations per batch.

Macenko et al. (2009): optical density OD = -log(I / Io); the stain plane is spanned by the two
largest eigenvectors of the OD covariance of tissue pixels; the stain vectors are the robust extreme
angles (1st and 99th percentiles) in that plane; concentrations are solved by least squares and
scaled so their 99th percentiles match the target's. Reinhard et al. (2001): match the mean and
standard deviation of each channel in the decorrelated l-alpha-beta space.

Both maps depend on a pixel's own RGB only, so for a slide's many tiles the whole map is built once
as a 2^24-colour table (64 MB) and applied with one index pass and one gather per pixel: ~1,240
Macenko and ~2,550 Reinhard 256x256 tiles/s on one loaded core (bench/wsi.py --only-stain), with the
same pixels as the per-pixel maths (tests/preprocess/test_slide_steps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

IO = 240.0
# the reference H&E stain matrix and max concentrations most implementations use (Macenko's code)
REFERENCE_HE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]], np.float32)
REFERENCE_MAX_C = np.array([1.9705, 1.0308], np.float32)
_RGB2LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]], np.float32
)
_LMS2RGB = np.linalg.inv(_RGB2LMS).astype(np.float32)
_LMS2LAB = (
    np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array([[1, 1, 1], [1, 1, -2], [1, -1, 0]])
).astype(np.float32)
_LAB2LMS = np.linalg.inv(_LMS2LAB).astype(np.float32)


def _pixels(images: np.ndarray | list[np.ndarray]) -> np.ndarray:
    arr = (
        np.asarray(images)
        if not isinstance(images, list)
        else np.concatenate([i.reshape(-1, 3) for i in images])
    )
    return arr.reshape(-1, 3)


def rgb_index(tiles: np.ndarray) -> np.ndarray:
    """``r | g << 8 | b << 16`` of every pixel of uint8 RGB ``tiles`` (... x 3), as intp, in one pass:
    each pixel's 3 bytes plus the next byte are read as one little-endian word (a strided,
    unaligned view over the same buffer) and masked to 24 bits."""
    flat = np.ascontiguousarray(tiles, dtype=np.uint8).reshape(-1)
    n = flat.size // 3
    out = np.empty(n, np.intp)
    if n > 1:  # the last pixel has no byte after it: done apart
        words = np.ndarray((n - 1,), dtype="<u4", buffer=flat, strides=(3,))
        np.bitwise_and(words, np.uint32(0xFFFFFF), out=out[:-1], casting="unsafe")
    if n:
        r, g, b = (int(x) for x in flat[-3:])
        out[-1] = r | g << 8 | b << 16
    return out.reshape(tiles.shape[:-1])


def build_color_table(plane: Callable[[int], np.ndarray]) -> np.ndarray:
    """A packed RGB0 table over all 2^24 colours, from ``plane(b)`` -> the (256 g, 256 r, 3) outputs
    for one blue value (a colour mapping that depends on the pixel's own RGB only)."""
    table = np.zeros(256**3, np.uint32)
    view = table.view(np.uint8).reshape(256, 256, 256, 4)  # [b, g, r, byte]
    for b in range(256):
        view[b, :, :, :3] = plane(b)
    return table


def apply_color_table(tiles: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map uint8 RGB tiles through a packed table: one index pass, one gather (a view, RGB of RGB0)."""
    return np.take(table, rgb_index(tiles)).view(np.uint8).reshape(*tiles.shape[:-1], 4)[..., :3]


@dataclass(frozen=True)
class MacenkoStains:
    he: np.ndarray  # 3 x 2 unit OD vectors (haematoxylin, eosin)
    max_c: np.ndarray  # 99th percentile concentrations (2,)


def macenko_fit(
    images: np.ndarray | list[np.ndarray], *, beta: float = 0.15, alpha: float = 1.0
) -> MacenkoStains:
    """Stain vectors and concentration scale of an H&E image (or a sample of its tiles)."""
    px = _pixels(images).astype(np.float32)
    od = -np.log((px + 1.0) / IO)
    od = od[(od > beta).all(axis=1)]
    if len(od) < 50:
        raise ValueError("too few tissue pixels to fit stains (need 50 above the OD threshold)")
    if len(od) > 400_000:
        od = od[:: len(od) // 400_000 + 1]
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, 1:3]
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    he = np.stack([v1, v2], axis=1) if v1[0] > v2[0] else np.stack([v2, v1], axis=1)
    he = he * np.sign(he.sum(axis=0, keepdims=True))  # OD vectors point into the positive octant
    he = he / np.linalg.norm(he, axis=0, keepdims=True)
    conc = np.linalg.lstsq(he, od.T, rcond=None)[0]
    max_c = np.percentile(conc, 99, axis=1)
    return MacenkoStains(he.astype(np.float32), np.maximum(max_c, 1e-6).astype(np.float32))


class MacenkoNormalizer:
    """Fit the target once; ``apply(tiles, source)`` maps a batch of tiles (N x H x W x 3 uint8)."""

    def __init__(self, target: MacenkoStains | None = None) -> None:
        self.target = target or MacenkoStains(REFERENCE_HE, REFERENCE_MAX_C)

    @classmethod
    def fit(cls, target_images: np.ndarray | list[np.ndarray]) -> MacenkoNormalizer:
        return cls(macenko_fit(target_images))

    def tables(self, source: MacenkoStains) -> np.ndarray:
        """Per-channel lookup tables: the target OD contribution of each 8-bit value (3 x 3 x 256).

        Every step before the final exponential is linear in each channel's OD, and each channel's OD
        is a function of its own 8-bit value, so ``-log(out_c / Io) = sum_k T[c, k, I_k]``.
        """
        od = -np.log((np.arange(256, dtype=np.float32) + 1.0) / IO)  # 256
        pinv = np.linalg.pinv(source.he).astype(np.float32) * (self.target.max_c / source.max_c)[:, None]
        mix = self.target.he @ pinv  # 3 (out) x 3 (in)
        return (mix[:, :, None] * od[None, None, :]).astype(np.float32)

    def lut(self, source: MacenkoStains) -> np.ndarray:
        """The whole mapping as a 2^24-entry colour table (64 MB, packed RGB0, indexed by
        ``r | g << 8 | b << 16``): built once per source slide, then one gather per pixel."""
        t = self.tables(source)
        v = np.arange(256, dtype=np.intp)

        def plane(b: int) -> np.ndarray:  # all (g, r) for one blue value, from the per-channel tables
            out = np.empty((256, 256, 3), np.uint8)
            for c in range(3):
                od = t[c, 0][v][None, :] + t[c, 1][v][:, None] + t[c, 2][b]  # the order apply() adds in
                out[..., c] = np.clip(IO * np.exp(-od), 0, 255)
            return out

        return build_color_table(plane)

    @staticmethod
    def apply_lut(tiles: np.ndarray, lut: np.ndarray) -> np.ndarray:
        """One gather per pixel from the packed table (see :func:`apply_color_table`)."""
        return apply_color_table(tiles, lut)

    def apply(self, tiles: np.ndarray, source: MacenkoStains, tables: np.ndarray | None = None) -> np.ndarray:
        t = self.tables(source) if tables is None else tables
        r, g, b = tiles[..., 0], tiles[..., 1], tiles[..., 2]
        out = np.empty(tiles.shape, np.uint8)
        for c in range(3):
            od = t[c, 0][r] + t[c, 1][g] + t[c, 2][b]
            np.clip(IO * np.exp(-od), 0, 255, out=od)
            out[..., c] = od
        return out


@dataclass(frozen=True)
class ReinhardStats:
    mean: np.ndarray
    std: np.ndarray


def _lab(px: np.ndarray) -> np.ndarray:
    lms = np.log10(np.maximum(px.astype(np.float32) @ _RGB2LMS.T, 1.0))
    return lms @ _LMS2LAB.T


def reinhard_fit(images: np.ndarray | list[np.ndarray]) -> ReinhardStats:
    """Mean and standard deviation of the tissue (not near-white) pixels in l-alpha-beta."""
    px = _pixels(images)
    keep = px.mean(axis=1) < 220
    lab = _lab(px[keep] if keep.sum() >= 50 else px)
    return ReinhardStats(lab.mean(axis=0), np.maximum(lab.std(axis=0), 1e-6))


class ReinhardNormalizer:
    def __init__(self, target: ReinhardStats) -> None:
        self.target = target

    @classmethod
    def fit(cls, target_images: np.ndarray | list[np.ndarray]) -> ReinhardNormalizer:
        return cls(reinhard_fit(target_images))

    def lut(self, source: ReinhardStats) -> np.ndarray:
        """The whole mapping as a packed 2^24-entry colour table (same pixels as :meth:`apply`)."""
        v = np.arange(256, dtype=np.uint8)
        gr = np.empty((256, 256, 3), np.uint8)
        gr[..., 0] = v[None, :]
        gr[..., 1] = v[:, None]

        def plane(b: int) -> np.ndarray:
            gr[..., 2] = b
            return self.apply(gr, source)

        return build_color_table(plane)

    @staticmethod
    def apply_lut(tiles: np.ndarray, lut: np.ndarray) -> np.ndarray:
        return apply_color_table(tiles, lut)

    def apply(self, tiles: np.ndarray, source: ReinhardStats) -> np.ndarray:
        """Per-pixel: RGB -> LMS (3x3, as 9 lookups) -> log -> l-alpha-beta affine -> back."""
        scale = self.target.std / source.std
        # the l-alpha-beta affine map, folded into one 3x3 matrix and an offset in log-LMS
        m = (_LAB2LMS * scale[None, :]) @ _LMS2LAB
        off = _LAB2LMS @ (self.target.mean - source.mean * scale)
        vals = np.arange(256, dtype=np.float32)
        lut = _RGB2LMS[:, :, None] * vals[None, None, :]  # 3 (lms) x 3 (rgb) x 256
        r, g, b = tiles[..., 0], tiles[..., 1], tiles[..., 2]
        log_lms = [np.log10(np.maximum(lut[k, 0][r] + lut[k, 1][g] + lut[k, 2][b], 1.0)) for k in range(3)]
        lms = [
            np.power(10.0, m[k, 0] * log_lms[0] + m[k, 1] * log_lms[1] + m[k, 2] * log_lms[2] + off[k])
            for k in range(3)
        ]
        out = np.empty(tiles.shape, np.uint8)
        for c in range(3):
            v = _LMS2RGB[c, 0] * lms[0] + _LMS2RGB[c, 1] * lms[1] + _LMS2RGB[c, 2] * lms[2]
            out[..., c] = np.clip(v, 0, 255)
        return out
