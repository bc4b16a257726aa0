"""The annotation workflow: projects and schemas, tasks from a cohort, balanced assignment, reads filed
from DICOM SEG / imported label maps (immutable, versioned), blinding, agreement, adjudication and the
accepted labels a release carries.

Every function takes a workspace and returns records; nothing prints. A case is accepted only when at
least two readers have filed reads (the second read is mandatory).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import and_, func, or_, select, union
from sqlalchemy.orm import Session

from curata.annotate._labelmaps import (
    SeriesGrid,
    grid_from_rows,
    labelmap_bytes,
    labelmap_from_bytes,
    read_nifti,
    read_nrrd,
    read_rtstruct,
    read_seg,
)
from curata.annotate.models import (
    AcceptedLabel,
    AnnotationProject,
    AnnotationRead,
    AnnotationReader,
    AnnotationSchema,
    AnnotationTask,
    AssignmentState,
    Decision,
    ReadingReport,
    ReadKind,
    TaskAgreement,
    TaskAssignment,
    TaskState,
)
from curata.catalog import Instance, Patient, Provenance, Series, Site, Study, record_provenance
from curata.errors import AnnotationError, InputError, decoding, is_fatal
from curata.workspace import Workspace

log = logging.getLogger("curata.annotate")
T = TypeVar("T")

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"  # Label Map Segmentation (what OHIF 3.13 saves)
SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.88.34",
}
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
DEFAULT_THRESHOLDS: dict[str, float] = {
    "dice_min": 0.8,  # below: adjudication
    "hd95_max_mm": 5.0,
    "detection_f1_min": 1.0,  # a lesion one reader missed goes to the adjudicator
    "tolerance_mm": 2.0,  # surface Dice tolerance
}
LABEL_KINDS = ("segmentation", "measurement", "bbox", "classification", "report_field")


# -- records -----------------------------------------------------------------------------------------


class LabelDef(BaseModel):
    """One label of a schema. ``value`` is its number in label maps and its segment number in SEGs."""

    name: str = Field(min_length=1, max_length=128)
    value: int = Field(ge=1, le=65535)
    kind: str = "segmentation"
    scheme: str = "SCT"  # SCT (SNOMED CT) or RADLEX
    code: str
    meaning: str
    category: tuple[str, str, str] = ("SCT", "49755003", "Morphologically Altered Structure")
    colour: str = "#ff0000"
    options: list[str] = Field(default_factory=list)  # classification answers

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in LABEL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(LABEL_KINDS)}")
        return v

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v.upper() not in ("SCT", "RADLEX", "DCM"):
            raise ValueError("scheme must be SCT (SNOMED CT), RADLEX or DCM")
        return v.upper()

    @field_validator("colour")
    @classmethod
    def _colour(cls, v: str) -> str:
        if len(v) != 7 or v[0] != "#" or any(c not in "0123456789abcdefABCDEF" for c in v[1:]):
            raise ValueError("colour must be #rrggbb")
        return v.lower()


@dataclass
class ProjectInfo:
    name: str
    cohort: str
    unit: str
    readers_per_task: int
    blinded: bool
    show_drafts: bool
    skip_own_site: bool
    thresholds: dict[str, float]
    schema_version: int | None = None
    labels: list[dict[str, Any]] = field(default_factory=list)
    instructions: str = ""


@dataclass
class TaskView:
    id: int
    series_uid: str
    study_uid: str
    site: str | None
    state: str
    readers: list[str]
    priority: float | None = None


@dataclass
class ReadInfo:
    id: int
    task_id: int
    reader: str
    kind: str
    version: int
    supersedes_id: int | None
    source: str
    labels_present: list[str]
    is_draft: bool
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileResult:
    filed: list[ReadInfo] = field(default_factory=list)
    skipped: int = 0  # already filed
    refused: list[tuple[str, str]] = field(default_factory=list)  # (SOP UID, reason)


@dataclass
class AgreementResult:
    task_id: int
    series_uid: str
    state: str
    pairs: list[dict[str, Any]]
    passed: bool
    error: str | None = None  # why its reads could not be compared (the task keeps its state)


# -- helpers -----------------------------------------------------------------------------------------


def _unless_unreadable(read: Callable[[], T]) -> tuple[T | None, str | None]:
    """``read()`` of one case of many, or the reason it cannot be read (its pixels damaged, a blob
    gone, a label map unreadable): a reason fit for a log and a provenance record (no values of the
    file, no paths). One bad case must not stop the others; an interrupt still stops the run."""
    from curata.collect import safe_reason

    try:
        return read(), None
    except BaseException as exc:  # a decoder's panic too
        if is_fatal(exc):
            raise
        return None, safe_reason(exc)


def _now() -> datetime:
    return datetime.now(UTC)


def _project(session: Session, name: str) -> AnnotationProject:
    p = session.scalar(select(AnnotationProject).where(AnnotationProject.name == name))
    if p is None:
        raise AnnotationError(f"no annotation project named {name!r}", hint="`curata annotate project ls`")
    return p


def _schema(session: Session, project: AnnotationProject) -> AnnotationSchema:
    s = session.scalar(
        select(AnnotationSchema)
        .where(AnnotationSchema.project_id == project.id)
        .order_by(AnnotationSchema.version.desc())
    )
    if s is None:
        raise AnnotationError(
            f"project {project.name!r} has no schema yet", hint="`curata annotate schema PROJECT labels.toml`"
        )
    return s


def _labels(schema: AnnotationSchema) -> list[LabelDef]:
    return [LabelDef(**d) for d in schema.labels]


def _task(session: Session, project: AnnotationProject, task_id: int) -> AnnotationTask:
    t = session.get(AnnotationTask, task_id)
    if t is None or t.project_id != project.id:
        raise AnnotationError(f"project {project.name!r} has no task {task_id}")
    return t


def _info(session: Session, p: AnnotationProject) -> ProjectInfo:
    s = session.scalar(
        select(AnnotationSchema)
        .where(AnnotationSchema.project_id == p.id)
        .order_by(AnnotationSchema.version.desc())
    )
    return ProjectInfo(
        name=p.name,
        cohort=p.cohort,
        unit=p.unit,
        readers_per_task=p.readers_per_task,
        blinded=p.blinded,
        show_drafts=p.show_drafts,
        skip_own_site=p.skip_own_site,
        thresholds=dict(p.thresholds),
        schema_version=s.version if s else None,
        labels=list(s.labels) if s else [],
        instructions=s.instructions if s else "",
    )


def _read_info(r: AnnotationRead) -> ReadInfo:
    return ReadInfo(
        r.id,
        r.task_id,
        r.reader,
        r.kind,
        r.version,
        r.supersedes_id,
        r.source,
        list(r.labels_present),
        r.is_draft,
        dict(r.values or {}),
    )


def _view(session: Session, t: AnnotationTask) -> TaskView:
    readers = list(session.scalars(select(TaskAssignment.reader).where(TaskAssignment.task_id == t.id)))
    return TaskView(t.id, t.series_uid, t.study_uid, t.site, t.state, sorted(readers), t.priority)


# -- projects and schemas ----------------------------------------------------------------------------


def create_project(
    ws: Workspace,
    name: str,
    cohort: str,
    *,
    unit: str = "series",
    readers_per_task: int = 2,
    blinded: bool = True,
    show_drafts: bool = False,
    skip_own_site: bool = False,
    thresholds: dict[str, float] | None = None,
) -> ProjectInfo:
    """A new project reading the series (or studies) of ``cohort``."""
    from curata.select import list_cohorts

    if unit not in ("series", "study"):
        raise AnnotationError(f"unit must be 'series' or 'study', not {unit!r}")
    if readers_per_task < 2:
        raise AnnotationError("every case needs at least two readers", hint="the second read is mandatory")
    if cohort not in {c.name for c in list_cohorts(ws)}:
        raise AnnotationError(f"no cohort named {cohort!r}", hint="`curata cohort ls` lists them")
    unknown = set(thresholds or {}) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise AnnotationError(
            f"unknown thresholds {sorted(unknown)}", hint=f"known: {sorted(DEFAULT_THRESHOLDS)}"
        )
    with ws.catalog.session() as session:
        if session.scalar(select(AnnotationProject.id).where(AnnotationProject.name == name)) is not None:
            raise AnnotationError(f"an annotation project named {name!r} exists")
        p = AnnotationProject(
            name=name,
            cohort=cohort,
            unit=unit,
            readers_per_task=readers_per_task,
            blinded=blinded,
            show_drafts=show_drafts,
            skip_own_site=skip_own_site,
            thresholds={**DEFAULT_THRESHOLDS, **(thresholds or {})},
        )
        session.add(p)
        session.flush()
        record_provenance(
            session,
            "annotate.project",
            [cohort],
            {"name": name, "unit": unit, "readers": readers_per_task, "blinded": blinded},
            {"project": p.id},
        )
        return _info(session, p)


def list_projects(ws: Workspace) -> list[ProjectInfo]:
    with ws.catalog.session() as session:
        return [
            _info(session, p)
            for p in session.scalars(select(AnnotationProject).order_by(AnnotationProject.id))
        ]


def show_project(ws: Workspace, name: str) -> ProjectInfo:
    with ws.catalog.session() as session:
        return _info(session, _project(session, name))


def set_schema(
    ws: Workspace, project: str, labels: list[dict[str, Any]], instructions: str = ""
) -> ProjectInfo:
    """File a schema version (a new version only when labels or instructions changed)."""
    try:
        defs = [LabelDef(**d) for d in labels]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise AnnotationError(
            f"schema label {where}: {first['msg']}", hint="see `curata annotate schema --help`"
        ) from exc
    if not defs:
        raise AnnotationError("a schema needs at least one label")
    for attr in ("name", "value"):
        dup = [k for k, n in Counter(getattr(d, attr) for d in defs).items() if n > 1]
        if dup:
            raise AnnotationError(f"label {attr} used twice: {dup[0]}")
    body = [d.model_dump(mode="json") for d in defs]
    digest = hashlib.sha256(json.dumps([body, instructions], sort_keys=True).encode()).hexdigest()
    with ws.catalog.session() as session:
        p = _project(session, project)
        last = session.scalar(
            select(AnnotationSchema)
            .where(AnnotationSchema.project_id == p.id)
            .order_by(AnnotationSchema.version.desc())
        )
        if last is None or last.digest != digest:
            version = (last.version + 1) if last else 1
            session.add(
                AnnotationSchema(
                    project_id=p.id, version=version, labels=body, instructions=instructions, digest=digest
                )
            )
            session.flush()
        return _info(session, p)


def add_reader(
    ws: Workspace, project: str, user_name: str, *, site: str | None = None, adjudicator: bool = False
) -> None:
    with ws.catalog.session() as session:
        p = _project(session, project)
        r = session.scalar(
            select(AnnotationReader).where(
                AnnotationReader.project_id == p.id, AnnotationReader.user_name == user_name
            )
        )
        if r is None:
            session.add(
                AnnotationReader(project_id=p.id, user_name=user_name, site=site, adjudicator=adjudicator)
            )
        else:
            r.site, r.adjudicator = site, adjudicator


# -- tasks and assignment -------------------------------------------------------------------------------


def create_tasks(ws: Workspace, project: str, *, series_uids: list[str] | None = None) -> int:
    """One task per series (or per study: its first series) of the project's cohort (or of those of
    ``series_uids`` that are in it); returns how many are new (a re-run adds only what is missing)."""
    from curata.select import show_cohort

    with ws.catalog.session() as session:
        p = _project(session, project)
        cohort_uids = [s.series_uid for s in show_cohort(ws, p.cohort).series]
        if series_uids is not None:
            wanted = set(series_uids)
            cohort_uids = [u for u in cohort_uids if u in wanted]
        rows = session.execute(
            select(Series.id, Series.series_uid, Study.study_uid, Site.name, Series.series_number)
            .join(Study, Series.study_id == Study.id)
            .join(Patient, Study.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .where(Series.series_uid.in_(cohort_uids))
            .order_by(Study.study_uid, Series.series_number, Series.series_uid)
        ).all()
        existing = set(
            session.scalars(select(AnnotationTask.series_uid).where(AnnotationTask.project_id == p.id))
        )
        seen_studies = set(
            session.scalars(select(AnnotationTask.study_uid).where(AnnotationTask.project_id == p.id))
        )
        new = 0
        for sid, suid, study_uid, site, _num in rows:
            if p.unit == "study":
                if study_uid in seen_studies:
                    continue
                seen_studies.add(study_uid)
            if suid in existing:
                continue
            session.add(
                AnnotationTask(
                    project_id=p.id, series_id=sid, series_uid=suid, study_uid=study_uid, site=site
                )
            )
            new += 1
        return new


def assign(
    ws: Workspace, project: str, *, task_id: int | None = None, reader: str | None = None
) -> dict[str, int]:
    """By hand (``task_id`` and ``reader``) or automatically: every task gets readers up to the
    project's count, the least-loaded readers first, never the same reader twice on a task and,
    when the project asks, never a reader from the task's own site. Returns each reader's load."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        readers = list(
            session.scalars(
                select(AnnotationReader)
                .where(AnnotationReader.project_id == p.id)
                .order_by(AnnotationReader.id)
            )
        )
        if task_id is not None or reader is not None:
            if task_id is None or reader is None:
                raise AnnotationError("assigning by hand needs both a task and a reader")
            t = _task(session, p, task_id)
            if reader not in {r.user_name for r in readers}:
                raise AnnotationError(
                    f"{reader!r} is not a reader of {project!r}", hint="`curata annotate reader add`"
                )
            if (
                session.scalar(
                    select(TaskAssignment.id).where(
                        TaskAssignment.task_id == t.id, TaskAssignment.reader == reader
                    )
                )
                is None
            ):
                session.add(TaskAssignment(task_id=t.id, reader=reader, assigned_by="hand"))
        else:
            pool = [r for r in readers if not r.adjudicator] or readers
            if len(pool) < p.readers_per_task:
                raise AnnotationError(
                    f"project {project!r} has {len(pool)} reader(s); each case needs {p.readers_per_task}",
                    hint="`curata annotate reader add PROJECT NAME`",
                )
            load = Counter({r.user_name: 0 for r in pool})
            have: dict[int, set[str]] = defaultdict(set)
            for tid, rname in session.execute(
                select(TaskAssignment.task_id, TaskAssignment.reader)
                .join(AnnotationTask, AnnotationTask.id == TaskAssignment.task_id)
                .where(AnnotationTask.project_id == p.id)
            ):
                have[tid].add(rname)
                if rname in load:
                    load[rname] += 1
            tasks = session.scalars(
                select(AnnotationTask).where(AnnotationTask.project_id == p.id).order_by(AnnotationTask.id)
            )
            for t in tasks:
                while len(have[t.id]) < p.readers_per_task:
                    eligible = [
                        r
                        for r in pool
                        if r.user_name not in have[t.id]
                        and not (p.skip_own_site and r.site and r.site == t.site)
                    ]
                    if not eligible:
                        raise AnnotationError(
                            f"task {t.id} (site {t.site}) has no eligible reader left",
                            hint="add readers from other sites, or create the project without skip_own_site",
                        )
                    pick = min(eligible, key=lambda r: (load[r.user_name], r.id))
                    session.add(TaskAssignment(task_id=t.id, reader=pick.user_name))
                    have[t.id].add(pick.user_name)
                    load[pick.user_name] += 1
        session.flush()
        counts = session.execute(
            select(TaskAssignment.reader, func.count())
            .join(AnnotationTask, AnnotationTask.id == TaskAssignment.task_id)
            .where(AnnotationTask.project_id == p.id)
            .group_by(TaskAssignment.reader)
        )
        return {r: int(n) for r, n in counts}


