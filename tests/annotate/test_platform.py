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


def test_a_derived_object_no_read_files_stays_hidden_from_the_cases_readers(project: Any) -> None:
    """A SEG stored by someone not assigned to the case (a curator drawing in OHIF) is filed as no
    read; while the case is open in a blinded project its readers cannot find it, the curator can."""
    import numpy as np

    from curata.collect.dicomweb import multipart
    from curata.server import create_app

    ws = project
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    task = next(t for t in annotate.list_tasks(ws, "livers") if "ana" in t.readers)
    shape = annotate.series_grid(ws, task.series_uid).shape
    drawn = np.zeros(shape, np.uint8)
    drawn[:, 4:12, 4:12] = 1
    seg = annotate.seg_for(ws, "livers", task.id, drawn, reader="dee")
    body, ctype = multipart.encode([({}, seg)])

    def seg_series(client: TestClient, user: str) -> int:
        r = client.get(
            f"/projects/lab/dicomweb/studies/{task.study_uid}/series",
            params={"Modality": "SEG"},
            headers={"Authorization": f"Bearer {tokens[user]}"},
        )
        assert r.status_code in (200, 204), r.text
        return len(r.json()) if r.status_code == 200 else 0

    with TestClient(create_app(ws), follow_redirects=False) as client:
        stored = client.post(
            "/projects/lab/dicomweb/studies",
            content=body,
            headers={"Authorization": f"Bearer {tokens['dee']}", "Content-Type": ctype},
        )
        assert stored.status_code == 200, stored.text
        assert all(r.reader != "dee" for r in annotate.visible_reads(ws, "livers", task.id, "dee"))  # no read
        assert seg_series(client, "dee") == 1  # the curator sees what she stored
        assert seg_series(client, "ana") == 0  # the case's reader does not, while the case is open
