"""Every route of the app against every role: allowed where the table says so, refused everywhere else.

The route list comes from the app itself, so a new route without a line in EXPECTED fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from curata.server.app import create_app, route_table

ANON = "anon"
MEMBERS = {"adm", "cur", "ann", "rev", "hos", "lic", "root", "ann2"}  # of alpha (root: platform admin)
SIGNED_IN = {*MEMBERS, "outsider"}
EVERYONE = {ANON, "service", *SIGNED_IN}  # public routes
WRITERS = {"adm", "cur", "ann", "rev", "hos", "root", "ann2"}  # STOW: every working role, not a licensee
PROJECT_ADMINS = {"adm", "root"}
PLATFORM = {"root"}

DW = "/projects/{project}/dicomweb"
GW = "/dicomweb"
_DW_READ = [
    "/instances",
    "/series",
    "/studies",
    "/studies/{study_uid}",
    "/studies/{study_uid}/instances",
    "/studies/{study_uid}/metadata",
    "/studies/{study_uid}/series",
    "/studies/{study_uid}/series/{series_uid}",
    "/studies/{study_uid}/series/{series_uid}/instances",
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata/{tag}",
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frames}",
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata",
    "/studies/{study_uid}/series/{series_uid}/metadata",
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered",
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/thumbnail",
    "/studies/{study_uid}/series/{series_uid}/thumbnail",
    "/studies/{study_uid}/series/{series_uid}/rendered",
]
_DW_WRITE = ["/studies", "/studies/{study_uid}"]

EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): EVERYONE,
    # accounts API
    ("POST", "/api/session"): EVERYONE,
    ("DELETE", "/api/session"): SIGNED_IN,
    ("GET", "/api/me"): SIGNED_IN,
    ("POST", "/api/tokens"): SIGNED_IN,
    ("GET", "/api/projects"): SIGNED_IN,
    ("POST", "/api/projects"): PLATFORM,
    ("GET", "/api/projects/{project}"): MEMBERS,
    ("POST", "/api/projects/{project}/members"): PROJECT_ADMINS,
    ("POST", "/api/projects/{project}/resources"): PROJECT_ADMINS,
    ("POST", "/api/projects/{project}/licences"): PROJECT_ADMINS,
    ("GET", "/api/users"): PLATFORM,
    ("POST", "/api/users"): PLATFORM,
    ("GET", "/api/audit"): PLATFORM,
    # pages
    ("GET", "/ui/static/{name}"): EVERYONE,
    ("GET", "/ui/login"): EVERYONE,
    ("POST", "/ui/login"): EVERYONE,
    ("POST", "/ui/logout"): SIGNED_IN,
    ("GET", "/ui/"): SIGNED_IN,
    ("GET", "/ui/p/{project}/"): MEMBERS,
    ("GET", "/ui/p/{project}/catalog"): MEMBERS - {"lic"},
    ("GET", "/ui/p/{project}/qc"): {"adm", "cur", "rev", "root"},
    ("POST", "/ui/p/{project}/qc/override"): {"adm", "cur", "root"},
    ("GET", "/ui/p/{project}/cohorts"): {"adm", "cur", "root"},
    ("POST", "/ui/p/{project}/cohorts"): {"adm", "cur", "root"},
    ("GET", "/ui/p/{project}/runs"): {"adm", "cur", "root"},
    ("GET", "/ui/p/{project}/releases"): MEMBERS - {"ann", "ann2"},
    ("GET", "/ui/p/{project}/releases/{ref}"): MEMBERS - {"ann", "ann2"},
    ("GET", "/ui/p/{project}/releases/{ref}/card"): MEMBERS - {"ann", "ann2"},
    ("GET", "/ui/p/{project}/releases/{ref}/download"): {"lic"},  # a licence holder's own copy only
    ("GET", "/ui/p/{project}/ledger"): MEMBERS,
    ("GET", "/ui/p/{project}/ledger/{index}"): MEMBERS,
    ("GET", "/ui/p/{project}/revenue"): {"adm", "hos", "root"},
    # the viewer (static build: public files; its config and root need a session)
    ("GET", "/app-config.js"): EVERYONE,
    ("GET", "/"): SIGNED_IN,
    ("GET", "/{path:path}"): EVERYONE,
}
for suffix in _DW_READ:
    EXPECTED[("GET", DW + suffix)] = MEMBERS
    EXPECTED[("GET", GW + suffix)] = PLATFORM | {"service"}
# the annotation stage: readers (annotators, reviewers) read their own tasks, curators manage;
# site and licensee accounts, the gateway's shared token and other projects' members are refused.
# ann2, an annotator of alpha who reads nothing in ``reads``, sees its labels and models (and its
# pages' frames), never its tasks or their state; drafts are hidden in ``reads`` (show_drafts off),
# so only its curators draft
MEMBER_WORK = {"adm", "cur", "ann", "rev", "root", "ann2"}
WORK = {"adm", "cur", "ann", "rev", "root"}  # the reading project's readers and curators
MANAGE = {"adm", "cur", "root"}
READ = {"ann", "rev"}  # a task's own readers (an admin who reads no task of it is refused, 404)
AN = "/projects/{project}/annotate/{reading}"
RD = "/ui/p/{project}/reading"
for method, path, who_may in [
    ("GET", AN + "/monailabel/auth/", EVERYONE),  # MONAI Label's "auth enabled?"
    ("GET", AN + "/monailabel/auth", EVERYONE),
    ("POST", AN + "/monailabel/auth/token", EVERYONE),  # a password sign-in: a short-lived API token
    ("GET", AN + "/monailabel/auth/token/valid", MEMBER_WORK),
    ("GET", AN + "/monailabel/info/", MEMBER_WORK),
    ("GET", AN + "/monailabel/info", MEMBER_WORK),
    ("POST", AN + "/monailabel/infer/{model}", MANAGE),
    ("GET", AN + "/monailabel/datastore/", WORK),
    ("GET", AN + "/monailabel/datastore", WORK),
    ("POST", AN + "/monailabel/activelearning/{strategy}", WORK),
    ("POST", AN + "/monailabel/train/{model}", MANAGE),
    ("GET", AN + "/status", WORK),
    ("GET", AN + "/queue", WORK),
    ("GET", AN + "/tasks/{task_id}/reads", WORK),
    ("POST", AN + "/file", MANAGE),
    ("GET", RD, MEMBER_WORK),
    ("GET", RD + "/{reading}/", MEMBER_WORK),
    ("POST", RD + "/{reading}/assign", MANAGE),
    ("POST", RD + "/{reading}/agreement", MANAGE),
    ("POST", RD + "/{reading}/release", MANAGE),
    ("GET", RD + "/{reading}/tasks/{task_id}", WORK),
    ("POST", RD + "/{reading}/tasks/{task_id}/start", READ),
    ("POST", RD + "/{reading}/tasks/{task_id}/submit", READ),
    ("POST", RD + "/{reading}/tasks/{task_id}/report", READ),
    ("POST", RD + "/{reading}/reports/{report_id}/sign", {"adm", "rev", "root"}),  # the second reader
    ("GET", RD + "/{reading}/reports/{report_id}", WORK),
    ("GET", RD + "/{reading}/adjudication", MANAGE),
    ("POST", RD + "/{reading}/tasks/{task_id}/adjudicate", MANAGE),
]:
    EXPECTED[(method, path)] = who_may
for suffix in _DW_WRITE:
    EXPECTED[("POST", DW + suffix)] = WRITERS
    EXPECTED[("POST", GW + suffix)] = PLATFORM | {"service"}
# de-identified clinical and genomic batches (collect/router.py): the gateway's token or a platform
# admin, as STOW on /dicomweb; in a project, its site contributors and curators (and admins)
EXPECTED[("POST", "/clinical/batches")] = PLATFORM | {"service"}
EXPECTED[("POST", "/projects/{project}/clinical/batches")] = {"adm", "cur", "hos", "root"}

SERVICE_TOKEN = "gateway-shared-token"


def _bodies(role: str) -> dict[tuple[str, str], Any]:
    """Request bodies that succeed for an allowed caller (unique per role where they create things)."""
    return {
        ("POST", "/api/session"): {"json": {"username": "cur", "password": "correct horse battery"}},
        ("POST", "/api/tokens"): {"json": {"name": f"matrix-{role}"}},
        ("POST", "/api/projects"): {"json": {"name": f"gamma-{role}"}},
        ("POST", "/api/projects/{project}/members"): {"json": {"username": "spare", "role": "reviewer"}},
        ("POST", "/api/projects/{project}/resources"): {"json": {"kind": "cohort", "name": f"c-{role}"}},
        ("POST", "/api/projects/{project}/licences"): {"json": {"username": "lic", "release": "rel@1"}},
        ("POST", "/api/users"): {"json": {"username": f"new-{role}", "password": "another long password"}},
        ("POST", "/ui/login"): {"data": {"username": "cur", "password": "correct horse battery"}},
        ("POST", "/ui/p/{project}/qc/override"): {
            "data": {"series_uid": "SERIES", "decision": "include", "reason": f"matrix {role}"}
        },
        ("POST", "/ui/p/{project}/cohorts"): {"data": {"name": f"m-{role}", "where": "modality = CT"}},
        ("POST", RD + "/{reading}/release"): {"data": {"release": f"labels-{role}"}},
        ("POST", AN + "/monailabel/auth/token"): {
            "data": {"username": "cur", "password": "correct horse battery"}
        },
        ("POST", RD + "/{reading}/tasks/{task_id}/report"): {
            "data": {"f-finding": "lesion present", "f-impression": f"matrix report of {role}"}
        },
        ("POST", RD + "/{reading}/tasks/{task_id}/adjudicate"): {"data": {"decision": "staple"}},
    }


def _fill(path: str, p: Any, sop: str) -> str:
    values = {
        "project": "alpha",
        "study_uid": p.studies["site-a"],
        "series_uid": p.series["site-a"],
        "sop_uid": sop,
        "tag": "7FE00010",
        "frames": "1",
        "name": "curata.css",
        "ref": "rel@1",
        "index": str(p.alpha_entry),
        "path:path": "viewer",
        "model": "body",
        "strategy": "random",
        "task_id": "1",
        "reading": "reads",
        "report_id": "1",
    }
    return re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)


def _refused(r: Any) -> bool:
    if r.status_code in (401, 403):
        return True
    if r.request.method == "GET" and r.status_code == 303 and "/ui/login" in r.headers.get("location", ""):
        return True
    return r.status_code == 404 and "for you" in r.text


@pytest.fixture
def app_and_platform(platform: Any, tmp_path: Path) -> tuple[Any, Any]:
    from curata.server import service

    dist = tmp_path / "ohif-dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>OHIF</title>")
    service.add_resource(platform.ws, "alpha", "release", "rel")
    # adm widens alpha only by what they reach elsewhere: the cohort of their other project, delta
    service.create_project(platform.ws, "delta")
    service.set_role(platform.ws, "adm", "delta", "admin")
    service.add_resource(platform.ws, "delta", "cohort", "c-adm")
    service.create_user(platform.ws, "spare", "a spare long password")
    service.grant_licence(platform.ws, "lic", "alpha", "rel@1")
    service.create_user(platform.ws, "ann2", "another annotator password")
    service.set_role(platform.ws, "ann2", "alpha", "annotator")
    platform.tokens["ann2"] = service.create_token(platform.ws, "ann2", "test").token
    seen = service.record(platform.ws, "view-series", username="cur", target="x", project="alpha")
    platform.alpha_entry = seen.ledger_index  # an entry of alpha's log page
    _reading_project(platform)
    app = create_app(platform.ws, token=SERVICE_TOKEN, ohif_dir=dist, verified_deidentified=True)
    return app, platform


def _reading_project(platform: Any) -> None:
    """An annotation project ``reads`` on alpha's series, read by ``ann`` and ``rev`` (both reads in,
    ``ann``'s report written: report 1), held by alpha."""
    import numpy as np

    from curata import annotate
    from curata.select import create_cohort
    from curata.server import service

    ws = platform.ws
    create_cohort(ws, "alpha-ct", "site = site-a")
    annotate.create_project(ws, "reads", "alpha-ct")
    lesion = {"name": "lesion", "value": 1, "code": "52988006", "meaning": "Lesion"}
    annotate.set_schema(ws, "reads", [lesion], "Outline the lesion.")
    for reader in ("ann", "rev"):
        annotate.add_reader(ws, "reads", reader)
    annotate.create_tasks(ws, "reads")
    annotate.assign(ws, "reads")
    (task,) = annotate.list_tasks(ws, "reads")
    assert task.id == 1
    shape = annotate.series_grid(ws, task.series_uid).shape
    for reader, size in (("ann", 4), ("rev", 5)):
        lm = np.zeros(shape, np.uint16)
        lm[:, 2:size, 2:size] = 1
        annotate.file_labelmap(ws, "reads", 1, reader, lm, source="test")
        annotate.submit(ws, "reads", 1, reader, seconds=60)
    values = {"finding": "lesion present", "impression": "one small lesion"}
    assert annotate.write_report(ws, "reads", 1, "ann", values) == 1
    service.add_resource(ws, "alpha", "annotation", "reads")


