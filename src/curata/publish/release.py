"""Releases: immutable, versioned datasets built from the catalog into the store.

A version is decided by its *content key*: the sha256 of its members (series, their instances' blob
digests, each patient's split), the formats and parameters and the code version. Building the same
content again returns the existing version; any change makes NAME@(n+1). Old versions stay in the store
and the catalog, and their manifests stay verifiable.

Order of writes: every file goes to the store first, then the manifest, then the catalog rows (one
commit), then the log entry. A crash leaves at worst unreferenced blobs, never a version without files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from curata import faults
from curata import select as select_stage
from curata._io import atomic_write
from curata.catalog import (
    Blob,
    Instance,
    Patient,
    Series,
    Site,
    Study,
    code_version,
    join_series_to_site,
    stowed_blobs,
)
from curata.errors import ConfigError, CurataError, InputError, safe_reason
from curata.publish import card as card_mod
from curata.publish.formats import DEFAULT_FORMATS, BuildContext, Case, check_files, parse_formats, registered
from curata.publish.formats import clinical as clinical_fmt
from curata.publish.formats import croissant as croissant_fmt
from curata.publish.formats.nifti import SliceRef, seg_labels, seg_referenced_series, series_to_nifti
from curata.publish.manifest import Manifest, ManifestFile
from curata.publish.models import ConsentWithdrawal, Release, ReleaseMember, ReleaseVersion
from curata.publish.records import (
    SUMMARY_FIELDS,
    ReleaseRow,
    ReleaseVersionInfo,
    VerifyResult,
    WithdrawalResult,
)
from curata.publish.splits import DEFAULT_SPLIT, PatientInfo, SplitSpec, age_band, assign_splits
from curata.workspace import Workspace

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


class ReleaseError(CurataError):
    """A release cannot be built, found or changed as asked."""


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@V``."""
    name, _, version = ref.partition("@")
    if not NAME_RE.match(name):
        raise ConfigError(f"{name!r} is not a release name", hint="letters, digits, '.', '_' and '-'")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ConfigError(f"{ref!r}: the version after '@' is a positive number (NAME@1)")
    return name, int(version)


def get_version(session: Session, ref: str) -> ReleaseVersion:
    """The version ``NAME@V`` names (the latest for a bare ``NAME``)."""
    name, version = parse_ref(ref)
    release = session.scalar(select(Release).where(Release.name == name))
    if release is None or not release.versions:
        raise ReleaseError(f"no release named {name!r}", hint="see `curata release ls`")
    if version is None:
        return release.versions[-1]
    for v in release.versions:
        if v.version == version:
            return v
    raise ReleaseError(
        f"{name} has no version {version}",
        hint=f"versions: {', '.join(str(v.version) for v in release.versions)}",
    )


# -- choosing the series ----------------------------------------------------------------------------
def cohort_series_ids(session: Session, cohort: str) -> list[int]:
    """The series a cohort (``curata cohort create``) holds."""
    ids = select_stage.cohort_series_ids(session, cohort)
    if ids is None:
        raise ReleaseError(f"no cohort named {cohort!r}", hint="see `curata cohort ls`")
    return ids


def where_series_ids(session: Session, where: str) -> list[int]:
    """The series a selection query matches (the query language belongs to ``curata.select``)."""
    return sorted(int(i) for i in session.scalars(select_stage.series_select(where)))


def _withdrawn_patient_ids(session: Session) -> set[int]:
    """Every site's record of a person who withdrew: a withdrawal holds for their pseudonym, so a site
    that ingests them later (or a record a withdrawal before this rule missed) stays out too."""
    withdrawn = select(Patient.pseudonym).join(ConsentWithdrawal, ConsentWithdrawal.patient_id == Patient.id)
    return set(session.scalars(select(Patient.id).where(Patient.pseudonym.in_(withdrawn))))


def _patient_key(site: str, pseudonym: str) -> str:
    """A site's record of a patient, ``SITE/PSEUDONYM``: how splits.json, cases.csv and the per-site
    counts name them."""
    return f"{site}/{pseudonym}"


def _person_of(patient_key: str) -> str:
    """The person a ``SITE/PSEUDONYM`` (or bare pseudonym) names: the pseudonym, whatever site saw them.

    The site key is shared, so the same PatientID gets the same pseudonym at every site: splits are
    assigned, counted and withdrawn per person. Pseudonyms under different ``[deid] site_prefixes``
    cannot be linked, so they stay different persons."""
    return patient_key.rpartition("/")[2]


def _case_id(pseudonym: str, series_uid: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9]+", "", pseudonym)[:24] or "case"
    return f"{safe}_{hashlib.sha256(series_uid.encode()).hexdigest()[:8]}"


@dataclass
class _Member:
    series: Series
    patient: Patient
    site: Site
    study: Study
    split: str = ""


