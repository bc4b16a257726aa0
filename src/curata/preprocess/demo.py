"""The demo's pre-processing run: convert, reorient, resample, normalize, register follow-up to baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from curata.preprocess.pipeline import CacheSpec, parse_pipeline, run_pipeline, series_from_workspace

DEMO_PIPELINE: dict[str, Any] = {
    "name": "demo-ct",
    "modality": "CT",
    "convert": {"uneven": "split", "tilt": "resample"},
    "step": [
        {"op": "reorient", "axcodes": "RAS"},
        {"op": "resample", "spacing": [2.0, 2.0, 2.0]},
        {"op": "zscore", "mask": "body", "threshold": -500.0},
        {
            "op": "register",
            "to": "baseline",
            "kind": "rigid",
            "metric": "meansquares",
            "iterations": 100,
            "sampling": [0.05, 0.05, 0.05],
        },
    ],
}


def run_demo_pipeline(
    workspace: Any, out_dir: Path, *, workers: int | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Run :data:`DEMO_PIPELINE` over the ``demo-ct`` cohort (or every CT series) and export NIfTI."""
    started = time.perf_counter()
    cohort = _cohort_if_present(workspace, "demo-ct")
    items = series_from_workspace(workspace, cohort=cohort, modality="CT")
    pipeline = parse_pipeline(DEMO_PIPELINE)
    result = run_pipeline(
        pipeline,
        items,
        CacheSpec("workspace", str(workspace.root)),
        workers=workers,
        export_to=out_dir,
        quiet=quiet,
    )
    dice = []
    followups = 0
    for v in result.volumes:
        from curata.preprocess.pipeline import load_volume

        reg = load_volume(CacheSpec("workspace", str(workspace.root)), v.digest).meta.get("registration", {})
        if reg.get("role") == "follow-up":
            followups += 1
            if reg["quality"].get("dice_body") is not None:
                dice.append(float(reg["quality"]["dice_body"]))
    return {
        "cohort": cohort or "all CT series",
        "series": len(items),
        "volumes": len(result.volumes),
        "registered_followups": followups,
        "mean_body_dice": round(sum(dice) / len(dice), 4) if dice else None,
        "computed": result.computed,
        "cached": result.cached,
        "failed": len(result.failures),
        "failures": [f"{item}: {reason}" for item, reason in result.failures[:5]],
        "where": str(out_dir),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _cohort_if_present(workspace: Any, name: str) -> str | None:
    from curata.select import cohort_id

    with workspace.catalog.session() as session:
        return name if cohort_id(session, name) is not None else None
