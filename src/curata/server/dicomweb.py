"""DICOMweb over the workspace: STOW-RS (upload), QIDO-RS (search), WADO-RS (retrieve, metadata, frames).

Enough of PS3.18 for dicomweb-client, OHIF and 3D Slicer: searches at study, series and instance level
with exact, wildcard (``*``) and date-range matching; retrieval of whole studies, series or instances
as ``multipart/related; type="application/dicom"``, metadata as DICOM JSON, and single frames.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pydicom
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydicom.multival import MultiValue
from sqlalchemy import func, select

from curata.catalog import Instance, Patient, Series, Site, Study
from curata.collect.dicomweb import multipart_decode, multipart_encode
from curata.collect.net import OK_STATUSES
from curata.collect.reasons import DISK_FULL_REASON, is_disk_full
from curata.errors import CatalogError, InputError, StoreError, decoding, safe_reason, sanitize

log = logging.getLogger(__name__)

router = APIRouter(tags=["dicomweb"])
DICOM_JSON = "application/dicom+json"
# Failure Reason (0008,1197) of a Failed SOP Sequence item (PS3.18 Table I.2-2), as the DIMSE
# C-STORE SCP answers the same cause (curata.collect.net.scp)
FAILURE_PROCESSING = 0x0110  # a failure of ours in processing the instance (a bug, an unfiled outcome)
FAILURE_OUT_OF_RESOURCES = 0xA700  # disk, catalog or worker trouble: the sender may send it again later
FAILURE_REFUSED = 0xC000  # "cannot understand": refused for what the instance holds (quarantined)
FAILURE_DIGEST_MISMATCH = 0xA900  # the part is not the data set its Content-Digest announced
FAILURE_STUDY_MISMATCH = 0xC000  # "cannot understand": the instance is not of the study in the URL


def _el(vr: str, *values: Any) -> dict[str, Any]:
    vals = [v for v in values if v is not None and v != ""]
    if vr == "PN":
        vals = [{"Alphabetic": str(v)} for v in vals]
    return {"vr": vr, "Value": vals} if vals else {"vr": vr}


def _base(request: Request) -> str:
    """Absolute DICOMweb root for RetrieveURL/BulkDataURI: the configured public URL, else the request's.

    Some clients (dicomweb-client) send a Host header without the port; the socket's port fills it in.
    """
    public = getattr(request.app.state, "public_url", "")
    if public:
        return public.rstrip("/") + "/dicomweb"
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443):
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicomweb"


# -- QIDO-RS -----------------------------------------------------------------------------------
_STUDY_FIELDS = {
    "StudyInstanceUID": Study.study_uid,
    "StudyDate": Study.study_date,
    "StudyDescription": Study.description,
    "PatientID": Patient.pseudonym,
    "PatientName": Patient.pseudonym,
}
_SERIES_FIELDS = {
    "SeriesInstanceUID": Series.series_uid,
    "Modality": Series.modality,
    "SeriesDescription": Series.description,
    "BodyPartExamined": Series.body_part,
}
_INSTANCE_FIELDS = {"SOPInstanceUID": Instance.sop_instance_uid, "SOPClassUID": Instance.sop_class_uid}
_TAGS = {
    "0020000D": "StudyInstanceUID",
    "00080020": "StudyDate",
    "00100020": "PatientID",
    "0020000E": "SeriesInstanceUID",
    "00080060": "Modality",
    "00080018": "SOPInstanceUID",
    "00080016": "SOPClassUID",
}


def _filters(request: Request, fields: dict[str, Any], stmt: Any) -> Any:
    for key, value in request.query_params.multi_items():
        name = _TAGS.get(key.upper(), key)
        if name == "ModalitiesInStudy" and "Modality" not in fields:
            stmt = stmt.where(Study.series.any(Series.modality == value))
            continue
        column = fields.get(name)
        if column is None or value == "":
            continue
        if name.endswith("Date") and "-" in value:
            lo, _, hi = value.partition("-")
            if lo:
                stmt = stmt.where(column >= lo)
            if hi:
                stmt = stmt.where(column <= hi)
        elif "*" in value or "?" in value:
            stmt = stmt.where(column.like(value.replace("*", "%").replace("?", "_")))
        elif name.endswith("UID") and "," in value:
            stmt = stmt.where(column.in_(value.split(",")))
        else:
            stmt = stmt.where(column == value)
    return stmt


MAX_QIDO_LIMIT = 10_000  # results per QIDO page; a larger (or no) limit is cut to this
_MAX_OFFSET = 2**31 - 1


def _page(request: Request, stmt: Any) -> Any:
    try:
        limit = int(request.query_params.get("limit", 0))
        offset = int(request.query_params.get("offset", 0))
    except ValueError as exc:
        raise HTTPException(400, "limit and offset must be integers") from exc
    if limit < 0 or offset < 0 or offset > _MAX_OFFSET:
        raise HTTPException(400, f"limit and offset must be between 0 and {_MAX_OFFSET}")
    limit = min(limit or MAX_QIDO_LIMIT, MAX_QIDO_LIMIT)
    if offset:
        stmt = stmt.offset(offset)
    return stmt.limit(limit) if limit else stmt


def _scope(request: Request) -> Any:
    """``select(Series.id)`` of what the caller may see (set by the router's auth dependency)."""
    return request.state.access.series


def _record(request: Request, action: str, target: str, **detail: Any) -> None:
    """Append a view, download or upload to the audit trail and the transparency log."""
    from curata.server.service import record

    access = request.state.access
    record(
        request.app.state.ws,
        action,
        principal=access.principal,
        target=target,
        project=access.project.name if access.project else None,
        detail=detail,
        ledger=request.app.state.ledger,
    )


def _json(data: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(data, media_type=DICOM_JSON)


def _study_json(
    base: str, study: Study, patient: Patient, n_series: int, n_inst: int, mods: list[str]
) -> dict:
    return {
        "00080020": _el("DA", study.study_date),
        "00080030": _el("TM", study.study_time),
        "00080050": _el("SH"),
        "00080061": _el("CS", *sorted(m for m in mods if m)),
        "00081030": _el("LO", study.description),
        "00081190": _el("UR", f"{base}/studies/{study.study_uid}"),
        "00100010": _el("PN", patient.pseudonym),
        "00100020": _el("LO", patient.pseudonym),
        "00100040": _el("CS", patient.sex),
        "0020000D": _el("UI", study.study_uid),
        "00201206": _el("IS", n_series),
        "00201208": _el("IS", n_inst),
    }


def _series_json(base: str, study_uid: str, series: Series) -> dict:
    return {
        "00080060": _el("CS", series.modality),
        "0008103E": _el("LO", series.description),
        "00081190": _el("UR", f"{base}/studies/{study_uid}/series/{series.series_uid}"),
        "00180015": _el("CS", series.body_part),
        "0020000D": _el("UI", study_uid),
        "0020000E": _el("UI", series.series_uid),
        "00200011": _el("IS", series.series_number),
        "00201209": _el("IS", series.instance_count),
    }


def _instance_json(base: str, study_uid: str, series_uid: str, inst: Instance, series: Series) -> dict:
    return {
        "00080016": _el("UI", inst.sop_class_uid),
        "00080018": _el("UI", inst.sop_instance_uid),
        "00080060": _el("CS", series.modality),
        "00081190": _el(
            "UR", f"{base}/studies/{study_uid}/series/{series_uid}/instances/{inst.sop_instance_uid}"
        ),
        "0020000D": _el("UI", study_uid),
        "0020000E": _el("UI", series_uid),
        "00200013": _el("IS", inst.instance_number),
        "00280008": _el("IS", inst.number_of_frames),
        "00280010": _el("US", series.rows),
        "00280011": _el("US", series.columns),
    }


@router.get("/studies")
def search_studies(request: Request) -> JSONResponse:
    ws = request.app.state.ws
    scope = _scope(request)
    per_study = (
        select(
            Series.study_id.label("study_id"),
            func.count(Series.id).label("n_series"),
            func.coalesce(func.sum(Series.instance_count), 0).label("n_inst"),
        )
        .where(Series.id.in_(scope))
        .group_by(Series.study_id)
        .subquery()
    )
    stmt = (
        select(Study, Patient, per_study.c.n_series, per_study.c.n_inst)
        .join(per_study, per_study.c.study_id == Study.id)
        .join(Patient, Study.patient_id == Patient.id)
    )
    stmt = _page(request, _filters(request, _STUDY_FIELDS, stmt).order_by(Study.id))
    base = _base(request)
    with ws.catalog.session() as s:
        rows = list(s.execute(stmt))
        mods: dict[int, set[str]] = {}
        ids = [study.id for study, *_rest in rows]
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            for study_id, modality in s.execute(
                select(Series.study_id, Series.modality)
                .where(Series.study_id.in_(chunk), Series.id.in_(scope))
                .distinct()
            ):
                mods.setdefault(study_id, set()).add(modality)
        out = [
            _study_json(base, study, patient, ns, ni, list(mods.get(study.id, ())))
            for study, patient, ns, ni in rows
        ]
    return _json(out)


# includefield: attributes a QIDO answer carries only when asked (by tag, keyword, or "all")
_OPTIONAL: dict[str, tuple[str, str, Any]] = {
    "00080020": ("StudyDate", "DA", lambda st, pa, se: st.study_date),
    "00080030": ("StudyTime", "TM", lambda st, pa, se: st.study_time),
    "00081030": ("StudyDescription", "LO", lambda st, pa, se: st.description),
    "00100010": ("PatientName", "PN", lambda st, pa, se: pa.pseudonym),
    "00100020": ("PatientID", "LO", lambda st, pa, se: pa.pseudonym),
    "00100040": ("PatientSex", "CS", lambda st, pa, se: pa.sex),
    "00080021": ("SeriesDate", "DA", lambda st, pa, se: se.series_date),
    "00080070": ("Manufacturer", "LO", lambda st, pa, se: se.manufacturer),
    "00081090": ("ManufacturerModelName", "LO", lambda st, pa, se: se.model),
    "00180050": ("SliceThickness", "DS", lambda st, pa, se: se.slice_thickness),
    "00180060": ("KVP", "DS", lambda st, pa, se: se.kvp),
    "00280010": ("Rows", "US", lambda st, pa, se: se.rows),
    "00280011": ("Columns", "US", lambda st, pa, se: se.columns),
}
_OPTIONAL_BY_NAME = {name.lower(): tag for tag, (name, _vr, _f) in _OPTIONAL.items()}


def _included(request: Request) -> list[str]:
    wanted: list[str] = []
    for value in request.query_params.getlist("includefield"):
        for item in value.split(","):
            item = item.strip()
            if item.lower() == "all":
                return list(_OPTIONAL)
            tag = item.upper() if item.upper() in _OPTIONAL else _OPTIONAL_BY_NAME.get(item.lower())
            if tag:
                wanted.append(tag)
    return wanted


def _with_included(
    item: dict[str, Any], tags: list[str], study: Study, patient: Patient, series: Series
) -> dict:
    for tag in tags:
        if tag not in item:
            _name, vr, get = _OPTIONAL[tag]
            item[tag] = _el(vr, get(study, patient, series))
    return item


@router.get("/series")
@router.get("/studies/{study_uid}/series")
def search_series(request: Request, study_uid: str | None = None) -> JSONResponse:
    ws = request.app.state.ws
    stmt = select(Series, Study, Patient).join(Study, Series.study_id == Study.id)
    stmt = stmt.join(Patient, Study.patient_id == Patient.id).where(Series.id.in_(_scope(request)))
    if study_uid:
        stmt = stmt.where(Study.study_uid == study_uid)
    stmt = _filters(request, {**_STUDY_FIELDS, **_SERIES_FIELDS}, stmt).order_by(Series.id)
    base, extra = _base(request), _included(request)
    with ws.catalog.session() as s:
        return _json(
            [
                _with_included(_series_json(base, st.study_uid, se), extra, st, pa, se)
                for se, st, pa in s.execute(_page(request, stmt))
            ]
        )


@router.get("/instances")
@router.get("/studies/{study_uid}/instances")
@router.get("/studies/{study_uid}/series/{series_uid}/instances")
def search_instances(
    request: Request, study_uid: str | None = None, series_uid: str | None = None
) -> JSONResponse:
    ws = request.app.state.ws
    stmt = (
        select(Instance, Series, Study, Patient)
        .join(Series, Instance.series_id == Series.id)
        .join(Study, Series.study_id == Study.id)
        .join(Patient, Study.patient_id == Patient.id)
        .where(Series.id.in_(_scope(request)))
    )
    if study_uid:
        stmt = stmt.where(Study.study_uid == study_uid)
    if series_uid:
        stmt = stmt.where(Series.series_uid == series_uid)
    fields = {**_STUDY_FIELDS, **_SERIES_FIELDS, **_INSTANCE_FIELDS}
    stmt = _filters(request, fields, stmt).order_by(Series.id, Instance.instance_number, Instance.id)
    base, extra = _base(request), _included(request)
    with ws.catalog.session() as s:
        rows = s.execute(_page(request, stmt))
        return _json(
            [
                _with_included(_instance_json(base, st.study_uid, se.series_uid, inst, se), extra, st, pa, se)
                for inst, se, st, pa in rows
            ]
        )


# -- WADO-RS -----------------------------------------------------------------------------------
def _blobs(request: Request, study_uid: str, series_uid: str | None, sop_uid: str | None) -> list[str]:
    stmt = (
        select(Instance.blob_digest)
        .join(Series, Instance.series_id == Series.id)
        .join(Study, Series.study_id == Study.id)
        .where(Study.study_uid == study_uid, Series.id.in_(_scope(request)))
    )
    if series_uid:
        stmt = stmt.where(Series.series_uid == series_uid)
    if sop_uid:
        stmt = stmt.where(Instance.sop_instance_uid == sop_uid)
    with request.app.state.ws.catalog.session() as s:
        digests = list(s.scalars(stmt.order_by(Series.id, Instance.instance_number, Instance.id)))
    if not digests:
        raise HTTPException(404, "no such study, series or instance in this workspace")
    return digests


def _multipart_stream(request: Request, digests: list[str]) -> StreamingResponse:
    store = request.app.state.ws.store
    boundary = "curata-wado-" + hashlib.sha256("".join(digests).encode()).hexdigest()[:24]

    def body() -> Iterator[bytes]:
        for digest in digests:
            yield (
                f"--{boundary}\r\nContent-Type: application/dicom\r\nContent-Location: {digest}\r\n\r\n"
            ).encode()
            yield store.get_bytes(digest)
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media)


@router.get("/studies/{study_uid}")
@router.get("/studies/{study_uid}/series/{series_uid}")
@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}")
def retrieve(
    request: Request, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> StreamingResponse:
    digests = _blobs(request, study_uid, series_uid, sop_uid)
    target = "/".join(u for u in (study_uid, series_uid, sop_uid) if u)
    _record(request, "download", target, instances=len(digests))
    return _multipart_stream(request, digests)


@functools.lru_cache(maxsize=4096)
def _metadata_cached(store: Any, digest: str, bulk_base: str) -> str:
    """An instance's DICOM JSON, by blob digest: blobs never change, so it is built once (kept as text
    so callers cannot alter the cached value)."""
    return json.dumps(_metadata(store.get_bytes(digest), bulk_base))


def _metadata(raw: bytes, bulk_base: str) -> dict[str, Any]:
    ds = pydicom.dcmread(io.BytesIO(raw), defer_size=1024)

    def bulk(elem: Any) -> str:
        return f"{bulk_base}/bulkdata/{elem.tag:08X}"

    # an element whose value does not read as its VR (a DS holding a word) is left out, not a 500 for
    # the whole study: the viewer shows the rest (a sequence with such a value in an item goes whole).
    # Element by element here: pydicom's suppress_invalid_tags sets its global reading mode to RAISE
    # meanwhile, and a de-identification in another thread saved and restored that mode, leaving the
    # whole process raising on every odd value (the suite failed 52 tests of one worker so)
    out: dict[str, Any] = {}
    for key in tuple(ds.keys()):  # ds[key] converts inside the try (iterating ds would not)
        try:
            out[f"{key:08X}"] = ds[key].to_json_dict(bulk_data_element_handler=bulk, bulk_data_threshold=1024)
        except Exception as exc:  # a value that does not read as its VR: left out, named by its tag only
            log.warning("metadata: element %08X left out (%s)", key, type(exc).__name__)
    for tag in ("7FE00010", "7FE00008", "7FE00009"):  # pixel data is always fetched apart
        if tag in out:
            out[tag] = {"vr": out[tag]["vr"], "BulkDataURI": f"{bulk_base}/bulkdata/{tag}"}
    out["00020010"] = _el("UI", str(ds.file_meta.TransferSyntaxUID))
    return out


@router.get("/studies/{study_uid}/metadata")
@router.get("/studies/{study_uid}/series/{series_uid}/metadata")
@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata")
def metadata(
    request: Request, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> Response:
    store = request.app.state.ws.store
    base = _base(request)
    out: list[str] = []
    with request.app.state.ws.catalog.session() as s:
        stmt = (
            select(Instance.blob_digest, Instance.sop_instance_uid, Series.series_uid)
            .join(Series, Instance.series_id == Series.id)
            .join(Study, Series.study_id == Study.id)
            .where(Study.study_uid == study_uid, Series.id.in_(_scope(request)))
        )
        if series_uid:
            stmt = stmt.where(Series.series_uid == series_uid)
        if sop_uid:
            stmt = stmt.where(Instance.sop_instance_uid == sop_uid)
        rows = list(s.execute(stmt.order_by(Series.id, Instance.instance_number, Instance.id)))
    if not rows:
        raise HTTPException(404, "no such study, series or instance in this workspace")
    for digest, sop, se in rows:
        url = f"{base}/studies/{study_uid}/series/{se}/instances/{sop}"
        out.append(_metadata_cached(store, digest, url))
    for se in sorted({se for _d, _s, se in rows}):
        _record(request, "view-series", f"{study_uid}/{se}")
    return Response("[" + ",".join(out) + "]", media_type=DICOM_JSON)


def render_frame(raw: bytes, frame: int = 1, size: int | None = None) -> bytes:
    """One frame as an 8-bit PNG: modality LUT, then the stored window (or the frame's range), then an
    optional downscale to ``size`` pixels on the long side. What ``rendered`` and ``thumbnail`` answer."""
    import numpy as np
    from PIL import Image
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(io.BytesIO(raw))
    if "PixelData" not in ds:
        raise HTTPException(404, "this instance has no pixel data")
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= n:
        raise HTTPException(404, f"this instance has {n} frame(s)")
    with decoding("pixel data"):
        arr = ds.pixel_array
    if n > 1:
        arr = arr[frame - 1]
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        img = Image.fromarray(np.asarray(arr, dtype=np.uint8), "RGB")
    else:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is not None and width is not None:
            c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
            w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
            lo, hi = c - w / 2, c + w / 2
        else:
            lo, hi = float(values.min()), float(values.max())
        scaled = np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1) * 255
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            scaled = 255 - scaled
        img = Image.fromarray(scaled.astype(np.uint8), "L")
    if size:
        img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _first_instance(request: Request, study_uid: str, series_uid: str) -> str:
    digests = _blobs(request, study_uid, series_uid, None)
    return digests[len(digests) // 2]  # the middle slice says more about a series than the first


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered")
def rendered_instance(request: Request, study_uid: str, series_uid: str, sop_uid: str) -> Response:
    digest = _blobs(request, study_uid, series_uid, sop_uid)[0]
    return Response(render_frame(request.app.state.ws.store.get_bytes(digest)), media_type="image/png")


@router.get("/studies/{study_uid}/series/{series_uid}/rendered")
def rendered_series(request: Request, study_uid: str, series_uid: str) -> Response:
    raw = request.app.state.ws.store.get_bytes(_first_instance(request, study_uid, series_uid))
    return Response(render_frame(raw), media_type="image/png")


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/thumbnail")
def thumbnail_instance(request: Request, study_uid: str, series_uid: str, sop_uid: str) -> Response:
    digest = _blobs(request, study_uid, series_uid, sop_uid)[0]
    png = render_frame(request.app.state.ws.store.get_bytes(digest), size=128)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/studies/{study_uid}/series/{series_uid}/thumbnail")
def thumbnail_series(request: Request, study_uid: str, series_uid: str) -> Response:
    raw = request.app.state.ws.store.get_bytes(_first_instance(request, study_uid, series_uid))
    return Response(
        render_frame(raw, size=128),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frames}")
def frames(request: Request, study_uid: str, series_uid: str, sop_uid: str, frames: str) -> Response:
    """Frames (1-based, comma separated) as multipart/related of raw frame bytes."""
    from pydicom.encaps import generate_frames

    digest = _blobs(request, study_uid, series_uid, sop_uid)[0]
    try:
        wanted = [int(f) for f in frames.split(",")]
    except ValueError as exc:
        raise HTTPException(400, "frame numbers are 1-based integers, comma separated") from exc
    from curata.collect.wsi import read_frames

    with request.app.state.ws.store.open(digest) as fp:  # by byte range: a slide level is not loaded
        got = read_frames(fp, wanted)
    if got is not None and got[2]:
        ts_uid, _n, parts = got
        enc = pydicom.uid.UID(ts_uid).is_encapsulated
        media = f"application/octet-stream; transfer-syntax={ts_uid}" if enc else "application/octet-stream"
        body, content_type = multipart_encode([({}, p) for p in parts], media)
        return Response(body, media_type=content_type)
    ds = pydicom.dcmread(io.BytesIO(request.app.state.ws.store.get_bytes(digest)))
    if "PixelData" not in ds:
        raise HTTPException(404, "this instance has no pixel data")
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if any(f < 1 or f > n for f in wanted):
        raise HTTPException(404, f"this instance has {n} frame(s)")
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_encapsulated:
        all_frames = list(generate_frames(ds.PixelData, number_of_frames=n))
        media = f"application/octet-stream; transfer-syntax={ts}"
    else:
        size = len(ds.PixelData) // n
        all_frames = [ds.PixelData[i * size : (i + 1) * size] for i in range(n)]
        media = "application/octet-stream"
    body, content_type = multipart_encode([({}, all_frames[f - 1]) for f in wanted], media)
    return Response(body, media_type=content_type)


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata/{tag}")
def bulkdata(request: Request, study_uid: str, series_uid: str, sop_uid: str, tag: str) -> Response:
    """The value of one large element named in the metadata by its BulkDataURI."""
    try:
        number = int(tag, 16)
    except ValueError as exc:
        raise HTTPException(400, "the tag is 8 hexadecimal digits") from exc
    digest = _blobs(request, study_uid, series_uid, sop_uid)[0]
    ds = pydicom.dcmread(io.BytesIO(request.app.state.ws.store.get_bytes(digest)))
    if number not in ds:
        raise HTTPException(404, f"no element {tag} in this instance")
    value = ds[number].value
    if not isinstance(value, bytes):
        # only binary values are offered as BulkDataURI; a name, ID or date is in the metadata
        raise HTTPException(404, f"element {tag} of this instance is not bulk data")
    body, content_type = multipart_encode([({}, value)], "application/octet-stream")
    return Response(body, media_type=content_type)


# -- STOW-RS -----------------------------------------------------------------------------------
def _digest_ok(headers: dict[str, str], data: bytes) -> bool:
    """Check an RFC 9530 ``Content-Digest: sha-256=:<base64>:`` part header where one is given."""
    value = headers.get("content-digest")
    if not value:
        return True
    for item in value.split(","):
        algo, _, encoded = item.strip().partition("=")
        if algo.strip().lower() == "sha-256":
            try:
                expected = base64.b64decode(encoded.strip().strip(":"))
            except ValueError:
                return False
            return hashlib.sha256(data).digest() == expected
    return True


class _Part:
    """What a STOW-RS answer may say of one part: its SOP Class, SOP Instance and Study UIDs as sent
    (empty strings when unreadable), and the part's own numbers a UID must not hold to be echoed."""

    __slots__ = ("numbers", "sop_class", "sop_uid", "study_uid")

    def __init__(self, data: bytes) -> None:
        self.sop_class = self.sop_uid = self.study_uid = ""
        self.numbers: tuple[str, ...] = ()
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=_PART_TAGS)
            self.sop_class, self.sop_uid, self.study_uid = (
                str(ds.get(k, "") or "") for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")
            )
            self.numbers = _own_numbers(ds)
        except Exception:  # unreadable (in part): the receiver refuses it with its own reason
            pass

    def echoable(self, uid: str) -> str:
        """``uid`` when it may be echoed in the answer, else "".

        PS3.18 has each Failed SOP Sequence item reference the instance, so a value the sender sent as
        a UID is echoed back to it when it is one: a valid UID (PS3.5 9.1: 64 characters at most,
        digits and dots, no leading zero in a component), which holds none of the part's own IDs,
        accession number or birth date (the numbers the de-identification gate refuses in a retained
        UID). Anything else (a name, an MRN, free text in the UID's place) is left out, and the item
        says which part it is by its position in the request instead. On a gateway the instances are
        identified by nature and their UIDs are remapped when stored: a stored item names the new UID,
        a refused one at most the valid UID its sender sent; on the platform (verified mode) the UIDs
        are those of an object already de-identified, stored as they are. Either way the answer holds
        no value of a refused part but a UID that its sender sent as one."""
        uid = uid.strip("\0 ")
        if not uid or not pydicom.uid.UID(uid).is_valid:
            return ""
        return "" if any(n in uid for n in self.numbers) else uid


_PART_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "PatientID", "OtherPatientIDs", "AccessionNumber",
    "PatientBirthDate", "OtherPatientIDsSequence", "PatientName",
]  # fmt: skip