def _load_members(
    session: Session,
    series_ids: Sequence[int] | None,
    *,
    sites: set[int] | None = None,
    modalities: set[str] | None = None,
) -> list[_Member]:
    """The image series a release may hold: of ``series_ids`` (every series when None), and of ``sites``
    (site ids) and ``modalities`` when given."""
    stmt = (
        join_series_to_site(select(Series, Study, Patient, Site))
        .where(Series.instance_count > 0)
        .order_by(Series.id)
    )
    if series_ids is not None:
        stmt = stmt.where(Series.id.in_(list(series_ids)))
    if sites is not None:
        stmt = stmt.where(Site.id.in_(sorted(sites)))
    if modalities:
        stmt = stmt.where(Series.modality.in_(sorted(modalities)))
    withdrawn = _withdrawn_patient_ids(session)
    stowed = stowed_blobs(session)
    if stowed:  # a series of objects members stored by STOW (SEG, SR, RTSTRUCT) is no image series
        stmt = stmt.where(
            exists().where(Instance.series_id == Series.id, Instance.blob_digest.not_in(list(stowed)))
        )
    return [
        _Member(se, pa, si, st)
        for se, st, pa, si in session.execute(stmt)
        if pa.id not in withdrawn and se.modality != "SEG" and se.sop_class_uid != SEG_SOP_CLASS
    ]


def _patient_attributes(m: _Member) -> dict[str, str]:
    return {
        "sex": m.patient.sex or "unknown",
        "age": age_band(m.study.patient_age_years),
        "site": m.site.name,
        "region": m.site.region or "unknown",
        "country": m.site.country or "unknown",
        "vendor": m.series.manufacturer or "unknown",
        "modality": m.series.modality or "unknown",
    }


def _release_patients(members: Sequence[_Member]) -> dict[tuple[int, str], clinical_fmt.ReleasePatient]:
    return {
        (m.site.id, m.patient.pseudonym): clinical_fmt.ReleasePatient(
            _patient_key(m.site.name, m.patient.pseudonym), m.split, _patient_attributes(m)
        )
        for m in members
    }


# -- building ----------------------------------------------------------------------------------------
@dataclass
class BuildParams:
    formats: tuple[str, ...] = DEFAULT_FORMATS
    split: SplitSpec = field(default_factory=lambda: SplitSpec.parse())
    pipeline: str | None = None
    cohort: str | None = None
    where: str | None = None
    pipeline_sha256: str | None = None
    # accepted labels from an annotation project: image series UID -> DICOM-SEG digests (in the store);
    # when set, the release carries these and no other SEG of the catalog (readers' reads stay out)
    labels: dict[str, list[str]] | None = None
    annotation: dict[str, Any] | None = None  # the project's reading statistics, for the card
    min_cell: int = card_mod.MIN_CELL  # small-cell threshold of the card and clinical summary

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "formats": list(self.formats),
            "split": self.split.as_dict(),
            "pipeline": self.pipeline,
            "pipeline_sha256": self.pipeline_sha256,
            "cohort": self.cohort,
            "where": self.where,
        }
        if self.labels is not None:
            out["labels"] = {k: sorted(v) for k, v in sorted(self.labels.items())}
            out["annotation"] = self.annotation
        if self.min_cell != card_mod.MIN_CELL:  # named only where not the default: a release built
            out["min_cell"] = self.min_cell  # before the setting keeps its identity
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildParams:
        s = data.get("split") or {}
        fr = s.get("fractions") or {"train": 0.7, "validation": 0.15, "test": 0.15}
        return cls(
            formats=tuple(data.get("formats") or DEFAULT_FORMATS),
            split=SplitSpec(tuple(fr.items()), tuple(s.get("stratify") or ()), int(s.get("seed") or 0)),
            pipeline=data.get("pipeline"),
            pipeline_sha256=data.get("pipeline_sha256"),
            cohort=data.get("cohort"),
            where=data.get("where"),
            labels=data.get("labels"),
            annotation=data.get("annotation"),
            min_cell=int(data.get("min_cell") or card_mod.MIN_CELL),
        )


def _instances(session: Session, series_ids: Sequence[int]) -> dict[int, list[tuple[Instance, int]]]:
    out: dict[int, list[tuple[Instance, int]]] = defaultdict(list)
    rows = session.execute(
        select(Instance, Blob.size)
        .join(Blob, Instance.blob_digest == Blob.digest)
        .where(Instance.series_id.in_(list(series_ids)))
        .order_by(Instance.series_id, Instance.instance_number, Instance.sop_instance_uid)
    )
    stowed = stowed_blobs(session)  # never an object a member stored by STOW, whatever series holds it
    for inst, size in rows:
        if inst.blob_digest in stowed:
            continue
        out[inst.series_id].append((inst, int(size)))
    return out


def _segs_for(session: Session, ws: Workspace, members: Sequence[_Member]) -> dict[str, list[str]]:
    """Image series UID -> blob digests of the DICOM-SEG instances (same studies) that reference it,
    leaving out the reads and drafts filed by an annotation project (raw reads are never labels) and
    every object a member stored through a project's STOW-RS, filed or not (checked at the door, not
    de-identified by a site: a release's labels from readers are an annotation project's accepted
    labels, taken with ``release_labels``)."""
    from curata.annotate import read_sop_uids

    study_ids = {m.study.id for m in members}
    if not study_ids:
        return {}
    rows = session.execute(
        select(Instance.blob_digest)
        .join(Series, Instance.series_id == Series.id)
        .where(Series.study_id.in_(study_ids))
        .where((Series.modality == "SEG") | (Series.sop_class_uid == SEG_SOP_CLASS))
        .where(Instance.sop_instance_uid.not_in(read_sop_uids()))  # readers' raw reads and AI drafts
        .order_by(Instance.blob_digest)
    )
    out: dict[str, list[str]] = defaultdict(list)
    stowed = stowed_blobs(session)
    for (digest,) in rows:
        if digest in stowed:
            continue
        for uid in seg_referenced_series(ws.store.get_bytes(digest)):
            out[uid].append(digest)
    return out


