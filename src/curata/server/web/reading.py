"""The reading pages (``/ui/p/{project}/reading``): a reader's queue, a task with the viewer, reports
and their sign-off, and the curator's assignment, agreement, adjudication and release.

Thin over :mod:`curata.annotate`: each route authorises by role in the platform project, checks that
the annotation project belongs to it, calls the service as the signed-in user, and renders. Blinding
is the service's (``visible_reads``) and the DICOMweb scope's (``curata.annotate.hidden_series``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from curata.errors import CurataError
from curata.server import service
from curata.server.auth import Access, require
from curata.server.models import Role
from curata.server.service import AuthError
from curata.server.web.router import nav_item, page, record_action

router = APIRouter(prefix="/ui/p/{project}/reading", tags=["pages"])
READERS = (Role.annotator, Role.reviewer)  # read their own tasks; a reviewer signs reports off
WORKERS = (Role.curator, *READERS)
MANAGERS = (Role.curator,)  # (and admins) schemas, tasks, assignment, adjudication, release
nav_item("reading", "Reading", *WORKERS)


def _ws(request: Request) -> Any:
    return request.app.state.ws


def _reading(access: Access, reading: str) -> str:
    if access.project is None or reading not in access.project.annotations:
        raise AuthError(f"no annotation project {reading!r} for you", status=404)
    return reading


def _base(access: Access, reading: str) -> str:
    return f"/ui/p/{access.project.name if access.project else ''}/reading/{reading}"


def _back(access: Access, reading: str, where: str = "/", flash: str = "") -> Response:
    from urllib.parse import quote

    tail = f"?flash={quote(flash)}" if flash else ""
    return RedirectResponse(_base(access, reading) + where + tail, status_code=303)


def shown_as(ws: Any, access: Access, name: str) -> str:
    """Another reader as the caller may see them: their account for a curator, else their reader code."""
    from curata.annotate import reader_code

    if access.has(Role.curator) or name == access.principal.username or not name or ":" in name:
        return name  # the caller, or an AI model ("assist:body")
    return reader_code(ws, name)


def _own_task(ws: Any, name: str, task_id: int, user: str) -> None:
    """A reader's action on a task: only on a task they read (else 404, as for a task that is not)."""
    from curata.annotate import list_tasks

    if not any(t.id == task_id and user in t.readers for t in list_tasks(ws, name)):
        raise AuthError(f"no task {task_id} for you", status=404)


def _error(request: Request, access: Access, exc: CurataError, status: int = 409) -> HTMLResponse:
    out = page(
        request,
        "reading_error.html",
        access,
        title="Not done",
        active="reading",
        message=exc.message,
        hint=exc.hint or "",
    )
    out.status_code = status
    return out


@router.get("", response_class=HTMLResponse)
def reading_home(request: Request, access: Access = Depends(require(*WORKERS))) -> Response:
    from curata.annotate import is_reader, status

    assert access.project is not None
    items = []
    manager = access.has(Role.curator)
    for name in access.project.annotations:
        try:
            if manager or is_reader(_ws(request), name, access.principal.username):
                items.append(status(_ws(request), name))  # a project's state: its readers and curators
        except CurataError:  # a resource naming an annotation project that is gone: not listed
            continue
    return page(request, "reading.html", access, title="Reading", active="reading", items=items)


@router.get("/{reading}/", response_class=HTMLResponse)
def queue_page(
    request: Request, reading: str, flash: str = "", access: Access = Depends(require(*WORKERS))
) -> Response:
    """The reader's queue (next task first: the active-learning score, then the oldest) and, for a
    curator, the project's state and actions."""
    from curata.annotate import list_tasks, queue, reader_stats, show_project, status

    ws, name = _ws(request), _reading(access, reading)
    manager = access.has(Role.curator)
    return page(
        request,
        "reading_queue.html",
        access,
        title=f"{name}: queue",
        active="reading",
        reading=name,
        info=show_project(ws, name),
        tasks=queue(ws, name, access.principal.username),
        manager=manager,
        status=status(ws, name) if manager else None,
        all_tasks=list_tasks(ws, name) if manager else [],
        readers=reader_stats(ws, name) if manager else [],
        flash=flash,
    )


@router.post("/{reading}/assign")
def assign_page(request: Request, reading: str, access: Access = Depends(require(*MANAGERS))) -> Response:
    """The project's annotators and reviewers become readers (curators and admins adjudicators), a task
    is made for every case of the cohort, and readers are assigned, balanced."""
    from curata.annotate import assign, create_tasks, ensure_readers

    ws, name = _ws(request), _reading(access, reading)
    assert access.project is not None
    members = access.project.members
    readers = sorted(u for u, rs in members.items() if {"annotator", "reviewer"} & set(rs))
    deciders = sorted(u for u, rs in members.items() if {"curator", "admin"} & set(rs) and u not in readers)
    try:
        ensure_readers(ws, name, readers, deciders)
        new = create_tasks(ws, name)
        load = assign(ws, name)
    except CurataError as exc:
        return _error(request, access, exc)
    record_action(request, access, "annotate-assign", name, tasks=new, readers=len(load))
    return _back(access, name, flash=f"{new} new task(s); load per reader: {load}")


