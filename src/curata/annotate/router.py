"""The annotate stage over HTTP: the reading workflow's JSON routes and a MONAI-Label-compatible API,
under a platform project (``/projects/{project}/annotate/{reading}``, ``reading`` being an annotation
project that the platform project holds). Thin: every route authorises by the caller's roles in the
platform project and calls the service. The reader is the signed-in user (session or API token).

Roles: annotators and reviewers read their own tasks (a reviewer is the second reader who signs
reports off); curators and admins manage (filing, assignment, adjudication, training); site and
licensee accounts are refused. A member who reads in the platform project but not in this reading
project gets its labels and models (``/info``), never its tasks' state (``/status``, ``/queue``,
``/datastore``, ``/activelearning``: 403). A reader sees their own tasks only, other readers by their
reader code (blinding), and drafts a case (``/infer``) only when it is theirs and the project shows
drafts; one inference at a time per user and ``INFER_PER_HOUR`` an hour (else 429).

MONAI Label routes (shapes as MONAI Label publishes them), with the server address
``http://HOST/projects/PROJECT/annotate/READING/monailabel`` and a user's API token as Bearer::

    GET  /info/                               app name, labels, models, strategies, datastore counts
    POST /infer/{model}?image=SERIES_UID&output=dicom_seg|image|json
    GET  /datastore/?output=stats|all
    POST /activelearning/{strategy}           {"id": SERIES_UID, ...} the next case
    POST /train/{model}                       trains on accepted labels; the run's figures
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, replace
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from curata.errors import AnnotationError, CurataError
from curata.server import Access, AuthError, Role, require

INFER_PER_HOUR = 30  # inferences one user may start in an hour (each is minutes of CPU)
INFER_ACTION = "annotate-infer"

router = APIRouter(prefix="/projects/{project}/annotate", tags=["annotate"])

READERS = (Role.annotator, Role.reviewer)  # read their own tasks
WORKERS = (Role.curator, *READERS)  # see the reading project
MANAGERS = (Role.curator,)  # (admins always pass)


def _ws(request: Request) -> Any:
    return request.app.state.ws


def reading_of(access: Access, reading: str) -> str:
    """The annotation project ``reading``, when the platform project holds it (else 404, as for a
    project one is not a member of)."""
    if access.project is None or reading not in access.project.annotations:
        raise AuthError(f"no annotation project {reading!r} for you", status=404)
    return reading


def manages(access: Access) -> bool:
    return access.has(Role.curator)


def reads_here(ws: Any, access: Access, reading: str) -> bool:
    """True for a curator (or admin); for a reader of ``reading``, False; anyone else is refused
    (403): the project's tasks and their state are its readers' and curators' business."""
    from curata.annotate import is_reader

    if manages(access):
        return True
    if not is_reader(ws, reading, access.principal.username):
        raise AuthError(f"you read no task of {reading!r}", status=403)
    return False


def shown_as(ws: Any, access: Access, name: str) -> str:
    """Another reader as the caller may see them: their account for a curator, else their reader code."""
    from curata.annotate import reader_code

    if manages(access) or name == access.principal.username or not name or ":" in name:
        return name  # the caller, or an AI model ("assist:body")
    return reader_code(ws, name)


def running_inferences(app: Any) -> set[str]:
    """The users with an inference running in this process (one at a time each)."""
    if not hasattr(app.state, "inferences"):
        app.state.inferences = set()
    return app.state.inferences  # type: ignore[no-any-return]


def _fail(exc: CurataError) -> HTTPException:
    code = 404 if exc.message.startswith("no ") else 409 if isinstance(exc, AnnotationError) else 400
    return HTTPException(code, exc.message + (f" ({exc.hint})" if exc.hint else ""))


def _task_of(ws: Any, project: str, series_uid: str) -> int:
    from curata.annotate import list_tasks

    for t in list_tasks(ws, project):
        if t.series_uid == series_uid:
            return t.id
    raise HTTPException(404, f"project {project} has no task on image {series_uid}")


# -- MONAI Label ------------------------------------------------------------------------------------------


@router.get("/{reading}/monailabel/auth/")
@router.get("/{reading}/monailabel/auth")
def ml_auth_enabled(reading: str) -> dict[str, Any]:
    """MONAI Label's "is auth enabled": yes. Its clients (3D Slicer, OHIF) then ask for a username
    and password and fetch a token from ``/auth/token``; scripts can send an API token right away."""
    return {"enabled": True, "client_id": "curata", "realm": ""}