def content_key(
    members: Sequence[_Member],
    instances: dict[int, list[tuple[Instance, int]]],
    segs: dict[str, list[str]],
    params: BuildParams,
    clinical: str = "",
) -> str:
    body = {
        "members": sorted(
            (
                m.series.series_uid,
                m.split,
                sorted(i.blob_digest for i, _ in instances[m.series.id]),
                sorted(segs.get(m.series.series_uid, [])),
            )
            for m in members
        ),
        "parameters": params.as_dict(),
        "code": code_version(),
    }
    if clinical:  # the clinical and genomic inputs of the members' patients (absent: unchanged key)
        body["clinical"] = clinical
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _qc_rates(
    session: Session, series_ids: Sequence[int], members: Sequence[_Member]
) -> dict[str, tuple[int, int]] | None:
    if not series_ids:
        return None
    rows = select_stage.qc_verdicts(session, series_ids).items()
    if not rows:
        return None
    site_of = {m.series.id: m.site.name for m in members}
    rates: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sid, passed in rows:
        for group in ("all", f"site {site_of.get(int(sid), '?')}"):
            rates[group][0] += int(bool(passed))
            rates[group][1] += 1
    return {k: (v[0], v[1]) for k, v in rates.items()}


def _series_groups(m: _Member) -> dict[str, str]:
    return {
        "modality": m.series.modality or "unknown",
        "vendor": m.series.manufacturer or "unknown",
        "model": m.series.model or "unknown",
        "thickness": card_mod.thickness_band(m.series.slice_thickness),
        **card_mod.slide_groups(m.series.modality, m.series.body_part, m.series.description),
    }


def _baseline(session: Session, members: Sequence[_Member]) -> tuple[card_mod.Composition, str]:
    """The card's baseline, the population the release was drawn from, and its scope in words: the image
    series a release may hold (consent withdrawals and members' STOW objects left out) of the release's
    modalities at the sites its series come from. Never the whole catalog: the card is read by the
    release's project and licensees, who may hold nothing of another site (outside review 12)."""
    sites = {m.site.id for m in members}
    modalities = {m.series.modality for m in members if m.series.modality}
    if not sites:
        return card_mod.Composition.of([], []), "no sites: the release is empty"
    pool = _load_members(session, None, sites=sites, modalities=modalities)
    patients: dict[int, dict[str, str]] = {}
    for m in pool:  # a patient's first series, as the release counts its own
        patients.setdefault(m.patient.id, _patient_attributes(m))
    names = sorted({m.site.name for m in members})
    scope = f"sites: {', '.join(names)}; modalities: {', '.join(sorted(modalities)) or 'any'}"
    return card_mod.Composition.of(list(patients.values()), [_series_groups(m) for m in pool]), scope


