"""Help text shows a settings section as written: ``[gateway]`` in an option's help was read as rich
markup and vanished (``curata gateway serve --help`` showed ``(default:  ae_title)``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from curata.cli import build_app

_BRACKETED = re.compile(r"\[+[^\[\]\s]+\]+")
_BOX = re.compile(r"[│╭╮╰╯─]+")


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under ``group`` (Typer's own click: no ``click.Group`` to test against)."""
    out = [(path, group)]
    if hasattr(group, "commands"):
        for name, sub in sorted(group.commands.items()):
            out += _commands(sub, (*path, name))
    return out


def _flat(text: str) -> str:
    return " ".join(_BOX.sub(" ", text).split())


def _expected(command: Any) -> list[str]:
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    return [m for t in texts for m in _BRACKETED.findall(" ".join(t.split()))]


ROOT = typer.main.get_command(build_app())
SHOWN = [(path, cmd) for path, cmd in _commands(ROOT) if _expected(cmd)]


def test_commands_with_a_section_in_their_help_are_found() -> None:
    paths = {" ".join(p) for p, _ in SHOWN}
    assert {"gateway serve", "gateway pull", "ingest"} <= paths, paths


@pytest.mark.parametrize(("path", "command"), SHOWN, ids=[" ".join(p) for p, _ in SHOWN])
def test_help_shows_bracketed_words_as_written(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(build_app(), [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    missing = [b for b in _expected(command) if b not in shown]
    assert not missing, f"curata {' '.join(path)} --help lost {missing}"


def test_gateway_serve_names_its_section() -> None:
    result = CliRunner().invoke(build_app(), ["gateway", "serve", "--help"], env={"COLUMNS": "250"})
    shown = _flat(result.output)
    assert "(default: [gateway] ae_title)" in shown and "(default: [gateway] port, 11112)" in shown
    assert "[gateway] processes" in shown and "[gateway] bind" in shown