def _own_numbers(ds: pydicom.Dataset) -> tuple[str, ...]:
    """Each run of 5 digits or more of the part's PatientID, Other Patient IDs (the retired attribute and
    the sequence's items), accession number, name and birth date (the birth date also day or month
    first, and in its six-digit forms), as the gate looks for them in a UID."""
    values: list[str] = []
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate", "PatientName"):
        value = ds.get(keyword)
        if value is None:
            continue
        values.extend(str(v) for v in (value if isinstance(value, MultiValue | list) else [value]))
    for item in ds.get("OtherPatientIDsSequence") or []:
        values.append(str(item.get("PatientID", "") or ""))
    runs: set[str] = set()
    for value in values:
        for run in re.findall(r"[0-9]{5,}", value):
            runs.add(run)
            y, m, d = run[:4], run[4:6], run[6:]
            if len(run) == 8 and "01" <= m <= "12" and "01" <= d <= "31":
                yy = y[2:]
                runs.update((d + m + y, m + d + y, yy + m + d, d + m + yy, m + d + yy))
    return tuple(runs)


def _failed_item(part: _Part, position: int, code: int, reason: str) -> dict[str, Any]:
    """A Failed SOP Sequence item: the part's UIDs where they may be echoed (``_Part.echoable``), its
    Failure Reason and, as an Error Comment (0000,0902), its position and the cause.

    PS3.18 Table I.1-1 gives the item no attribute for a reason's words (only the code), and
    recommends a Warning header with a descriptive reason; dcm4chee-arc answers an Error Comment
    beside the sequence. The comment is kept in each item here (one per refused part; a client reads
    it where it reads the code), worded as the catalog's reason and the DIMSE SCP's comment, through
    the same sanitiser (``curata.errors.sanitize``: quoted text, paths and long numbers out). Its VR is
    LO, but the reason is not cut to 64 characters: its words name the attribute at fault, often past
    the 64th character (sanitize keeps 300 at most)."""
    item: dict[str, Any] = {}
    sop_class, sop_uid = part.echoable(part.sop_class), part.echoable(part.sop_uid)
    if sop_class:
        item["00081150"] = _el("UI", sop_class)
    if sop_uid:
        item["00081155"] = _el("UI", sop_uid)
    item["00081197"] = _el("US", code)
    item["00000902"] = _el("LO", f"part {position}: {sanitize(reason)}")
    return item


