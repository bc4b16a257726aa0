"""The catalog's queries, typed: what `curata ls / show / status / store verify` and the server show.

Every function takes a workspace and returns records (dataclasses); none prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select

from curata.catalog.models import Blob, Instance, Patient, QuarantineItem, Series, Site, Study
from curata.catalog.provenance import code_version
from curata.catalog.query import join_series_to_site
from curata.errors import CurataError


@dataclass(frozen=True)
class SiteRow:
    site: str
    region: str | None
    country: str | None
    patients: int


@dataclass(frozen=True)
class PatientRow:
    patient: str
    site: str
    sex: str | None
    studies: int


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    patient: str
    site: str
    date: date | str | None
    age: float | None
    description: str | None
    series: int


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    patient: str
    site: str
    modality: str | None
    body_part: str | None
    description: str | None
    manufacturer: str | None
    model: str | None
    rows: int | None
    columns: int | None
    slice_thickness: float | None
    instances: int | None


@dataclass(frozen=True)
class QuarantineRow:
    input_sha256: str
    stage: str
    reason: str
    size: int | None
    at: datetime | None


@dataclass(frozen=True)
class SeriesFilter:
    """What `curata ls` narrows by; empty fields do not filter."""

    site: str | None = None
    patient: str | None = None
    modality: str | None = None
    body_part: str | None = None
    manufacturer: str | None = None


def list_sites(ws: Any, where: SeriesFilter = SeriesFilter(), limit: int = 200) -> list[SiteRow]:
    q = (
        select(Site.name, Site.region, Site.country, func.count(Patient.id))
        .outerjoin(Patient)
        .group_by(Site.id)
        .order_by(Site.name)
    )
    if where.site:
        q = q.where(Site.name == where.site)
    with ws.catalog.session() as s:
        return [SiteRow(n, r, c, p) for n, r, c, p in s.execute(q.limit(limit))]


def list_patients(ws: Any, where: SeriesFilter = SeriesFilter(), limit: int = 200) -> list[PatientRow]:
    q = (
        select(Patient.pseudonym, Site.name, Patient.sex, func.count(Study.id))
        .join(Site)
        .outerjoin(Study)
        .group_by(Patient.id, Site.name)
        .order_by(Site.name, Patient.pseudonym)
    )
    if where.site:
        q = q.where(Site.name == where.site)
    if where.patient:
        q = q.where(Patient.pseudonym == where.patient)
    with ws.catalog.session() as s:
        return [PatientRow(p, si, sx, n) for p, si, sx, n in s.execute(q.limit(limit))]


def list_studies(ws: Any, where: SeriesFilter = SeriesFilter(), limit: int = 200) -> list[StudyRow]:
    q = (
        select(Study, Patient.pseudonym, Site.name)
        .join(Patient, Study.patient_id == Patient.id)
        .join(Site)
        .order_by(Patient.pseudonym, Study.study_date)
    )
    if where.site:
        q = q.where(Site.name == where.site)
    if where.patient:
        q = q.where(Patient.pseudonym == where.patient)
    with ws.catalog.session() as s:
        return [
            StudyRow(st.study_uid, p, si, st.study_date, st.patient_age_years, st.description, len(st.series))
            for st, p, si in s.execute(q.limit(limit))
        ]


def list_series(ws: Any, where: SeriesFilter = SeriesFilter(), limit: int = 200) -> list[SeriesRow]:
    q = join_series_to_site(select(Series, Patient.pseudonym, Site.name)).order_by(
        Patient.pseudonym, Series.series_number
    )
    if where.site:
        q = q.where(Site.name == where.site)
    if where.patient:
        q = q.where(Patient.pseudonym == where.patient)
    if where.modality:
        q = q.where(func.upper(Series.modality) == where.modality.upper())
    if where.body_part:
        q = q.where(func.upper(Series.body_part) == where.body_part.upper())
    if where.manufacturer:
        q = q.where(Series.manufacturer.ilike(f"%{where.manufacturer}%"))
    with ws.catalog.session() as s:
        return [
            SeriesRow(
                series_uid=se.series_uid,
                patient=p,
                site=si,
                modality=se.modality,
                body_part=se.body_part,
                description=se.description,
                manufacturer=se.manufacturer,
                model=se.model,
                rows=se.rows,
                columns=se.columns,
                slice_thickness=se.slice_thickness,
                instances=se.instance_count,
            )
            for se, p, si in s.execute(q.limit(limit))
        ]


def list_quarantine(ws: Any, limit: int = 200) -> list[QuarantineRow]:
    q = select(QuarantineItem).order_by(QuarantineItem.created_at.desc()).limit(limit)
    with ws.catalog.session() as s:
        return [
            QuarantineRow(qi.input_digest, qi.stage, qi.reason, qi.size, qi.created_at) for qi in s.scalars(q)
        ]


def describe_object(ws: Any, uid: str) -> dict[str, Any]:
    """Everything the catalog knows about a patient pseudonym, study/series/instance UID or blob digest."""
    out: dict[str, Any] | None = None
    with ws.catalog.session() as s:
        if (p := s.scalar(select(Patient).where(Patient.pseudonym == uid))) is not None:
            out = {
                "kind": "patient",
                "pseudonym": p.pseudonym,
                "site": p.site.name,
                "sex": p.sex,
                "studies": [
                    {
                        "study_uid": st.study_uid,
                        "date": st.study_date,
                        "age": st.patient_age_years,
                        "series": len(st.series),
                    }
                    for st in p.studies
                ],
            }
        elif (st := s.scalar(select(Study).where(Study.study_uid == uid))) is not None:
            out = {
                "kind": "study",
                "study_uid": st.study_uid,
                "patient": st.patient.pseudonym,
                "site": st.patient.site.name,
                "date": st.study_date,
                "time": st.study_time,
                "age": st.patient_age_years,
                "description": st.description,
                "series": [
                    {
                        "series_uid": se.series_uid,
                        "modality": se.modality,
                        "description": se.description,
                        "instances": se.instance_count,
                    }
                    for se in st.series
                ],
            }
        elif (se := s.scalar(select(Series).where(Series.series_uid == uid))) is not None:
            cols = {
                c.key: getattr(se, c.key) for c in Series.__table__.columns if c.key not in ("id", "study_id")
            }
            out = {
                "kind": "series",
                **cols,
                "study_uid": se.study.study_uid,
                "patient": se.study.patient.pseudonym,
            }
        elif (
            inst := s.scalar(
                select(Instance).where(or_(Instance.sop_instance_uid == uid, Instance.blob_digest == uid))
            )
        ) is not None:
            cols = {
                c.key: getattr(inst, c.key)
                for c in Instance.__table__.columns
                if c.key not in ("id", "series_id")
            }
            out = {
                "kind": "instance",
                **cols,
                "series_uid": inst.series.series_uid,
                "size": inst.blob.size,
                "stored": ws.store.exists(inst.blob_digest),
            }
    if out is None:
        raise CurataError(
            f"nothing in the catalog is called {uid!r}",
            hint="`curata ls patients|studies|series` lists what there is",
        )
    return out


@dataclass(frozen=True)
class WorkspaceStatus:
    workspace: str
    site: str
    catalog: str
    code_version: str
    counts: dict[str, int]
    stored_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "site": self.site,
            "catalog": self.catalog,
            "code_version": self.code_version,
            **self.counts,
            "stored_bytes": self.stored_bytes,
            "stored": human_size(self.stored_bytes),
        }


def workspace_status(ws: Any) -> WorkspaceStatus:
    """Counts of every level, open quarantine items and the bytes the catalog says are stored."""
    with ws.catalog.session() as s:
        counts = {
            name: s.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (
                ("sites", Site),
                ("patients", Patient),
                ("studies", Study),
                ("series", Series),
                ("instances", Instance),
                ("blobs", Blob),
            )
        }
        counts["quarantined"] = (
            s.scalar(
                select(func.count()).select_from(QuarantineItem).where(QuarantineItem.resolved_at.is_(None))
            )
            or 0
        )
        catalog_bytes = s.scalar(select(func.coalesce(func.sum(Blob.size), 0))) or 0
    return WorkspaceStatus(
        str(ws.root), ws.site_name, ws.catalog.dialect, code_version(), counts, int(catalog_bytes)
    )


@dataclass(frozen=True)
class StoreCheck:
    checked: int
    bytes: int
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


def verify_store(ws: Any) -> StoreCheck:
    """Re-hash every blob; report corrupt ones and blobs the catalog names but the store lacks."""
    with ws.catalog.session() as s:
        expected = set(s.scalars(select(Blob.digest)))
    report = ws.store.verify(expected)
    return StoreCheck(report.checked, report.bytes, list(report.corrupt), list(report.missing))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(n)