def list_tasks(ws: Workspace, project: str, *, state: str | None = None) -> list[TaskView]:
    with ws.catalog.session() as session:
        p = _project(session, project)
        stmt = select(AnnotationTask).where(AnnotationTask.project_id == p.id)
        if state:
            stmt = stmt.where(AnnotationTask.state == TaskState(state))
        return [_view(session, t) for t in session.scalars(stmt.order_by(AnnotationTask.id))]


def is_reader(ws: Workspace, project: str, user: str) -> bool:
    """Whether ``user`` reads (or adjudicates) in ``project``: a reader added to it."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        return (
            session.scalar(
                select(AnnotationReader.id).where(
                    AnnotationReader.project_id == p.id, AnnotationReader.user_name == user
                )
            )
            is not None
        )


def queue(ws: Workspace, project: str, reader: str) -> list[TaskView]:
    """A reader's open tasks, next first: highest active-learning score, then oldest."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        rows = session.scalars(
            select(AnnotationTask)
            .join(TaskAssignment, TaskAssignment.task_id == AnnotationTask.id)
            .where(
                AnnotationTask.project_id == p.id,
                TaskAssignment.reader == reader,
                TaskAssignment.state != AssignmentState.submitted,
            )
        ).all()
        rows.sort(key=lambda t: (-(t.priority if t.priority is not None else -1e9), t.id))
        return [_view(session, t) for t in rows]


def _assignment(session: Session, t: AnnotationTask, reader: str) -> TaskAssignment:
    a = session.scalar(
        select(TaskAssignment).where(TaskAssignment.task_id == t.id, TaskAssignment.reader == reader)
    )
    if a is None:
        raise AnnotationError(f"{reader!r} is not assigned to task {t.id}", hint="`curata annotate assign`")
    return a


def start(ws: Workspace, project: str, task_id: int, reader: str) -> TaskView:
    """The reader opens the task: the clock of their time spent starts."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        a = _assignment(session, t, reader)
        if a.state == AssignmentState.submitted:
            raise AnnotationError(
                f"{reader!r} has submitted task {task_id}", hint="file a correction instead"
            )
        a.state = AssignmentState.in_progress
        a.started_at = _now()
        if t.state == TaskState.to_do:
            t.state = TaskState.in_progress
            t.updated_at = _now()
        return _view(session, t)


def submit(
    ws: Workspace, project: str, task_id: int, reader: str, *, seconds: float | None = None
) -> TaskView:
    """The reader hands in their read; the task is ``submitted`` once every reader has."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        a = _assignment(session, t, reader)
        has_read = session.scalar(
            select(AnnotationRead.id).where(
                AnnotationRead.task_id == t.id,
                AnnotationRead.reader == reader,
                AnnotationRead.is_draft.is_(False),
            )
        )
        if has_read is None:
            raise AnnotationError(
                f"{reader!r} has filed no read for task {task_id}", hint="save a SEG (STOW) first"
            )
        if seconds is None and a.started_at is not None:
            started = a.started_at if a.started_at.tzinfo else a.started_at.replace(tzinfo=UTC)
            seconds = (_now() - started).total_seconds()
        a.seconds_spent = float(a.seconds_spent or 0.0) + float(seconds or 0.0)
        a.state = AssignmentState.submitted
        a.submitted_at = _now()
        states = set(session.scalars(select(TaskAssignment.state).where(TaskAssignment.task_id == t.id)))
        if t.state in (TaskState.to_do, TaskState.in_progress):
            t.state = TaskState.submitted if states == {AssignmentState.submitted} else TaskState.in_progress
            t.updated_at = _now()
        return _view(session, t)


# -- reads ------------------------------------------------------------------------------------------------


def series_grid(ws: Workspace, series_uid: str) -> SeriesGrid:
    """The image grid of a catalogued series (from its instances' positions; no pixels read)."""
    with ws.catalog.session() as session:
        s = session.scalar(select(Series).where(Series.series_uid == series_uid))
        if s is None:
            raise AnnotationError(f"series {series_uid} is not in the catalog")
        inst = session.execute(
            select(Instance.sop_instance_uid, Instance.image_position, Instance.image_orientation).where(
                Instance.series_id == s.id
            )
        ).all()
        if not (s.rows and s.columns and s.pixel_spacing_row and s.pixel_spacing_col):
            raise AnnotationError(f"series {series_uid} has no image geometry in the catalog")
        return grid_from_rows(
            series_uid,
            s.rows,
            s.columns,
            (s.pixel_spacing_row, s.pixel_spacing_col),
            [(u, p, o) for u, p, o in inst],
        )