def _check_entries(app: Any) -> None:
    routes = set(route_table(app))
    missing = sorted(routes - set(EXPECTED))
    assert not missing, f"routes without a line in the role matrix: {missing}"
    stale = sorted(set(EXPECTED) - routes)
    assert not stale, f"matrix lines for routes that no longer exist: {stale}"


def test_role_matrix(app_and_platform: tuple[Any, Any]) -> None:
    from sqlalchemy import select

    from curata.catalog import Instance, Series

    app, p = app_and_platform
    _check_entries(app)  # every route of the app has a line, and no line is stale
    with p.ws.catalog.session() as s:
        sop = s.scalar(
            select(Instance.sop_instance_uid)
            .join(Series, Instance.series_id == Series.id)
            .where(Series.series_uid == p.series["site-a"])
        )
    callers = [ANON, "service", *sorted(MEMBERS), "outsider"]
    wrong: list[str] = []
    checked = 0
    with TestClient(app, follow_redirects=False) as client:
        for method, path in route_table(app):
            allowed = EXPECTED[(method, path)]
            for who in callers:
                headers: dict[str, str] = {}
                if who == "service":
                    headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
                elif who != ANON:
                    headers.update(p.auth(who))
                kw = _bodies(who).get((method, path), {})
                if method == "POST" and ("dicomweb" in path or "clinical" in path):
                    kw = {"content": b"", "headers": {"Content-Type": "multipart/related; boundary=x"}}
                kw.setdefault("headers", {}).update(headers)
                client.cookies.clear()
                if (method, path) == ("POST", "/ui/login"):  # the form's own CSRF token and cookie
                    client.get("/ui/login")
                    kw = {"data": {**kw["data"], "csrf_token": client.cookies.get("curata_login_csrf")}}
                if "data" in kw and kw["data"].get("series_uid") == "SERIES":
                    kw["data"] = {**kw["data"], "series_uid": p.series["site-a"]}
                r = client.request(method, _fill(path, p, sop), **kw)
                checked += 1
                if r.status_code >= 500:
                    wrong.append(f"{who} {method} {path}: server error {r.status_code}")
                elif _refused(r) == (who in allowed):
                    want = "allowed" if who in allowed else "refused"
                    wrong.append(f"{who} {method} {path}: expected {want}, got {r.status_code} {r.text[:80]}")
    assert not wrong, "\n".join(wrong)
    assert checked == len(route_table(app)) * len(callers)


