"""What every stage's ``cli.py`` shares: the ``--workspace`` option and the epilogue of a command.

from curata.cli_common import WorkspaceOpt, finish, open_workspace

def run(workspace: WorkspaceOpt = None, as_json: bool = False) -> None:
    summary = service.run(open_workspace(workspace))    # a typed record, never printed by the service
    finish(summary, as_json=as_json)                    # renders, prints errors, sets the exit code
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from curata.console import RunSummary, console, err_console, print_json, print_table

WORKSPACE_HELP = "Workspace folder (default: $CURATA_WORKSPACE or the enclosing one)."
WORKSPACE_FLAGS = ("--workspace", "-w")  # the one spelling of the option, for every command

# Every command takes ``workspace: WorkspaceOpt = None`` (or ``= workspace_option()``).
WorkspaceOpt = Annotated[Path | None, typer.Option(*WORKSPACE_FLAGS, help=WORKSPACE_HELP)]


def workspace_option() -> Any:
    """The same option as :data:`WorkspaceOpt`, for commands written as ``= workspace_option()``."""
    return typer.Option(None, *WORKSPACE_FLAGS, help=WORKSPACE_HELP)


def open_workspace(path: Path | None) -> Any:
    """The workspace named by --workspace, $CURATA_WORKSPACE or the enclosing folder."""
    from curata.workspace import Workspace

    return Workspace.find(path)


def as_data(result: Any) -> Any:
    """A service result as plain data: dataclasses, Pydantic records, RunSummary, lists and dicts."""
    from pydantic import BaseModel

    if isinstance(result, RunSummary):
        return result.as_dict()
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if isinstance(result, Mapping):
        return {k: as_data(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [as_data(v) for v in result]
    return result


def finish(
    result: Any,
    *,
    as_json: bool = False,
    title: str | None = None,
    errors: Iterable[str] = (),
    failed: bool | None = None,
) -> None:
    """Render ``result``, print ``errors`` (to stderr), and exit 1 when the command failed.

    A :class:`RunSummary` renders as its table and decides ``failed`` itself; a list of records renders
    as a table, one record as a two-column table. ``failed`` overrides the decision.
    """
    errors = list(errors)
    if isinstance(result, RunSummary):
        result.render(as_json=as_json)
        failed = result.failed if failed is None else failed
    elif as_json:
        print_json(as_data(result))
    else:
        data = as_data(result)
        if isinstance(data, list):
            print_table(data, title=title)
        elif isinstance(data, Mapping):
            print_table([{"what": k, "value": v} for k, v in data.items()], title=title)
        elif data is not None:
            console.print(data)
    for line in errors:
        err_console.print(f"[red]{escape(line)}[/]")
    if failed or (failed is None and errors):
        raise typer.Exit(1)
