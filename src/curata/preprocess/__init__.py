"""Pre-processing for CT and MR: conversion exact to the voxel, composable steps, cached pipelines.

Public API (other stages, the CLI and the server use these)::

    convert_folder(...), convert_series(store, slices) -> volumes     # DICOM -> NIfTI, exact affine
    load_pipeline(path), run_pipeline(pipeline, items, spec, ...)     # steps, cached by content
    series_from_workspace(ws), CacheSpec, load_volume(spec, digest)
    Volume, read_volume, write_volume, nifti_bytes, to_sitk, STEPS, make_step, register
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from pathlib import Path

    from curata.preprocess.register import register
    from curata.preprocess.service import (
        CacheSpec,
        ConvertResult,
        PipelineRun,
        RunResult,
        convert_folder,
        convert_selection,
        convert_series,
        load_pipeline,
        load_volume,
        parse_slide_pipeline,
        run_declared_pipeline,
        run_pipeline,
        run_slide_pipeline,
        series_from_workspace,
    )
    from curata.preprocess.spatial import to_sitk
    from curata.preprocess.steps import STEPS, make_step
    from curata.preprocess.volume import Volume, nifti_bytes, read_volume, write_volume

__all__ = [
    "STEPS",
    "CacheSpec",
    "ConvertResult",
    "PipelineRun",
    "RunResult",
    "Volume",
    "convert_folder",
    "convert_selection",
    "convert_series",
    "load_pipeline",
    "load_volume",
    "make_step",
    "nifti_bytes",
    "parse_slide_pipeline",
    "read_volume",
    "register",
    "run_declared_pipeline",
    "run_demo_pipeline",
    "run_pipeline",
    "run_slide_pipeline",
    "series_from_workspace",
    "to_sitk",
    "write_volume",
]


def run_demo_pipeline(workspace: Any, out_dir: Path, **kwargs: Any) -> dict[str, Any]:
    from curata.preprocess.demo import run_demo_pipeline as run

    return run(workspace, out_dir, **kwargs)


# Lazy re-exports: `import curata.preprocess` stays cheap for the CLI.
__getattr__ = lazy_exports(
    __name__,
    {
        "Volume": "volume",
        "read_volume": "volume",
        "parse_slide_pipeline": "service",  # whole-slide steps: tissue mask, tiles, stain normalisation
        "run_slide_pipeline": "service",
        "write_volume": "volume",
        "nifti_bytes": "volume",
        "ConvertResult": "service",
        "PipelineRun": "service",
        "RunResult": "service",
        "convert_selection": "service",
        "run_declared_pipeline": "service",
        "convert_folder": "service",
        "convert_series": "service",
        "STEPS": "steps",
        "make_step": "steps",
        "register": "register",
        "CacheSpec": "service",
        "load_pipeline": "service",
        "load_volume": "service",
        "run_pipeline": "service",
        "series_from_workspace": "service",
        "to_sitk": "spatial",
    },
)
