"""The annotate stage over HTTP: a MONAI-Label-compatible API per project (so the MONAI Label clients
of 3D Slicer and OHIF connect unchanged, with ``/annotate/monailabel/PROJECT`` as the server address)
and the reading workflow's JSON routes. Thin: every route calls the service.

MONAI Label routes (shapes as MONAI Label publishes them)::

    GET  /info/                               app name, labels, models, strategies, datastore counts
    POST /infer/{model}?image=SERIES_UID&output=dicom_seg|image|json
    GET  /datastore/?output=stats|all
    POST /activelearning/{strategy}           {"id": SERIES_UID, ...} the next case
    POST /train/{model}                       trains on accepted labels; the run's figures

Until the web platform's accounts land, these routes sit behind the server's bearer token like
DICOMweb; the user a route acts for is the ``user`` query parameter.
"""

from __future__ import annotations

import gzip
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from curata.errors import AnnotationError, CurataError

router = APIRouter()


def _ws(request: Request) -> Any:
    return request.app.state.ws


def _fail(exc: CurataError) -> HTTPException:
    code = 404 if "no " in exc.message[:12] else 409 if isinstance(exc, AnnotationError) else 400
    return HTTPException(code, exc.message + (f" ({exc.hint})" if exc.hint else ""))


def _task_of(ws: Any, project: str, series_uid: str) -> int:
    from curata.annotate import list_tasks

    for t in list_tasks(ws, project):
        if t.series_uid == series_uid:
            return t.id
    raise HTTPException(404, f"project {project} has no task on image {series_uid}")


# -- MONAI Label ------------------------------------------------------------------------------------------


@router.get("/monailabel/{project}/info/")
@router.get("/monailabel/{project}/info")
def ml_info(request: Request, project: str) -> dict[str, Any]:
    from curata.annotate import assist_models, show_project, status

    ws = _ws(request)
    try:
        p = show_project(ws, project)
        st = status(ws, project)
        models = assist_models(ws, project)
    except CurataError as exc:
        raise _fail(exc) from exc
    labels = {d["name"]: d["value"] for d in p.labels if d.get("kind", "segmentation") == "segmentation"}
    out_models = {}
    for name, m in models.items():
        kind, mlabels, desc = (
            ("classical", m.labels, m.description)
            if hasattr(m, "labels")
            else (m[0], m[2] or {}, "MONAI UNet trained in Curata" if m[0] == "unet" else "MONAI bundle")
        )
        out_models[name] = {
            "type": "segmentation",
            "labels": mlabels,
            "dimension": 3,
            "description": desc,
            "kind": kind,
        }
    return {
        "name": f"Curata: {project}",
        "description": "Curata annotation project (MONAI Label compatible)",
        "version": "1",
        "labels": labels,
        "models": out_models,
        "trainers": {"unet": {"description": "small MONAI UNet on the project's accepted labels"}},
        "strategies": {
            "first": {"description": "oldest open case"},
            "random": {"description": "random open case"},
            "uncertainty": {"description": "highest mean entropy of the project's UNet"},
        },
        "scoring": {},
        "train_stats": {},
        "datastore": {"total": st["tasks"], "completed": st["accepted"]},
    }


@router.post("/monailabel/{project}/infer/{model}")
async def ml_infer(
    request: Request, project: str, model: str, image: str = "", output: str = "dicom_seg"
) -> Response:
    from starlette.concurrency import run_in_threadpool

    from curata.annotate import predict_draft, read_labelmap, seg_for, series_grid

    ws = _ws(request)
    if not image:
        raise HTTPException(400, "image (a series UID of the project) is required")
    task_id = _task_of(ws, project, image)
    try:
        draft = await run_in_threadpool(predict_draft, ws, project, task_id, model)
        labels = read_labelmap(ws, draft.id)
    except CurataError as exc:
        raise _fail(exc) from exc
    params = {"model": model, "draft_read": draft.id, "labels": draft.labels_present, "image": image}
    if output == "json":
        return JSONResponse(params)
    if output == "image":
        import nibabel as nib
        import numpy as np

        grid = series_grid(ws, image)
        img = nib.Nifti1Image(np.transpose(labels, (2, 1, 0)).astype(np.uint16), grid.ras_affine())
        body = gzip.compress(img.to_bytes())
        return Response(
            body,
            media_type="application/gzip",
            headers={"Content-Disposition": 'attachment; filename="label.nii.gz"'},
        )
    if output in ("dicom_seg", "all"):
        seg = await run_in_threadpool(
            seg_for, ws, project, task_id, labels, reader=f"assist:{model}", draft=True, algorithm=model
        )
        return Response(seg, media_type="application/dicom")
    raise HTTPException(400, "output is one of dicom_seg, image, json")