@router.post("/{reading}/agreement")
def agreement_page(request: Request, reading: str, access: Access = Depends(require(*MANAGERS))) -> Response:
    """File what arrived, then compute the agreement of every case whose reads are all in."""
    from curata.annotate import compute_agreement, file_new_objects

    ws, name = _ws(request), _reading(access, reading)
    try:
        file_new_objects(ws, name)
        results = compute_agreement(ws, name)
    except CurataError as exc:
        return _error(request, access, exc)
    to_adjudicate = sum(r.state == "adjudication" for r in results)
    unread = [r for r in results if r.error]
    record_action(request, access, "annotate-agreement", name, cases=len(results) - len(unread))
    flash = f"{len(results) - len(unread)} case(s) compared; {to_adjudicate} to adjudicate"
    if unread:
        flash += f"; {len(unread)} not compared (task {unread[0].task_id}: {unread[0].error})"
    return _back(access, name, flash=flash)


@router.post("/{reading}/release")
def release_page(
    request: Request,
    reading: str,
    release: str = Form(...),
    access: Access = Depends(require(*MANAGERS)),
) -> Response:
    """A release of the project's cohort carrying its accepted labels (never a raw read)."""
    from curata.annotate import release_labels, show_project
    from curata.publish import create_release, list_releases

    ws, name = _ws(request), _reading(access, reading)
    assert access.project is not None
    try:
        service._check_name("release", release)
        if release not in access.project.releases and any(
            r.ref.rpartition("@")[0] == release for r in list_releases(ws)
        ):  # a new version of another project's release would bring all its versions here
            service.check_reach(ws, access.principal, access.project.name, "release", release)
        labels, card = release_labels(ws, name)
        result = create_release(
            ws, release, cohort=show_project(ws, name).cohort, labels=labels, annotation=card
        )
    except AuthError as exc:
        return _error(request, access, exc, status=exc.status)
    except CurataError as exc:
        return _error(request, access, exc)
    service.add_resource(ws, access.project.name, "release", release)
    record_action(request, access, "release-created", result.ref, labels=len(labels))
    return RedirectResponse(f"/ui/p/{access.project.name}/releases/{result.ref}", status_code=303)


@router.get("/{reading}/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    request: Request, reading: str, task_id: int, access: Access = Depends(require(*WORKERS))
) -> Response:
    """One task as the caller may see it: the instructions and labels beside a link that opens the
    study in OHIF, the reads blinding lets them see, the report form and the reports to sign."""
    from curata.annotate import list_tasks, report_fields, reports_of, show_project, visible_reads

    ws, name = _ws(request), _reading(access, reading)
    user, manager = access.principal.username, access.has(Role.curator)
    task = next((t for t in list_tasks(ws, name) if t.id == task_id), None)
    if task is None or not (manager or user in task.readers):
        raise AuthError(f"no task {task_id} for you", status=404)
    reads = [
        replace(r, reader=shown_as(ws, access, r.reader))
        for r in visible_reads(ws, name, task_id, user, manager=manager)
    ]
    all_in = task.state not in ("to_do", "in_progress")
    reports = [
        {
            **r,
            "author": shown_as(ws, access, r["author"]),
            "signed_by": shown_as(ws, access, r["signed_by"] or ""),
        }
        for r in reports_of(ws, name, task_id)
        if manager or r["author"] == user or all_in
    ]  # a reader sees the other reader by their code (blinding), a curator by their account
    assert access.project is not None
    return page(
        request,
        "reading_task.html",
        access,
        title=f"{name}: task {task_id}",
        active="reading",
        reading=name,
        info=show_project(ws, name),
        task=task,
        reads=reads,
        reader=user in task.readers,
        reports=reports,
        fields=report_fields(ws, name),
        viewer=f"/viewer/{access.project.name}?StudyInstanceUIDs={task.study_uid}",
        may_sign=access.has(Role.reviewer) and user in task.readers,
        flash=request.query_params.get("flash", ""),
    )


@router.post("/{reading}/tasks/{task_id}/start")
def start_page(
    request: Request, reading: str, task_id: int, access: Access = Depends(require(*READERS))
) -> Response:
    from curata.annotate import start

    name = _reading(access, reading)
    _own_task(_ws(request), name, task_id, access.principal.username)
    try:
        start(_ws(request), name, task_id, access.principal.username)
    except CurataError as exc:
        return _error(request, access, exc)
    return _back(access, name, f"/tasks/{task_id}", "started: save your segmentation from the viewer")


@router.post("/{reading}/tasks/{task_id}/submit")
def submit_page(
    request: Request, reading: str, task_id: int, access: Access = Depends(require(*READERS))
) -> Response:
    from curata.annotate import submit

    name = _reading(access, reading)
    _own_task(_ws(request), name, task_id, access.principal.username)
    try:
        t = submit(_ws(request), name, task_id, access.principal.username)
    except CurataError as exc:
        return _error(request, access, exc)
    record_action(request, access, "annotation-submitted", t.series_uid, task=task_id)
    return _back(access, name, flash=f"task {task_id} submitted")