class _Files:
    """Release path -> (sha256, size); bytes go to the store as they come."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.entries: dict[str, tuple[str, int]] = {}

    def put(self, path: str, data: bytes) -> str:
        digest = self.store.put_bytes(data)
        self.entries[path] = (digest, len(data))
        return digest

    def link(self, path: str, digest: str, size: int) -> None:
        self.entries[path] = (digest, size)


def _slices(rows: list[tuple[Instance, int]]) -> list[SliceRef]:
    return [
        SliceRef(i.sop_instance_uid, i.blob_digest, i.image_position, i.image_orientation, i.instance_number)
        for i, _ in rows
    ]


def _slide_tiles(ws: Workspace, digests: list[str]) -> dict[str, str]:
    """The newest tile set of a slide (stain-normalised if it was) and its tissue mask, found through the
    provenance of the slide pipeline steps (``preprocess.wsi.*``)."""
    from curata.catalog.models import Provenance

    with ws.catalog.session() as session:
        rows = session.scalars(
            select(Provenance).where(Provenance.step.like("preprocess.wsi.%")).order_by(Provenance.id)
        ).all()
    out: dict[str, str] = {}
    tiles = [
        r for r in rows if r.step == "preprocess.wsi.tiles" and list(r.inputs[: len(digests)]) == digests
    ]
    if not tiles:
        return out
    t = tiles[-1]
    out["tiles.zarr.zip"] = t.output["digest"]
    if len(t.inputs) > len(digests):
        out["tissue_mask.npy"] = t.inputs[-1]
    normed = [
        r for r in rows if r.step == "preprocess.wsi.stain_normalize" and r.inputs == [t.output["digest"]]
    ]
    if normed:
        out["tiles.zarr.zip"] = normed[-1].output["digest"]
    return out


def _cases(
    ws: Workspace,
    members: Sequence[_Member],
    instances: dict[int, list[tuple[Instance, int]]],
    segs: dict[str, list[str]],
    params: BuildParams,
    pre: Any,
    files: _Files,
    cases: list[Case],
    problems: list[str],
    notes: list[str],
    converted: dict[int, Future[Any]],
    submit_ahead: Callable[[], None],
    on_case: Callable[[], None] | None,
) -> None:
    """One case per member series: DICOM links, NIfTI image and label (converted ahead in ``converted``)."""
    for m in members:
        pkey = _patient_key(m.site.name, m.patient.pseudonym)
        case = Case(
            case_id=_case_id(m.patient.pseudonym, m.series.series_uid),
            patient=pkey,
            split=m.split,
            series_uid=m.series.series_uid,
            modality=m.series.modality,
            attributes=_patient_attributes(m) | {"model": m.series.model or "unknown"},
        )
        if "dicom" in params.formats:
            for inst, size in instances[m.series.id]:
                path = f"dicom/{m.split}/{case.case_id}/{inst.sop_instance_uid}.dcm"
                files.link(path, inst.blob_digest, size)
                case.dicom.append(path)
            for digest in segs.get(m.series.series_uid, []):
                path = f"dicom/{m.split}/{case.case_id}/seg-{digest[:16]}.dcm"
                files.link(path, digest, ws.store.size(digest))
                case.dicom.append(path)
        if "tiles" in params.formats and m.series.modality == "SM":
            found = _slide_tiles(ws, sorted(i.blob_digest for i, _ in instances[m.series.id]))
            if not found:
                problems.append(
                    f"{case.case_id}: no tile set for this slide (run `curata preprocess slides`)"
                )
            for fname, digest in found.items():
                path = f"tiles/{m.split}/{case.case_id}/{fname}"
                files.link(path, digest, ws.store.size(digest))
                case.tiles.append(path)
        if "nifti" in params.formats and m.series.modality != "SM":
            slices = _slices(instances[m.series.id])
            seg_digests = segs.get(m.series.series_uid, [])
            try:
                if pre is not None:
                    _preprocessed(ws, pre, m.series.series_uid, slices, seg_digests, case, files, notes)
                else:
                    submit_ahead()
                    vol = converted.pop(m.series.id).result()
                    if vol.stacks > 1:
                        notes.append(
                            f"{case.case_id}: {vol.stacks} stacks in the series; the first is released"
                        )
                    _put_nifti(files, case, vol.image, vol.label, vol.label_voxels, vol.voxel_ml)
            except InputError as exc:
                problems.append(f"{case.case_id}: {safe_reason(exc)}")
            except Exception as exc:  # one series that cannot be converted never stops the release
                # the release's record and its card are published: a converter's text may quote the data
                problems.append(f"{case.case_id}: conversion failed: {safe_reason(exc)}")
            if case.label:
                for digest in seg_digests:
                    case.label_names.update(seg_labels(ws.store.get_bytes(digest)))
        cases.append(case)
        if on_case:
            on_case()


def _build(
    ws: Workspace,
    session: Session,
    name: str,
    version: int,
    members: Sequence[_Member],
    instances: dict[int, list[tuple[Instance, int]]],
    segs: dict[str, list[str]],
    params: BuildParams,
    on_case: Callable[[], None] | None = None,
) -> tuple[Manifest, dict[str, Any]]:
    files = _Files(ws.store)
    cases: list[Case] = []
    problems: list[str] = []
    notes: list[str] = []
    pre = None
    if params.pipeline and "nifti" in params.formats:
        from curata.publish.formats import pipeline as pipeline_fmt

        pre = pipeline_fmt.run(ws, params.pipeline, [m.series.series_uid for m in members])
        problems += [f"pipeline: {where}: {why}" for where, why in pre.failures]
    # NIfTI conversions run ahead on a thread pool (ITK releases the GIL), a bounded window at a time
    workers = ws.workers()
    pool = ThreadPoolExecutor(workers)
    converted: dict[int, Future[Any]] = {}
    volumes = [m for m in members if m.series.modality != "SM"]  # slides are released as DICOM-WSI or tiles
    todo = iter(volumes if "nifti" in params.formats and pre is None else [])

    def submit_ahead() -> None:
        while len(converted) < 2 * workers:  # results wait here until consumed, so this bounds memory
            nxt = next(todo, None)
            if nxt is None:
                return
            converted[nxt.series.id] = pool.submit(
                series_to_nifti,
                ws.store,
                _slices(instances[nxt.series.id]),
                segs.get(nxt.series.series_uid, []),
            )

    try:
        _cases(
            ws,
            members,
            instances,
            segs,
            params,
            pre,
            files,
            cases,
            problems,
            notes,
            converted,
            submit_ahead,
            on_case,
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    # splits.json: patient key -> split (what every consumer needs to respect the patient-level split)
    splits = {c.patient: c.split for c in cases}
    files.put("splits.json", json.dumps(dict(sorted(splits.items())), indent=2).encode())
    files.put("cases.csv", croissant_fmt.cases_csv(cases))

    ctx = BuildContext(
        name,
        version,
        cases,
        put=lambda path, data: files.put(path, data),
        link=lambda path, source: files.link(path, *files.entries[source]),
        entries=files.entries,
    )
    formats = [f for n, f in registered().items() if n in params.formats and f.build is not None]
    for fmt in formats:
        if not fmt.after_card and fmt.build is not None:
            fmt.build(ctx)

    # clinical tables, OMOP CSVs, per-case VCFs (and FHIR Bundles on request), split with the images
    clinical = clinical_fmt.build(
        session, ws.store, _release_patients(members), fhir="fhir" in params.formats, min_cell=params.min_cell
    )
    for path, data in clinical.put.items():
        files.put(path, data)
    for path, digest in clinical.link.items():
        files.link(path, digest, ws.store.size(digest))

    # the card: patients are persons (one pseudonym, whatever site saw them), each in one split
    patients_seen: dict[str, dict[str, str]] = {}
    person_split: dict[str, str] = {}
    person_sites: dict[str, set[str]] = defaultdict(set)
    for c in cases:
        person = _person_of(c.patient)
        patients_seen.setdefault(person, c.attributes)
        person_split.setdefault(person, c.split)
        person_sites[person].add(c.patient.rpartition("/")[0])
    release_comp = card_mod.Composition.of(list(patients_seen.values()), [_series_groups(m) for m in members])
    labels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for c in cases:
        for value, voxels in c.label_voxels.items():
            entry = labels[c.label_names.get(value, str(value))]
            entry[0] += 1
            entry[1] += voxels * c.voxel_ml
    baseline, baseline_scope = _baseline(session, members)
    card_in = card_mod.CardInput(
        name=name,
        version=version,
        release=release_comp,
        baseline=baseline,
        baseline_scope=baseline_scope,
        splits=dict(sorted(Counter(person_split.values()).items())),
        n_patients=len(patients_seen),
        multi_site=dict(sorted(Counter(len(s) for s in person_sites.values() if len(s) > 1).items())),
        qc=_qc_rates(session, [m.series.id for m in members], members),
        labels={k: (int(v[0]), float(v[1])) for k, v in labels.items()},
        n_cases=len(cases),
        n_labelled=sum(1 for c in cases if c.label),
        annotation=params.annotation,
        min_cell=params.min_cell,
    )
    for path, data in card_mod.render(card_in).items():
        if path == "card/README.md" and "card/clinical.md" in clinical.put:
            data += b"\n## Clinical and genomic data\n\nSee [clinical.md](clinical.md): diagnoses, stages, outcomes, "
            data += b"age / sex / region by diagnosis, missing data per field, rare-variant re-identification risk.\n"
        files.put(path, data)
    biases = card_mod.flags(card_in)

    ctx.biases = biases
    for fmt in formats:
        if fmt.after_card and fmt.build is not None:
            fmt.build(ctx)
    check_files(files.entries, params.formats)  # a file no format declares fails here, not at a licensee

    manifest = Manifest(
        release=name,
        version=version,
        files=[ManifestFile(p, d, s) for p, (d, s) in sorted(files.entries.items())],
    )
    site_patients = Counter(key.split("/", 1)[0] for key in splits)
    site_annotated = Counter(c.patient.split("/", 1)[0] for c in cases if c.label)
    summary = {
        "cases": len(cases),
        "patients": len(patients_seen),
        "labelled": card_in.n_labelled,
        "files": len(manifest.files),
        "bytes": manifest.total_size,
        "splits": card_in.splits,
        "site_patients": dict(sorted(site_patients.items())),
        "site_annotated_cases": dict(sorted(site_annotated.items())),
        "flags": biases,
        "problems": problems,
        "notes": notes,
    }
    if clinical.summary:
        summary["clinical"] = clinical.summary
    return manifest, summary


def _put_nifti(
    files: _Files, case: Case, image: bytes, label: bytes | None, voxels: dict[int, int], voxel_ml: float
) -> None:
    case.image = f"nifti/images/{case.case_id}.nii.gz"
    files.put(case.image, image)
    if label is not None:
        case.label = f"nifti/labels/{case.case_id}.nii.gz"
        files.put(case.label, label)
        case.label_voxels, case.voxel_ml = voxels, voxel_ml


def _preprocessed(
    ws: Workspace,
    pre: Any,
    series_uid: str,
    slices: list[SliceRef],
    seg_digests: list[str],
    case: Case,
    files: _Files,
    notes: list[str],
) -> None:
    """The pipeline's volume for this series (its first stack) and the label map on its grid."""
    from curata.publish.formats import pipeline as pipeline_fmt
    from curata.publish.formats.nifti import label_on_grid

    stacks = pre.volumes.get(series_uid) or []
    if not stacks:
        return  # the pipeline refused or filtered it out; its failure is already reported
    if len(stacks) > 1:
        notes.append(f"{case.case_id}: the pipeline made {len(stacks)} stacks; the first is released")
    _stack, volume = stacks[0]
    label: bytes | None = None
    voxels: dict[int, int] = {}
    if seg_digests:
        label, voxels = label_on_grid(ws.store, slices, seg_digests, pipeline_fmt.reference_image(volume))
    voxel_ml = float(abs(np.linalg.det(volume.affine[:3, :3]))) / 1000.0
    _put_nifti(files, case, pipeline_fmt.nifti_gz(volume), label, voxels, voxel_ml)


