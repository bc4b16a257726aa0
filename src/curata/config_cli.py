"""``curata config show``: every setting, its effective value and where it came from."""

from __future__ import annotations

import typer

from curata.cli_common import WorkspaceOpt, finish, open_workspace
from curata.settings import describe

config_app = typer.Typer(help="The settings (curata.toml and CURATA_* variables).", no_args_is_help=True)


@config_app.command("show")
def show(
    section: str = typer.Argument(None, help="Only this section (site, runtime, gateway...)."),
    workspace: WorkspaceOpt = None,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Print the effective settings: value and source (default, curata.toml or env VAR) of each."""
    ws = open_workspace(workspace)
    rows = [
        {"setting": r.key, "value": r.value, "source": r.source, "meaning": r.description}
        for r in describe(ws.settings, ws.setting_sources)
        if section is None or r.key.split(".", 1)[0] == section
    ]
    finish(rows, as_json=as_json, title=f"settings of {ws.root}")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