def source_images(ws: Workspace, series_uid: str) -> list[Any]:
    """The series' instances (pydicom datasets) in the order of its grid's slices."""
    import io

    import pydicom

    grid = series_grid(ws, series_uid)
    with ws.catalog.session() as session:
        digests = dict(
            session.execute(
                select(Instance.sop_instance_uid, Instance.blob_digest).where(
                    Instance.sop_instance_uid.in_(grid.sop_uids)
                )
            ).all()
        )
    out = [pydicom.dcmread(io.BytesIO(ws.store.get_bytes(digests[u]))) for u in grid.sop_uids]
    for ds in out:  # type 2 attributes a SEG/SR copies from its evidence: present, empty when unknown
        for keyword in ("StudyID", "ReferringPhysicianName", "AccessionNumber", "PatientBirthDate"):
            if keyword not in ds:
                setattr(ds, keyword, "")
    return out


_READER_CODE = b"curata reader code v1\x00"


def reader_code(ws: Workspace, reader: str) -> str:
    """What a DICOM object written by Curata, and a reader's pages, name a reader by: a stable code,
    never the account name (a staff name is an identifier under PS3.15 too). ``READER-<10 digits>``
    from an HMAC-SHA256 of the name keyed by the workspace secret, so no one computes it from a name."""
    mac = hmac.new(ws.site_key(), _READER_CODE + reader.encode(), hashlib.sha256).hexdigest()
    return f"READER-{int(mac[:10], 16) % 10**10:010d}"


def seg_for(
    ws: Workspace,
    project: str,
    task_id: int,
    labels: np.ndarray,
    *,
    reader: str,
    draft: bool = False,
    algorithm: str = "",
) -> bytes:
    """A DICOM SEG of ``labels`` on the task's series with the project's segment codes (what a
    viewer saves; also Curata's drafts and accepted labels). ``reader`` is whose read it is meant to
    be; the object names no one (its reader is the account that files or sends it)."""
    from curata.annotate._seg import write_seg

    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        defs, series_uid = _labels(_schema(session, p)), t.series_uid
    kind = "AI draft" if draft else "read"
    return write_seg(
        source_images(ws, series_uid),
        labels,
        defs,
        draft=draft,
        algorithm=algorithm,
        series_description=f"{project} {kind} task {task_id}",
    )


def _file(
    session: Session,
    ws: Workspace,
    t: AnnotationTask,
    p: AnnotationProject,
    reader: str,
    kind: ReadKind,
    source: str,
    object_bytes: bytes,
    labels: np.ndarray | None,
    *,
    sop_uid: str | None = None,
    values: dict[str, Any] | None = None,
    is_draft: bool = False,
    supersedes: int | None = None,
) -> AnnotationRead:
    schema = _schema(session, p)
    if not is_draft:
        _assignment(session, t, reader)
    last = session.scalar(
        select(AnnotationRead)
        .where(AnnotationRead.task_id == t.id, AnnotationRead.reader == reader, AnnotationRead.kind == kind)
        .order_by(AnnotationRead.version.desc())
    )
    obj_digest = ws.store.put_bytes(object_bytes)
    lm_digest, present = None, []
    if labels is not None:
        by_value = {d.value: d.name for d in _labels(schema)}
        found = [int(v) for v in np.unique(labels) if v]
        stray = [v for v in found if v not in by_value]
        if stray:
            raise InputError(
                f"label values {stray} are not in schema v{schema.version}",
                hint=f"known values: {sorted(by_value)}",
            )
        present = [by_value[v] for v in found]
        lm_digest = ws.store.put_bytes(labelmap_bytes(labels))
    read = AnnotationRead(
        task_id=t.id,
        reader=reader,
        kind=kind,
        version=(last.version + 1) if last else 1,
        supersedes_id=supersedes if supersedes is not None else (last.id if last else None),
        schema_version=schema.version,
        source=source,
        object_digest=obj_digest,
        sop_instance_uid=sop_uid,
        labelmap_digest=lm_digest,
        labels_present=present,
        values=values or {},
        is_draft=is_draft,
    )
    session.add(read)
    session.flush()
    record_provenance(
        session,
        "annotate.read",
        [obj_digest],
        {
            "task": t.id,
            "reader": reader,
            "kind": str(kind),
            "version": read.version,
            "supersedes": read.supersedes_id,
            "draft": is_draft,
        },
        {"read": read.id, "labelmap": lm_digest},
    )
    if not is_draft:
        a = _assignment(session, t, reader)
        if a.state == AssignmentState.to_do:
            a.state = AssignmentState.in_progress
            a.started_at = a.started_at or _now()
        if t.state == TaskState.to_do:
            t.state = TaskState.in_progress
    return read


def _segment_values(ds: Any, labels: list[LabelDef]) -> dict[int, int]:
    """Segment number -> schema value, by the segment's property code, else its label."""
    by_code = {(d.code, d.scheme): d.value for d in labels}
    by_name = {d.name.lower(): d.value for d in labels}
    out: dict[int, int] = {}
    for seg in getattr(ds, "SegmentSequence", []):
        number = int(seg.SegmentNumber)
        value = None
        code = getattr(seg, "SegmentedPropertyTypeCodeSequence", None)
        if code:
            scheme = str(code[0].CodingSchemeDesignator).upper()
            value = by_code.get((str(code[0].CodeValue), scheme))
        if value is None:
            value = by_name.get(str(getattr(seg, "SegmentLabel", "")).lower())
        if value is None:
            raise InputError(  # not its label: free text of an object from outside (a patient's name...)
                f"segment {number} matches no schema label (neither its code nor its label)",
                hint="use the project's label codes or names",
            )
        out[number] = value
    return out


def _referenced_series(ds: Any) -> str | None:
    for item in getattr(ds, "ReferencedSeriesSequence", []):
        return str(item.SeriesInstanceUID)
    for ev in getattr(ds, "CurrentRequestedProcedureEvidenceSequence", []):
        for s in getattr(ev, "ReferencedSeriesSequence", []):
            return str(s.SeriesInstanceUID)
    return None


def file_object(
    ws: Workspace,
    data: bytes,
    *,
    reader: str,
    project: str | None = None,
    source: str = "stow",
    keep_object: bool = True,
) -> ReadInfo:
    """File one DICOM SEG (or SR, RTSTRUCT) against its task and reader.

    ``keep_object=False`` (imports from outside the platform, not de-identified by its gateway): only
    the derived label map (or the SR's checked answers) is stored, never the file's own bytes.

    The task is the one whose series the object references, in ``project`` (or the only project
    with such a task) and that ``reader`` reads; the reader is ``reader``: the account that sent the
    object (recorded by the server at STOW) or the reader a curator names on import, never a name
    inside the object (its Content Creator's Name is any text anyone can write). A second object from
    the same reader is a new version of their read.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(__import__("io").BytesIO(data))
    except Exception as exc:
        raise InputError(f"not a DICOM object ({exc.__class__.__name__})") from exc
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    kind = {
        SEG_SOP_CLASS: ReadKind.seg,
        LABELMAP_SEG_SOP_CLASS: ReadKind.seg,
        RTSTRUCT_SOP_CLASS: ReadKind.rtstruct,
    }.get(sop_class, ReadKind.sr if sop_class in SR_SOP_CLASSES else None)
    if kind is None:
        raise InputError(f"SOP class {sop_class} is not an annotation (SEG, SR or RTSTRUCT)")
    who = reader
    if not who:
        raise InputError("no reader for the object", hint="file it as the account that sent it")
    series_uid = _referenced_series(ds)
    if series_uid is None:
        raise InputError("the object references no series", hint="segment one of the task's series")
    with ws.catalog.session() as session:
        stmt = select(AnnotationTask).where(AnnotationTask.series_uid == series_uid)
        if project:
            stmt = stmt.where(AnnotationTask.project_id == _project(session, project).id)
        tasks = list(session.scalars(stmt))
        tasks = [
            t
            for t in tasks
            if session.scalar(
                select(TaskAssignment.id).where(TaskAssignment.task_id == t.id, TaskAssignment.reader == who)
            )
        ]
        if not tasks:
            raise AnnotationError(
                f"no task of reader {who!r} reads series {series_uid}",
                hint="is the reader assigned to this case?",
            )
        if len(tasks) > 1:
            raise AnnotationError(
                f"reader {who!r} has tasks on series {series_uid} in several projects",
                hint="name the project",
            )
        t = tasks[0]
        p = session.get(AnnotationProject, t.project_id)
        assert p is not None
        sop_uid = str(ds.SOPInstanceUID)
        if not keep_object:  # an outside UID is an identifier too: keep only its hash, for de-duplication
            sop_uid = hashlib.sha256(sop_uid.encode()).hexdigest()
        dup = session.scalar(select(AnnotationRead).where(AnnotationRead.sop_instance_uid == sop_uid))
        if dup is not None:
            return _read_info(dup)
        labels = _labels(_schema(session, p))
        grid = series_grid(ws, t.series_uid)
        if kind == ReadKind.seg:
            lm = read_seg(ds, grid, _segment_values(ds, labels))
        elif kind == ReadKind.rtstruct:
            lm = read_rtstruct(ds, grid, {d.name: d.value for d in labels})
        else:
            lm = None
        values = _sr_values(ds, labels) if kind == ReadKind.sr else None
        if not keep_object:
            data = labelmap_bytes(lm) if lm is not None else json.dumps(values or {}, sort_keys=True).encode()
        read = _file(session, ws, t, p, who, kind, source, data, lm, sop_uid=sop_uid, values=values)
        return _read_info(read)


def _sr_values(ds: Any, labels: list[LabelDef]) -> dict[str, Any]:
    """Classification answers from an SR: a content item whose concept is a schema label's code and
    whose value is a coded answer or text."""
    by_code = {d.code: d.name for d in labels if d.kind in ("classification", "report_field")}
    out: dict[str, Any] = {}

    def walk(items: Any) -> None:
        for it in items or []:
            name = getattr(it, "ConceptNameCodeSequence", None)
            if name and str(name[0].CodeValue) in by_code:
                label = by_code[str(name[0].CodeValue)]
                if getattr(it, "ConceptCodeSequence", None):
                    out[label] = str(it.ConceptCodeSequence[0].CodeMeaning)
                elif hasattr(it, "TextValue"):
                    from curata.annotate._report import free_text_problems

                    if free_text_problems(str(it.TextValue)):
                        raise InputError(
                            f"the SR's {label!r} text fails the free-text de-identification check"
                        )
                    out[label] = str(it.TextValue)
            walk(getattr(it, "ContentSequence", None))

    walk(getattr(ds, "ContentSequence", None))
    return out


STOW_STEP = "viewer.stow"  # the server's provenance of a STOW by a signed-in account (its author)


def _stow_senders(session: Session) -> dict[str, set[str]]:
    """SOP Instance UID -> the accounts the server recorded sending it through a project's DICOMweb."""
    senders: dict[str, set[str]] = defaultdict(set)
    for inputs, params in session.execute(
        select(Provenance.inputs, Provenance.parameters).where(Provenance.step == STOW_STEP)
    ):
        author = (params or {}).get("author")
        if inputs and author:
            senders[str(inputs[-1])].add(str(author))
    return senders