def _ledger_append(ws: Workspace, kind: str, payload: dict[str, Any]) -> int | None:
    """Append to the transparency log; returns the entry's index."""
    from curata.ledger import Ledger

    return int(Ledger.open(ws).append(kind, payload).index)


def _version_fields(v: ReleaseVersion, created: bool) -> dict[str, Any]:
    summary = {k: value for k, value in (v.summary or {}).items() if k in SUMMARY_FIELDS}
    return {
        "ref": f"{v.release.name}@{v.version}",
        "name": v.release.name,
        "version": v.version,
        "created": created,
        "manifest": v.manifest_digest,
        "merkle_root": v.merkle_root,
        "ledger_index": v.ledger_index,
        "reason": v.reason,
        "created_at": v.created_at.isoformat() if v.created_at else None,
        **summary,
        "parameters": v.parameters,
    }


def _version_result(v: ReleaseVersion, created: bool, card: str | None = None) -> ReleaseVersionInfo:
    return ReleaseVersionInfo(**_version_fields(v, created), card=card)


def _withdrawal_result(
    v: ReleaseVersion, created: bool, removed: int, sites: Sequence[str] = ()
) -> WithdrawalResult:
    return WithdrawalResult(
        **_version_fields(v, created), removed_series=removed, withdrawn_sites=list(sites)
    )