# -- widening a project's reach (POST /api/projects/{project}/resources) ------------------------------
# who may add each resource to alpha: adm is admin of alpha only; adm2 admin of alpha and of beta (which
# holds site-b, its series, cohort c-b, release rel-b and reading read-b); root a platform admin; cur a
# curator (not admin) of alpha and outsider no member of alpha are refused whatever the resource
WIDENERS = ["adm", "adm2", "cur", "outsider", "root"]


def _widening_cases(p: Any) -> list[tuple[str, str, set[str]]]:
    return [
        ("site", "site-b", {"adm2", "root"}),
        ("series", p.series["site-b"], {"adm2", "root"}),  # in beta's scope through its site
        ("cohort", "c-b", {"adm2", "root"}),
        ("release", "rel-b", {"adm2", "root"}),
        ("annotation", "read-b", {"adm2", "root"}),  # a reading: its managers see its blinded reads
        ("site", "site-z", {"root"}),  # in no project: only a platform admin pre-assigns a site
        ("site", "site-a", {"adm", "adm2", "root"}),  # alpha holds it already: nothing widens
    ]


@pytest.fixture
def two_admins(platform: Any) -> Any:
    from curata.select import create_cohort
    from curata.server import service

    ws = platform.ws
    service.create_user(ws, "adm2", "second admin password")
    for project in ("alpha", "beta"):
        service.set_role(ws, "adm2", project, "admin")
    platform.tokens["adm2"] = service.create_token(ws, "adm2", "test").token
    create_cohort(ws, "c-b", "site = site-b")
    for kind, name in (("cohort", "c-b"), ("release", "rel-b"), ("annotation", "read-b")):
        service.add_resource(ws, "beta", kind, name)
    return platform


