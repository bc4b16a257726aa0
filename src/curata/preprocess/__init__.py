"""Pre-processing for CT and MR: conversion exact to the voxel, composable steps, cached pipelines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "STEPS",
    "Volume",
    "convert_folder",
    "make_step",
    "read_volume",
    "register",
    "run_demo_pipeline",
    "run_pipeline",
    "write_volume",
]


def run_demo_pipeline(workspace: Any, out_dir: Path, **kwargs: Any) -> dict[str, Any]:
    from curata.preprocess.demo import run_demo_pipeline as run

    return run(workspace, out_dir, **kwargs)


def __getattr__(name: str) -> Any:
    # Lazy re-exports: `import curata.preprocess` stays cheap for the CLI.
    if name in ("Volume", "read_volume", "write_volume"):
        from curata.preprocess import volume

        return getattr(volume, name)
    if name == "convert_folder":
        from curata.preprocess.convert import convert_folder

        return convert_folder
    if name in ("STEPS", "make_step"):
        from curata.preprocess import steps

        return getattr(steps, name)
    if name == "register":
        from curata.preprocess.register import register

        return register
    if name == "run_pipeline":
        from curata.preprocess.pipeline import run_pipeline

        return run_pipeline
    raise AttributeError(name)
