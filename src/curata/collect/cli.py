"""`curata ingest`: folders, files and zip archives into the workspace, de-identified first."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from curata.cli_common import finish, workspace_option
from curata.console import make_progress


def ingest(
    paths: list[Path] = typer.Argument(..., help="Folders (recursive), files or zip archives."),
    site: str = typer.Option(None, "--site", help="File under this site (default: the workspace's site)."),
    profile: str = typer.Option(
        None, "--profile", help=escape("De-identification profile (default: [deid] profile in curata.toml).")
    ),
    config: Path = typer.Option(None, "--config", help="De-identification TOML overrides."),
    no_deid: bool = typer.Option(
        False,
        "--verified-deidentified",
        help="Central platform: accept only objects already marked de-identified.",
    ),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (default: all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    show_paths: bool = typer.Option(
        False, "--show-paths", help="Name refused inputs by path (paths may hold patient names)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    workspace: Path | None = workspace_option(),
) -> None:
    """De-identify, store and catalog every DICOM file under PATHS, and the clinical (CSV, Excel, FHIR)
    and genomic (VCF, BCF) exports beside them. Re-ingesting adds nothing new."""
    from curata.collect.ingest import Ingestor
    from curata.workspace import Workspace

    ws = Workspace.find(workspace)
    ingestor = Ingestor(
        ws, deidentify=not no_deid, profile=profile, profile_config=config, site=site, workers=workers or None
    )
    with make_progress(quiet=quiet or as_json) as progress:
        task = progress.add_task("ingest", total=None)
        summary, problems = ingestor.ingest_paths(
            list(paths),
            total_hint=lambda n: progress.update(task, total=n),
            on_progress=lambda _o: progress.advance(task),
        )
    errors: list[str] = []
    if not as_json:
        for p in problems[:20]:
            if show_paths:
                label = p.source
            elif p.input_digest:
                label = f"sha256:{p.input_digest[:16]}"
            else:
                label = "an input (--show-paths names it)"
            errors.append(f"{p.status} {label}: {p.reason or ''}")
        if len(problems) > 20:
            errors.append(f"... and {len(problems) - 20} more: `curata ls quarantine`")
    finish(summary, as_json=as_json, errors=errors)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
