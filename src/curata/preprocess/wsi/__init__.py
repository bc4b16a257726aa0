"""Whole-slide pre-processing: tissue mask, tiling (level or mpp, size, overlap, minimum tissue) to
files or Zarr, and stain normalisation (Macenko, Reinhard), as cached pipeline steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.preprocess.wsi.stain import MacenkoNormalizer, ReinhardNormalizer, macenko_fit, reinhard_fit
    from curata.preprocess.wsi.steps import (
        SLIDE_STEPS,
        SlidePipeline,
        export_tiles,
        load_slide_pipeline,
        parse_slide_pipeline,
        run_slide_pipeline,
        tiles_from_bytes,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "MacenkoNormalizer": "stain",
        "ReinhardNormalizer": "stain",
        "macenko_fit": "stain",
        "reinhard_fit": "stain",
        "SLIDE_STEPS": "steps",
        "SlidePipeline": "steps",
        "export_tiles": "steps",
        "load_slide_pipeline": "steps",
        "parse_slide_pipeline": "steps",
        "run_slide_pipeline": "steps",
        "tiles_from_bytes": "steps",
    },
)

__all__ = [
    "SLIDE_STEPS",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "SlidePipeline",
    "export_tiles",
    "load_slide_pipeline",
    "macenko_fit",
    "parse_slide_pipeline",
    "reinhard_fit",
    "run_slide_pipeline",
    "tiles_from_bytes",
]
