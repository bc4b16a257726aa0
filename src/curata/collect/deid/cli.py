"""``curata keygen FILE`` and ``curata deid INPUT OUTPUT --key-file FILE``: the edge de-identification contract."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import typer
from rich.markup import escape

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
    profile: str = typer.Option(
        None, "--profile", help="basic, research or research-strict (default: research)."
    ),
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
    show_paths: bool = typer.Option(
        False, "--show-paths", help="Name refused inputs by path (paths may hold patient names)."
    ),
) -> None:
    """De-identify every DICOM file under INPUT into OUTPUT/<patient>/<study>/<series>/<instance>.dcm."""
    _one_blas_thread()
    from curata.collect.deid.batch import default_quarantine_dir, default_vault_dir, run_batch
    from curata.collect.deid.profile import load_profile

    key = read_key_file(key_file)
    prof = load_profile(profile, config)
    vault_dir = vault or default_vault_dir(key_file)
    qdir = quarantine or default_quarantine_dir(vault_dir)
    n_workers = workers if workers > 0 else _configured_workers(workers)
    summary = RunSummary("de-identification", failure_keys=("quarantined", "failed"))
    # what is loaded by now (modules, tables) lives as long as the command: the collector need not
    # scan it again and again, nor touch (and so copy) its pages in each forked worker. `curata deid`
    # runs its start-up with the collector off (curata.cli.main); it runs from here on.
    gc.freeze()
    # a file's objects die with it: collecting every 20,000 allocations rather than 700 walks the
    # survivors (records, the vault's rows) less often (-0.45 % instructions on 240 small files)
    gc.set_threshold(20_000)
    gc.enable()
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
    for name in ("deidentified", "pixels_cleaned", "review", "duplicates", "quarantined", "failed"):
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
        if report.counts.get("review"):
            console.print(f"{report.counts['review']} object(s) wait for review: curata deid-review list")
        if report.quarantined:
            console.print(f"[red]{len(report.quarantined)} input(s) quarantined in {escape(str(qdir))}[/]")
            # by sha256 (the name of its file there), as `curata ingest` does
            for q in report.quarantined[:10]:
                label = q["source"] if show_paths else f"sha256:{q['input_sha256'][:16]}"
                console.print(f"  {escape(label)}: {escape(q['reason'])}")
        if report.failed:
            console.print(f"[red]{len(report.failed)} input(s) could not be read[/]")
            for f in report.failed[:10]:  # never read, so no digest: by path only with --show-paths
                label = f["source"] if show_paths else "an input (--show-paths names it)"
                console.print(f"  {escape(label)}: {escape(f['reason'])}")
    if summary.failed:
        raise typer.Exit(1)


def _configured_workers(requested: int) -> int:
    """The workers when ``-j`` names none: the same rule as `curata ingest` ([runtime] workers, else
    one per core). The settings are read only where a workspace file or a ``CURATA_RUNTIME*``
    variable could set it: pydantic-settings costs about 0.1 CPU-second to import, and with ``-j N``,
    or with neither, no setting changes the answer."""
    from curata import _config_file

    if _config_file.find_config() is None and not _config_file.env_sets("runtime"):
        from curata.runtime import default_workers

        return default_workers(requested or None)
    from curata.settings import runtime_settings

    return runtime_settings().worker_count(requested or None)


def _one_blas_thread() -> None:
    """Before numpy is first imported (pydicom imports it): its OpenBLAS would start a thread per core
    that spins at start-up. De-identification does no linear algebra, and on a batch of a thousand
    small files those threads cost about 0.1 CPU-second of the command's 2 (bench/deid.py)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


review_app = typer.Typer(
    help="Objects held for review (burned-in text possible, nothing proved it absent): list, accept, mask, drop."
)


def _review_quarantine(quarantine: Path | None, key_file: Path | None) -> Path:
    from curata.collect.deid.batch import default_quarantine_dir, default_vault_dir

    if quarantine is not None:
        return quarantine
    if key_file is None:
        raise typer.BadParameter("give --quarantine or --key-file (the quarantine lies beside its vault)")
    return default_quarantine_dir(default_vault_dir(key_file))


@review_app.command("list")
def review_list_cmd(
    quarantine: Path | None = typer.Option(None, "--quarantine", help="The quarantine folder."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Finds the default quarantine."),
    show_all: bool = typer.Option(False, "--all", help="Also items already decided."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The review list: one line per object with its thumbnail (a PNG on site) and reason."""
    import json
    from dataclasses import asdict

    from curata.collect.deid.batch import review_list

    items = review_list(_review_quarantine(quarantine, key_file), pending_only=not show_all)
    if as_json:
        console.print_json(json.dumps([asdict(i) for i in items]))
        return
    if not items:
        console.print("nothing to review")
    for item in items:
        console.print(
            f"{item.input_sha256}  [{item.state}]  {item.thumbnail or '(no thumbnail)'}  {item.reason}"
        )


def _decide(action: str, sha: str, quarantine: Path | None, key_file: Path | None, output: Path | None,
            profile: str | None, config: Path | None) -> None:  # fmt: skip
    from curata.collect.deid.batch import review_decide
    from curata.collect.deid.engine import Deidentifier
    from curata.collect.deid.profile import load_profile

    qdir = _review_quarantine(quarantine, key_file)
    deid = None
    if action != "drop":
        if key_file is None or output is None:
            raise typer.BadParameter(f"{action} needs --key-file and --output")
        deid = Deidentifier(read_key_file(key_file), load_profile(profile, config))
    item = review_decide(qdir, sha, action, deid=deid, output=output)
    console.print(f"{sha}: {item.state}" + (f" -> {output / item.output}" if item.output and output else ""))


_SHA = typer.Argument(..., help="The input's sha256, from `curata deid-review list`.")
_Q = typer.Option(None, "--quarantine", help="The quarantine folder (default: beside the vault).")
_K = typer.Option(None, "--key-file", help="The site secret.")
_O = typer.Option(None, "--output", help="The OUTPUT folder of the de-identification run.")
_P = typer.Option(None, "--profile", help="The profile of that run.")
_C = typer.Option(None, "--config", help="The TOML of that run.")


@review_app.command("accept")
def review_accept(sha: str = _SHA, quarantine: Path | None = _Q, key_file: Path | None = _K,
                  output: Path | None = _O, profile: str | None = _P, config: Path | None = _C) -> None:  # fmt: skip
    """A person looked: no burned-in text. Release the pixels as they are (cleared by review)."""
    _decide("accept", sha, quarantine, key_file, output, profile, config)


@review_app.command("mask")
def review_mask(sha: str = _SHA, quarantine: Path | None = _Q, key_file: Path | None = _K,
                output: Path | None = _O, profile: str | None = _P, config: Path | None = _C) -> None:  # fmt: skip
    """Release with the header and footer bands masked (12% and 10% of the height)."""
    _decide("mask", sha, quarantine, key_file, output, profile, config)


@review_app.command("drop")
def review_drop(sha: str = _SHA, quarantine: Path | None = _Q, key_file: Path | None = _K) -> None:
    """Never release it; the input and its thumbnail are deleted from the quarantine."""
    _decide("drop", sha, quarantine, key_file, None, None, None)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("deid")(deid)
    app.add_typer(review_app, name="deid-review")
