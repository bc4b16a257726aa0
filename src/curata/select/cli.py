"""`curata qc run|rules|explain|report` and `curata cohort create|ls|show|fields`."""

from __future__ import annotations

from pathlib import Path

import typer

from curata.cli_common import WorkspaceOpt, as_data, finish, open_workspace
from curata.console import console, make_progress, print_table

qc_app = typer.Typer(
    help="Quality control: measure series, apply exclusion rules, explain, report.", no_args_is_help=True
)
cohort_app = typer.Typer(
    help="Cohorts: named, saved queries over headers, QC metrics and verdicts.", no_args_is_help=True
)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")


@qc_app.command("run")
def qc_run(
    where: str = typer.Option(None, "--where", help="Only series matching this query."),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (default: all cores)."),
    as_json: bool = JSON,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    workspace: WorkspaceOpt = None,
) -> None:
    """Measure every series not yet measured (cached by content), then apply the rules."""
    from curata.select.service import run_qc

    with make_progress(quiet=quiet or as_json) as progress:
        bar = progress.add_task("measuring series", total=None)
        summary = run_qc(
            open_workspace(workspace),
            where,
            workers or None,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    finish(summary, as_json=as_json)


@qc_app.command("rules")
def qc_rules(
    file: Path = typer.Argument(
        None, help="TOML rules (overrides of the defaults); omit to show the active rules."
    ),
    as_json: bool = JSON,
    workspace: WorkspaceOpt = None,
) -> None:
    """Set the project's exclusion rules (and decide every measured series again), or show them."""
    from curata.errors import ConfigError
    from curata.select.service import active_ruleset, set_rules

    ws = open_workspace(workspace)
    if file is not None:
        if not file.is_file():
            raise ConfigError(f"{file}: no such file", hint="pass a TOML file of [[rule]] tables")
        ruleset, summary = set_rules(ws, file.read_text(), str(file))
        if not as_json:
            console.print(f"[green]rules set[/] ({len(ruleset.rules)} rules, digest {ruleset.digest[:12]})")
            summary.render()
    else:
        ruleset = active_ruleset(ws)
    rows = [r.as_dict() for r in ruleset.rules]
    if as_json:
        finish({"digest": ruleset.digest, "rules": rows}, as_json=True)
    elif file is None:
        print_table(
            rows, title=f"active rules {ruleset.digest[:12]}", columns=["name", "action", "when", "reason"]
        )


@qc_app.command("explain")
def qc_explain(
    uid: str = typer.Argument(..., help="Series Instance UID (or a unique prefix)."),
    as_json: bool = JSON,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show each metric, each rule and the verdict for one series."""
    from curata.select.service import explain

    out = explain(open_workspace(workspace), uid)
    if as_json:
        finish(out, as_json=True)
        return
    console.print(
        f"[bold]series[/] {out.series_uid}  {out.modality}  {out.description or ''}  site {out.site}"
    )
    if not out.measured:
        console.print("[yellow]not measured yet[/]: run `curata qc run`")
    if out.error:
        console.print(f"[red]unreadable:[/] {out.error}")
    print_table(as_data(out.metrics), title="metrics", columns=["metric", "value", "unit", "definition"])
    rows = [
        {
            "rule": r.name,
            "action": r.action,
            "fired": "FIRED" if r.fired else ("unknown" if r.result is None else "no"),
            "when": r.when,
            "values": ", ".join(f"{k}={v}" for k, v in r.values.items()),
        }
        for r in out.rules
    ]
    print_table(rows, title="rules", columns=["rule", "action", "fired", "when", "values"])
    v = out.verdict
    if v is None:
        console.print("verdict: none yet")
    else:
        word = "[green]PASSED[/]" if v.passed else "[red]EXCLUDED[/]"
        console.print(
            f"verdict: {word}{' with warnings' if v.warned else ''} (rules {v.ruleset[:12]}, {v.code_version})"
        )
        for r in v.reasons:
            console.print(f"  {r['action']}: {r['rule']}: {r['reason']}")


@qc_app.command("report")
def qc_report(
    out: Path = typer.Argument(..., help="HTML file to write (self-contained)."),
    workspace: WorkspaceOpt = None,
) -> None:
    """Write an HTML report: metric distributions by site and scanner, pass rates, excluded montage."""
    from curata.select.report import write_report

    path = write_report(open_workspace(workspace), out)
    console.print(f"[green]report written[/] {path}")


@cohort_app.command("create")
def cohort_create(
    name: str = typer.Argument(..., help="The cohort's name (unique, immutable)."),
    where: str = typer.Option(..., "--where", help='Query, e.g. "modality = CT and qc.passed".'),
    as_json: bool = JSON,
    workspace: WorkspaceOpt = None,
) -> None:
    """Save a cohort: the query, the moment it was taken, and the series it matched."""
    from curata.select.service import create_cohort

    out = create_cohort(open_workspace(workspace), name, where)
    if as_json:
        finish(out, as_json=True)
    else:
        console.print(f"[green]cohort {name}[/]: {out.series} series")


@cohort_app.command("ls")
def cohort_ls(as_json: bool = JSON, workspace: WorkspaceOpt = None) -> None:
    """List the saved cohorts."""
    from curata.select.service import list_cohorts

    rows = list_cohorts(open_workspace(workspace))
    if as_json:
        finish(rows, as_json=True)
    else:
        print_table(as_data(rows), title="cohorts", columns=["name", "series", "created_at", "query"])


@cohort_app.command("show")
def cohort_show(
    name: str = typer.Argument(...), as_json: bool = JSON, workspace: WorkspaceOpt = None
) -> None:
    """Show one cohort: its query, when it was taken, and its series."""
    from curata.select.service import show_cohort

    out = show_cohort(open_workspace(workspace), name)
    if as_json:
        finish(out, as_json=True)
        return
    console.print(f"[bold]{out.name}[/]  taken {out.created_at}\n  query: {out.query}")
    print_table(as_data(out.series), title=f"{len(out.series)} series")


@cohort_app.command("fields")
def cohort_fields(as_json: bool = JSON) -> None:
    """List the fields a query may use."""
    from curata.select.query import all_fields

    rows = [{"field": f.name, "type": f.kind, "meaning": f.doc} for f in all_fields().values()]
    finish(rows, as_json=as_json, title="query fields")


def register(app: typer.Typer) -> None:
    app.add_typer(qc_app, name="qc")
    app.add_typer(cohort_app, name="cohort")
