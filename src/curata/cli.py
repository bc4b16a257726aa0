"""The ``curata`` command line: one command group per stage, over the same stage services as the server.

Stage modules add their commands through a ``register(app)`` function in ``curata/<stage>/cli.py``;
this module holds no stage logic of its own. ``main()`` registers only the stage a command needs
when it names one that stands alone (``curata deid`` at the edge: no catalog, no SQLAlchemy, no
server imported); ``app`` (for tests and ``--help``) holds every stage, built on first use.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from curata import __version__, _pydicom_import
from curata.console import err_console, guard_library_output
from curata.errors import CurataError, safe_reason

if TYPE_CHECKING:
    app: typer.Typer


def _version(value: bool) -> None:
    if value:
        typer.echo(f"curata {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Curata keeps a workspace: a catalog of everything ingested and a content-addressed store."""


def _register_deid(app: typer.Typer) -> None:
    from curata.collect.deid import cli as _deid_cli

    _deid_cli.register(app)


def _register_all(app: typer.Typer) -> None:
    # --- stage registrations (each stage owns its commands), in the order of `curata --help` ---
    from curata.catalog import cli as _catalog_cli
    from curata.collect import cli as _collect_cli

    _catalog_cli.register(app)
    _collect_cli.register(app)
    from curata.demo import cli as _demo_cli

    _demo_cli.register(app)
    from curata.preprocess import cli as _preprocess_cli

    _preprocess_cli.register(app)
    _register_deid(app)
    from curata.ledger import cli as _ledger_cli

    _ledger_cli.register(app)
    from curata.publish import cli as _publish_cli

    _publish_cli.register(app)
    from curata.select import cli as _select_cli

    _select_cli.register(app)
    from curata.collect import gateway_cli as _gateway_cli
    from curata.collect.clinical import cli as _clinical_cli

    _clinical_cli.register(app)

    _gateway_cli.register(app)
    from curata import config_cli as _config_cli

    _config_cli.register(app)
    from curata.server import cli as _server_cli

    _server_cli.register(app)
    from curata.annotate import cli as _annotate_cli

    _annotate_cli.register(app)


# Commands whose stage registers them alone: the command line builds only that stage for them.
_STANDALONE: dict[str, Callable[[typer.Typer], None]] = {
    "deid": _register_deid,
    "keygen": _register_deid,
    "deid-review": _register_deid,
}


def build_app(command: str | None = None) -> typer.Typer:
    """The command line with every stage, or with only ``command``'s stage where it stands alone."""
    built = typer.Typer(
        name="curata",
        help="Curata: hospital medical images to ready-to-use, de-identified AI datasets.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    built.callback()(_root)
    _STANDALONE.get(command or "", _register_all)(built)
    return built


def __getattr__(name: str) -> Any:
    """``app`` (every stage) and ``workspace_option`` (kept for stage modules that import it from
    here), built or imported on first use."""
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    if name == "workspace_option":
        from curata import cli_common

        return cli_common.workspace_option
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    guard_library_output()
    _pydicom_import.install()  # pydicom, when a command imports it, without its network and progress-bar imports
    args = sys.argv[1:]
    command = args[0] if args and args[0] in _STANDALONE else None
    if command == "deid":
        # what its start-up makes (modules, tables, the profile) lives as long as the command: the
        # collector would walk it again and again for nothing. The command freezes it and starts the
        # collector before its first file (curata.collect.deid.cli).
        gc.disable()
    try:
        build_app(command)()
    except CurataError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            err_console.print(f"  [dim]hint:[/] {exc.hint}")
        sys.exit(exc.exit_code)
    except Exception as exc:
        # an error no stage turned into its own (a bug, or an input no check foresaw): Python's report
        # would print its message, which may quote the input (a name, an ID), on the console and in
        # a service's log. Its type and where it happened only; the whole report on request.
        if os.environ.get("CURATA_TRACEBACK") == "1":
            raise
        err_console.print(f"[bold red]error:[/] {safe_reason(exc)}")
        err_console.print(
            "  [dim]hint:[/] CURATA_TRACEBACK=1 shows the whole report (it may quote input data)"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
