"""The collect stage over HTTP: de-identified clinical and genomic batches from the sites' gateways.

``POST /clinical/batches`` takes what `curata gateway push` sends (``curata-clinical/1``, see
``collect/clinical/exchange.py``) from the shared gateway token (the ``site`` role) or a platform admin,
as ``/dicomweb`` STOW does; ``POST /projects/{project}/clinical/batches`` from a project's ``site``
members (hospital contributors) and curators (and its admins), for the project's own patients only.
Thin: the body is read within the server's upload limit and handed to
:func:`curata.collect.clinical.receive_batches`, which checks, files, refuses or quarantines each
batch; the answer lists each batch's status::

    {"batches": [{"batch": "<64 hex>", "kind": "csv", "status": "filed", "rows": 12, "reason": null}]}

200 when every batch was filed or present, 202 when some were, 409 when none (as STOW-RS answers).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from curata.errors import InputError
from curata.server import Access, Role, bounded_body, record, require, require_dicomweb_global

router = APIRouter(tags=["clinical"])
UPLOADERS = (Role.site, Role.curator)  # (admins always pass)


async def _receive(request: Request) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    from curata.collect.clinical import receive_batches
    from curata.collect.dicomweb import multipart_decode

    if not request.app.state.verified_deidentified:  # a gateway: it de-identifies what it receives itself
        raise HTTPException(
            403, "clinical batches go to the central platform (`curata server --verified-deidentified`)"
        )
    body = await bounded_body(request)
    try:
        parts = multipart_decode(body, request.headers.get("content-type", ""))
    except InputError as exc:
        raise HTTPException(415, exc.message) from exc
    del body
    ws = request.app.state.ws
    access: Access = request.state.access
    scope = access.series if access.project is not None else None  # a project's members: its patients
    results = await run_in_threadpool(lambda: receive_batches(ws, parts, series=scope))
    for r in results:
        if r.status == "filed":  # the batch's keyed name only: nothing about the patients
            record(ws, "clinical-upload", principal=access.principal, target=r.batch,
                   project=access.project.name if access.project else None,
                   detail={"kind": r.kind, "rows": r.rows}, ledger=request.app.state.ledger)  # fmt: skip
    ok = sum(r.status in ("filed", "present") for r in results)
    code = 200 if ok == len(results) else (202 if ok else 409)
    return JSONResponse({"batches": [asdict(r) for r in results]}, status_code=code)


@router.post("/clinical/batches")
async def receive_from_gateway(
    request: Request, _access: Any = Depends(require_dicomweb_global)
) -> JSONResponse:
    return await _receive(request)


@router.post("/projects/{project}/clinical/batches")
async def receive_into_project(
    request: Request, _access: Access = Depends(require(*UPLOADERS))
) -> JSONResponse:
    return await _receive(request)
