"""`curata annotate project|schema|reader|tasks|assign|queue|status|file|import|submit|agreement|adjudicate|accept|
readers|draft|train|drafts|report`."""

from __future__ import annotations

import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from curata.cli_common import finish, workspace_option
from curata.console import console, print_json, print_table
from curata.workspace import Workspace

annotate_app = typer.Typer(
    help="Annotation: projects, schemas, blinded double reading, agreement, adjudication.",
    no_args_is_help=True,
)
project_app = typer.Typer(help="Annotation projects.", no_args_is_help=True)
reader_app = typer.Typer(help="A project's readers and adjudicators.", no_args_is_help=True)
annotate_app.add_typer(project_app, name="project")
annotate_app.add_typer(reader_app, name="reader")

WS = workspace_option()
JSON = typer.Option(False, "--json", help="Print the result as JSON.")


def _out(data: Any, as_json: bool, *, title: str, columns: list[str] | None = None) -> None:
    rows = [asdict(r) if hasattr(r, "__dataclass_fields__") else r for r in data]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, title=title, columns=columns)


@project_app.command("create")
def project_create(
    name: str,
    cohort: str = typer.Option(..., "--cohort", help="The cohort whose series are read."),
    unit: str = typer.Option("series", "--unit", help="One task per series or per study."),
    readers: int = typer.Option(2, "--readers", help="Readers per case (at least 2)."),
    unblinded: bool = typer.Option(False, "--unblinded", help="Readers may see each other's reads."),
    show_drafts: bool = typer.Option(False, "--show-drafts", help="Readers see AI drafts."),
    skip_own_site: bool = typer.Option(
        False, "--skip-own-site", help="Never assign a reader their own site."
    ),
    platform: str = typer.Option(
        None, "--in", help="The platform project whose members read it (its pages, DICOMweb, MONAI Label)."
    ),
    workspace: Path | None = WS,
) -> None:
    """Create a project reading a cohort."""
    from curata.annotate.service import create_project

    ws = Workspace.find(workspace)
    p = create_project(
        ws,
        name,
        cohort,
        unit=unit,
        readers_per_task=readers,
        blinded=not unblinded,
        show_drafts=show_drafts,
        skip_own_site=skip_own_site,
    )
    if platform:
        from curata.server import add_resource

        add_resource(ws, platform, "annotation", p.name)
    console.print(f"[green]project[/] {p.name} on cohort {p.cohort} ({p.readers_per_task} readers per case)")