def test_widening_a_project_needs_the_resource_in_reach_elsewhere(two_admins: Any) -> None:
    """Every resource kind against every caller: added only by a platform admin or the admin of another
    project that holds it (else 403 with alpha unchanged); removing it again is alpha's admin's right."""
    from curata.server import create_app, service

    p = two_admins
    wrong: list[str] = []
    with TestClient(create_app(p.ws), follow_redirects=False) as client:
        for kind, name, allowed in _widening_cases(p):
            for who in WIDENERS:
                before = service.get_project(p.ws, "alpha")
                r = client.post(
                    "/api/projects/alpha/resources", json={"kind": kind, "name": name}, headers=p.auth(who)
                )
                after = service.get_project(p.ws, "alpha")
                if who in allowed:
                    held = after.series if kind == "series" else getattr(after, f"{kind}s")
                    if r.status_code != 200 or name not in held:
                        wrong.append(f"{who} adding {kind} {name}: {r.status_code} {r.text[:80]}")
                    if after != before:  # put alpha back, as its admin may
                        gone = client.post(
                            "/api/projects/alpha/resources",
                            json={"kind": kind, "name": name, "remove": True},
                            headers=p.auth("adm"),
                        )
                        assert gone.status_code == 200, gone.text
                        assert service.get_project(p.ws, "alpha") == before
                else:
                    if r.status_code != (404 if who == "outsider" else 403):
                        wrong.append(f"{who} adding {kind} {name}: expected refused, got {r.status_code}")
                    if after != before:
                        wrong.append(f"{who} adding {kind} {name}: alpha changed though refused")
    assert not wrong, "\n".join(wrong)


