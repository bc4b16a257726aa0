"""`curata annotate ...` end to end on a real workspace: project, schema from TOML, readers, tasks,
assignment, status; errors exit non-zero with a hint."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from curata.cli import app

SCHEMA = """
instructions = "Outline every lesion."
[[label]]
name = "lesion"
value = 1
code = "52988006"
meaning = "Lesion"
colour = "#ff0000"
"""


def test_annotate_commands(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = str(project.root)
    run = CliRunner().invoke
    schema = tmp_path / "schema.toml"
    schema.write_text(SCHEMA)
    assert run(app, ["annotate", "project", "create", "lesions", "--cohort", "ct", "-w", ws]).exit_code == 0
    r = run(app, ["annotate", "schema", "lesions", str(schema), "-w", ws])
    assert r.exit_code == 0 and "v1" in r.output
    for user in ("ana", "bo"):
        assert run(app, ["annotate", "reader", "add", "lesions", user, "-w", ws]).exit_code == 0
    assert "3 new task" in run(app, ["annotate", "tasks", "lesions", "--create", "-w", ws]).output
    load = json.loads(run(app, ["annotate", "assign", "lesions", "--json", "-w", ws]).output)
    assert {row["reader"]: row["cases"] for row in load} == {"ana": 3, "bo": 3}
    queue = json.loads(run(app, ["annotate", "queue", "lesions", "ana", "--json", "-w", ws]).output)
    assert len(queue) == 3 and all(q["state"] == "to_do" for q in queue)
    st = json.loads(run(app, ["annotate", "status", "lesions", "--json", "-w", ws]).output)
    assert st["tasks"] == 3 and st["to_do"] == 3 and st["reads"] == 0
    bad = run(app, ["annotate", "project", "create", "x", "--cohort", "nope", "-w", ws])
    assert bad.exit_code != 0


def test_project_created_in_a_platform_project(project) -> None:  # type: ignore[no-untyped-def]
    from curata.server import service

    service.create_project(project, "lab")
    ws = str(project.root)
    r = CliRunner().invoke(
        app, ["annotate", "project", "create", "lungs", "--cohort", "ct", "--in", "lab", "-w", ws]
    )
    assert r.exit_code == 0, r.output
    assert service.get_project(project, "lab").annotations == ["lungs"]