def file_new_objects(ws: Workspace, project: str | None = None) -> FileResult:
    """File every SEG/SR/RTSTRUCT in the catalog not yet filed (what arrived through STOW-RS) as a
    read of the account that sent it (the server records the sender at STOW); an object with no
    such sender (a folder, the DICOM network), or one whose sender reads no task on its series, is
    refused with its reason and quarantined, and the rest go on. The object's own Content Creator's
    Name never decides whose read it is."""
    result = FileResult()
    with ws.catalog.session() as session:
        senders = _stow_senders(session)
        filed = set(
            session.scalars(
                select(AnnotationRead.sop_instance_uid).where(AnnotationRead.sop_instance_uid.is_not(None))
            )
        )
        rows = session.execute(
            select(Instance.sop_instance_uid, Instance.blob_digest)
            .where(
                Instance.sop_class_uid.in_(
                    [SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS, RTSTRUCT_SOP_CLASS, *SR_SOP_CLASSES]
                )
            )
            .order_by(Instance.id)
        ).all()
    for sop, digest in rows:
        if sop in filed:
            result.skipped += 1
            continue
        try:
            sent_by = sorted(senders.get(sop, ()))
            if not sent_by:
                raise AnnotationError(
                    "no signed-in sender is recorded for it (it reached the catalog outside a project's "
                    "STOW); the names inside an object never make it a reader's read",
                    hint="import it for its reader: curata annotate import PROJECT --reader NAME",
                )
            if len(sent_by) > 1:
                raise AnnotationError(
                    f"it was sent by {len(sent_by)} accounts: whose read it is is not known"
                )
            data = ws.store.get_bytes(digest)
            result.filed.append(file_object(ws, data, project=project, reader=sent_by[0]))
        except (InputError, AnnotationError) as exc:
            result.refused.append((sop, exc.message))
            _quarantine(ws, digest, exc.message)
    return result


def _quarantine(ws: Workspace, digest: str, reason: str) -> None:
    """Record an object that fits no task (its bytes stay in the store, unfiled) with the reason."""
    from curata.catalog import QuarantineItem

    with ws.catalog.session() as session:
        row = session.scalar(
            select(QuarantineItem).where(
                QuarantineItem.stage == "annotate", QuarantineItem.input_digest == digest
            )
        )
        if row is None:
            session.add(QuarantineItem(stage="annotate", input_digest=digest, reason=reason[:2000]))
        else:
            row.reason = reason[:2000]


def import_labelmap(
    ws: Workspace, project: str, series_uid: str, reader: str, path: Path, *, source: str = "import"
) -> ReadInfo:
    """A hospital's own annotation (NIfTI, NRRD, DICOM SEG or RTSTRUCT) filed as ``reader``'s read."""
    name = path.name.lower()
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = session.scalar(
            select(AnnotationTask).where(
                AnnotationTask.project_id == p.id, AnnotationTask.series_uid == series_uid
            )
        )
        if t is None:
            raise AnnotationError(f"project {project!r} has no task on series {series_uid}")
        task_id = t.id
    if name.endswith((".dcm", ".dicom")) or not name.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr")):
        return file_object(
            ws, path.read_bytes(), project=project, reader=reader, source=source, keep_object=False
        )
    grid = series_grid(ws, series_uid)
    if name.endswith(".nrrd") or name.endswith(".nhdr"):
        lm, kind = read_nrrd(path, grid), ReadKind.nrrd
    else:
        lm, kind = read_nifti(path, grid), ReadKind.nifti
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        # the label map is stored, never the file: its header (descrip, comments) may hold identifiers
        return _read_info(_file(session, ws, t, p, reader, kind, source, labelmap_bytes(lm), lm))


def file_labelmap(
    ws: Workspace,
    project: str,
    task_id: int,
    reader: str,
    labels: np.ndarray,
    *,
    source: str,
    is_draft: bool = False,
    supersedes: int | None = None,
) -> ReadInfo:
    """File a label map already on the task's grid (an edit made in Curata, or an AI draft)."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        grid_shape = series_grid(ws, t.series_uid).shape
        if labels.shape != grid_shape:
            raise InputError(f"label map shape {labels.shape} is not the series' {grid_shape}")
        kind = ReadKind.draft if is_draft else ReadKind.nifti
        read = _file(
            session,
            ws,
            t,
            p,
            reader,
            kind,
            source,
            labelmap_bytes(labels),
            labels.astype(np.uint16),
            is_draft=is_draft,
            supersedes=supersedes,
        )
        return _read_info(read)


def file_classification(
    ws: Workspace, project: str, task_id: int, reader: str, values: dict[str, str]
) -> ReadInfo:
    """A reader's answers to the schema's classification / report fields."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        labels = {d.name: d for d in _labels(_schema(session, p))}
        for k, v in values.items():
            d = labels.get(k)
            if d is None or d.kind not in ("classification", "report_field"):
                raise AnnotationError(f"{k!r} is not a classification or report field of the schema")
            if d.kind == "classification" and d.options and v not in d.options:
                raise AnnotationError(f"{k!r} must be one of {d.options}, not {v!r}")
        body = json.dumps(values, sort_keys=True).encode()
        read = _file(session, ws, t, p, reader, ReadKind.sr, "form", body, None, values=values)
        return _read_info(read)


def _latest_reads(session: Session, task_id: int, *, drafts: bool = False) -> list[AnnotationRead]:
    """Each reader's newest label-map read of the task (drafts only when asked)."""
    rows = session.scalars(
        select(AnnotationRead)
        .where(
            AnnotationRead.task_id == task_id,
            AnnotationRead.labelmap_digest.is_not(None),
            AnnotationRead.is_draft.is_(drafts),
        )
        .order_by(AnnotationRead.reader, AnnotationRead.id)
    )
    newest: dict[str, AnnotationRead] = {}
    for r in rows:
        newest[r.reader] = r
    return [newest[k] for k in sorted(newest)]