def _failure_of(exc: BaseException) -> tuple[int, str]:
    """(Failure Reason, reason) for an exception out of the receiver: an input we refuse names the
    attribute at fault (never its value); disk, catalog or worker trouble is out of resources (the
    sender may send it again), worded by its kind only (a database's text can quote the row's values);
    anything else is a processing failure, named by where it happened."""
    from concurrent.futures import BrokenExecutor

    if isinstance(exc, InputError):  # our own words (sanitised with the others in _failed_item)
        return FAILURE_REFUSED, exc.reason
    if is_disk_full(exc):
        return FAILURE_OUT_OF_RESOURCES, "not stored: no space left on the server; send it again later"
    if isinstance(exc, OSError):
        return FAILURE_OUT_OF_RESOURCES, f"not stored: {safe_reason(exc)}; send it again later"
    if isinstance(exc, CatalogError | StoreError | BrokenExecutor | MemoryError):
        return FAILURE_OUT_OF_RESOURCES, f"not stored: {type(exc).__name__}; send it again later"
    return FAILURE_PROCESSING, f"not stored: {safe_reason(exc)}"


def _refusal_of(outcome: Any) -> tuple[int, str]:
    """(Failure Reason, reason) for an outcome that is not stored, as the DIMSE SCP answers it."""
    reason = outcome.reason or outcome.status
    if outcome.reason == DISK_FULL_REASON:  # our trouble, not the data's: the sender retries later
        return FAILURE_OUT_OF_RESOURCES, "not stored: no space left on the server; send it again later"
    if outcome.status == "skipped" and outcome.input_digest:  # dropped by policy (a slide label image)
        return FAILURE_REFUSED, f"not kept: {reason}"
    if outcome.status == "quarantined":  # the reason says it is refused, the code too
        return FAILURE_REFUSED, reason
    return FAILURE_PROCESSING, f"not stored: {reason}"