def card_folder(ws: Workspace, v: ReleaseVersion) -> Path:
    """The version's dataset card, copied out of the store into ``WORKSPACE/releases/NAME@V/card``."""
    folder = ws.root / "releases" / f"{v.release.name}@{v.version}"
    if not (folder / "card" / "card.html").exists():
        manifest = Manifest.from_bytes(ws.store.get_bytes(v.manifest_digest))
        for f in manifest.files:
            if f.path.startswith("card/"):
                atomic_write(folder / f.path, ws.store.get_bytes(f.sha256), fsync=False)
    return folder / "card"


def _manifest_splits(ws: Workspace, v: ReleaseVersion) -> dict[str, str]:
    """``SITE/PSEUDONYM`` -> split as the version's manifest (the one its log entry records) holds it,
    never the catalog's member rows, which a database edit could change unseen."""
    ref = f"{v.release.name}@{v.version}"
    hint = f"run `curata release verify {ref}`"
    try:
        raw = ws.store.get_bytes(v.manifest_digest)
        if hashlib.sha256(raw).hexdigest() != v.manifest_digest:
            raise ReleaseError(f"{ref}: its manifest no longer matches its digest", hint=hint)
        entry = Manifest.from_bytes(raw).file("splits.json")
        if entry is None:
            raise ReleaseError(f"{ref}: its manifest holds no splits.json", hint=hint)
        data = ws.store.get_bytes(entry.sha256)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ReleaseError(f"{ref}: its splits.json is corrupt in the store", hint=hint)
        return {str(k): str(val) for k, val in json.loads(data).items()}
    except (OSError, InputError, ValueError, KeyError) as exc:
        raise ReleaseError(
            f"{ref}: cannot read its splits from the store ({safe_reason(exc)})", hint=hint
        ) from exc


def _previous_splits(ws: Workspace, release: Release | None) -> dict[str, str]:
    """Person (pseudonym) -> split, from every earlier version: a person keeps the split of the latest
    version that held them, so dropping out of a version in between never moves them."""
    out: dict[str, str] = {}
    for v in release.versions if release is not None else []:  # in version order: later ones win
        for key, split in sorted(_manifest_splits(ws, v).items()):
            out[_person_of(key)] = split
    return out


def _make_version(
    ws: Workspace,
    session: Session,
    name: str,
    members: list[_Member],
    params: BuildParams,
    reason: str,
    on_case: Callable[[], None] | None = None,
) -> tuple[ReleaseVersion, bool]:
    release = session.scalar(select(Release).where(Release.name == name))
    series_ids = [m.series.id for m in members]
    instances = _instances(session, series_ids)
    segs = dict(params.labels) if params.labels is not None else _segs_for(session, ws, members)
    key = content_key(
        members, instances, segs, params, clinical_fmt.content(session, _release_patients(members))
    )
    if release is not None and release.versions and release.versions[-1].content_key == key:
        ensure_logged(ws, session, release.versions[-1])
        return release.versions[-1], False
    version = (release.versions[-1].version + 1) if release is not None and release.versions else 1
    manifest, summary = _build(ws, session, name, version, members, instances, segs, params, on_case)
    manifest_bytes = manifest.to_bytes()
    manifest_digest = ws.store.put_bytes(manifest_bytes)
    if release is None:
        release = Release(name=name)
        session.add(release)
    row = ReleaseVersion(
        release=release,
        version=version,
        content_key=key,
        manifest_digest=manifest_digest,
        merkle_root=manifest.merkle_root(),
        parameters=params.as_dict(),
        summary=summary,
        reason=reason,
    )
    session.add(row)
    session.flush()
    for m in members:
        session.add(
            ReleaseMember(version_id=row.id, patient_id=m.patient.id, series_id=m.series.id, split=m.split)
        )
    session.commit()
    faults.point("release.after_catalog")
    ensure_logged(ws, session, row, manifest)
    return row, True


def _release_payload(row: ReleaseVersion, manifest: Manifest) -> dict[str, Any]:
    summary = row.summary or {}
    return {
        "release": row.release.name,
        "version": row.version,
        "manifest_sha256": row.manifest_digest,
        "merkle_root": row.merkle_root,
        "files": len(manifest.files),
        "bytes": manifest.total_size,
        "patients": summary.get("patients"),
        "site_patients": summary.get("site_patients"),
        "site_annotated_cases": summary.get("site_annotated_cases"),
        "reason": (row.reason or "").split(":", 1)[0],
    }


def _logged_index(ws: Workspace, manifest_digest: str) -> int | None:
    """The log entry already recording this manifest (a kill after the append, before the commit)."""
    from curata.ledger import Ledger

    for entry in Ledger.open(ws).entries("release"):
        if entry.payload.get("manifest_sha256") == manifest_digest:
            return entry.index
    return None