def visible_reads(
    ws: Workspace, project: str, task_id: int, user: str, *, manager: bool = False
) -> list[ReadInfo]:
    """What ``user`` may see of a task: their own reads; others' reads only when the project is not
    blinded, the case is accepted, or the user adjudicates; AI drafts only when the project shows them
    or the user adjudicates. ``manager``: the user manages the project (a curator), and sees all."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        adjudicator = manager or bool(
            session.scalar(
                select(AnnotationReader.adjudicator).where(
                    AnnotationReader.project_id == p.id, AnnotationReader.user_name == user
                )
            )
        )
        assigned = session.scalar(
            select(TaskAssignment.id).where(TaskAssignment.task_id == t.id, TaskAssignment.reader == user)
        )
        if not adjudicator and assigned is None:
            raise AnnotationError(f"{user!r} is neither a reader of task {task_id} nor an adjudicator")
        open_case = t.state != TaskState.accepted  # readers stay blind through review and adjudication
        out = []
        for r in session.scalars(
            select(AnnotationRead).where(AnnotationRead.task_id == t.id).order_by(AnnotationRead.id)
        ):
            if r.is_draft:
                ok = adjudicator or p.show_drafts
            else:
                ok = r.reader == user or adjudicator or not p.blinded or not open_case
            if ok:
                out.append(_read_info(r))
        return out


def read_labelmap(ws: Workspace, read_id: int) -> np.ndarray:
    with ws.catalog.session() as session:
        r = session.get(AnnotationRead, read_id)
        if r is None or r.labelmap_digest is None:
            raise AnnotationError(f"read {read_id} has no label map")
        digest = r.labelmap_digest
    return labelmap_from_bytes(ws.store.get_bytes(digest))


# -- agreement and adjudication ---------------------------------------------------------------------------


def _pair_agreement(
    a: np.ndarray,
    b: np.ndarray,
    spacing: tuple[float, float, float],
    labels: list[LabelDef],
    tolerance: float,
) -> dict[str, dict[str, Any]]:
    from curata.annotate._agreement import label_agreement

    return {
        d.name: label_agreement(a == d.value, b == d.value, spacing, tolerance_mm=tolerance)
        for d in labels
        if d.kind == "segmentation"
    }


def _passes(m: dict[str, Any], th: dict[str, float]) -> bool:
    hd = m.get("hd95_mm")
    return (
        m["dice"] >= th["dice_min"]
        and hd is not None
        and hd <= th["hd95_max_mm"]
        and m["detection_f1"] >= th["detection_f1_min"]
    )


def compute_agreement(ws: Workspace, project: str, task_id: int | None = None) -> list[AgreementResult]:
    """For every submitted task (or one): each label's agreement between every pair of readers'
    newest reads; the task goes to review when every pair passes the thresholds, else to adjudication.
    A task whose reads cannot be read (a label map's blob gone or damaged) keeps its state and comes
    back with the reason in ``error``; the other tasks go on."""
    out = []
    with ws.catalog.session() as session:
        p = _project(session, project)
        stmt = select(AnnotationTask).where(AnnotationTask.project_id == p.id)
        stmt = (
            stmt.where(AnnotationTask.id == task_id)
            if task_id
            else stmt.where(AnnotationTask.state == TaskState.submitted)
        )
        tasks = list(session.scalars(stmt))
        labels = _labels(_schema(session, p))
        th = {**DEFAULT_THRESHOLDS, **p.thresholds}
    for t in tasks:
        with ws.catalog.session() as session:
            reads = _latest_reads(session, t.id)
        if len(reads) < 2:
            raise AnnotationError(
                f"task {t.id} has {len(reads)} read(s)", hint="the second read is mandatory"
            )
        stored, reason = _unless_unreadable(partial(_labelmaps, ws, *(r.labelmap_digest for r in reads)))
        if stored is None:
            log.warning("agreement on %s: task %s not compared: %s", project, t.id, reason)
            out.append(AgreementResult(t.id, t.series_uid, t.state, [], False, error=reason))
            continue
        maps = {r.id: m for r, m in zip(reads, stored, strict=True)}
        grid = series_grid(ws, t.series_uid)
        pairs, ok = [], True
        with ws.catalog.session() as session:
            for i in range(len(reads)):
                for j in range(i + 1, len(reads)):
                    ra, rb = reads[i], reads[j]
                    per_label = _pair_agreement(
                        maps[ra.id], maps[rb.id], grid.spacing, labels, th["tolerance_mm"]
                    )
                    for name, m in per_label.items():
                        passed = _passes(m, th)
                        ok &= passed
                        row = session.scalar(
                            select(TaskAgreement).where(
                                TaskAgreement.task_id == t.id,
                                TaskAgreement.read_a_id == ra.id,
                                TaskAgreement.read_b_id == rb.id,
                                TaskAgreement.label == name,
                            )
                        )
                        if row is None:
                            session.add(
                                TaskAgreement(
                                    task_id=t.id,
                                    read_a_id=ra.id,
                                    read_b_id=rb.id,
                                    label=name,
                                    metrics=m,
                                    passed=passed,
                                )
                            )
                        pairs.append(
                            {"readers": [ra.reader, rb.reader], "label": name, "passed": passed, **m}
                        )
            tt = session.get(AnnotationTask, t.id)
            assert tt is not None
            if tt.state != TaskState.accepted:
                tt.state = TaskState.in_review if ok else TaskState.adjudication
                tt.updated_at = _now()
            out.append(AgreementResult(t.id, t.series_uid, tt.state, pairs, ok))
    return out


def _labelmaps(ws: Workspace, *digests: str | None) -> list[np.ndarray]:
    """The stored label maps of ``digests``, in their order."""
    return [labelmap_from_bytes(ws.store.get_bytes(d or "")) for d in digests]


def staple(maps: list[np.ndarray]) -> np.ndarray:
    """Multi-label STAPLE consensus (SimpleITK); voxels the readers leave undecided become background."""
    import SimpleITK as sitk

    images = [sitk.GetImageFromArray(m.astype(np.uint16)) for m in maps]
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(0)
    return sitk.GetArrayFromImage(f.Execute(images)).astype(np.uint16)


def _accept(
    session: Session,
    ws: Workspace,
    t: AnnotationTask,
    decision: Decision,
    who: str,
    labels: np.ndarray,
    reads: list[AnnotationRead],
    read_id: int | None,
    note: str,
) -> AcceptedLabel:
    if len({r.reader for r in reads}) < 2:
        raise AnnotationError(
            f"task {t.id} has fewer than two readers' reads", hint="the second read is mandatory"
        )
    if session.scalar(select(AcceptedLabel.id).where(AcceptedLabel.task_id == t.id)) is not None:
        raise AnnotationError(f"task {t.id} is already accepted")
    agreement: dict[str, list[dict[str, Any]]] = {}
    for row in session.scalars(select(TaskAgreement).where(TaskAgreement.task_id == t.id)):
        agreement.setdefault(row.label, []).append(
            {k: row.metrics.get(k) for k in ("dice", "hd95_mm", "assd_mm", "surface_dice", "detection_f1")}
        )
    digest = ws.store.put_bytes(labelmap_bytes(labels))
    acc = AcceptedLabel(
        task_id=t.id,
        decision=decision,
        decided_by=who,
        read_id=read_id,
        readers=sorted({r.reader for r in reads}),
        read_ids=[r.id for r in reads],
        agreement=agreement,
        labelmap_digest=digest,
        note=note,
    )
    session.add(acc)
    t.state = TaskState.accepted
    t.updated_at = _now()
    session.flush()
    record_provenance(
        session,
        "annotate.accept",
        [r.object_digest for r in reads],
        {"task": t.id, "decision": str(decision), "by": who, "read": read_id},
        {"labelmap": digest},
    )
    return acc


def accept_review(ws: Workspace, project: str, task_id: int, reviewer: str) -> dict[str, Any]:
    """A case whose reads agree: the reviewer accepts the readers' STAPLE consensus."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        if t.state != TaskState.in_review:
            raise AnnotationError(
                f"task {task_id} is {t.state}, not in_review", hint="compute the agreement first"
            )
        reads = _latest_reads(session, t.id)
        maps = [labelmap_from_bytes(ws.store.get_bytes(r.labelmap_digest or "")) for r in reads]
        acc = _accept(session, ws, t, Decision.review, reviewer, staple(maps), reads, None, "")
        return {"task": t.id, "decision": acc.decision, "readers": acc.readers}


def adjudicate(
    ws: Workspace,
    project: str,
    task_id: int,
    adjudicator: str,
    decision: str,
    *,
    read_id: int | None = None,
    edited: np.ndarray | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Decide a case: accept one read as it is, file an edited version of one read, or take the STAPLE
    consensus. Only a project adjudicator decides, and not on a case they read themselves."""
    dec = Decision(decision)
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        r = session.scalar(
            select(AnnotationReader).where(
                AnnotationReader.project_id == p.id, AnnotationReader.user_name == adjudicator
            )
        )
        if r is None or not r.adjudicator:
            raise AnnotationError(f"{adjudicator!r} is not an adjudicator of {project!r}")
        if t.state == TaskState.accepted:
            raise AnnotationError(f"task {task_id} is already accepted", hint="a decided case stays decided")
        if t.state not in (TaskState.adjudication, TaskState.in_review):
            raise AnnotationError(f"task {task_id} is {t.state}", hint="compute the agreement first")
        reads = _latest_reads(session, t.id)
        if adjudicator in {x.reader for x in reads}:
            raise AnnotationError(f"{adjudicator!r} read task {task_id} and cannot adjudicate it")
        by_id = {x.id: x for x in reads}
        if dec in (Decision.accept_read, Decision.edit) and read_id not in by_id:
            raise AnnotationError(
                f"read {read_id} is not a current read of task {task_id}",
                hint=f"current reads: {sorted(by_id)}",
            )
        if dec == Decision.accept_read:
            labels = labelmap_from_bytes(ws.store.get_bytes(by_id[read_id].labelmap_digest or ""))  # type: ignore[index]
            chosen = read_id
        elif dec == Decision.edit:
            if edited is None:
                raise AnnotationError("an edit needs the edited label map")
            base = by_id[read_id]  # type: ignore[index]
            digest_obj = ws.store.put_bytes(labelmap_bytes(edited))
            schema = _schema(session, p)
            new = AnnotationRead(
                task_id=t.id,
                reader=adjudicator,
                kind=ReadKind.nifti,
                version=1,
                supersedes_id=base.id,
                schema_version=schema.version,
                source="edit",
                object_digest=digest_obj,
                labelmap_digest=digest_obj,
                labels_present=list(base.labels_present),
                is_draft=False,
            )
            session.add(new)
            session.flush()
            labels, chosen = edited.astype(np.uint16), new.id
        elif dec == Decision.staple:
            labels = staple([labelmap_from_bytes(ws.store.get_bytes(x.labelmap_digest or "")) for x in reads])
            chosen = None
        else:
            raise AnnotationError("an adjudicator decides accept_read, edit or staple")
        acc = _accept(session, ws, t, dec, adjudicator, labels, reads, chosen, note)
        return {"task": t.id, "decision": acc.decision, "readers": acc.readers, "read": chosen}


def accepted_labels(ws: Workspace, project: str) -> list[dict[str, Any]]:
    """The accepted label of every decided case (what a release carries): series, label-map digest,
    decision, readers, agreement."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        schema = _schema(session, p)
        rows = session.execute(
            select(AnnotationTask, AcceptedLabel)
            .join(AcceptedLabel, AcceptedLabel.task_id == AnnotationTask.id)
            .where(AnnotationTask.project_id == p.id)
            .order_by(AnnotationTask.id)
        ).all()
        return [
            {
                "task": t.id,
                "series_uid": t.series_uid,
                "study_uid": t.study_uid,
                "labelmap_digest": a.labelmap_digest,
                "decision": a.decision,
                "readers": a.readers,
                "agreement": a.agreement,
                "labels": list(schema.labels),
            }
            for t, a in rows
        ]


def status(ws: Workspace, project: str) -> dict[str, Any]:
    with ws.catalog.session() as session:
        p = _project(session, project)
        states = Counter(
            dict(
                session.execute(
                    select(AnnotationTask.state, func.count())
                    .where(AnnotationTask.project_id == p.id)
                    .group_by(AnnotationTask.state)
                ).all()
            )
        )
        reads = (
            session.scalar(
                select(func.count())
                .select_from(AnnotationRead)
                .join(AnnotationTask, AnnotationTask.id == AnnotationRead.task_id)
                .where(AnnotationTask.project_id == p.id, AnnotationRead.is_draft.is_(False))
            )
            or 0
        )
        return {
            "project": p.name,
            "tasks": sum(states.values()),
            "reads": int(reads),
            **{s.value: int(states.get(s.value, 0)) for s in TaskState},
        }


def reader_stats(ws: Workspace, project: str) -> list[dict[str, Any]]:
    """Per reader: cases submitted, time per case, and Dice of their read against the accepted label."""
    from curata.annotate._agreement import dice

    with ws.catalog.session() as session:
        p = _project(session, project)
        labels = [d for d in _labels(_schema(session, p)) if d.kind == "segmentation"]
        asg = (
            session.execute(
                select(TaskAssignment)
                .join(AnnotationTask, AnnotationTask.id == TaskAssignment.task_id)
                .where(AnnotationTask.project_id == p.id)
            )
            .scalars()
            .all()
        )
        acc = {
            a.task_id: a
            for a in session.scalars(
                select(AcceptedLabel)
                .join(AnnotationTask, AnnotationTask.id == AcceptedLabel.task_id)
                .where(AnnotationTask.project_id == p.id)
            )
        }
        latest = {t: {r.reader: r for r in _latest_reads(session, t)} for t in acc}
    out = []
    for reader in sorted({a.reader for a in asg}):
        mine = [a for a in asg if a.reader == reader]
        done = [a for a in mine if a.state == AssignmentState.submitted]
        dices: list[float] = []
        for tid, a in acc.items():
            r = latest[tid].get(reader)
            if r is None:
                continue
            pair, reason = _unless_unreadable(partial(_labelmaps, ws, a.labelmap_digest, r.labelmap_digest))
            if pair is None:
                log.warning("reader statistics of %s: task %s left out: %s", project, tid, reason)
                continue
            ref, mp = pair
            dices.extend(dice(ref == d.value, mp == d.value) for d in labels)
        out.append(
            {
                "reader": reader,
                "assigned": len(mine),
                "submitted": len(done),
                "seconds_per_case": float(np.mean([a.seconds_spent for a in done])) if done else None,
                "dice_vs_accepted": float(np.mean(dices)) if dices else None,
                "adjudicated_cases": sum(
                    1 for tid, a in acc.items() if a.decision != Decision.review and reader in a.readers
                ),
            }
        )
    return out


def agreement_table(ws: Workspace, project: str) -> list[dict[str, Any]]:
    """Per label: reads, the distribution of Dice / HD95 / ASSD / surface Dice / detection F1 over
    the project's reader pairs, and the adjudication rate (for the dataset card and the demo)."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        rows = (
            session.execute(
                select(TaskAgreement)
                .join(AnnotationTask, AnnotationTask.id == TaskAgreement.task_id)
                .where(AnnotationTask.project_id == p.id)
            )
            .scalars()
            .all()
        )
        acc = list(
            session.scalars(
                select(AcceptedLabel)
                .join(AnnotationTask, AnnotationTask.id == AcceptedLabel.task_id)
                .where(AnnotationTask.project_id == p.id)
            )
        )
        reads: Counter[str] = Counter()
        for r in session.scalars(
            select(AnnotationRead)
            .join(AnnotationTask, AnnotationTask.id == AnnotationRead.task_id)
            .where(AnnotationTask.project_id == p.id, AnnotationRead.is_draft.is_(False))
        ):
            for name in r.labels_present:
                reads[name] += 1
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_label[r.label].append(r.metrics)
    decided = len(acc)
    adjudicated = sum(1 for a in acc if a.decision != Decision.review)
    out = []
    for label, ms in sorted(by_label.items()):

        def q(key: str, ms: list[dict[str, Any]] = ms) -> dict[str, float | None]:
            v = np.array([m[key] for m in ms if m.get(key) is not None], dtype=float)
            if v.size == 0:
                return {"median": None, "p25": None, "p75": None, "min": None}
            return {
                "median": float(np.median(v)),
                "p25": float(np.percentile(v, 25)),
                "p75": float(np.percentile(v, 75)),
                "min": float(v.min()),
            }

        out.append(
            {
                "label": label,
                "reads": reads.get(label, 0),
                "pairs": len(ms),
                "dice": q("dice"),
                "hd95_mm": q("hd95_mm"),
                "assd_mm": q("assd_mm"),
                "surface_dice": q("surface_dice"),
                "detection_f1": q("detection_f1"),
                "cases_decided": decided,
                "adjudication_rate": (adjudicated / decided) if decided else None,
            }
        )
    return out


def classification_kappa(ws: Workspace, project: str) -> dict[str, float]:
    """Per classification label: Cohen's kappa when the same two readers read every case, else Fleiss'
    kappa (more readers per case, or reader pairs that vary between cases)."""
    from curata.annotate._agreement import cohens_kappa, fleiss_kappa

    with ws.catalog.session() as session:
        p = _project(session, project)
        labels = [d.name for d in _labels(_schema(session, p)) if d.kind == "classification"]
        reads = session.scalars(
            select(AnnotationRead)
            .join(AnnotationTask, AnnotationTask.id == AnnotationRead.task_id)
            .where(
                AnnotationTask.project_id == p.id,
                AnnotationRead.kind == ReadKind.sr,
                AnnotationRead.is_draft.is_(False),
            )
            .order_by(AnnotationRead.id)
        ).all()
    answers: dict[str, dict[int, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for r in reads:
        for k, v in (r.values or {}).items():
            answers[k][r.task_id][r.reader] = v  # the newest version wins
    out = {}
    for label in labels:
        by_task = [v for v in answers[label].values() if len(v) >= 2]
        if not by_task:
            continue
        n = Counter(len(v) for v in by_task)
        k = max(n, key=lambda x: n[x])
        by_task = [v for v in by_task if len(v) == k]
        raters = sorted({r for v in by_task for r in v})
        if k == 2 and len(raters) == 2:  # the same two readers throughout: Cohen's kappa
            out[label] = cohens_kappa([v[raters[0]] for v in by_task], [v[raters[1]] for v in by_task])
        else:  # reader pairs vary between cases: Fleiss' kappa
            out[label] = fleiss_kappa([list(v.values()) for v in by_task])
    return out


def project_summary(ws: Workspace, project: str) -> dict[str, Any]:
    """Status, agreement table, reader statistics and kappas in one record (the demo and the card)."""
    return {
        "status": status(ws, project),
        "agreement": agreement_table(ws, project),
        "readers": reader_stats(ws, project),
        "kappa": classification_kappa(ws, project),
    }


def release_labels(ws: Workspace, project: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """What a release carries from this project: image series UID -> the DICOM SEG (digest in the
    store) of its accepted label, written once and kept; and the reading statistics for the card.
    Only accepted cases appear, so a case without its second read never reaches a release."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        rows = session.execute(
            select(AnnotationTask.id, AnnotationTask.series_uid, AcceptedLabel.id)
            .join(AcceptedLabel, AcceptedLabel.task_id == AnnotationTask.id)
            .where(AnnotationTask.project_id == p.id)
            .order_by(AnnotationTask.id)
        ).all()
    out: dict[str, list[str]] = {}
    for task_id, series_uid, acc_id in rows:
        with ws.catalog.session() as session:
            acc = session.get(AcceptedLabel, acc_id)
            assert acc is not None
            digest, lm_digest = acc.seg_digest, acc.labelmap_digest
        if digest is None:
            labels = labelmap_from_bytes(ws.store.get_bytes(lm_digest))
            digest = ws.store.put_bytes(seg_for(ws, project, task_id, labels, reader="accepted"))
            with ws.catalog.session() as session:
                acc = session.get(AcceptedLabel, acc_id)
                assert acc is not None
                acc.seg_digest = digest
        out[series_uid] = [digest]
    return out, {"project": project, "labels": agreement_table(ws, project)}


# -- reading reports --------------------------------------------------------------------------------------


def set_report_template(ws: Workspace, project: str, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's structured report: findings (coded), measurements, free text."""
    from curata.annotate._report import template_of

    try:
        parsed = template_of(fields)
    except ValidationError as exc:
        raise AnnotationError(f"report template: {exc.errors()[0]['msg']}") from exc
    with ws.catalog.session() as session:
        p = _project(session, project)
        p.report_template = {"fields": [f.model_dump() for f in parsed]}
        return list(p.report_template["fields"])


def _template(p: AnnotationProject) -> list[Any]:
    from curata.annotate._report import template_of

    return template_of((p.report_template or {}).get("fields"))


def patient_identities(ws: Workspace, study_uid: str) -> Any:
    """What the workspace knows that identifies the study's patient (an ``Identifiers``), or None.

    A site-local install keeps it in its vault: de-identification seals each patient's name and ID
    under their pseudonym, and every identifier of the patient (``collect.deid.identities``: DICOM
    and clinical inputs) under their keyed ID, with the site's staff and institution names. A central
    platform receives de-identified data only and holds none: its texts get the generic check alone.
    """
    from curata.collect.deid import Identifiers, SiteIdentities, Vault

    if not ws.key_path.exists() or not ws.vault_path.is_dir():
        return None
    with ws.catalog.session() as session:
        pseudonym = session.scalar(
            select(Patient.pseudonym)
            .join(Study, Study.patient_id == Patient.id)
            .where(Study.study_uid == study_uid)
            .limit(1)
        )
    if not pseudonym:
        return None
    key = ws.site_key()
    ids, patient_ids = Identifiers(), set()
    for rec in Vault(ws.vault_path, key).lookup(pseudonym):
        if rec.get("kind") != "patient":
            continue
        name, pid = str(rec.get("patient_name") or "").strip(), str(rec.get("patient_id") or "").strip()
        if name:
            ids.add_name(name)
            ids.add_strong(name)
        if pid:
            ids.add_strong(pid)
            ids.add_value(pid)
            patient_ids.add(pid)
    site = SiteIdentities(ws.vault_path, key).recall()
    for pid in patient_ids:
        known = site.get(pid)
        if known is not None:
            ids.update(known)
    if patient_ids:  # the site's staff and institutions name its patients' care
        for person in site.people:
            ids.add_name(person)
        for place in site.institutions:
            ids.add_word(place)
    return ids if (ids.words or ids.strong) else None


def write_report(ws: Workspace, project: str, task_id: int, author: str, values: dict[str, Any]) -> int:
    """A reader's report (a new version when they write again); every text passes the free-text check,
    with the patient's own identifiers where the workspace holds them (:func:`patient_identities`)."""
    from curata.annotate._report import validate

    with ws.catalog.session() as session:
        t = _task(session, _project(session, project), task_id)
        _assignment(session, t, author)
        study_uid = t.study_uid
    identities = patient_identities(ws, study_uid)
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        clean = validate(_template(p), values, identities)
        last = session.scalar(
            select(ReadingReport)
            .where(ReadingReport.task_id == t.id, ReadingReport.author == author)
            .order_by(ReadingReport.version.desc())
        )
        r = ReadingReport(
            task_id=t.id,
            author=author,
            version=(last.version + 1) if last else 1,
            supersedes_id=last.id if last else None,
            values=clean,
        )
        session.add(r)
        session.flush()
        return r.id


def sign_report(ws: Workspace, project: str, report_id: int, signer: str) -> dict[str, Any]:
    """The second reader signs a report off: the DICOM SR is written (verified by the signer) and kept."""
    from curata.annotate._report import write_sr

    with ws.catalog.session() as session:
        p = _project(session, project)
        r = session.get(ReadingReport, report_id)
        if r is None:
            raise AnnotationError(f"no report {report_id}")
        t = _task(session, p, r.task_id)
        if signer == r.author:
            raise AnnotationError("a report is signed off by the second reader, not its author")
        _assignment(session, t, signer)
        if r.signed_by:
            raise AnnotationError(f"report {report_id} is already signed by {r.signed_by}")
        fields, values, author, series_uid = _template(p), dict(r.values), r.author, t.series_uid
    evidence = source_images(ws, series_uid)
    sr = write_sr(
        evidence,
        fields,
        values,
        author=reader_code(ws, author),
        signer=reader_code(ws, signer),
        title=f"{project} report task {r.task_id}",
    )
    digest = ws.store.put_bytes(sr)
    with ws.catalog.session() as session:
        row = session.get(ReadingReport, report_id)
        assert row is not None
        row.signed_by, row.signed_at, row.sr_digest = signer, _now(), digest
        record_provenance(
            session,
            "annotate.report",
            [digest],
            {"report": report_id, "author": author, "signer": signer},
            {"sr": digest},
        )
    return {"report": report_id, "sr_digest": digest, "signed_by": signer}


def render_report(ws: Workspace, project: str, report_id: int) -> dict[str, bytes]:
    """The report as ``report.html`` and ``report.pdf``."""
    from curata.annotate._report import render_html, render_pdf

    with ws.catalog.session() as session:
        p = _project(session, project)
        r = session.get(ReadingReport, report_id)
        if r is None:
            raise AnnotationError(f"no report {report_id}")
        fields, values = _template(p), dict(r.values)
        meta = {
            "task": str(r.task_id),
            "reader": r.author,
            "version": str(r.version),
            "signed off by": r.signed_by or "(not yet signed)",
        }
    title = f"Reading report - {project}"
    return {
        "report.html": render_html(title, fields, values, meta).encode(),
        "report.pdf": render_pdf(title, fields, values, meta),
    }


# -- AI pre-annotation ------------------------------------------------------------------------------------


def volume_hu(ws: Workspace, series_uid: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The series' pixels in HU on its grid (slices x rows x columns) and the grid's spacing."""
    images = source_images(ws, series_uid)
    with decoding("the pixel data of the series", ordinary=True):
        vol = np.stack(
            [
                ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
                + float(getattr(ds, "RescaleIntercept", 0) or 0)
                for ds in images
            ]
        )
    return vol, series_grid(ws, series_uid).spacing


def _provenance_of(session: Session, step: str, project: str) -> list[Any]:
    from curata.catalog import Provenance

    rows = session.scalars(select(Provenance).where(Provenance.step == step).order_by(Provenance.id))
    return [r for r in rows if r.parameters.get("project") == project]


def assist_models(ws: Workspace, project: str) -> dict[str, Any]:
    """The models a project can draft with: the classical ones, its trained UNet(s), its bundles."""
    from curata.annotate import _assist

    models: dict[str, Any] = dict(_assist.CLASSICAL)
    with ws.catalog.session() as session:
        _project(session, project)
        trained = _provenance_of(session, "annotate.train", project)
        bundles = _provenance_of(session, "annotate.bundle", project)
    for row in trained:  # the newest run of a name wins
        models[row.parameters["name"]] = ("unet", row.output["weights"], row.output["labels"])
    for row in bundles:
        models[row.parameters["name"]] = ("bundle", row.output["files"], None)
    return models


def _load_model(ws: Workspace, project: str, name: str) -> Any:
    import tempfile

    from curata.annotate import _assist

    entry = assist_models(ws, project).get(name)
    if entry is None:
        raise AnnotationError(f"no model named {name!r} for {project!r}", hint="GET /info lists them")
    if isinstance(entry, _assist.AssistModel):
        return entry
    kind, ref, labels = entry
    if kind == "unet":
        return _assist.unet_model(name, ws.store.get_bytes(ref), labels)
    with tempfile.TemporaryDirectory() as tmp:
        for rel, digest in ref.items():
            dest = Path(tmp) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(ws.store.get_bytes(digest))
        return _assist.bundle_model(Path(tmp))


def register_bundle(ws: Workspace, project: str, folder: Path, *, name: str | None = None) -> str:
    """Copy a MONAI bundle from a local folder into the store (configs/, models/model.pt) for a project."""
    from curata.annotate import _assist

    _assist.bundle_model(folder)  # loads, or says why not
    files = {}
    for rel in ("configs/inference.json", "configs/metadata.json", "models/model.pt"):
        if (folder / rel).is_file():
            files[rel] = ws.store.put_bytes((folder / rel).read_bytes())
    model = name or folder.name
    with ws.catalog.session() as session:
        _project(session, project)
        record_provenance(
            session,
            "annotate.bundle",
            sorted(files.values()),
            {"project": project, "name": model},
            {"files": files},
        )
    return model


def predict_draft(ws: Workspace, project: str, task_id: int, model: str) -> ReadInfo:
    """Run ``model`` on the task's series and file the result as a marked AI draft (never a read)."""
    out = _predict(ws, project, task_id, model)
    return file_labelmap(
        ws, project, task_id, f"assist:{model}", out, source=f"assist:{model}", is_draft=True
    )


def _predict(ws: Workspace, project: str, task_id: int, model: str) -> np.ndarray:
    m = _load_model(ws, project, model)
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        schema = {d.name: d.value for d in _labels(_schema(session, p)) if d.kind == "segmentation"}
        series_uid = t.series_uid
    mapping = {v: schema[k] for k, v in m.labels.items() if k in schema}
    if not mapping:
        raise AnnotationError(
            f"model {model!r} labels {sorted(m.labels)} match no label of {project!r}",
            hint=f"schema labels: {sorted(schema)}",
        )
    hu, spacing = volume_hu(ws, series_uid)
    raw = m.predict(hu, spacing)
    out = np.zeros(raw.shape, np.uint16)
    for src, dst in mapping.items():
        out[raw == src] = dst
    return out


def train_model(
    ws: Workspace, project: str, name: str = "unet", *, epochs: int = 40, seed: int = 0
) -> dict[str, Any]:
    """Train the small UNet on the project's accepted labels; the run is recorded as provenance
    (inputs: the accepted label maps and image series; output: the weights' digest and the losses)."""
    from curata.annotate import _assist

    accepted = accepted_labels(ws, project)
    with ws.catalog.session() as session:
        p = _project(session, project)
        labels = {d.name: d.value for d in _labels(_schema(session, p)) if d.kind == "segmentation"}
    cases: list[tuple[np.ndarray, np.ndarray]] = []
    used: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for a in accepted:
        case, reason = _unless_unreadable(partial(_training_case, ws, a))
        if case is None:
            log.warning("train %s on %s: task %s skipped: %s", name, project, a["task"], reason)
            skipped.append({"series_uid": a["series_uid"], "reason": str(reason)})
        else:
            cases.append(case)
            used.append(a)
    if skipped and not cases:
        raise AnnotationError(
            f"none of the {len(accepted)} accepted case(s) of {project!r} can be read for training",
            hint=f"e.g. series {skipped[0]['series_uid']}: {skipped[0]['reason']}",
        )
    weights, run = _assist.train_unet(cases, max(labels.values()), epochs=epochs, seed=seed)
    digest = ws.store.put_bytes(weights)
    with ws.catalog.session() as session:
        record_provenance(
            session,
            "annotate.train",
            sorted(a["labelmap_digest"] for a in used) + sorted(a["series_uid"] for a in used),
            {"project": project, "name": name, "epochs": epochs, "seed": seed},
            {"weights": digest, "labels": labels, **run, "skipped": skipped},
        )
    return {"model": name, "weights": digest, **run, "skipped": skipped}


def _training_case(ws: Workspace, accepted: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """An accepted case as (HU volume, label map) on the series' grid."""
    hu = volume_hu(ws, accepted["series_uid"])[0]
    labels = labelmap_from_bytes(ws.store.get_bytes(accepted["labelmap_digest"]))
    if labels.shape != hu.shape:
        raise InputError(f"the accepted label map is {labels.shape}, the series' pixels {hu.shape}")
    return hu, labels


def draft_agreement(ws: Workspace, project: str) -> dict[str, dict[str, Any]]:
    """Per model: Dice of its drafts against the accepted labels (how much readers changed them)."""
    from curata.annotate._agreement import dice

    accepted = {a["task"]: a for a in accepted_labels(ws, project)}
    with ws.catalog.session() as session:
        p = _project(session, project)
        labels = [d for d in _labels(_schema(session, p)) if d.kind == "segmentation"]
        drafts = session.scalars(
            select(AnnotationRead)
            .join(AnnotationTask, AnnotationTask.id == AnnotationRead.task_id)
            .where(AnnotationTask.project_id == p.id, AnnotationRead.is_draft.is_(True))
            .order_by(AnnotationRead.id)
        ).all()
    models = assist_models(ws, project)

    def covered(model: str) -> set[str] | None:
        m = models.get(model)
        if m is None:
            return None
        return set(m.labels) if hasattr(m, "labels") else set((m[2] or {}).keys()) or None

    per: dict[str, list[float]] = defaultdict(list)
    unread: Counter[str] = Counter()
    for d in drafts:
        a = accepted.get(d.task_id)
        if a is None or d.labelmap_digest is None:
            continue
        model = d.source.removeprefix("assist:")
        pair, reason = _unless_unreadable(partial(_labelmaps, ws, a["labelmap_digest"], d.labelmap_digest))
        if pair is None:
            log.warning("drafts of %s: task %s left out: %s", project, d.task_id, reason)
            unread[model] += 1
            continue
        ref, got = pair
        names = covered(model) or set(d.labels_present)
        for lab in labels:
            if lab.name in names:
                per[model].append(dice(ref == lab.value, got == lab.value))
    return {
        m: {
            "drafts_compared": len(per[m]),
            "dice_mean": float(np.mean(per[m])) if per[m] else None,
            "unreadable": unread[m],
        }
        for m in [*per, *(m for m in unread if m not in per)]
    }


def next_sample(
    ws: Workspace, project: str, strategy: str, *, seed: int = 0, reader: str | None = None
) -> dict[str, Any]:
    """Active learning: the next case to read (``first``, ``random``, or ``uncertainty`` from the
    project's UNet: the mean entropy of its prediction, stored as the tasks' queue priority).
    ``reader``: among that reader's own open tasks only (else every open case: a curator's view)."""
    from curata.annotate import _assist

    with ws.catalog.session() as session:
        p = _project(session, project)
        stmt = select(AnnotationTask).where(
            AnnotationTask.project_id == p.id, AnnotationTask.state != TaskState.accepted
        )
        if reader is not None:
            stmt = stmt.join(TaskAssignment, TaskAssignment.task_id == AnnotationTask.id).where(
                TaskAssignment.reader == reader, TaskAssignment.state != AssignmentState.submitted
            )
        open_tasks = list(session.scalars(stmt.order_by(AnnotationTask.id)))
    if not open_tasks:
        return {}
    skipped: list[dict[str, Any]] = []
    if strategy == "first":
        pick = open_tasks[0]
    elif strategy == "random":
        pick = open_tasks[int(np.random.default_rng(seed).integers(len(open_tasks)))]
    elif strategy == "uncertainty":
        entry = assist_models(ws, project).get("unet")
        if not isinstance(entry, tuple):
            raise AnnotationError("uncertainty needs a trained model", hint="POST /train/unet first")
        weights, labels = ws.store.get_bytes(entry[1]), entry[2]

        def uncertainty_of(series_uid: str) -> float:
            return _assist.unet_uncertainty(weights, max(labels.values()), volume_hu(ws, series_uid)[0])

        scores: dict[int, float | None] = {}
        for t in open_tasks:
            scores[t.id], reason = _unless_unreadable(partial(uncertainty_of, t.series_uid))
            if reason is not None:  # no score: read last
                log.warning("uncertainty on %s: task %s not scored: %s", project, t.id, reason)
                skipped.append({"series_uid": t.series_uid, "task": t.id, "reason": reason})
        with ws.catalog.session() as session:
            for tid, score in scores.items():
                row = session.get(AnnotationTask, tid)
                assert row is not None
                row.priority = score
        scored = [t for t in open_tasks if scores[t.id] is not None]
        if not scored:
            raise AnnotationError(
                f"none of the {len(open_tasks)} open case(s) of {project!r} can be read for scoring",
                hint=f"e.g. series {skipped[0]['series_uid']}: {skipped[0]['reason']}",
            )
        pick = max(scored, key=lambda t: scores[t.id] or 0.0)
    else:
        raise AnnotationError(f"unknown strategy {strategy!r}", hint="first, random or uncertainty")
    return {
        "id": pick.series_uid,
        "task": pick.id,
        "state": pick.state,
        "strategy": strategy,
        "skipped": skipped,
    }


def task_agreement(ws: Workspace, project: str, task_id: int) -> list[dict[str, Any]]:
    """The stored agreement of one task: per pair of reads and label, the readers and the figures."""
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        rows = session.scalars(
            select(TaskAgreement).where(TaskAgreement.task_id == t.id).order_by(TaskAgreement.id)
        )
        out = []
        for row in rows:
            ra, rb = session.get(AnnotationRead, row.read_a_id), session.get(AnnotationRead, row.read_b_id)
            assert ra is not None and rb is not None
            out.append(
                {"readers": [ra.reader, rb.reader], "label": row.label, "passed": row.passed, **row.metrics}
            )
        return out


# -- the platform's view: blinding in DICOMweb, reads saved from the viewer, readers from members --------


DERIVED_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "PR", "KO"})


def hidden_series(user: str, managed: Any = None) -> Any:
    """A ``select(Series.id)`` of the series ``user`` may not see, whatever project they look through:
    the reads of other readers on open cases of blinded projects, and the AI drafts of projects that
    hide them. A project's adjudicators see its reads and drafts, and so does whoever manages it:
    ``managed``, a ``select`` of the names of the annotation projects ``user`` manages (the platform
    decides who: curators and admins of a platform project that holds it)."""
    adjudicates: Any = select(AnnotationReader.project_id).where(
        AnnotationReader.user_name == user, AnnotationReader.adjudicator.is_(True)
    )
    if managed is not None:
        adjudicates = union(
            adjudicates, select(AnnotationProject.id).where(AnnotationProject.name.in_(managed))
        )
    filed = select(Instance.series_id).join(
        AnnotationRead, AnnotationRead.sop_instance_uid == Instance.sop_instance_uid
    )
    # a derived object that is no filed read (a SEG or SR someone not assigned to the case saved
    # from a viewer, a contributed annotation) is as good as another read: hidden from the case's
    # readers until the case is accepted
    unfiled_on_open_cases = (
        select(Series.id)
        .join(Study, Series.study_id == Study.id)
        .join(AnnotationTask, AnnotationTask.study_uid == Study.study_uid)
        .join(AnnotationProject, AnnotationProject.id == AnnotationTask.project_id)
        .join(
            AnnotationReader,
            and_(AnnotationReader.project_id == AnnotationProject.id, AnnotationReader.user_name == user),
        )
        .where(
            Series.modality.in_(sorted(DERIVED_MODALITIES)),
            Series.id.not_in(filed),
            AnnotationProject.blinded.is_(True),
            AnnotationProject.id.not_in(adjudicates),
            AnnotationTask.state != TaskState.accepted,
        )
    )
    return union(
        unfiled_on_open_cases,
        select(Instance.series_id)
        .join(AnnotationRead, AnnotationRead.sop_instance_uid == Instance.sop_instance_uid)
        .join(AnnotationTask, AnnotationTask.id == AnnotationRead.task_id)
        .join(AnnotationProject, AnnotationProject.id == AnnotationTask.project_id)
        .where(
            AnnotationRead.reader != user,
            AnnotationProject.id.not_in(adjudicates),
            or_(
                and_(AnnotationRead.is_draft.is_(True), AnnotationProject.show_drafts.is_(False)),
                and_(
                    AnnotationRead.is_draft.is_(False),
                    AnnotationProject.blinded.is_(True),
                    AnnotationTask.state != TaskState.accepted,
                ),
            ),
        ),
    )


def read_sop_uids() -> Any:
    """A ``select`` of the SOP Instance UIDs of every filed read and draft: raw reads, never labels a
    release may carry on its own (a release takes accepted labels only)."""
    return select(AnnotationRead.sop_instance_uid).where(AnnotationRead.sop_instance_uid.is_not(None))


def projects_on_cohort(ws: Workspace, cohort: str) -> list[str]:
    """The annotation projects reading ``cohort``."""
    with ws.catalog.session() as session:
        return list(
            session.scalars(
                select(AnnotationProject.name)
                .where(AnnotationProject.cohort == cohort)
                .order_by(AnnotationProject.id)
            )
        )


def file_stowed(ws: Workspace, data: bytes, reader: str, projects: list[str]) -> ReadInfo | None:
    """A SEG/SR that a signed-in user saved through a platform project's DICOMweb (OHIF, 3D Slicer):
    filed against their task in one of ``projects`` as ``reader`` (the account, whatever the object's
    Content Creator says). None when it is no read of theirs (a plain derived object); an object that
    fits their task but not the schema is quarantined with the reason."""
    for name in projects:
        try:
            return file_object(ws, data, project=name, reader=reader, source="stow")
        except AnnotationError:
            continue  # no task of this reader on that series in this project
        except InputError as exc:
            _quarantine(ws, ws.store.put_bytes(data), exc.message)
            return None
    return None


def ensure_readers(ws: Workspace, project: str, readers: list[str], adjudicators: list[str]) -> list[str]:
    """Add the platform members who read (``readers``) and decide (``adjudicators``) to the project
    when they are not readers yet (those already there keep their site and role). Returns the new."""
    added: list[str] = []
    with ws.catalog.session() as session:
        p = _project(session, project)
        have = set(
            session.scalars(select(AnnotationReader.user_name).where(AnnotationReader.project_id == p.id))
        )
        for name, adj in [*((r, False) for r in readers), *((a, True) for a in adjudicators)]:
            if name not in have:
                session.add(AnnotationReader(project_id=p.id, user_name=name, site=None, adjudicator=adj))
                have.add(name)
                added.append(name)
    return added


def draft_seg(ws: Workspace, project: str, task_id: int, model: str) -> tuple[ReadInfo, bytes]:
    """Run ``model`` on the task's series and keep its draft as a DICOM SEG in the catalog (a marked
    AI draft beside the images, served by DICOMweb, hidden from readers unless the project shows
    drafts), filed as the task's draft. Returns the draft and the SEG's bytes."""
    import io

    import pydicom

    from curata.collect import Ingestor

    labels = _predict(ws, project, task_id, model)
    seg = seg_for(ws, project, task_id, labels, reader=f"assist:{model}", draft=True, algorithm=model)
    ds = pydicom.dcmread(io.BytesIO(seg))
    ds.PatientIdentityRemoved = "YES"  # derived from the catalog's de-identified images
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    seg = buf.getvalue()
    with ws.catalog.session() as session:
        t = _task(session, _project(session, project), task_id)
        site = t.site
    outcome = Ingestor(ws, deidentify=False, site=site, workers=1).ingest_bytes(seg, f"assist-{model}")
    if outcome.status not in ("ingested", "present"):
        raise AnnotationError(f"the draft SEG was not stored ({outcome.status})")
    with ws.catalog.session() as session:
        p = _project(session, project)
        t = _task(session, p, task_id)
        read = _file(
            session,
            ws,
            t,
            p,
            f"assist:{model}",
            ReadKind.draft,
            f"assist:{model}",
            seg,
            labels,
            sop_uid=str(ds.SOPInstanceUID),
            is_draft=True,
        )
        return _read_info(read), seg


def draft_series_uid(ws: Workspace, read_id: int) -> str | None:
    """The catalog series holding a read's (or draft's) DICOM object, when it is in the catalog."""
    with ws.catalog.session() as session:
        return session.scalar(
            select(Series.series_uid)
            .join(Instance, Instance.series_id == Series.id)
            .join(AnnotationRead, AnnotationRead.sop_instance_uid == Instance.sop_instance_uid)
            .where(AnnotationRead.id == read_id)
        )


def report_fields(ws: Workspace, project: str) -> list[dict[str, Any]]:
    """The project's report template (its fields, for a form)."""
    with ws.catalog.session() as session:
        return [f.model_dump() for f in _template(_project(session, project))]


def reports_of(ws: Workspace, project: str, task_id: int) -> list[dict[str, Any]]:
    """Every version of every report on a task of ``project``: id, author, version, values, signer."""
    with ws.catalog.session() as session:
        t = _task(session, _project(session, project), task_id)
        return [
            {
                "id": r.id,
                "task": r.task_id,
                "author": r.author,
                "version": r.version,
                "values": dict(r.values),
                "signed_by": r.signed_by,
                "sr_digest": r.sr_digest,
            }
            for r in session.scalars(
                select(ReadingReport).where(ReadingReport.task_id == t.id).order_by(ReadingReport.id)
            )
        ]
