"""`curata user ...` and `curata project ...`: accounts and projects from the command line."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from curata.cli import app
from curata.server import service


def test_user_and_project_commands(workspace: Any) -> None:
    run = CliRunner()
    w = ["--workspace", str(workspace.root)]
    r = run.invoke(app, ["user", "add", "alice", "--password-stdin", *w], input="a long password here\n")
    assert r.exit_code == 0, r.output
    r = run.invoke(app, ["user", "add", "bob", "--password-stdin", *w], input="short\n")
    assert r.exit_code != 0 and "at least" in str(r.exception or r.output)
    assert run.invoke(app, ["project", "add", "lung", "--site", "test-site", *w]).exit_code == 0
    r = run.invoke(app, ["user", "role", "alice", "lung", "curator", *w])
    assert r.exit_code == 0 and "curator" in r.output
    r = run.invoke(app, ["user", "role", "alice", "lung", "wizard", *w])
    assert r.exit_code != 0 and "unknown role" in str(r.exception)
    r = run.invoke(app, ["user", "ls", "--json", *w])
    assert '"lung: curator"' in r.output
    r = run.invoke(app, ["user", "token", "alice", *w])
    token = r.output.strip()
    assert token.startswith("cur_") and service.principal_from_token(workspace, token).username == "alice"  # type: ignore[union-attr]
    r = run.invoke(app, ["user", "passwd", "alice", "--password-stdin", *w], input="another long password\n")
    assert r.exit_code == 0
    assert service.authenticate(workspace, "alice", "another long password").roles == {"lung": ["curator"]}
    r = run.invoke(app, ["project", "show", "lung", "--json", *w])
    assert '"sites": [\n    "test-site"' in r.output
    assert {e.action for e in service.audit_events(workspace)} >= {"project-created", "role-granted"}
