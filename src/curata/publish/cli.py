"""``curata release ...`` and ``curata trace FILE``: thin faces over the publish services."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from curata.cli_common import as_data, finish, workspace_option
from curata.console import RunSummary, console, make_progress, print_table
from curata.publish.formats import DEFAULT_FORMATS
from curata.publish.splits import DEFAULT_SPLIT


def _ws(path: Path | None):  # type: ignore[no-untyped-def]
    from curata.workspace import Workspace

    ws = Workspace.find(path)
    ws.catalog.check_schema()
    return ws


release_app = typer.Typer(
    help="Immutable, versioned dataset releases: build, export, withdraw.", no_args_is_help=True
)


@release_app.command("create")
def create(
    name: str = typer.Argument(..., help="Release name (a new version NAME@n+1 when content changed)."),
    cohort: str = typer.Option(None, "--cohort", help="Cohort to release (curata cohort create)."),
    where: str = typer.Option(None, "--where", help="Selection query instead of a cohort."),
    pipeline: str = typer.Option(
        None,
        "--pipeline",
        help="Pipeline TOML (curata preprocess) whose volumes replace the plain NIfTI conversion.",
    ),
    split: str = typer.Option(DEFAULT_SPLIT, "--split", help="train,validation,test shares."),
    stratify: str = typer.Option(
        "", "--stratify", help="Balance splits on: sex,age,site,region,country,vendor,modality."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    formats: str = typer.Option(",".join(DEFAULT_FORMATS), "--format", help="Formats to build."),
    labels_from: str = typer.Option(
        None, "--labels-from", help="Annotation project whose accepted labels the release carries."
    ),
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build a release from a cohort (or a query, or every series) into the store."""
    from curata.publish import create_release

    ws = _ws(workspace)
    labels = annotation = None
    if labels_from:
        from curata.annotate import release_labels

        labels, annotation = release_labels(ws, labels_from)
    summary = RunSummary("release create")
    with make_progress(quiet=as_json) as progress:
        task = progress.add_task(f"building {name}", total=None)
        result = create_release(
            ws,
            name,
            cohort=cohort,
            where=where,
            formats=formats,
            split=split,
            stratify=stratify,
            seed=seed,
            pipeline=pipeline,
            on_case=lambda: progress.advance(task),
            labels=labels,
            annotation=annotation,
        )
    summary.counts = {"cases": result.cases, "patients": result.patients, "files": result.files}
    summary.counts["failed"] = len(result.problems)
    summary.extra = {
        "release": result.ref,
        "new version": "yes" if result.created else "no (content unchanged)",
        "under-represented groups": len(result.flags),
        "card": result.card,
    }
    if as_json:
        finish(result, as_json=True)
    else:
        for problem in result.problems:
            console.print(f"[red]not converted:[/] {problem}")
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}")
        summary.render()
    finish(None, failed=summary.failed)


@release_app.command("export")
def export(
    ref: str = typer.Argument(..., help="NAME@V (or NAME for the latest version)."),
    directory: Path = typer.Argument(..., help="New folder for the licensee's copy."),
    licensee: str = typer.Option(..., "--licensee", help="Who receives this copy (fingerprinted for them)."),
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a licensee's fingerprinted copy with its manifest, log receipt and verify_release.py."""
    from curata.publish import check_may_hand_out, export_release

    ws = _ws(workspace)
    check_may_hand_out(ws, ref)  # a version holding a patient withdrawn since is not handed out
    summary = RunSummary("release export")
    with make_progress(quiet=as_json) as progress:
        task = progress.add_task(f"exporting {ref}", total=None)
        result = export_release(ws, ref, directory, licensee, on_file=lambda: progress.advance(task))
    if as_json:
        finish(result, as_json=True)
        return
    summary.counts = {"files": result.files}
    summary.extra = {"release": result.ref, "licensee": licensee, "log entry": result.ledger_index}
    summary.render()
    console.print(f"verify with: python {Path(result.directory) / 'verify_release.py'}")


@release_app.command("ls")
def ls(
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Every version of every release."""
    from curata.publish import list_releases

    rows: list[Mapping[str, Any]] = as_data(list_releases(_ws(workspace)))
    if as_json:
        finish(rows, as_json=True)
    else:
        print_table(rows, title="releases")


@release_app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME@V (or NAME for the latest version)."),
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """One version: counts, splits, flags, manifest digest, log entry."""
    from curata.publish import show_release

    result = show_release(_ws(workspace), ref)
    if as_json:
        finish(result, as_json=True)
        return
    fields = as_data(result).items()
    rows: list[Mapping[str, Any]] = [{"field": k, "value": v} for k, v in fields if k != "parameters"]
    print_table(rows, title=result.ref)


@release_app.command("verify")
def verify(
    ref: str = typer.Argument(..., help="NAME@V (or NAME for the latest version)."),
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Re-check a version in the store: every file, the manifest, and its entry in the signed log."""
    from curata.publish import verify_version

    result = verify_version(_ws(workspace), ref)
    if as_json:
        finish(result, as_json=True)
    elif result.verified:
        console.print(f"OK: {result.ref}: {result.files} files; manifest is log entry {result.log_index}")
    else:
        for problem in result.problems:
            console.print(f"[red]FAILED:[/] {problem}")
    finish(None, failed=not result.verified)


@release_app.command("withdraw")
def withdraw(
    name: str = typer.Argument(..., help="Release name."),
    patient: str = typer.Option(
        ...,
        "--patient",
        help="Pseudonym (or SITE/PSEUDONYM) of the patient who withdrew consent; withdrawn at every site.",
    ),
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Consent withdrawn: a new version without the patient, logged; later versions leave them out."""
    from curata.publish import withdraw_patient

    ws = _ws(workspace)
    result = withdraw_patient(ws, name, patient)
    # the versions it left behind stop being handed out: cached downloads deleted, grants carried over
    from curata.server import after_withdrawal

    after_withdrawal(ws)
    if as_json:
        finish(result, as_json=True)
        return
    if len(result.withdrawn_sites) > 1:
        console.print(
            f"the same patient (pseudonym) was seen at {len(result.withdrawn_sites)} sites: withdrawn at "
            f"every one ({', '.join(result.withdrawn_sites)})"
        )
    if result.removed_series:
        console.print(f"{result.ref}: built without the patient ({result.removed_series} series removed)")
    else:
        console.print(
            f"{result.ref} does not hold that patient; the withdrawal is recorded for later versions"
        )


def trace(
    file: Path = typer.Argument(..., help="A file found outside (DICOM, NIfTI or any exported file)."),
    workspace: Path | None = workspace_option(),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Name the licensee whose export a leaked file came from."""
    from curata.publish import trace_file

    result = trace_file(_ws(workspace), file)
    if as_json:
        finish(result, as_json=True)
        return
    for m in result.matches:
        console.print(f"{m.licensee}  ({m.release}, exported {m.exported_at}, log entry {m.ledger_index})")
    console.print(f"[dim]found by {result.how}{'' if result.unique else '; not unique'}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")
    app.command("trace")(trace)
