"""Registration with SimpleITK: rigid, affine, B-spline; multi-resolution; MI for CT-MR.

The result keeps the transform (ITK text, applicable later to label maps with nearest/label
interpolation) and its quality: the final metric value, and the Dice overlap of the body masks
(or of given organ masks) after alignment.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from curata.errors import InputError
from curata.preprocess.spatial import Interpolator, from_sitk, to_sitk
from curata.preprocess.volume import Volume

Kind = Literal["rigid", "affine", "bspline"]
Metric = Literal["mattes", "meansquares", "correlation"]


@dataclass
class RegistrationResult:
    transform: sitk.Transform
    moved: Volume
    metric: str
    final_metric: float
    iterations: int
    stop: str
    dice: float | None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def transform_text(self) -> str:
        return transform_to_text(self.transform)

    def quality(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "final_metric": self.final_metric,
            "iterations": self.iterations,
            "stop": self.stop,
            "dice_body": self.dice,
            **self.extra,
        }


def transform_to_text(transform: sitk.Transform) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.tfm")
        sitk.WriteTransform(transform, path)
        return Path(path).read_text()


def transform_from_text(text: str) -> sitk.Transform:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.tfm")
        Path(path).write_text(text)
        return sitk.ReadTransform(path)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _metric(reg: sitk.ImageRegistrationMethod, metric: Metric, bins: int) -> None:
    if metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    elif metric == "meansquares":
        reg.SetMetricAsMeanSquares()
    elif metric == "correlation":
        reg.SetMetricAsCorrelation()
    else:
        raise InputError(f"unknown metric {metric!r} (mattes, meansquares, correlation)")


def register(
    fixed: Volume,
    moving: Volume,
    *,
    kind: Kind = "rigid",
    metric: Metric = "mattes",
    shrink: tuple[int, ...] = (4, 2, 1),
    smoothing: tuple[float, ...] = (2.0, 1.0, 0.0),
    iterations: int = 300,
    sampling: float | tuple[float, ...] = (0.05, 0.05, 0.1),
    strategy: Literal["random", "regular"] = "regular",
    bins: int = 32,
    grid_mm: float = 50.0,
    initial: sitk.Transform | None = None,
    body_threshold: float | None = None,
    fixed_mask: Volume | None = None,
    moving_mask: Volume | None = None,
    seed: int = 1,
    threads: int | None = None,
) -> RegistrationResult:
    """Align ``moving`` to ``fixed``; the moved image is resampled on the fixed grid.

    ``sampling`` is the fraction of voxels the metric samples (random, seeded: reproducible);
    multi-resolution runs coarse to fine over ``shrink``/``smoothing`` (in voxels).
    """
    import time

    started = time.perf_counter()
    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    f_img = sitk.Cast(to_sitk(fixed), sitk.sitkFloat32)
    m_img = sitk.Cast(to_sitk(moving), sitk.sitkFloat32)
    if len(shrink) != len(smoothing):
        raise InputError("shrink and smoothing need one entry per resolution level")
    if kind in ("rigid", "affine"):
        base: sitk.Transform = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
        start = sitk.CenteredTransformInitializer(
            f_img, m_img, base, sitk.CenteredTransformInitializerFilter.MOMENTS
        )
        if initial is not None:
            start = initial
    elif kind == "bspline":
        size = np.asarray(f_img.GetSize()) * np.asarray(f_img.GetSpacing())
        mesh = [max(1, math.ceil(float(s) / grid_mm)) for s in size]
        start = sitk.BSplineTransformInitializer(f_img, mesh)
    else:
        raise InputError(f"unknown registration kind {kind!r} (rigid, affine, bspline)")

    reg = sitk.ImageRegistrationMethod()
    _metric(reg, metric, bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM if strategy == "random" else reg.REGULAR)
    per_level = (
        [float(sampling)] * len(shrink) if isinstance(sampling, int | float) else [float(v) for v in sampling]
    )
    if len(per_level) != len(shrink):
        raise InputError("sampling needs one fraction, or one per resolution level")
    reg.SetMetricSamplingPercentagePerLevel(per_level, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    if kind == "bspline":
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5, numberOfIterations=iterations, maximumNumberOfCorrections=5
        )
        if initial is not None:
            reg.SetMovingInitialTransform(initial)
        reg.SetInitialTransform(start, inPlace=True)
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0,
            minStep=1e-4,
            numberOfIterations=iterations,
            relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-8,
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(start, inPlace=False)
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(smoothing))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    if fixed_mask is not None:
        reg.SetMetricFixedMask(sitk.Cast(to_sitk(fixed_mask, real=False), sitk.sitkUInt8))
    final = reg.Execute(f_img, m_img)
    parts = (_flatten(initial) if kind == "bspline" and initial is not None else []) + _flatten(final)
    final = parts[0] if len(parts) == 1 else sitk.CompositeTransform(parts)
    moved_img = sitk.Resample(
        m_img, f_img, final, sitk.sitkLinear, float(moving.real().min()), sitk.sitkFloat32
    )
    moved = from_sitk(moved_img, fixed)
    moved.meta = dict(moving.meta)
    score = None
    if fixed_mask is not None and moving_mask is not None:
        moved_mask = apply_transform(moving_mask, final, fixed, interpolator="nearest")
        score = dice(fixed_mask.data > 0, moved_mask.data > 0)
    elif body_threshold is not None:
        score = dice(fixed.real() > body_threshold, moved.data > body_threshold)
    return RegistrationResult(
        transform=final,
        moved=moved,
        metric=metric,
        final_metric=float(reg.GetMetricValue()),
        iterations=int(reg.GetOptimizerIteration()),
        stop=reg.GetOptimizerStopConditionDescription(),
        dice=score,
        seconds=time.perf_counter() - started,
    )


def _flatten(transform: sitk.Transform) -> list[sitk.Transform]:
    """Concrete transforms in application order of a (possibly nested) composite, for saving."""
    if transform.GetName() != "CompositeTransform":
        return [transform]
    comp = sitk.CompositeTransform(transform)
    out: list[sitk.Transform] = []
    for i in range(comp.GetNumberOfTransforms()):
        out.extend(_flatten(comp.GetNthTransform(i)))
    return out


def apply_transform(
    volume: Volume, transform: sitk.Transform, reference: Volume, *, interpolator: Interpolator = "linear"
) -> Volume:
    """Resample ``volume`` through ``transform`` onto ``reference``'s grid (label maps: nearest/label)."""
    from curata.preprocess.spatial import resample_to_grid

    return resample_to_grid(
        volume,
        reference.affine,
        reference.shape[:3],
        interpolator=interpolator,
        transform=transform,
        fill=0.0 if interpolator in ("nearest", "label") else None,
    )


def _linear_part(transform: sitk.Transform, at: np.ndarray) -> np.ndarray:
    origin = np.asarray(transform.TransformPoint(tuple(float(v) for v in at)))
    return np.stack(
        [np.asarray(transform.TransformPoint(tuple(float(v) for v in at + e))) - origin for e in np.eye(3)],
        axis=1,
    )


def rigid_error(estimated: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> tuple[float, float]:
    """(max distance in mm between estimated(p) and truth(p) over ``points`` (N x 3, LPS), angle in degrees
    of the rotation between them)."""
    errs = [
        np.linalg.norm(
            np.asarray(estimated.TransformPoint(tuple(p))) - np.asarray(truth.TransformPoint(tuple(p)))
        )
        for p in points.astype(float)
    ]
    centre = points.mean(axis=0)
    rel = _linear_part(estimated, centre) @ np.linalg.inv(_linear_part(truth, centre))
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rel) - 1) / 2))))
    return float(max(errs)), angle
