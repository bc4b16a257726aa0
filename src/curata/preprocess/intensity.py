"""Intensity steps: CT windowing and clipping, N4 bias-field correction, normalization, denoising."""

from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk

from curata.errors import InputError
from curata.preprocess.spatial import from_sitk, to_sitk
from curata.preprocess.volume import Volume

MaskMode = Literal["all", "nonzero", "body"]


def clip(volume: Volume, low: float, high: float) -> Volume:
    if low >= high:
        raise InputError(f"clip needs low < high, got {low} >= {high}")
    return volume.with_data(np.clip(volume.real(), low, high))


def window(volume: Volume, level: float, width: float, *, rescale: bool = True) -> Volume:
    """CT window (e.g. level 40, width 400 for soft tissue); ``rescale`` maps it to [0, 1]."""
    if width <= 0:
        raise InputError(f"window width must be positive, got {width}")
    low, high = level - width / 2, level + width / 2
    data = np.clip(volume.real(), low, high)
    if rescale:
        data = (data - np.float32(low)) / np.float32(width)
    return volume.with_data(data.astype(np.float32), window={"level": level, "width": width})


def _mask(data: np.ndarray, mode: MaskMode, threshold: float) -> np.ndarray:
    if mode == "all":
        return np.ones(data.shape, bool)
    if mode == "nonzero":
        return data != 0
    return data > threshold


def zscore(volume: Volume, *, mask: MaskMode = "all", threshold: float = -500.0) -> Volume:
    """(x - mean) / std over the mask (everything, non-zero voxels, or above ``threshold``)."""
    data = volume.real()
    sel = data[_mask(data, mask, threshold)]
    if sel.size == 0:
        raise InputError("z-score mask is empty")
    mean, std = float(sel.mean()), float(sel.std())
    if std == 0:
        raise InputError("z-score of a constant image is undefined")
    return volume.with_data(((data - mean) / std).astype(np.float32), zscore={"mean": mean, "std": std})


def percentile_scale(
    volume: Volume, *, low: float = 0.5, high: float = 99.5, mask: MaskMode = "all", threshold: float = -500.0
) -> Volume:
    """Map the [low, high] percentiles to [0, 1], clipping outside."""
    data = volume.real()
    lo, hi = np.percentile(data[_mask(data, mask, threshold)], [low, high])
    if hi <= lo:
        raise InputError(f"percentiles {low}/{high} coincide ({lo}); nothing to scale")
    out = np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return volume.with_data(out, percentiles={"low": float(lo), "high": float(hi)})


def histogram_match(volume: Volume, reference: Volume, *, levels: int = 256, points: int = 7) -> Volume:
    """Match the intensity histogram to ``reference`` (SimpleITK HistogramMatching, mean-thresholded)."""
    src = to_sitk(volume)
    ref = to_sitk(reference)
    out = sitk.HistogramMatching(
        src, ref, numberOfHistogramLevels=levels, numberOfMatchPoints=points, thresholdAtMeanIntensity=True
    )
    return from_sitk(out, volume)


def n4_bias_correction(
    volume: Volume, *, shrink: int = 4, iterations: tuple[int, ...] = (50, 50, 30), fitting_levels: int = 3
) -> Volume:
    """N4 on a shrunk copy (fast), then the full-resolution image divided by the fitted bias field."""
    img = to_sitk(volume)
    mask = sitk.OtsuThreshold(img, 0, 1, 200)
    small = sitk.Shrink(img, [shrink] * 3) if shrink > 1 else img
    small_mask = sitk.Shrink(mask, [shrink] * 3) if shrink > 1 else mask
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations)[:fitting_levels] or [50])
    # N4 needs positive intensities
    offset = float(np.minimum(volume.real().min(), 0.0))
    shifted = sitk.ShiftScale(small, -offset + 1.0, 1.0) if offset < 0 else small
    n4.Execute(sitk.Cast(shifted, sitk.sitkFloat32), small_mask)
    log_bias = n4.GetLogBiasFieldAsImage(img)
    corrected = sitk.Cast(img, sitk.sitkFloat32) / sitk.Exp(log_bias)
    return from_sitk(corrected, volume, n4={"shrink": shrink, "iterations": list(iterations)})


# -- denoising ---------------------------------------------------------------------------------------------
def noise_sigma(data: np.ndarray) -> float:
    """Gaussian noise level from the median absolute neighbour difference (robust to edges)."""
    diffs = np.abs(np.diff(data, axis=0)).reshape(-1)
    return float(np.median(diffs) / (0.6745 * np.sqrt(2.0)))


def denoise_nlm(
    volume: Volume,
    *,
    patch_size: int = 3,
    patch_distance: int = 4,
    h: float = 0.8,
    sigma: float | None = None,
) -> Volume:
    """Non-local means (scikit-image, fast mode); ``h`` is in units of the noise sigma (estimated if not given)."""
    from skimage.restoration import denoise_nl_means

    data = volume.real()
    noise = float(sigma) if sigma is not None else noise_sigma(data)
    if noise <= 0:
        return volume.with_data(data.copy(), nlm={"sigma": 0.0})
    out = denoise_nl_means(
        data,
        patch_size=patch_size,
        patch_distance=patch_distance,
        h=h * noise,
        sigma=noise,
        fast_mode=True,
        preserve_range=True,
    )
    return volume.with_data(np.asfortranarray(out.astype(np.float32)), nlm={"sigma": noise})


def denoise_curvature_flow(volume: Volume, *, iterations: int = 5, time_step: float = 0.0625) -> Volume:
    out = sitk.CurvatureFlow(to_sitk(volume), timeStep=time_step, numberOfIterations=iterations)
    return from_sitk(out, volume)


def denoise_anisotropic(
    volume: Volume, *, iterations: int = 5, time_step: float = 0.03, conductance: float = 3.0
) -> Volume:
    """Gradient anisotropic diffusion (Perona-Malik)."""
    out = sitk.GradientAnisotropicDiffusion(
        to_sitk(volume), timeStep=time_step, conductanceParameter=conductance, numberOfIterations=iterations
    )
    return from_sitk(out, volume)