@router.get("/monailabel/{project}/datastore/")
@router.get("/monailabel/{project}/datastore")
def ml_datastore(request: Request, project: str, output: str = "stats") -> dict[str, Any]:
    from curata.annotate import accepted_labels, list_tasks, status

    ws = _ws(request)
    try:
        st = status(ws, project)
        if output == "stats":
            return {
                "total": st["tasks"],
                "completed": st["accepted"],
                "label_tags": {"final": st["accepted"]},
            }
        accepted = {a["series_uid"]: a for a in accepted_labels(ws, project)}
        objects = {
            t.series_uid: {
                "image": {"info": {"study": t.study_uid, "state": t.state}},
                "labels": {"final": {"info": {"decision": accepted[t.series_uid]["decision"]}}}
                if t.series_uid in accepted
                else {},
            }
            for t in list_tasks(ws, project)
        }
        return {"name": project, "objects": objects}
    except CurataError as exc:
        raise _fail(exc) from exc


@router.post("/monailabel/{project}/activelearning/{strategy}")
async def ml_activelearning(request: Request, project: str, strategy: str) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    from curata.annotate import next_sample

    try:
        return await run_in_threadpool(next_sample, _ws(request), project, strategy)
    except CurataError as exc:
        raise _fail(exc) from exc


@router.post("/monailabel/{project}/train/{model}")
async def ml_train(request: Request, project: str, model: str) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    from curata.annotate import train_model

    params: dict[str, Any] = {}
    body = await request.body()
    if body:
        import json

        params = json.loads(body)
    try:
        return await run_in_threadpool(
            train_model, _ws(request), project, model, epochs=int(params.get("max_epochs", 40))
        )
    except CurataError as exc:
        raise _fail(exc) from exc


# -- the reading workflow ---------------------------------------------------------------------------------


@router.get("/{project}/status")
def project_status(request: Request, project: str) -> dict[str, Any]:
    from curata.annotate import status

    try:
        return status(_ws(request), project)
    except CurataError as exc:
        raise _fail(exc) from exc


@router.get("/{project}/queue")
def reader_queue(request: Request, project: str, user: str) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from curata.annotate import queue

    try:
        return [asdict(t) for t in queue(_ws(request), project, user)]
    except CurataError as exc:
        raise _fail(exc) from exc


@router.get("/{project}/tasks/{task_id}/reads")
def task_reads(request: Request, project: str, task_id: int, user: str) -> list[dict[str, Any]]:
    """The reads ``user`` may see (blinding applies)."""
    from dataclasses import asdict

    from curata.annotate import visible_reads

    try:
        return [asdict(r) for r in visible_reads(_ws(request), project, task_id, user)]
    except CurataError as exc:
        raise _fail(exc) from exc


@router.post("/{project}/file")
def file_arrivals(request: Request, project: str) -> dict[str, Any]:
    """File what arrived through STOW-RS against its tasks and readers."""
    from curata.annotate import file_new_objects

    r = file_new_objects(_ws(request), project)
    return {
        "filed": len(r.filed),
        "already": r.skipped,
        "refused": [{"sop": s, "reason": m} for s, m in r.refused],
    }


# -- pages (server-rendered; the web platform's accounts will replace the ``user`` parameter) ------------

_STYLE = (
    "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px}.draft{color:#a60}</style>"
)