@project_app.command("ls")
def project_ls(as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """List the projects."""
    from curata.annotate.service import list_projects

    rows = [
        {
            "name": p.name,
            "cohort": p.cohort,
            "readers": p.readers_per_task,
            "blinded": p.blinded,
            "schema": p.schema_version,
        }
        for p in list_projects(Workspace.find(workspace))
    ]
    _out(rows, as_json, title="annotation projects")


@annotate_app.command("schema")
def schema(
    project: str,
    file: Path = typer.Argument(..., help=escape("TOML: instructions = '...' and [[label]] tables.")),
    workspace: Path | None = WS,
) -> None:
    """Set a project's labels (name, value, kind, scheme, code, meaning, colour) and instructions."""
    from curata.annotate.service import set_schema
    from curata.errors import ConfigError

    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{file}: {exc}", hint="a TOML file with [[label]] tables") from exc
    p = set_schema(Workspace.find(workspace), project, data.get("label", []), data.get("instructions", ""))
    console.print(f"[green]schema[/] v{p.schema_version}: {', '.join(d['name'] for d in p.labels)}")


@reader_app.command("add")
def reader_add(
    project: str,
    user: str,
    site: str = typer.Option(None, "--site"),
    adjudicator: bool = typer.Option(False, "--adjudicator"),
    workspace: Path | None = WS,
) -> None:
    """Add a reader (or an adjudicator) to a project."""
    from curata.annotate.service import add_reader

    add_reader(Workspace.find(workspace), project, user, site=site, adjudicator=adjudicator)
    console.print(f"[green]{'adjudicator' if adjudicator else 'reader'}[/] {user} on {project}")


@annotate_app.command("tasks")
def tasks(
    project: str,
    create: bool = typer.Option(False, "--create", help="Create the missing tasks from the cohort first."),
    state: str = typer.Option(None, "--state"),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """List a project's tasks (``--create`` makes one per series or study of the cohort)."""
    from curata.annotate.service import create_tasks, list_tasks

    ws = Workspace.find(workspace)
    if create:
        console.print(f"[green]{create_tasks(ws, project)} new task(s)[/]")
    _out(
        list_tasks(ws, project, state=state),
        as_json,
        title=f"{project} tasks",
        columns=["id", "state", "site", "readers", "series_uid"],
    )


@annotate_app.command("assign")
def assign_cmd(
    project: str,
    task: int = typer.Option(None, "--task", help="By hand: this task ..."),
    reader: str = typer.Option(None, "--reader", help="... to this reader."),
    as_json: bool = JSON,
    workspace: Path | None = WS,
) -> None:
    """Assign readers: balanced and automatic, or one by hand."""
    from curata.annotate.service import assign

    load = assign(Workspace.find(workspace), project, task_id=task, reader=reader)
    _out([{"reader": k, "cases": v} for k, v in sorted(load.items())], as_json, title="cases per reader")


@annotate_app.command("queue")
def queue_cmd(project: str, reader: str, as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """A reader's open tasks, next first."""
    from curata.annotate.service import queue

    _out(
        queue(Workspace.find(workspace), project, reader),
        as_json,
        title=f"{reader}'s queue",
        columns=["id", "state", "series_uid"],
    )


@annotate_app.command("status")
def status_cmd(project: str, as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Tasks per state and reads filed."""
    from curata.annotate.service import status

    st = status(Workspace.find(workspace), project)
    if as_json:
        print_json(st)
    else:
        print_table([st], title=f"{project} status")


@annotate_app.command("file")
def file_cmd(project: str = typer.Option(None, "--project"), workspace: Path | None = WS) -> None:
    """File the SEG/SR/RTSTRUCT objects that arrived (STOW-RS) as reads of the accounts that sent them."""
    from curata.annotate.service import file_new_objects

    r = file_new_objects(Workspace.find(workspace), project)
    console.print(f"filed {len(r.filed)}, already filed {r.skipped}, refused {len(r.refused)}")
    for sop, reason in r.refused:
        console.print(f"  [red]refused[/] {sop}: {reason}")
    if r.refused:
        raise typer.Exit(1)


@annotate_app.command("import")
def import_cmd(
    project: str,
    series: str = typer.Option(..., "--series", help="The task's series UID."),
    reader: str = typer.Option(..., "--reader", help="Who drew it."),
    path: Path = typer.Argument(..., help="NIfTI, NRRD, DICOM SEG or RTSTRUCT on the image grid."),
    workspace: Path | None = WS,
) -> None:
    """Import a hospital's own annotation as a reader's read."""
    from curata.annotate.service import import_labelmap

    r = import_labelmap(Workspace.find(workspace), project, series, reader, path)
    console.print(
        f"[green]read {r.id}[/] v{r.version} ({r.kind}) for task {r.task_id}: {', '.join(r.labels_present)}"
    )


@annotate_app.command("submit")
def submit_cmd(project: str, task: int, reader: str, workspace: Path | None = WS) -> None:
    """Hand in a reader's read of a task."""
    from curata.annotate.service import submit

    t = submit(Workspace.find(workspace), project, task, reader)
    console.print(f"task {t.id}: {t.state}")


@annotate_app.command("agreement")
def agreement_cmd(project: str, as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Compute agreement on every submitted case; show the project's table per label."""
    from curata.annotate.service import agreement_table, compute_agreement

    ws = Workspace.find(workspace)
    results = compute_agreement(ws, project)
    done = [r for r in results if r.error is None]
    if not as_json:
        console.print(
            f"{len(done)} case(s) measured: {sum(r.passed for r in done)} to review, "
            f"{sum(not r.passed for r in done)} to adjudication"
        )
    rows = [
        {
            "label": r["label"],
            "reads": r["reads"],
            "pairs": r["pairs"],
            "dice_median": r["dice"]["median"],
            "hd95_median_mm": r["hd95_mm"]["median"],
            "assd_median_mm": r["assd_mm"]["median"],
            "surface_dice_median": r["surface_dice"]["median"],
            "detection_f1_median": r["detection_f1"]["median"],
            "adjudication_rate": r["adjudication_rate"],
        }
        for r in agreement_table(ws, project)
    ]
    _out(rows, as_json, title=f"{project} agreement")
    finish(None, errors=[f"task {r.task_id} not compared: {r.error}" for r in results if r.error])


@annotate_app.command("adjudicate")
def adjudicate_cmd(
    project: str,
    task: int,
    adjudicator: str = typer.Option(..., "--by"),
    decision: str = typer.Option(
        ..., "--decision", help="accept_read or staple (edits come from the viewer)."
    ),
    read: int = typer.Option(None, "--read", help="The read accepted."),
    note: str = typer.Option("", "--note"),
    workspace: Path | None = WS,
) -> None:
    """Decide a case the readers disagree on."""
    from curata.annotate.service import adjudicate

    out = adjudicate(Workspace.find(workspace), project, task, adjudicator, decision, read_id=read, note=note)
    console.print(f"task {out['task']}: accepted ({out['decision']})")


@annotate_app.command("accept")
def accept_cmd(
    project: str, task: int, reviewer: str = typer.Option(..., "--by"), workspace: Path | None = WS
) -> None:
    """Accept a case whose reads agree (their STAPLE consensus)."""
    from curata.annotate.service import accept_review

    out = accept_review(Workspace.find(workspace), project, task, reviewer)
    console.print(f"task {out['task']}: accepted ({out['decision']})")


@annotate_app.command("readers")
def readers_cmd(project: str, as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Per-reader statistics: cases, time per case, agreement with the accepted labels."""
    from curata.annotate.service import reader_stats

    _out(reader_stats(Workspace.find(workspace), project), as_json, title=f"{project} readers")


@annotate_app.command("draft")
def draft_cmd(
    project: str,
    task: int,
    model: str = typer.Option("lungs", "--model", help="body, lungs, bone, a trained UNet or a bundle."),
    workspace: Path | None = WS,
) -> None:
    """Pre-annotate a task with an AI model (a separate, marked draft)."""
    from curata.annotate.service import predict_draft

    r = predict_draft(Workspace.find(workspace), project, task, model)
    console.print(
        f"[green]draft {r.id}[/] ({model}) for task {task}: {', '.join(r.labels_present) or 'empty'}"
    )


@annotate_app.command("train")
def train_cmd(
    project: str,
    name: str = typer.Option("unet", "--name"),
    epochs: int = typer.Option(40, "--epochs"),
    workspace: Path | None = WS,
) -> None:
    """Train the small MONAI UNet on the project's accepted labels (recorded as provenance)."""
    from curata.annotate.service import train_model

    run = train_model(Workspace.find(workspace), project, name, epochs=epochs)
    console.print(
        f"[green]{name}[/] trained on {run['cases']} case(s): loss {run['first_loss']:.3f} -> {run['final_loss']:.3f}"
    )
    finish(None, errors=[f"skipped series {s['series_uid']}: {s['reason']}" for s in run["skipped"]])


@annotate_app.command("drafts")
def drafts_cmd(project: str, as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Per model: Dice of its drafts against the accepted labels."""
    from curata.annotate.service import draft_agreement

    rows = [{"model": k, **v} for k, v in draft_agreement(Workspace.find(workspace), project).items()]
    _out(rows, as_json, title=f"{project} drafts vs accepted")


@annotate_app.command("report")
def report_cmd(
    project: str,
    report: int,
    out: Path = typer.Option(Path("."), "--out", help="Folder for report.html and report.pdf."),
    workspace: Path | None = WS,
) -> None:
    """Render a reading report as HTML and PDF."""
    from curata.annotate.service import render_report

    out.mkdir(parents=True, exist_ok=True)
    for name, data in render_report(Workspace.find(workspace), project, report).items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out / name)
    console.print(f"[green]report {report}[/] -> {out / 'report.html'}, {out / 'report.pdf'}")


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")
