"""The pre-processing service, the stage's public typed API: convert DICOM series to volumes, run
declared pipelines (cached by content, with provenance) and slide pipelines. Every function returns
records (``ConvertResult``, ``RunResult``, ``PipelineRun``, slide results); none prints. The CLI, the
server, publish and the demo call these.

The work itself lives in ``convert.py`` (DICOM to volumes), ``pipeline.py`` (steps, caches, tasks)
and ``wsi/`` (slide tiles and stain normalisation); the policies and their defaults in ``policies.py``.
"""

from __future__ import annotations

from curata.preprocess.convert import (
    ConvertedStack,
    ConvertResult,
    convert_folder,
    convert_selection,
    convert_series,
)
from curata.preprocess.pipeline import (
    CacheSpec,
    Pipeline,
    PipelineRun,
    RunResult,
    load_pipeline,
    load_volume,
    run_declared_pipeline,
    run_pipeline,
    series_from_workspace,
)
from curata.preprocess.wsi import (
    export_tiles,
    load_slide_pipeline,
    parse_slide_pipeline,
    run_slide_pipeline,
)

__all__ = [
    "CacheSpec",
    "ConvertResult",
    "ConvertedStack",
    "Pipeline",
    "PipelineRun",
    "RunResult",
    "convert_folder",
    "convert_selection",
    "convert_series",
    "export_tiles",
    "load_pipeline",
    "load_slide_pipeline",
    "load_volume",
    "parse_slide_pipeline",
    "run_declared_pipeline",
    "run_pipeline",
    "run_slide_pipeline",
    "series_from_workspace",
]