def _mm(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _page(title: str, body: str) -> Response:
    from html import escape

    return Response(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{_STYLE}</head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>",
        media_type="text/html",
    )


@router.get("/{project}/pages/queue")
def page_queue(request: Request, project: str, user: str) -> Response:
    """A reader's queue: open tasks, next first."""
    from html import escape
    from urllib.parse import quote

    from curata.annotate import queue, show_project

    try:
        p = show_project(_ws(request), project)
        tasks = queue(_ws(request), project, user)
    except CurataError as exc:
        raise _fail(exc) from exc
    rows = "".join(
        f"<tr><td><a id='task-{t.id}' href='tasks/{t.id}?user={quote(user)}'>task {t.id}</a></td>"
        f"<td>{escape(t.state)}</td><td>{escape(t.series_uid)}</td></tr>"
        for t in tasks
    )
    return _page(
        f"{project}: {user}'s queue",
        f"<p class='instructions'>{escape(p.instructions)}</p>"
        f"<table id='queue'><tr><th>task</th><th>state</th><th>series</th></tr>{rows}</table>",
    )


@router.get("/{project}/pages/tasks/{task_id}")
def page_task(request: Request, project: str, task_id: int, user: str) -> Response:
    """One task as ``user`` may see it: the instructions, the reads blinding lets them see, the viewer link."""
    from html import escape

    from curata.annotate import list_tasks, show_project, visible_reads

    ws = _ws(request)
    try:
        p = show_project(ws, project)
        reads = visible_reads(ws, project, task_id, user)
        task = next(t for t in list_tasks(ws, project) if t.id == task_id)
    except CurataError as exc:
        raise _fail(exc) from exc
    rows = "".join(
        f"<tr class='{'draft' if r.is_draft else 'read'}'><td class='reader'>{escape(r.reader)}</td>"
        f"<td>{r.version}</td><td>{escape(r.kind)}</td><td>{escape(', '.join(r.labels_present))}</td></tr>"
        for r in reads
    )
    labels = "".join(
        f"<li><span style='color:{escape(d['colour'])}'>&#9632;</span> {escape(d['name'])} "
        f"({escape(d['scheme'])} {escape(d['code'])} {escape(d['meaning'])})</li>"
        for d in p.labels
    )
    viewer = f"/ohif/viewer?StudyInstanceUIDs={escape(task.study_uid)}"
    return _page(
        f"{project}: task {task_id}",
        f"<p>state: <b id='state'>{escape(task.state)}</b></p><p class='instructions'>{escape(p.instructions)}</p>"
        f"<ul>{labels}</ul><p><a id='viewer' href='{viewer}'>open the study in the viewer</a></p>"
        f"<table id='reads'><tr><th>reader</th><th>version</th><th>kind</th><th>labels</th></tr>{rows}</table>",
    )


@router.get("/{project}/pages/adjudication")
def page_adjudication(request: Request, project: str, user: str) -> Response:
    """The adjudicator's cases: pairwise agreement per label, and the decision form."""
    from html import escape
    from urllib.parse import quote

    from curata.annotate import list_tasks, task_agreement, visible_reads

    ws = _ws(request)
    # a signed-in browser's form carries its session's CSRF token (the platform checks it on POST)
    access = getattr(request.state, "access", None)
    token = getattr(getattr(access, "principal", None), "csrf_token", "") or ""
    csrf = f"<input type='hidden' name='csrf_token' value='{escape(token)}'>" if token else ""
    try:
        tasks = list_tasks(ws, project, state="adjudication")
        blocks = []
        for t in tasks:
            reads = [r for r in visible_reads(ws, project, t.id, user) if not r.is_draft]
            latest = {r.reader: r for r in reads}
            rows = "".join(
                f"<tr><td>{escape(' / '.join(a['readers']))}</td><td>{escape(a['label'])}</td>"
                f"<td>{a['dice']:.3f}</td><td>{_mm(a['hd95_mm'])}</td>"
                f"<td>{a['detection_f1']:.2f}</td></tr>"
                for a in task_agreement(ws, project, t.id)
            )
            options = "".join(
                f"<option value='{r.id}'>{escape(r.reader)} v{r.version}</option>" for r in latest.values()
            )
            blocks.append(
                f"<h2>task {t.id}</h2><table class='agreement'><tr><th>readers</th><th>label</th><th>Dice</th>"
                f"<th>HD95 mm</th><th>lesion F1</th></tr>{rows}</table>"
                f"<form id='decide-{t.id}' method='post' action='tasks/{t.id}/adjudicate?user={quote(user)}'>"
                f"<select name='decision'><option value='staple'>STAPLE consensus</option>"
                f"<option value='accept_read'>accept one read</option></select>"
                f"<select name='read'>{options}</select>{csrf}<button type='submit'>decide</button></form>"
            )
    except CurataError as exc:
        raise _fail(exc) from exc
    return _page(
        f"{project}: adjudication", "".join(blocks) or "<p id='none'>no case waits for a decision</p>"
    )


@router.post("/{project}/pages/tasks/{task_id}/adjudicate")
async def page_decide(request: Request, project: str, task_id: int, user: str) -> Response:
    from urllib.parse import quote

    from fastapi.responses import RedirectResponse

    from curata.annotate import adjudicate

    form = {k: str(v) for k, v in (await request.form()).items()}  # cached if the CSRF check read it
    decision = form.get("decision", "staple")
    read = int(form["read"]) if decision == "accept_read" and form.get("read") else None
    try:
        adjudicate(_ws(request), project, task_id, user, decision, read_id=read)
    except CurataError as exc:
        raise _fail(exc) from exc
    back = request.url.path.rsplit("/tasks/", 1)[0] + "/adjudication"
    return RedirectResponse(f"{back}?user={quote(user)}", status_code=303)