def test_a_project_admin_cannot_take_another_projects_site(platform: Any) -> None:
    """Outside review 11, F6/F7's F7: adm (admin of alpha only) added beta's site to alpha and then
    read beta's studies, and so did alpha's annotator."""
    from curata.server import create_app, service

    p = platform
    beta_study = f"/projects/alpha/dicomweb/studies/{p.studies['site-b']}/metadata"
    with TestClient(create_app(p.ws), follow_redirects=False) as client:
        assert client.get(beta_study, headers=p.auth("adm")).status_code == 404
        r = client.post(
            "/api/projects/alpha/resources", json={"kind": "site", "name": "site-b"}, headers=p.auth("adm")
        )
        assert r.status_code == 403, r.text
        assert service.get_project(p.ws, "alpha").sites == ["site-a"]
        for who in ("adm", "ann"):
            assert client.get(beta_study, headers=p.auth(who)).status_code == 404
        # a platform admin may widen alpha; then its members read beta's site through it
        r = client.post(
            "/api/projects/alpha/resources", json={"kind": "site", "name": "site-b"}, headers=p.auth("root")
        )
        assert r.status_code == 200, r.text
        for who in ("adm", "ann"):
            assert client.get(beta_study, headers=p.auth(who)).status_code == 200


def test_a_reading_release_makes_no_new_version_of_another_projects_release(
    app_and_platform: tuple[Any, Any],
) -> None:
    """A release named like one another project holds would bring every version of it into alpha: the
    reading's release page refuses it (403, no version made) unless the caller reaches it elsewhere."""
    from curata.publish import list_releases
    from curata.server import service

    app, p = app_and_platform
    page = RD + "/reads/release"
    with TestClient(app, follow_redirects=False) as client:
        made = client.post(_fill(page, p, ""), data={"release": "shared"}, headers=p.auth("root"))
        assert made.status_code == 303, made.text
        service.remove_resource(p.ws, "alpha", "release", "shared")  # now beta's only
        service.add_resource(p.ws, "beta", "release", "shared")
        versions = [r.ref for r in list_releases(p.ws)]
        for who in ("cur", "adm"):
            r = client.post(_fill(page, p, ""), data={"release": "shared"}, headers=p.auth(who))
            assert r.status_code == 403, (who, r.status_code)
        assert [r.ref for r in list_releases(p.ws)] == versions
        assert "shared" not in service.get_project(p.ws, "alpha").releases
        fresh = client.post(_fill(page, p, ""), data={"release": "alpha-own"}, headers=p.auth("cur"))
        assert fresh.status_code == 303, fresh.text