DEFAULT_MAX_UPLOAD = 512 << 20


async def _bounded_body(request: Request) -> bytes:
    """The request body, refused with 413 past the server's upload limit (before it is all read)."""
    limit = int(getattr(request.app.state, "max_upload_bytes", DEFAULT_MAX_UPLOAD))
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPException(413, f"upload of {declared} bytes is over the {limit}-byte limit")
        except ValueError as exc:
            raise HTTPException(400, "Content-Length is not a number") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


bounded_body = _bounded_body  # for other stages' upload routes (curata.collect.router)


SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"  # Label Map Segmentation: OHIF 3.13 saves these


def is_derived_class(sop_class: str) -> bool:
    """Segmentations and structured reports made in the viewer (OHIF) from the project's images."""
    return sop_class in (SEG_STORAGE, LABELMAP_SEG_STORAGE) or sop_class.startswith(SR_PREFIX)


def _file_derived(request: Request, data: bytes) -> Any:
    """File a SEG/SR made in the viewer as a new, immutable object beside the images it annotates.

    It must refer to a study this project holds (and only to that study's series in the project), its
    patient and study attributes must be that study's, its text must pass the site's free-text
    cleaner unchanged, and it may only add a new series or instance (``_derived``): it is derived from
    de-identified images, so it is stored as checked, UIDs intact, and marked de-identified. Anything
    else is refused (InputError naming the attribute) with nothing stored. Its provenance names the
    series it references and its author.
    """
    from curata.catalog import record_provenance
    from curata.collect import Ingestor
    from curata.server import _derived

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise InputError(f"not a readable DICOM object ({type(exc).__name__})") from exc
    access = request.state.access
    ws = request.app.state.ws
    author = access.principal.username
    project = access.project.name if access.project else ""
    with ws.catalog.session() as s:
        row = s.execute(
            select(Study.id, Patient.pseudonym, Site.name)
            .join(Patient, Study.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .join(Series, Series.study_id == Study.id)
            .where(Study.study_uid == str(ds.get("StudyInstanceUID", "")), Series.id.in_(_scope(request)))
            .limit(1)
        ).first()
        if row is None:
            raise InputError("it refers to no study of this project")
        study = _derived.StoredStudy(row[0], str(ds.StudyInstanceUID), row[1], row[2])
        refs = _derived.referenced_series(ds)
        known = set(
            s.scalars(
                select(Series.series_uid).where(
                    Series.series_uid.in_(refs), Series.study_id == study.id, Series.id.in_(_scope(request))
                )
            )
        )
        if set(refs) - known:
            raise InputError("it references a series that is not of its study in this project")
        study.references = _derived.study_references(s, ws.store, study.id, is_derived_class)
    for keyword in ("PatientID", "PatientName"):
        if str(ds.get(keyword, "") or "") not in ("", study.pseudonym):
            raise InputError(f"its {keyword} is not the study's pseudonym")
    study.identities = _derived.patient_identities(ws, study.pseudonym)
    _derived.strip_unsafe(ds)
    _derived.check_study_attributes(ds, study)
    _derived.check_free_text(ds, study)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "derived in the viewer from de-identified images; patient module checked"
    _derived.fresh_file_meta(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    checked = buf.getvalue()
    with ws.catalog.session() as s:
        _derived.check_uids(s, ds, study, hashlib.sha256(checked).hexdigest(), author, project)
    outcome = Ingestor(ws, deidentify=False, site=study.site, workers=1).ingest_bytes(checked, "viewer-stow")
    if outcome.status in ("ingested", "present"):
        with ws.catalog.session() as s:
            record_provenance(
                s,
                _derived.STOW_STEP,
                [*refs, str(ds.SOPInstanceUID)],
                {"project": project, "author": author},
                {"sop_class": str(ds.SOPClassUID), "blob": outcome.blob_digest or ""},
            )
        if access.project is not None and access.project.annotations:
            from curata.annotate import file_stowed

            # a reader's SEG/SR: filed against their task as the signed-in user (blinded from now on)
            file_stowed(ws, checked, author, access.project.annotations)
    return outcome


def _check_uids_unclaimed(request: Request, data: bytes) -> None:
    """An image sent through a project's STOW-RS may not name a study, series or instance that the
    catalog holds outside what the sender sees (it would join another project's series)."""
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data),
            stop_before_pixels=True,
            specific_tags=["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"],
        )
    except Exception:
        return  # unreadable: the receiver refuses it with its own reason
    study, series, sop = (
        str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    )
    ws = request.app.state.ws
    with ws.catalog.session() as s:
        outside = ~Series.id.in_(_scope(request))
        hits = [
            select(Series.id)
            .join(Study, Series.study_id == Study.id)
            .where(Study.study_uid == study, outside),
            select(Series.id).where(Series.series_uid == series, outside),
            select(Instance.id)
            .join(Series, Instance.series_id == Series.id)
            .where(Instance.sop_instance_uid == sop, outside),
        ]
        if any(s.scalar(q.limit(1)) is not None for q in hits):
            raise InputError("its study, series or SOP instance UID is already used outside this project")


