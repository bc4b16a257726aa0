"""The reading routes on the platform's accounts: the reader is the signed-in user (a ``?user=`` is
ignored), an annotation project the platform project does not hold is not found (IDOR), and a
session's form without its CSRF token is refused."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from curata import annotate
from tests.annotate.conftest import PASSWORD, on_platform


def test_reader_is_the_signed_in_user_and_other_projects_are_not_found(project: Any) -> None:
    from curata.server import create_app

    ws = project
    annotate.assign(ws, "livers")
    annotate.create_project(ws, "elsewhere", "ct")  # held by no platform project
    tokens = on_platform(ws, "livers")
    with TestClient(create_app(ws), follow_redirects=False) as client:
        ana = {"Authorization": f"Bearer {tokens['ana']}"}
        mine = client.get("/projects/lab/annotate/livers/queue", params={"user": "bo"}, headers=ana).json()
        assert [t["id"] for t in mine] == [t.id for t in annotate.queue(ws, "livers", "ana")]
        assert {t["id"] for t in mine} != {t.id for t in annotate.queue(ws, "livers", "bo")}
        for path in ("/projects/lab/annotate/elsewhere/status", "/ui/p/lab/reading/elsewhere/"):
            r = client.get(path, headers={"Authorization": f"Bearer {tokens['dee']}"})
            assert r.status_code == 404 and "for you" in r.text
        # a reader cannot open a task that is not theirs
        other = next(t for t in annotate.list_tasks(ws, "livers") if "ana" not in t.readers)
        assert client.get(f"/ui/p/lab/reading/livers/tasks/{other.id}", headers=ana).status_code == 404
        # a site account is refused the reading pages and the MONAI Label API
        sam = {"Authorization": f"Bearer {tokens['sam']}"}
        assert client.get("/ui/p/lab/reading/livers/", headers=sam).status_code == 403
        assert client.get("/projects/lab/annotate/livers/monailabel/info", headers=sam).status_code == 403
        # a signed-in browser's form needs its session's CSRF token
        client.get("/ui/login")
        csrf = client.cookies.get("curata_login_csrf")
        r = client.post(
            "/ui/login", data={"username": "dee", "password": PASSWORD, "csrf_token": csrf, "next": "/ui/"}
        )
        assert r.status_code == 303
        assert client.post("/ui/p/lab/reading/livers/assign").status_code == 403
        page = client.get("/ui/p/lab/reading/livers/").text
        token = page.split('name="csrf-token" content="')[1].split('"')[0]
        done = client.post("/ui/p/lab/reading/livers/assign", data={"csrf_token": token})
        assert done.status_code == 303 and "flash=" in done.headers["location"]
