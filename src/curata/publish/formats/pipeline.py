"""Pre-processed NIfTI volumes: a ``curata preprocess`` pipeline run over the release's series.

The pipeline's outputs (cached by content in the workspace, so a re-release recomputes nothing) replace
the plain conversion; DICOM-SEG label maps are resampled with nearest neighbour onto each output grid,
so image and label still share one grid.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata.errors import ConfigError


@dataclass
class PipelineOutput:
    volumes: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)  # series UID -> [(stack, Volume)]
    failures: list[tuple[str, str]] = field(default_factory=list)


def pipeline_digest(path: str) -> str:
    """What a pipeline file contributes to a release's content key."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(
            f"--pipeline {path}: {exc.strerror}", hint="give the path of a pipeline TOML file"
        ) from exc


def run(ws: Any, path: str, series_uids: Sequence[str]) -> PipelineOutput:
    from curata.preprocess import (
        CacheSpec,
        load_pipeline,
        load_volume,
        run_pipeline,
        series_from_workspace,
    )

    pipeline = load_pipeline(Path(path))
    wanted = set(series_uids)
    items = [i for i in series_from_workspace(ws) if i.item_id in wanted]
    spec = CacheSpec("workspace", str(ws.root))
    workers = ws.workers()
    result = run_pipeline(pipeline, items, spec, workers=workers, quiet=True)
    out = PipelineOutput(failures=list(result.failures))
    for v in result.volumes:
        out.volumes.setdefault(v.series.item_id, []).append((v.stack, load_volume(spec, v.digest)))
    return out


def nifti_gz(volume: Any) -> bytes:
    from curata.preprocess import nifti_bytes

    return gzip.compress(b"".join(bytes(part) for part in nifti_bytes(volume)), compresslevel=6, mtime=0)


def reference_image(volume: Any) -> Any:
    from curata.preprocess import to_sitk

    return to_sitk(volume, real=False)
