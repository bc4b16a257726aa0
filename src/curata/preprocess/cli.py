"""Commands: ``curata convert`` and ``curata preprocess run``."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Any

import typer

from curata.cli_common import WorkspaceOpt, finish, open_workspace
from curata.console import RunSummary, err_console, make_progress, print_json
from curata.preprocess.policies import (
    DEFAULT_PHILIPS,
    DEFAULT_TILT,
    DEFAULT_UNEVEN,
    PHILIPS_SCALINGS,
    TILT_POLICIES,
    UNEVEN_POLICIES,
)

preprocess_app = typer.Typer(
    help="Pre-processing pipelines: convert, resample, normalize, denoise, register.",
    no_args_is_help=True,
)


@preprocess_app.command("slides")
def slides_command(
    pipeline: Path = typer.Argument(..., help="A slide pipeline TOML (kind = slide)."),
    cohort: str | None = typer.Option(None, "--cohort", help="Only this cohort's slides."),
    out: Path | None = typer.Option(None, "--out", help="Export the final tiles here."),
    fmt: str = typer.Option("png", "--format", help="Export as png files or zarr (one Zarr zip per slide)."),
    workers: int | None = typer.Option(None, "--workers", help="Local worker processes."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="A Dask scheduler address."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    workspace: WorkspaceOpt = None,
) -> None:
    """Tile (and stain-normalise) every slide of the workspace or a cohort; cached, with provenance."""
    from curata.preprocess.wsi import export_tiles, load_slide_pipeline, run_slide_pipeline

    ws = open_workspace(workspace)
    pipe = load_slide_pipeline(pipeline)
    results = run_slide_pipeline(ws, pipe, cohort=cohort, workers=workers, scheduler=scheduler)
    summary = RunSummary("preprocess slides")
    for r in results:
        summary.add("slides" if r.ok else "failed")
        summary.add("tiles", r.tiles)
        summary.add("computed", r.computed)
        summary.add("cached", r.cached)
    exported = export_tiles(ws, results, out, fmt) if out else []
    if as_json:
        finish({"slides": [r.__dict__ for r in results], "exported": len(exported)}, as_json=True)
    else:
        for r in results:
            if not r.ok:
                err_console.print(f"[red]failed[/] {r.series_uid}: {r.error}")
        summary.render()
    finish(None, failed=summary.failed)


def convert_command(
    source: str = typer.Argument(
        ...,
        help="Folder of DICOM files (searched recursively), one file, or a workspace selection: "
        "all, cohort:NAME or series:UID.",
    ),
    output: Path = typer.Argument(..., help="Folder for the volumes and their JSON sidecars."),
    fmt: str = typer.Option("nifti", "--format", "-f", help="nifti, nifti-gz (level 1, parallel) or zarr."),
    uneven: str = typer.Option(
        DEFAULT_UNEVEN,
        "--uneven",
        help="Missing slices / variable spacing: refuse, split (even runs) or interpolate.",
    ),
    tilt: str = typer.Option(
        DEFAULT_TILT, "--tilt", help="Gantry tilt: shear (exact sheared affine) or resample."
    ),
    philips: str = typer.Option(
        DEFAULT_PHILIPS,
        "--philips-scaling",
        help="Philips: precise (private scale slope 2005,100E, as dcm2niix) or display (DICOM rescale).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    show_paths: bool = typer.Option(
        False, "--show-paths", help="Name skipped and refused inputs by path (paths may hold patient names)."
    ),
    workspace: WorkspaceOpt = None,
) -> None:
    """Convert every series under SOURCE: one volume per stack plus a BIDS-like JSON sidecar."""
    from curata.preprocess.convert import convert_folder, convert_selection

    if uneven not in UNEVEN_POLICIES:
        raise typer.BadParameter("--uneven must be refuse, split or interpolate")
    if tilt not in TILT_POLICIES:
        raise typer.BadParameter("--tilt must be shear or resample")
    if philips not in PHILIPS_SCALINGS:
        raise typer.BadParameter("--philips-scaling must be precise or display")
    summary = RunSummary("convert", failure_keys=("refused",))
    with make_progress(quiet=as_json) as progress:
        task = progress.add_task("converting", total=None)
        if not Path(source).exists() and (source == "all" or source.startswith(("cohort:", "series:"))):
            convert = partial(convert_selection, open_workspace(workspace), source)
        else:
            convert = partial(convert_folder, Path(source))
        options: dict[str, Any] = {"fmt": fmt, "uneven": uneven, "tilt": tilt, "philips": philips}
        result = convert(output, on_file=lambda: progress.advance(task), **options)
    refused = [
        (f"{where} ({_input_label(path, show_paths)})" if path else where, reason)
        for (where, reason), path in zip(result.refused, result.refused_inputs, strict=True)
    ]
    summary.add("converted", len(result.converted))
    summary.add("refused", len(result.refused))
    summary.add("skipped_files", len(result.skipped))
    if as_json:
        print_json(
            {
                "converted": [
                    {
                        "name": c.name,
                        "path": str(c.volume_path),
                        "sidecar": str(c.sidecar_path),
                        "shape": c.shape,
                        "warnings": c.report.warnings,
                    }
                    for c in result.converted
                ],
                "refused": [{"where": w, "reason": r} for w, r in refused],
                "skipped": [{"input": _input_label(p, show_paths), "reason": r} for p, r in result.skipped],
                "not_deidentified": result.not_deidentified,
                "summary": summary.as_dict(),
            }
        )
    else:
        for c in result.converted:
            for warning in c.report.warnings:
                err_console.print(f"[yellow]{c.name}:[/] {warning}")
        if result.not_deidentified:
            err_console.print(
                f"[yellow]warning:[/] {result.not_deidentified} of the converted series are not marked "
                "de-identified (Patient Identity Removed): convert is no de-identifier. Their volumes are "
                "named by series number and description and their sidecars keep descriptions and UIDs, "
                "as dcm2niix's do. De-identify first (`curata deid`), or convert the workspace's series "
                "(`curata convert all`)."
            )
    finish(
        summary if not as_json else None,
        failed=summary.failed,
        errors=[] if as_json else [f"refused {where}: {reason}" for where, reason in refused],
    )


def _input_label(path: str, show_paths: bool) -> str:
    """An input as `curata ingest` and `curata deid` name it: by the sha256 of its bytes (a folder or file
    name may hold a patient's name), by path only with --show-paths."""
    if show_paths:
        return path
    try:
        return f"sha256:{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}"
    except OSError:
        return "an input (--show-paths names it)"


@preprocess_app.command("run")
def run_command(
    pipeline: Path = typer.Argument(..., help="Pipeline TOML file."),
    cohort: str | None = typer.Option(None, "--cohort", help="Run over this cohort (default: every series)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address tcp://host:port."),
    source: Path | None = typer.Option(
        None, "--input", help="A folder of DICOM files instead of the workspace."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Also export the final volumes here."),
    workers: int = typer.Option(
        0, "--workers", help="Local worker processes (0: the config or the CPU count)."
    ),
    workspace: WorkspaceOpt = None,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run a declared pipeline; cached by (inputs, step, parameters, code version)."""
    from curata.preprocess.pipeline import run_declared_pipeline

    with make_progress(quiet=as_json) as progress:
        bar = progress.add_task(f"pipeline {pipeline.stem}", total=None)
        run_ = run_declared_pipeline(
            pipeline,
            cohort=cohort,
            scheduler=scheduler,
            source=source,
            output=output,
            workers=workers,
            workspace=workspace,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    if as_json:
        finish(run_.as_dict(), as_json=True, failed=run_.summary.failed)
    else:
        finish(run_.summary, errors=[f"failed {item}: {reason}" for item, reason in run_.result.failures])


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
    app.add_typer(preprocess_app, name="preprocess")