def ensure_logged(
    ws: Workspace, session: Session, row: ReleaseVersion, manifest: Manifest | None = None
) -> int | None:
    """Make sure the version's log entry exists and the catalog knows its index; idempotent.

    The catalog commits before the log append, so a kill between the two leaves a version without
    its entry: every later ``release create``, ``export`` or ``verify`` of it calls this and
    converges, appending at most once (an entry written before a kill is found, not repeated)."""
    if row.ledger_index is not None:
        return row.ledger_index
    index = _logged_index(ws, row.manifest_digest)
    if index is None:
        manifest = manifest or Manifest.from_bytes(ws.store.get_bytes(row.manifest_digest))
        index = _ledger_append(ws, "release", _release_payload(row, manifest))
        faults.point("release.after_log")
    if index is not None:
        row.ledger_index = index
        session.commit()
    return index


def create_release(
    ws: Workspace,
    name: str,
    cohort: str | None = None,
    where: str | None = None,
    formats: str | Sequence[str] | None = None,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    stratify: str | Sequence[str] = (),
    seed: int = 0,
    pipeline: str | None = None,
    on_case: Callable[[], None] | None = None,
    labels: dict[str, list[str]] | None = None,
    annotation: dict[str, Any] | None = None,
) -> ReleaseVersionInfo:
    """Build NAME@(n+1) from a cohort, a query or every series; return the existing version when nothing
    changed. Returns its record (``ref``, ``version``, ``created``, counts, ``card``).

    ``labels`` (series UID -> DICOM-SEG digests, e.g. an annotation project's accepted labels) replaces
    the catalog's SEGs as the release's labels; ``annotation`` (per label: reads, agreement, adjudication
    rate) goes into the dataset card."""
    parse_ref(name)
    if cohort and where:
        raise ConfigError("give --cohort or --where, not both")
    if labels is None and cohort:  # a cohort under annotation: its accepted labels, never raw reads
        from curata.annotate import projects_on_cohort, release_labels

        reading = projects_on_cohort(ws, cohort)
        if len(reading) > 1:
            raise ReleaseError(
                f"cohort {cohort!r} is read by several annotation projects: {', '.join(reading)}",
                hint="name one with --labels-from",
            )
        if reading:
            labels, card = release_labels(ws, reading[0])
            annotation = annotation if annotation is not None else card
    params = BuildParams(
        formats=parse_formats(formats),
        split=SplitSpec.parse(split, stratify, seed),
        pipeline=pipeline,
        cohort=cohort,
        where=where,
        labels=labels,
        annotation=annotation,
        min_cell=ws.min_cell(),
    )
    if pipeline:
        from curata.publish.formats.pipeline import pipeline_digest

        params.pipeline_sha256 = pipeline_digest(pipeline)
    with ws.catalog.session() as session:
        if cohort:
            ids: list[int] | None = cohort_series_ids(session, cohort)
        elif where:
            ids = where_series_ids(session, where)
        else:
            ids = None
        members = _load_members(session, ids)
        if not members:
            raise ReleaseError(
                "nothing to release: no image series selected",
                hint="check the cohort or query (withdrawn patients are always left out)",
            )
        release = session.scalar(select(Release).where(Release.name == name))
        infos: dict[str, PatientInfo] = {}  # per person: the same pseudonym at two sites is one patient
        for m in members:
            infos.setdefault(m.patient.pseudonym, PatientInfo(m.patient.pseudonym, _patient_attributes(m)))
        assignment = assign_splits(list(infos.values()), params.split, _previous_splits(ws, release))
        for m in members:
            m.split = assignment[m.patient.pseudonym]
        row, created = _make_version(ws, session, name, members, params, "created", on_case)
        return _version_result(row, created, card=str(card_folder(ws, row) / "card.html"))


def withdraw_patient(ws: Workspace, name: str, pseudonym: str) -> WithdrawalResult:
    """Consent withdrawn: record it (every later version leaves the patient out) and, when the release's
    latest version holds them, build the next version without them and log the withdrawal.

    A patient is a person: ``PSEUDONYM`` or ``SITE/PSEUDONYM`` withdraws that pseudonym at every site
    that saw them (``withdrawn_sites`` names them)."""
    with ws.catalog.session() as session:
        site_name, _, bare = pseudonym.rpartition("/")
        found = list(
            session.execute(
                select(Patient, Site.name)
                .join(Site, Patient.site_id == Site.id)
                .where(Patient.pseudonym == bare)
                .order_by(Site.name)
            )
        )
        if not found or (site_name and site_name not in {site for _, site in found}):
            raise ReleaseError(f"no patient with pseudonym {pseudonym!r} in the catalog")
        pseudonym = bare
        patients = [p for p, _ in found]
        sites = [site for _, site in found]
        ids = {p.id for p in patients}
        latest = get_version(session, name)
        recorded = set(
            session.scalars(select(ConsentWithdrawal.patient_id).where(ConsentWithdrawal.patient_id.in_(ids)))
        )
        salt = hashlib.sha256(ws.site_key() + pseudonym.encode()).hexdigest()
        for patient in patients:
            if patient.id not in recorded:
                session.add(ConsentWithdrawal(patient_id=patient.id, salt=salt))
        session.flush()
        # the series come from the catalog's member rows; their splits from the manifests the log vouches
        # for (an edited ``release_member.split`` is never carried into the next version)
        previous = _previous_splits(ws, latest.release)
        kept = [
            _Member(se, pa, si, st, previous.get(pa.pseudonym, split))
            for se, st, pa, si, split in session.execute(
                join_series_to_site(
                    select(Series, Study, Patient, Site, ReleaseMember.split).join(
                        Series, ReleaseMember.series_id == Series.id
                    )
                )
                .where(ReleaseMember.version_id == latest.id)
                .order_by(Series.id)
            )
        ]
        removed = [m for m in kept if m.patient.id in ids]
        if not removed:
            session.commit()
            return _withdrawal_result(latest, False, 0, sites)
        members = [m for m in kept if m.patient.id not in ids]
        if not members:
            raise ReleaseError(f"{name}: withdrawing {pseudonym} would leave the release empty")
        params = BuildParams.from_dict(latest.parameters)
        # the release's own threshold, or the site's where it has been raised since
        params.min_cell = max(params.min_cell, ws.min_cell())
        if params.pipeline:
            from curata.publish.formats.pipeline import pipeline_digest

            params.pipeline_sha256 = pipeline_digest(params.pipeline)
        row, _ = _make_version(
            ws, session, name, members, params, f"withdrawal: one patient from @{latest.version}"
        )
        commitment = _commitment(ws, pseudonym)
        _ledger_append(
            ws,
            "withdrawal",
            {
                "release": name,
                "from_version": latest.version,
                "to_version": row.version,
                "patient_commitment": commitment,
                "series_removed": len(removed),
            },
        )
        return _withdrawal_result(row, True, len(removed), sites)


