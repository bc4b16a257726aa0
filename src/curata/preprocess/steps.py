"""Pre-processing steps as small typed units, one interface, composable into a pipeline.

Each step is a frozen dataclass: its fields are its parameters, recorded as provenance and hashed
into the cache key with ``op`` and ``version`` (bump ``version`` when a step's output changes for
the same parameters). ``apply(image, reference)`` returns a new volume; ``reference`` is given to
pairwise steps only (registration: the fixed image; histogram matching: the reference image).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from curata.errors import ConfigError
from curata.preprocess import intensity, spatial
from curata.preprocess.volume import Volume


@dataclass(frozen=True)
class Step:
    op: ClassVar[str] = ""
    version: ClassVar[int] = 1
    pairwise: ClassVar[bool] = False

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def describe(self) -> dict[str, Any]:
        return {"op": self.op, "version": self.version, **self.params()}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


STEPS: dict[str, type[Step]] = {}


def step(cls: type[Step]) -> type[Step]:
    STEPS[cls.op] = cls
    return cls


@step
@dataclass(frozen=True)
class Reorient(Step):
    op: ClassVar[str] = "reorient"
    axcodes: str = "RAS"

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return spatial.reorient(image, self.axcodes)


@step
@dataclass(frozen=True)
class Resample(Step):
    """To a voxel size (``spacing``, mm) with ``interpolator`` linear/bspline (images) or nearest/label (masks)."""

    op: ClassVar[str] = "resample"
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolator: str = "linear"
    fill: float | None = None

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return spatial.resample(image, spacing=self.spacing, interpolator=self.interpolator, fill=self.fill)  # type: ignore[arg-type]


@step
@dataclass(frozen=True)
class ResampleTo(Step):
    """Onto the grid of the pairwise reference (e.g. a patient's baseline)."""

    op: ClassVar[str] = "resample_to"
    pairwise: ClassVar[bool] = True
    to: str = "baseline"
    interpolator: str = "linear"

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        if reference is None:
            return image
        return spatial.resample(image, reference=reference, interpolator=self.interpolator)  # type: ignore[arg-type]


@step
@dataclass(frozen=True)
class CropPad(Step):
    op: ClassVar[str] = "crop_pad"
    shape: tuple[int, int, int] = (128, 128, 128)
    fill: float | None = None

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return spatial.crop_pad(image, self.shape, fill=self.fill)


@step
@dataclass(frozen=True)
class CropBody(Step):
    op: ClassVar[str] = "crop_body"
    threshold: float = -500.0
    margin: int = 2

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return spatial.crop_to_body(image, threshold=self.threshold, margin=self.margin)


@step
@dataclass(frozen=True)
class Window(Step):
    op: ClassVar[str] = "window"
    level: float = 40.0
    width: float = 400.0
    rescale: bool = True

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.window(image, self.level, self.width, rescale=self.rescale)


@step
@dataclass(frozen=True)
class Clip(Step):
    op: ClassVar[str] = "clip"
    low: float = -1024.0
    high: float = 3071.0

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.clip(image, self.low, self.high)


@step
@dataclass(frozen=True)
class N4(Step):
    op: ClassVar[str] = "n4"
    shrink: int = 4
    iterations: tuple[int, ...] = (50, 50, 30)

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.n4_bias_correction(image, shrink=self.shrink, iterations=self.iterations)


@step
@dataclass(frozen=True)
class ZScore(Step):
    op: ClassVar[str] = "zscore"
    mask: str = "all"
    threshold: float = -500.0

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.zscore(image, mask=self.mask, threshold=self.threshold)  # type: ignore[arg-type]


@step
@dataclass(frozen=True)
class Percentile(Step):
    op: ClassVar[str] = "percentile"
    low: float = 0.5
    high: float = 99.5
    mask: str = "all"
    threshold: float = -500.0

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        mask: Any = self.mask
        return intensity.percentile_scale(
            image, low=self.low, high=self.high, mask=mask, threshold=self.threshold
        )


@step
@dataclass(frozen=True)
class HistogramMatch(Step):
    op: ClassVar[str] = "histogram_match"
    pairwise: ClassVar[bool] = True
    to: str = "baseline"
    levels: int = 256
    points: int = 7

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        if reference is None:
            return image
        return intensity.histogram_match(image, reference, levels=self.levels, points=self.points)


@step
@dataclass(frozen=True)
class DenoiseNLM(Step):
    op: ClassVar[str] = "denoise_nlm"
    patch_size: int = 3
    patch_distance: int = 4
    h: float = 0.8

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.denoise_nlm(
            image, patch_size=self.patch_size, patch_distance=self.patch_distance, h=self.h
        )


@step
@dataclass(frozen=True)
class CurvatureFlow(Step):
    op: ClassVar[str] = "curvature_flow"
    iterations: int = 5
    time_step: float = 0.0625

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.denoise_curvature_flow(image, iterations=self.iterations, time_step=self.time_step)


@step
@dataclass(frozen=True)
class AnisotropicDiffusion(Step):
    op: ClassVar[str] = "anisotropic_diffusion"
    iterations: int = 5
    time_step: float = 0.03
    conductance: float = 3.0

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        return intensity.denoise_anisotropic(
            image, iterations=self.iterations, time_step=self.time_step, conductance=self.conductance
        )


@step
@dataclass(frozen=True)
class Register(Step):
    """Align to the pairwise reference (``to = "baseline"``: the patient's first study of the modality).

    The output is the moved image on the reference grid; its meta holds the transform (ITK text,
    applicable to label maps) and the quality (final metric, body-mask Dice).
    """

    op: ClassVar[str] = "register"
    pairwise: ClassVar[bool] = True
    to: str = "baseline"
    kind: str = "rigid"
    metric: str = "mattes"
    shrink: tuple[int, ...] = (4, 2, 1)
    smoothing: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 300
    sampling: tuple[float, ...] = (0.05, 0.05, 0.1)
    body_threshold: float | None = None

    def apply(self, image: Volume, reference: Volume | None = None) -> Volume:
        from curata.preprocess.register import register

        if reference is None:  # the baseline itself
            return image.with_data(image.real(), registration={"role": "baseline"})
        threshold = self.body_threshold
        if threshold is None:  # halfway between background and the body, per image
            lo, hi = (float(v) for v in _percentiles(reference))
            threshold = (lo + hi) / 2
        result = register(
            reference,
            image,
            kind=self.kind,  # type: ignore[arg-type]
            metric=self.metric,  # type: ignore[arg-type]
            shrink=self.shrink,
            smoothing=self.smoothing,
            iterations=self.iterations,
            sampling=self.sampling,
            body_threshold=threshold,
        )
        moved = result.moved
        moved.meta["registration"] = {
            "role": "follow-up",
            "quality": result.quality(),
            "transform": result.transform_text,
        }
        return moved


def _percentiles(volume: Volume) -> tuple[float, float]:
    import numpy as np

    data = volume.real()
    sample = data.reshape(-1)[:: max(1, data.size // 200_000)]
    lo, hi = np.percentile(sample, [2, 98])
    return float(lo), float(hi)


def make_step(spec: dict[str, Any]) -> Step:
    """A step from its TOML table; unknown ops or parameters are configuration errors."""
    spec = dict(spec)
    op = spec.pop("op", None)
    spec.pop("name", None)
    if op not in STEPS:
        raise ConfigError(f"unknown step op {op!r}", hint=f"known steps: {', '.join(sorted(STEPS))}")
    cls = STEPS[op]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(spec) - set(fields)
    if unknown:
        raise ConfigError(
            f"step {op!r} has no parameter(s) {sorted(unknown)}", hint=f"parameters: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in spec.items():
        kwargs[key] = _coerce(op, key, value, hints[key])
    return cls(**kwargs)


def _coerce(op: str, key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if origin is tuple or (
        origin in (typing.Union, types.UnionType) and any(typing.get_origin(a) is tuple for a in args)
    ):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"step {op!r}: {key} must be a list, got {value!r}")
        return tuple(value)
    if hint is float or (args and float in args):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"step {op!r}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"step {op!r}: {key} must be an integer, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"step {op!r}: {key} must be a string, got {value!r}")
    return value
