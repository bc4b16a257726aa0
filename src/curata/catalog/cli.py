"""Workspace and catalog commands: init, ls, show, status, store verify."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from curata.cli_common import WorkspaceOpt, as_data, finish, open_workspace
from curata.console import console, print_table

store_app = typer.Typer(help="The content-addressed blob store.", no_args_is_help=True)


class Level(StrEnum):
    sites = "sites"
    patients = "patients"
    studies = "studies"
    series = "series"
    quarantine = "quarantine"


def init(
    directory: Path = typer.Argument(Path("."), help="Workspace folder (created if missing)."),
    site: str = typer.Option(None, "--site", help="This site's name (default: local-site)."),
) -> None:
    """Create a workspace: config, catalog (migrated), store and a new site secret."""
    from curata.workspace import Workspace

    ws = Workspace.init(directory, site=site)
    console.print(f"[green]workspace ready[/] at {ws.root}")
    from curata.catalog import redact_url

    console.print(f"  catalog  {redact_url(ws.database_url)}")
    console.print(f"  store    {ws.store_path}")
    console.print(f"  site key {ws.key_path} (mode 0600; never share it)")


def ls(
    level: Level = typer.Argument(..., help="What to list."),
    site: str = typer.Option(None, help="Only this site."),
    patient: str = typer.Option(None, help="Only this patient pseudonym."),
    modality: str = typer.Option(None, help="Only series of this modality (CT, MR...)."),
    body_part: str = typer.Option(None, "--body-part", help="Only series of this body part."),
    manufacturer: str = typer.Option(None, help="Only series from this manufacturer (substring)."),
    limit: int = typer.Option(200, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    workspace: WorkspaceOpt = None,
) -> None:
    """List sites, patients, studies, series or quarantined inputs as a table."""
    from curata.catalog import service

    ws = open_workspace(workspace)
    where = service.SeriesFilter(site, patient, modality, body_part, manufacturer)
    listing = {
        Level.sites: service.list_sites,
        Level.patients: service.list_patients,
        Level.studies: service.list_studies,
        Level.series: service.list_series,
    }
    records = (
        service.list_quarantine(ws, limit) if level is Level.quarantine else listing[level](ws, where, limit)
    )
    rows: list[dict[str, Any]] = as_data(records)
    if as_json:
        finish(rows, as_json=True)
        return
    short = [
        {k: (v[:24] + "…" if isinstance(v, str) and len(v) > 40 else v) for k, v in r.items()} for r in rows
    ]
    print_table(short, title=f"{level.value} ({len(rows)})")


def show(
    uid: str = typer.Argument(
        ..., help="A study, series or SOP instance UID, a patient pseudonym or a blob digest."
    ),
    as_json: bool = typer.Option(False, "--json"),
    workspace: WorkspaceOpt = None,
) -> None:
    """Show everything the catalog knows about one object."""
    from curata.catalog import service

    out = service.describe_object(open_workspace(workspace), uid)
    if as_json:
        finish(out, as_json=True)
        return
    console.print_json(data=out, default=str)


def status(
    as_json: bool = typer.Option(False, "--json"),
    workspace: WorkspaceOpt = None,
) -> None:
    """Counts, quarantine and store size of the workspace."""
    from curata.catalog import service

    finish(
        service.workspace_status(open_workspace(workspace)).as_dict(), as_json=as_json, title="curata status"
    )


@store_app.command("verify")
def store_verify(
    as_json: bool = typer.Option(False, "--json"),
    workspace: WorkspaceOpt = None,
) -> None:
    """Re-hash every blob; report corrupt ones and blobs the catalog names but the store lacks."""
    from curata.catalog import service

    ws = open_workspace(workspace)
    with console.status("re-hashing the store"):
        report = service.verify_store(ws)
    if as_json:
        info = {**as_data(report), "ok": report.ok}
        finish(info, as_json=True, failed=not report.ok)
        return
    table = [
        {
            "checked": report.checked,
            "size": service.human_size(report.bytes),
            "corrupt": len(report.corrupt),
            "missing": len(report.missing),
        }
    ]
    problems = [f"corrupt {d}" for d in report.corrupt] + [f"missing {d}" for d in report.missing]
    finish(table, title="store verify", errors=problems, failed=not report.ok)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("ls")(ls)
    app.command("show")(show)
    app.command("status")(status)
    app.add_typer(store_app, name="store")