def _commitment(ws: Workspace, value: str) -> str:
    from curata.ledger import Ledger

    return str(Ledger.open(ws).commit(value))


def list_releases(ws: Workspace) -> list[ReleaseRow]:
    with ws.catalog.session() as session:
        out = []
        for release in session.scalars(select(Release).order_by(Release.name)):
            for v in release.versions:
                out.append(
                    ReleaseRow(
                        ref=f"{release.name}@{v.version}",
                        created=v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "",
                        patients=v.summary.get("patients"),
                        cases=v.summary.get("cases"),
                        files=v.summary.get("files"),
                        reason=v.reason,
                        ledger=v.ledger_index,
                    )
                )
        return out


def show_release(ws: Workspace, ref: str) -> ReleaseVersionInfo:
    with ws.catalog.session() as session:
        v = get_version(session, ref)
        return _version_result(v, False, card=str(card_folder(ws, v) / "card.html"))


def verify_version(ws: Workspace, ref: str) -> VerifyResult:
    """Re-check a version (old ones too): every file in the store against the manifest, the manifest
    against its Merkle root and the catalog, and the manifest's log entry against a signed checkpoint."""
    problems: list[str] = []
    with ws.catalog.session() as session:
        v = get_version(session, ref)
        label, digest, root, index = (
            f"{v.release.name}@{v.version}",
            v.manifest_digest,
            v.merkle_root,
            v.ledger_index,
        )
        catalog_splits: dict[str, set[str]] = defaultdict(set)
        for site, pseudo, split in session.execute(
            select(Site.name, Patient.pseudonym, ReleaseMember.split)
            .join(Patient, ReleaseMember.patient_id == Patient.id)
            .join(Site, Patient.site_id == Site.id)
            .where(ReleaseMember.version_id == v.id)
        ):
            catalog_splits[_patient_key(site, pseudo)].add(split)
    raw = ws.store.get_bytes(digest)
    if hashlib.sha256(raw).hexdigest() != digest:
        problems.append("manifest: its bytes no longer hash to the digest the catalog records")
    try:
        manifest = Manifest.from_bytes(raw)
    except InputError as exc:
        return VerifyResult(label, False, 0, index, [*problems, exc.message])
    if manifest.merkle_root() != root:
        problems.append("manifest: Merkle root differs from the catalog's")
    for f in manifest.files:
        if not ws.store.exists(f.sha256):
            problems.append(f"missing from the store: {f.path}")
        elif ws.store.hash_of(f.sha256) != f.sha256:
            problems.append(f"corrupt in the store: {f.path}")
    problems += _split_problems(ws, manifest, catalog_splits)
    if index is None:
        problems.append("no log entry recorded for this version")
    else:
        from curata.ledger import Ledger
        from curata.ledger.verify_standalone import VerificationError, verify_receipt

        ledger = Ledger.open(ws)
        entry = ledger.entry(index)
        if entry.kind != "release" or entry.payload.get("manifest_sha256") != digest:
            problems.append(f"log entry {index} is not this version's manifest")
        try:
            verify_receipt(ledger.receipt(index).decode(), (ledger.folder / "log.vkey").read_text())
        except VerificationError as exc:
            problems.append(f"log: {exc}")
    return VerifyResult(label, not problems, len(manifest.files), index, problems)


def _split_problems(ws: Workspace, manifest: Manifest, catalog: dict[str, set[str]]) -> list[str]:
    """The catalog's member rows (``release_member.split``) against the manifest's splits.json."""
    entry = manifest.file("splits.json")
    if entry is None:
        return ["manifest: no splits.json"]
    try:
        data = ws.store.get_bytes(entry.sha256)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            return []  # reported as corrupt in the store above
        stored = {str(k): str(val) for k, val in json.loads(data).items()}
    except (OSError, InputError, ValueError, AttributeError):
        return []  # missing or unreadable: reported above
    out = []
    for key in sorted(set(stored) | set(catalog)):
        rows, expected = sorted(catalog.get(key, set())), stored.get(key)
        if rows != ([expected] if expected else []):
            out.append(
                f"split of {key}: the catalog says {', '.join(rows) or 'not a member'}, "
                f"the manifest's splits.json says {expected or 'not a member'}"
            )
    return out


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