def _file_into_project(request: Request, series_uids: list[str], n_stored: int, stored: set[str]) -> None:
    """What a member stores through a project's DICOMweb belongs to that project; the upload is logged.

    A series joins the project only when the caller already sees it or every instance in it was
    stored by this request: a stored UID never extends the project to another project's series."""
    from curata.server.service import add_resource

    access = request.state.access
    if access.project is not None:
        ws = request.app.state.ws
        with ws.catalog.session() as s:
            visible = set(s.scalars(select(Series.series_uid).where(Series.id.in_(_scope(request)))))
            own = []
            for uid in series_uids:
                held = set(
                    s.scalars(
                        select(Instance.sop_instance_uid)
                        .join(Series, Instance.series_id == Series.id)
                        .where(Series.series_uid == uid)
                    )
                )
                if uid in visible or held <= stored:
                    own.append(uid)
        for uid in own:
            add_resource(ws, access.project.name, "series", uid)
    if n_stored:
        _record(request, "upload", ",".join(series_uids)[:256], instances=n_stored)


@router.post("/studies")
@router.post("/studies/{study_uid}")
async def store_instances(request: Request, study_uid: str | None = None) -> JSONResponse:
    """STOW-RS: file every part; answer which were stored and which failed: for each failed part, its
    UIDs where they may be echoed, its position, a Failure Reason code and its sanitised cause
    (``_failed_item``)."""
    from starlette.concurrency import run_in_threadpool

    body = await _bounded_body(request)
    try:
        parts = multipart_decode(body, request.headers.get("content-type", ""))
    except InputError as exc:
        raise HTTPException(415, exc.message) from exc
    receiver = request.app.state.receiver
    base = _base(request)
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    del body
    new_series: set[str] = set()
    deidentifying = bool(getattr(receiver, "deidentify", True))
    for position, (headers, data) in enumerate(parts, 1):
        part = _Part(data)
        sop_class, sop_uid = part.sop_class, part.sop_uid
        if not _digest_ok(headers, data):
            reason = "its Content-Digest does not match the part's bytes"
            failed.append(_failed_item(part, position, FAILURE_DIGEST_MISMATCH, reason))
            continue
        if study_uid and part.study_uid != study_uid:  # POST /studies/{uid}: only that study's instances
            reason = "its Study Instance UID is not the study of the request's URL"
            failed.append(_failed_item(part, position, FAILURE_STUDY_MISMATCH, reason))
            continue
        in_project = request.state.access.project is not None
        derived = in_project and is_derived_class(sop_class)
        try:
            if derived:
                outcome = await run_in_threadpool(_file_derived, request, data)
            else:
                if in_project:
                    await run_in_threadpool(_check_uids_unclaimed, request, data)
                outcome = await run_in_threadpool(
                    receiver.receive, data, source="stow-rs", source_uid=sop_uid or None, peer="stow-rs"
                )
        except Exception as exc:
            # the reason names the attribute or the kind of trouble, never a value
            failed.append(_failed_item(part, position, *_failure_of(exc)))
            continue
        if outcome.status not in OK_STATUSES:
            failed.append(_failed_item(part, position, *_refusal_of(outcome)))
            continue
        # the UID stored (a gateway's remapped one); the sender's own only where the outcome does not
        # say it and the object is stored unchanged (verified mode, a viewer's SEG/SR), if echoable
        kept_as_sent = derived or not deidentifying
        stored_uid = outcome.sop_instance_uid or (part.echoable(sop_uid) if kept_as_sent else "")
        item = {"00081150": _el("UI", part.echoable(sop_class))}
        if stored_uid:
            item["00081155"] = _el("UI", stored_uid)
        fields = outcome.fields or {}
        st = (fields.get("study") or {}).get("study_uid")
        se = (fields.get("series") or {}).get("series_uid")
        if st and se:
            if stored_uid:
                item["00081190"] = _el("UR", f"{base}/studies/{st}/series/{se}/instances/{stored_uid}")
            new_series.add(se)
        stored.append(item)
    stored_uids = {i["00081155"]["Value"][0] for i in stored if "00081155" in i}
    _file_into_project(request, sorted(new_series), len(stored), stored_uids)
    result: dict[str, Any] = {"00081190": _el("UR", f"{base}/studies/{study_uid}" if study_uid else base)}
    if stored:
        result["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        result["00081198"] = {"vr": "SQ", "Value": failed}
    code = 200 if not failed else (202 if stored else 409)
    return JSONResponse(result, status_code=code, media_type=DICOM_JSON)