@router.post("/{reading}/monailabel/auth/token")
async def ml_auth_token(request: Request, reading: str) -> dict[str, Any]:
    """A password sign-in (OAuth2 password form, as MONAI Label's clients send it) answered with a
    short-lived API token of the user (one day); failures are rate-limited and recorded as logins."""
    from starlette.concurrency import run_in_threadpool

    from curata.server import token_login

    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    if not username or not password:
        raise HTTPException(422, "username and password (form fields) are required")
    token = await run_in_threadpool(
        lambda: token_login(request, username, password, name=f"monailabel:{reading}"[:128])
    )
    return {"access_token": token.token, "token_type": "bearer"}


@router.get("/{reading}/monailabel/auth/token/valid")
def ml_token_valid(reading: str, access: Access = Depends(require(*WORKERS))) -> dict[str, Any]:
    reading_of(access, reading)
    return {"username": access.principal.username, "roles": sorted(r.value for r in access.roles)}


@router.get("/{reading}/monailabel/info/")
@router.get("/{reading}/monailabel/info")
def ml_info(request: Request, reading: str, access: Access = Depends(require(*WORKERS))) -> dict[str, Any]:
    from curata.annotate import assist_models, show_project, status

    ws, name = _ws(request), reading_of(access, reading)
    try:
        p = show_project(ws, name)
        st = status(ws, name)
        models = assist_models(ws, name)
    except CurataError as exc:
        raise _fail(exc) from exc
    labels = {d["name"]: d["value"] for d in p.labels if d.get("kind", "segmentation") == "segmentation"}
    out_models = {}
    for model, m in models.items():
        kind, mlabels, desc = (
            ("classical", m.labels, m.description)
            if hasattr(m, "labels")
            else (m[0], m[2] or {}, "MONAI UNet trained in Curata" if m[0] == "unet" else "MONAI bundle")
        )
        out_models[model] = {
            "type": "segmentation",
            "labels": mlabels,
            "dimension": 3,
            "description": desc,
            "kind": kind,
        }
    return {
        "name": f"Curata: {name}",
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


@router.post("/{reading}/monailabel/infer/{model}")
async def ml_infer(
    request: Request,
    reading: str,
    model: str,
    image: str = "",
    output: str = "dicom_seg",
    access: Access = Depends(require(*WORKERS)),
) -> Response:
    """Pre-annotate ``image``: the draft is kept as a marked DICOM SEG beside the images (so OHIF
    opens it from the project's DICOMweb when the project shows drafts) and returned."""
    from starlette.concurrency import run_in_threadpool

    from curata.annotate import draft_seg, list_tasks, read_labelmap, series_grid, show_project
    from curata.server import add_resource, count_recent, record

    ws, name = _ws(request), reading_of(access, reading)
    user = access.principal.username
    manager = reads_here(ws, access, name)
    if not manager and not show_project(ws, name).show_drafts:
        raise AuthError(f"{name!r} hides AI drafts from its readers", status=403)
    if not image:
        raise HTTPException(400, "image (a series UID of the project) is required")
    if output not in ("dicom_seg", "all", "image", "json"):
        raise HTTPException(400, "output is one of dicom_seg, image, json")
    task_id = _task_of(ws, name, image)
    if not manager and user not in next(t for t in list_tasks(ws, name) if t.id == task_id).readers:
        raise AuthError(f"no task of yours reads image {image}", status=403)
    running = running_inferences(request.app)
    if user in running:
        raise HTTPException(429, "an inference of yours is already running: wait for it")
    if count_recent(ws, user, INFER_ACTION, seconds=3600) >= INFER_PER_HOUR:
        raise HTTPException(
            429, f"at most {INFER_PER_HOUR} inferences an hour", headers={"Retry-After": "600"}
        )
    assert access.project is not None
    running.add(user)
    try:
        record(ws, INFER_ACTION, principal=access.principal, target=image, project=access.project.name,
               detail={"model": model}, ledger=request.app.state.ledger)  # fmt: skip
        draft, seg = await run_in_threadpool(draft_seg, ws, name, task_id, model)
        labels = read_labelmap(ws, draft.id)
    except CurataError as exc:
        raise _fail(exc) from exc
    finally:
        running.discard(user)
    from curata.annotate import draft_series_uid

    seg_series = draft_series_uid(ws, draft.id)
    if seg_series:
        add_resource(ws, access.project.name, "series", seg_series)
    params = {"model": model, "draft_read": draft.id, "labels": draft.labels_present, "image": image}
    if output == "json":
        return JSONResponse({**params, "seg_series": seg_series})
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
    return Response(seg, media_type="application/dicom")


@router.get("/{reading}/monailabel/datastore/")
@router.get("/{reading}/monailabel/datastore")
def ml_datastore(
    request: Request, reading: str, output: str = "stats", access: Access = Depends(require(*WORKERS))
) -> dict[str, Any]:
    from curata.annotate import accepted_labels, list_tasks, status

    ws, name = _ws(request), reading_of(access, reading)
    manager = reads_here(ws, access, name)
    try:
        st = status(ws, name)
        if output == "stats":
            return {
                "total": st["tasks"],
                "completed": st["accepted"],
                "label_tags": {"final": st["accepted"]},
            }
        accepted = {a["series_uid"]: a for a in accepted_labels(ws, name)}
        objects = {
            t.series_uid: {
                "image": {"info": {"study": t.study_uid, "state": t.state}},
                "labels": {"final": {"info": {"decision": accepted[t.series_uid]["decision"]}}}
                if t.series_uid in accepted
                else {},
            }
            for t in list_tasks(ws, name)
            if manager or access.principal.username in t.readers  # a reader: their own tasks
        }
        return {"name": name, "objects": objects}
    except CurataError as exc:
        raise _fail(exc) from exc


@router.post("/{reading}/monailabel/activelearning/{strategy}")
async def ml_activelearning(
    request: Request, reading: str, strategy: str, access: Access = Depends(require(*WORKERS))
) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    from curata.annotate import next_sample

    ws, name = _ws(request), reading_of(access, reading)
    reader = None if reads_here(ws, access, name) else access.principal.username
    try:
        return await run_in_threadpool(partial(next_sample, ws, name, strategy, reader=reader))
    except CurataError as exc:
        raise _fail(exc) from exc


@router.post("/{reading}/monailabel/train/{model}")
async def ml_train(
    request: Request, reading: str, model: str, access: Access = Depends(require(*MANAGERS))
) -> dict[str, Any]:
    import json

    from starlette.concurrency import run_in_threadpool

    from curata.annotate import train_model

    name = reading_of(access, reading)
    body = await request.body()
    try:
        params: dict[str, Any] = json.loads(body) if body else {}
    except ValueError as exc:
        raise HTTPException(400, 'the body is JSON, e.g. {"max_epochs": 40}') from exc
    try:
        return await run_in_threadpool(
            train_model, _ws(request), name, model, epochs=int(params.get("max_epochs", 40))
        )
    except CurataError as exc:
        raise _fail(exc) from exc


# -- the reading workflow ---------------------------------------------------------------------------------


@router.get("/{reading}/status")
def project_status(
    request: Request, reading: str, access: Access = Depends(require(*WORKERS))
) -> dict[str, Any]:
    from curata.annotate import status

    ws, name = _ws(request), reading_of(access, reading)
    reads_here(ws, access, name)
    try:
        return status(ws, name)
    except CurataError as exc:
        raise _fail(exc) from exc


@router.get("/{reading}/queue")
def reader_queue(
    request: Request, reading: str, access: Access = Depends(require(*WORKERS))
) -> list[dict[str, Any]]:
    """The caller's own open tasks, next first."""
    from curata.annotate import queue

    ws, name = _ws(request), reading_of(access, reading)
    reads_here(ws, access, name)
    try:
        tasks = queue(ws, name, access.principal.username)
    except CurataError as exc:
        raise _fail(exc) from exc
    return [asdict(replace(t, readers=[shown_as(ws, access, r) for r in t.readers])) for t in tasks]


@router.get("/{reading}/tasks/{task_id}/reads")
def task_reads(
    request: Request, reading: str, task_id: int, access: Access = Depends(require(*WORKERS))
) -> list[dict[str, Any]]:
    """The reads the caller may see (blinding applies; curators see all)."""
    from curata.annotate import visible_reads

    ws, name = _ws(request), reading_of(access, reading)
    reads_here(ws, access, name)
    try:
        reads = visible_reads(ws, name, task_id, access.principal.username, manager=manages(access))
    except CurataError as exc:
        raise _fail(exc) from exc
    return [asdict(replace(r, reader=shown_as(ws, access, r.reader))) for r in reads]


@router.post("/{reading}/file")
def file_arrivals(
    request: Request, reading: str, access: Access = Depends(require(*MANAGERS))
) -> dict[str, Any]:
    """File what arrived through STOW-RS (and was not filed on arrival) against its tasks and readers."""
    from curata.annotate import file_new_objects

    r = file_new_objects(_ws(request), reading_of(access, reading))
    return {
        "filed": len(r.filed),
        "already": r.skipped,
        "refused": [{"sop": s, "reason": m} for s, m in r.refused],
    }
