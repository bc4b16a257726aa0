"""``curata keygen FILE`` and ``curata deid INPUT OUTPUT --key-file FILE``: the edge de-identification contract."""

from __future__ import annotations

from pathlib import Path

import typer

from curata.collect.keys import generate_key_file, read_key_file
from curata.console import RunSummary, console, make_progress


def keygen(file: Path = typer.Argument(..., help="Where to write the new site secret (mode 0600).")) -> None:
    """Write a new site secret to FILE. Keep it on site: it keys every pseudonym and the vault."""
    path = generate_key_file(file)
    console.print(f"site key written to [bold]{path}[/] (mode 0600)")


def deid(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="A DICOM file or a folder (searched recursively)."
    ),
    output: Path = typer.Argument(
        ..., metavar="OUTPUT", help="Folder for the de-identified files and the report."
    ),
    key_file: Path = typer.Option(..., "--key-file", help="The site secret (from `curata keygen`)."),
    profile: str = typer.Option(None, "--profile", help="basic or research (default: research)."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML with option and per-attribute overrides."
    ),
    vault: Path | None = typer.Option(
        None, "--vault", help="Re-identification vault (default: curata-vault beside the key file)."
    ),
    quarantine: Path | None = typer.Option(
        None, "--quarantine", help="Where refused inputs go (default: curata-quarantine beside the vault)."
    ),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (default: all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """De-identify every DICOM file under INPUT into OUTPUT/<patient>/<study>/<series>/<instance>.dcm."""
    from curata.collect.deid.batch import default_quarantine_dir, default_vault_dir, run_batch
    from curata.collect.deid.profile import load_profile

    key = read_key_file(key_file)
    prof = load_profile(profile, config)
    vault_dir = vault or default_vault_dir(key_file)
    qdir = quarantine or default_quarantine_dir(vault_dir)
    from curata.settings import runtime_settings

    n_workers = runtime_settings().worker_count(workers or None)  # the same rule as `curata ingest`
    summary = RunSummary("de-identification", failure_keys=("quarantined", "failed"))
    with make_progress(quiet=as_json) as progress:
        task = progress.add_task("de-identifying", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = run_batch(
            input_path,
            output,
            key=key,
            profile=prof,
            vault_dir=vault_dir,
            quarantine=qdir,
            workers=n_workers,
            on_progress=on_progress,
        )
    for name in ("deidentified", "pixels_cleaned", "duplicates", "quarantined", "failed"):
        summary.add(name, report.counts.get(name, 0))
    seconds = max(summary.seconds, 1e-9)
    summary.extra.update(
        {
            "profile": prof.name,
            "workers": n_workers,
            "files_per_second": round(sum(report.counts.values()) / seconds, 1),
        }
    )
    summary.render(as_json=as_json)
    if not as_json:
        console.print(f"report: {output / 'deid-report.json'}")
        if report.quarantined:
            console.print(f"[red]{len(report.quarantined)} input(s) quarantined in {qdir}[/]")
            for q in report.quarantined[:10]:
                console.print(f"  {q['source']}: {q['reason']}")
    if summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("deid")(deid)