@router.post("/{reading}/tasks/{task_id}/report")
async def report_page(
    request: Request, reading: str, task_id: int, access: Access = Depends(require(*READERS))
) -> Response:
    """The reader's structured report (a new version each time they write)."""
    from curata.annotate import report_fields, write_report

    name = _reading(access, reading)
    ws = _ws(request)
    _own_task(ws, name, task_id, access.principal.username)
    form = await request.form()  # cached: the CSRF check read it already
    values = {f["name"]: str(form.get(f"f-{f['name']}", "")) for f in report_fields(ws, name)}
    try:
        report = write_report(ws, name, task_id, access.principal.username, values)
    except CurataError as exc:
        return _error(request, access, exc, status=400)
    record_action(request, access, "report-written", f"task {task_id}", report=report)
    return _back(access, name, f"/tasks/{task_id}", f"report {report} saved")


def _report_on(request: Request, name: str, report_id: int, access: Access) -> dict[str, Any]:
    """A report of this annotation project the caller may see (author, readers of its task once all
    reads are in, curators); else 404."""
    from curata.annotate import list_tasks, reports_of

    user, manager = access.principal.username, access.has(Role.curator)
    for t in list_tasks(_ws(request), name):
        if not (manager or user in t.readers):
            continue
        for r in reports_of(_ws(request), name, t.id):
            if r["id"] == report_id and (
                manager or r["author"] == user or t.state not in ("to_do", "in_progress")
            ):
                return r
    raise AuthError(f"no report {report_id} for you", status=404)


@router.post("/{reading}/reports/{report_id}/sign")
def sign_page(
    request: Request, reading: str, report_id: int, access: Access = Depends(require(Role.reviewer))
) -> Response:
    """The second reader signs a report off: its DICOM SR is written."""
    from curata.annotate import sign_report

    name = _reading(access, reading)
    report = _report_on(request, name, report_id, access)
    try:
        signed = sign_report(_ws(request), name, report_id, access.principal.username)
    except CurataError as exc:
        return _error(request, access, exc)
    record_action(request, access, "report-signed", f"report {report_id}", sr=signed["sr_digest"])
    return _back(access, name, f"/tasks/{report['task']}", f"report {report_id} signed")


@router.get("/{reading}/reports/{report_id}", response_class=HTMLResponse)
def report_view(
    request: Request, reading: str, report_id: int, access: Access = Depends(require(*WORKERS))
) -> Response:
    """The report rendered as HTML (``?format=pdf``: as PDF)."""
    from curata.annotate import render_report

    name = _reading(access, reading)
    _report_on(request, name, report_id, access)
    out = render_report(_ws(request), name, report_id)
    if request.query_params.get("format") == "pdf":
        return Response(out["report.pdf"], media_type="application/pdf")
    return HTMLResponse(out["report.html"].decode())


@router.get("/{reading}/adjudication", response_class=HTMLResponse)
def adjudication_page(
    request: Request, reading: str, access: Access = Depends(require(*MANAGERS))
) -> Response:
    """The cases waiting for a decision: pairwise agreement per label and the decision form; and the
    agreeing cases waiting for their review."""
    from curata.annotate import list_tasks, task_agreement, visible_reads

    ws, name = _ws(request), _reading(access, reading)
    user = access.principal.username
    cases = []
    for t in [*list_tasks(ws, name, state="adjudication"), *list_tasks(ws, name, state="in_review")]:
        reads = [r for r in visible_reads(ws, name, t.id, user, manager=True) if not r.is_draft]
        latest = {r.reader: r for r in reads if r.labels_present or r.kind != "sr"}
        cases.append({"task": t, "agreement": task_agreement(ws, name, t.id), "reads": list(latest.values())})
    return page(
        request,
        "reading_adjudication.html",
        access,
        title=f"{name}: adjudication",
        active="reading",
        reading=name,
        cases=cases,
        flash=request.query_params.get("flash", ""),
    )


@router.post("/{reading}/tasks/{task_id}/adjudicate")
async def decide_page(
    request: Request, reading: str, task_id: int, access: Access = Depends(require(*MANAGERS))
) -> Response:
    """Decide a case: accept one read, or the STAPLE consensus; an agreeing case: accept it on review."""
    from curata.annotate import accept_review, adjudicate, ensure_readers

    ws, name = _ws(request), _reading(access, reading)
    user = access.principal.username
    form = await request.form()
    decision = str(form.get("decision", "staple"))
    read = str(form.get("read", ""))
    try:
        ensure_readers(ws, name, [], [user])  # a curator decides as the project's adjudicator
        if decision == "review":
            accept_review(ws, name, task_id, user)
        else:
            adjudicate(
                ws,
                name,
                task_id,
                user,
                decision,
                read_id=int(read) if decision == "accept_read" and read.isdigit() else None,
            )
    except (CurataError, ValueError) as exc:
        err = exc if isinstance(exc, CurataError) else CurataError(f"unknown decision {decision!r}")
        return _error(request, access, err)
    record_action(request, access, "annotate-decision", f"task {task_id}", decision=decision)
    return _back(access, name, "/adjudication", f"task {task_id}: {decision}")
