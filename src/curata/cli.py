"""The ``curata`` command line: one command group per stage, over the same stage services as the server.

Stage modules add their commands through a ``register(app)`` function in ``curata/<stage>/cli.py``;
this module holds no stage logic of its own.
"""

from __future__ import annotations

import sys

import typer

from curata import __version__, cli_common
from curata.console import err_console, guard_library_output
from curata.errors import CurataError

app = typer.Typer(
    name="curata",
    help="Curata: hospital medical images to ready-to-use, de-identified AI datasets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"curata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Curata keeps a workspace: a catalog of everything ingested and a content-addressed store."""


workspace_option = cli_common.workspace_option  # kept for stage modules that import it from here


# --- stage registrations (each stage owns its commands) ------------------------------------
from curata.catalog import cli as _catalog_cli  # noqa: E402
from curata.collect import cli as _collect_cli  # noqa: E402

_catalog_cli.register(app)
_collect_cli.register(app)
from curata.demo import cli as _demo_cli  # noqa: E402

_demo_cli.register(app)
from curata.preprocess import cli as _preprocess_cli  # noqa: E402

_preprocess_cli.register(app)
from curata.collect.deid import cli as _deid_cli  # noqa: E402

_deid_cli.register(app)
from curata.ledger import cli as _ledger_cli  # noqa: E402

_ledger_cli.register(app)
from curata.publish import cli as _publish_cli  # noqa: E402

_publish_cli.register(app)
from curata.select import cli as _select_cli  # noqa: E402

_select_cli.register(app)
from curata.collect import gateway_cli as _gateway_cli  # noqa: E402
from curata.collect.clinical import cli as _clinical_cli  # noqa: E402

_clinical_cli.register(app)

_gateway_cli.register(app)
from curata import config_cli as _config_cli  # noqa: E402

_config_cli.register(app)
from curata.server import cli as _server_cli  # noqa: E402

_server_cli.register(app)
from curata.annotate import cli as _annotate_cli  # noqa: E402

_annotate_cli.register(app)
# ------------------------------------------------------------------------------------------------


def main() -> None:
    guard_library_output()
    try:
        app()
    except CurataError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            err_console.print(f"  [dim]hint:[/] {exc.hint}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
