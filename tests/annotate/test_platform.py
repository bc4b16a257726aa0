"""The reading routes on the platform's accounts: the reader is the signed-in user (a ``?user=`` is
ignored), an annotation project the platform project does not hold is not found (IDOR), and a
session's form without its CSRF token is refused."""

from __future__ import annotations

import re
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


def test_a_blinded_read_is_hidden_through_every_project_over_its_site(project: Any) -> None:
    """Outside review 11, F6: ana's read, STOWed through ``lab`` (which holds the blinded reading),
    was found by chi (the case's other reader) and by eve (no reader at all) through ``other``, a
    project over the same sites holding no reading. Blinding is global now: every DICOMweb read route
    and the catalog page of every project hide it, except from ana, the reading's managers and
    adjudicator, and a platform admin."""
    import io

    import numpy as np
    import pydicom

    from curata.collect.dicomweb import multipart
    from curata.server import create_app, service
    from tests.server.test_role_matrix import _DW_READ

    ws = project
    annotate.assign(ws, "livers")
    tokens = on_platform(ws, "livers")
    service.create_project(ws, "other", title="Other")
    for site in ("site-a", "site-b"):
        service.add_resource(ws, "other", "site", site)
    service.set_role(ws, "chi", "other", "reviewer")
    service.set_role(ws, "ana", "other", "annotator")
    service.set_role(ws, "dee", "other", "annotator")  # curator of lab, which holds livers: a manager
    for user, role in (("eve", "annotator"), ("olga", "admin")):  # of `other` only, reading nothing
        service.create_user(ws, user, PASSWORD)
        service.set_role(ws, user, "other", role)
        tokens[user] = service.create_token(ws, user, "test").token
    service.create_user(ws, "root", PASSWORD, platform_admin=True)
    tokens["root"] = service.create_token(ws, "root", "test").token
    task = next(t for t in annotate.list_tasks(ws, "livers") if {"ana", "chi"} <= set(t.readers))
    shape = annotate.series_grid(ws, task.series_uid).shape
    drawn = np.zeros(shape, np.uint8)
    drawn[:, 4:12, 4:12] = 1
    seg = annotate.seg_for(ws, "livers", task.id, drawn, reader="ana")
    body, ctype = multipart.encode([({}, seg)])
    stored = pydicom.dcmread(io.BytesIO(seg))

    def auth(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[user]}"}

    with TestClient(create_app(ws), follow_redirects=False) as client:
        r = client.post(
            "/projects/lab/dicomweb/studies", content=body, headers={**auth("ana"), "Content-Type": ctype}
        )
        assert r.status_code == 200, r.text
        assert [x.reader for x in annotate.visible_reads(ws, "livers", task.id, "dee")] == ["ana"]
        uids = {
            "study_uid": task.study_uid,
            "series_uid": str(stored.SeriesInstanceUID),
            "sop_uid": str(stored.SOPInstanceUID),
            "tag": "7FE00010",
            "frames": "1",
        }
        leaks: list[str] = []
        for who, projects in (("chi", ("lab", "other")), ("eve", ("other",)), ("olga", ("other",))):
            for proj in projects:
                for suffix in _DW_READ:
                    path = f"/projects/{proj}/dicomweb" + re.sub(
                        r"\{(\w+)\}", lambda m: uids[m.group(1)], suffix
                    )
                    got = client.get(path, headers=auth(who))
                    shown = (
                        uids["series_uid"].encode() in got.content or uids["sop_uid"].encode() in got.content
                    )
                    # a WADO route naming the read answers 404; a search (QIDO) finds nothing
                    named = "{series_uid}" in suffix and not suffix.endswith("/instances")
                    if got.status_code >= 500 or shown or (named and got.status_code != 404):
                        leaks.append(f"{who} via {proj}: GET {suffix}: {got.status_code}")
            page = client.get(f"/ui/p/{projects[-1]}/catalog", headers=auth(who))
            if uids["series_uid"] in page.text:
                leaks.append(f"{who}: the catalog page of {projects[-1]} lists the read")
        assert not leaks, "\n".join(leaks)
        # who may see it does, through `other` too: its reader, lab's curator (livers' adjudicator), root
        metadata = f"/projects/other/dicomweb/studies/{task.study_uid}/series/{uids['series_uid']}/metadata"
        for who in ("ana", "dee", "root"):
            assert client.get(metadata, headers=auth(who)).status_code == 200, who
