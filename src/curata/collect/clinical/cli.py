"""`curata clinical linkage`: which patients lack a modality the project expects."""

from __future__ import annotations

import typer

from curata.cli_common import WorkspaceOpt

clinical_app = typer.Typer(help="Clinical and genomic data: linkage to the images.", no_args_is_help=True)


@clinical_app.command("linkage")
def linkage(
    expect: str = typer.Option(
        "CT,clinical", help="Comma-separated: image modalities, clinical, genomic, specimen."
    ),
    missing_only: bool = typer.Option(False, "--missing", help="Only patients missing something."),
    as_json: bool = typer.Option(False, "--json"),
    workspace: WorkspaceOpt = None,
) -> None:
    """One row per patient: image modalities, clinical rows, VCFs, specimens, and what is missing."""
    from curata.collect.clinical.linkage import linkage_report
    from curata.console import print_json, print_table
    from curata.workspace import Workspace

    ws = Workspace.find(workspace)
    rows = linkage_report(ws, [e.strip() for e in expect.split(",") if e.strip()])
    if missing_only:
        rows = [r for r in rows if r.missing]
    data = [r.as_dict() for r in rows]
    if as_json:
        print_json(data)
        return
    for d in data:
        d["modalities"] = ",".join(d["modalities"])
        d["missing"] = ",".join(d["missing"]) or "-"
    print_table(data, title=f"linkage (expected: {expect})")
    if any(r.missing for r in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(clinical_app, name="clinical")