# -- a licence that ended: expired, revoked, or its licensee role taken away and given back -----------------
# every route that serves a licensed release answers the licensee as for a release never licensed
# (404, "for you": its existence is not revealed) and the attempt is in the audit trail; an open grant
# of the same release serves (the control row)
LICENSED = [
    ("GET", "/ui/p/{project}/releases/{ref}"),
    ("GET", "/ui/p/{project}/releases/{ref}/card"),
    ("GET", "/ui/p/{project}/releases/{ref}/download"),
]
ENDED = ["open", "expired", "revoked", "revoked-over-http", "role-re-added"]


@pytest.mark.parametrize("case", ENDED)
def test_an_ended_licence_answers_as_none(stocked: Any, case: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from curata.server import service
    from curata.server.models import LicenceGrant

    p = stocked
    ws, ref = p.ws, p.release
    with TestClient(create_app(ws), follow_redirects=False) as client:
        if case == "expired":
            service.grant_licence(ws, "lic", "alpha", ref, expires_at=datetime.now(UTC) + timedelta(days=1))
            with ws.catalog.session() as s:  # a day later
                s.execute(update(LicenceGrant).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        elif case == "revoked":
            service.revoke_licence(ws, "lic", "alpha", ref)
        elif case == "revoked-over-http":
            body = {"username": "lic", "release": ref, "revoke": True}
            r = client.post("/api/projects/alpha/licences", json=body, headers=p.auth("adm"))
            assert r.status_code == 200 and r.json()["revoked_at"]
        elif case == "role-re-added":
            service.set_role(ws, "lic", "alpha", "licensee", remove=True)
            service.set_role(ws, "lic", "alpha", "licensee")
        before = len(service.audit_events(ws, action="licence-ended"))
        wrong = []
        for method, path in LICENSED:
            r = client.request(method, path.format(project="alpha", ref=ref), headers=p.auth("lic"))
            if case == "open":
                if r.status_code != 200:
                    wrong.append(f"{case} {path}: {r.status_code}")
            elif not (r.status_code == 404 and "for you" in r.text):
                wrong.append(f"{case} {path}: expected 404 as unlicensed, got {r.status_code}")
        assert not wrong, "\n".join(wrong)
        logged = len(service.audit_events(ws, action="licence-ended")) - before
        assert logged == (0 if case == "open" else len(LICENSED))
        # the licensee's DICOMweb scope is its open grants' series only
        r = client.get("/projects/alpha/dicomweb/series", headers=p.auth("lic"))
        listed = p.series["site-a"] in r.text
        assert listed == (case == "open"), (case, r.status_code)
        if case != "open":  # granting again is a new, explicit grant: it serves
            service.grant_licence(ws, "lic", "alpha", ref)
            r = client.get(f"/ui/p/alpha/releases/{ref}", headers=p.auth("lic"))
            assert r.status_code == 200


def test_a_grant_expires_at_the_end_of_its_day_over_http(stocked: Any) -> None:
    from datetime import date, timedelta

    from curata.server import service

    p = stocked
    with TestClient(create_app(p.ws), follow_redirects=False) as client:
        last = (date.today() + timedelta(days=30)).isoformat()
        body = {"username": "lic", "release": p.release, "expires": last}
        r = client.post("/api/projects/alpha/licences", json=body, headers=p.auth("adm"))
        assert r.status_code == 200 and r.json()["expires_at"].startswith(
            (date.today() + timedelta(days=31)).isoformat()
        )
        body["expires"] = "2000-01-01"
        r = client.post("/api/projects/alpha/licences", json=body, headers=p.auth("adm"))
        assert r.status_code == 400 and "past" in r.text
        body = {"username": "lic", "release": p.release, "revoke": True}
        assert (
            client.post("/api/projects/alpha/licences", json=body, headers=p.auth("lic")).status_code == 403
        )
    assert [g.label for g in service.licences_of(p.ws, _lic_id(p), "alpha")] == [p.release]


def _lic_id(p: Any) -> int:
    from sqlalchemy import select

    from curata.server.models import User

    with p.ws.catalog.session() as s:
        return int(s.scalar(select(User.id).where(User.username == "lic")))  # type: ignore[arg-type]
