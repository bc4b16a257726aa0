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
    serve: bool = typer.Option(False, "--serve", help="Then start the platform (curata serve) on it."),
    serve_only: bool = typer.Option(
        False, "--serve-only", help="Start the platform on the last demo's workspace, without re-running it."
    ),
    port: int = typer.Option(8400, "--port", help="Port for --serve."),
) -> None:
    """Run the whole path end to end on the embedded defaults and print where the results are."""
    from curata.demo.runner import run_demo

    if not serve_only:
        ctx = run_demo(out, patients=patients, sites=sites, size=size, seed=seed, workers=workers or None)
        failed = [k for k, v in ctx.results.items() if v.get("status") not in ("ok",)]
        if failed:
            raise typer.Exit(1)
    _announce(out.resolve(), port)
    if serve or serve_only:
        from curata.server import serve as serve_platform

        serve_platform(
            host="127.0.0.1",
            port=port,
            tls_cert=None,
            tls_key=None,
            allow_plain_http=False,
            verified=False,
            public_url="",
            no_viewer=False,
            workspace=out.resolve() / "workspace",
        )


def _announce(out: Path, port: int) -> None:
    from curata.console import console

    accounts = out / "accounts.txt"
    if not accounts.exists():
        return
    console.rule("[bold]the platform")
    console.print(f"URL: [bold]http://127.0.0.1:{port}/ui/[/]  (project 'demo'; the viewer at /)")
    console.print(
        f"start it: curata demo --serve-only --out {out}   (or: curata serve -w {out / 'workspace'})"
    )
    console.print(f"accounts (passwords also in {accounts}, mode 0600):")
    for line in accounts.read_text().splitlines()[1:]:
        console.print("  " + line.replace("\t", "   "))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
