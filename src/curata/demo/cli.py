"""`curata demo`: generate a multi-site hospital export and run every stage on it."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path(".demo"), "--out", help="Where the export, workspace and results go."),
    patients: int = typer.Option(30, help="Patients in the synthetic export."),
    sites: int = typer.Option(3, help="Hospitals in the synthetic export."),
    size: str = typer.Option("full", help="full: real-size series (512x512 CT); small: quick."),
    seed: int = typer.Option(0, help="Random seed (the export is deterministic for a seed)."),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (default: all cores)."),
) -> None:
    """Run the whole path end to end on the embedded defaults and print where the results are."""
    from curata.demo.runner import run_demo

    ctx = run_demo(out, patients=patients, sites=sites, size=size, seed=seed, workers=workers or None)
    failed = [k for k, v in ctx.results.items() if v.get("status") not in ("ok",)]
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(demo)
