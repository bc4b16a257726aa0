"""Ingest: de-identify each input at the edge, store its bytes, index it in the catalog.

Order of writes for every instance (DESIGN: "the catalog commits after the blob"):
1. the worker de-identifies and writes the de-identified bytes to the store (atomic rename);
2. the main process inserts the catalog rows and commits in small batches.
A kill at any moment leaves, at worst, a blob without a row (harmless, re-used on the next run), never a
row without its blob, and never a duplicate: instances are unique by SOP Instance UID and inputs are
recognised by the sha256 of their bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from curata import faults
from curata.catalog import (
    Blob,
    Instance,
    Patient,
    QuarantineItem,
    RawView,
    Series,
    Site,
    Study,
    index_fields,
    record_provenance,
)
from curata.collect.deid.pseudonyms import accepted_prefixes
from curata.collect.reasons import (
    DISK_FULL_REASON,
    is_disk_full,
    safe_reason,
    sanitize,
    sweep_private,
    write_private,
)
from curata.collect.sources import Source, iter_sources
from curata.console import RunSummary
from curata.errors import CatalogError, CurataError, InputError, StoreError, is_fatal
from curata.runtime import imap_unordered
from curata.workspace import Workspace

log = logging.getLogger(__name__)

# a second input that de-identifies to another instance under a SOP Instance UID already filed: the
# catalog holds one instance per UID, so it is refused, never dropped as present (`curata deid`
# quarantines the same pair as DuplicateUID)
DUPLICATE_UID_REASON = (
    "another instance with the same SOP Instance UID and different content is already stored"
)
DISK_FULL_HINT = "free space (or move the store or the catalog to a larger disk in curata.toml) and run again: the rerun resumes"


def conflicts_with(
    blob: str, transfer_syntax: str | None, outcome: IngestOutcome, *, strict: bool = False
) -> bool:
    """Whether ``outcome`` is another instance than the one filed under its SOP Instance UID (as
    ``blob``, in ``transfer_syntax``): other de-identified bytes in the same transfer syntax. In another
    transfer syntax the bytes differ for a lossless re-encoding of the same instance too (a PACS
    sending again in what it negotiates now): that is taken as the same instance, present, not
    compared further. ``strict``: other bytes are another instance in any transfer syntax (a slide's
    levels: converted here, the same vendor file always gives the same bytes)."""
    if blob == outcome.blob_digest:
        return False
    if strict:
        return True
    syntax = (outcome.fields.get("instance") or {}).get("transfer_syntax")
    return bool(transfer_syntax == syntax)


@dataclass
class IngestOutcome:
    """What became of one input: ingested, present (already in the catalog), skipped or quarantined."""

    status: str
    source: str
    input_digest: str | None = None
    reason: str | None = None
    sop_instance_uid: str | None = None
    blob_digest: str | None = None
    size: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    deid_record: dict[str, Any] | None = None
    children: list[IngestOutcome] = field(default_factory=list)  # a slide: one outcome per DICOM-WSI level
    slide: dict[str, Any] | None = None  # a slide's catalog fields (collect.wsi)


@dataclass
class _WorkerContext:
    store_url: str
    quarantine_dir: str
    deidentify: bool
    key: bytes | None
    profile: str
    profile_config: str | None
    vault_dir: str | None
    known_inputs: frozenset[str]
    wsi: dict[str, Any] = field(default_factory=dict)
    # verified mode: the pseudonym prefixes accepted (CUR- and the platform's [deid] site_prefixes)
    prefixes: tuple[str, ...] = ("CUR-",)
    deidentifier: Any = None
    store: Any = None


_CTX: _WorkerContext | None = None


def _init_worker(ctx: _WorkerContext) -> None:
    global _CTX
    _setup_context(ctx)
    _CTX = ctx


def _setup_context(ctx: _WorkerContext) -> None:
    from curata.store import open_store

    ctx.store = open_store(ctx.store_url)
    # process_one asks the slide module of every input: load it now, not on the first input (its
    # import cost a drain process 0.1 to 0.2 s of CPU while the first instances waited)
    from curata.collect.wsi import is_sidecar  # noqa: F401

    if ctx.deidentify:
        from curata.collect.deid import Deidentifier, load_profile

        if ctx.key is None:
            raise CurataError("de-identification needs the site key", hint="run `curata init` first")

        vault = None
        if ctx.vault_dir and ctx.key is not None:
            from curata.collect.deid import Vault

            vault = Vault(Path(ctx.vault_dir), ctx.key)
        profile = load_profile(ctx.profile, config=Path(ctx.profile_config) if ctx.profile_config else None)
        identities = None
        if ctx.vault_dir:  # what each image says of its patient and the site cleans the clinical inputs
            from curata.collect.deid.identities import SiteIdentities

            identities = SiteIdentities(Path(ctx.vault_dir), ctx.key)
        ctx.deidentifier = Deidentifier(key=ctx.key, profile=profile, vault=vault, identities=identities)


def _quarantine_bytes(folder: str, digest: str, raw: bytes, source: str, reason: str, stage: str) -> None:
    """Keep a refused input on site (never in the store) with its reason, atomically, readable by
    the service account only (folder 0700, files 0600). The source path is not kept: folder names
    often hold the patient's name; the sha256 names the input. (A central platform keeps nothing:
    see :func:`refuse_bytes`.)"""
    del source
    qdir = Path(folder)
    target = qdir / f"{digest}.bin"
    if not target.exists():
        write_private(target, raw)
    meta = {
        "reason": reason,
        "stage": stage,
        "sha256": digest,
        "size": len(raw),
        "at": datetime.now(UTC).isoformat(),
    }
    write_private(qdir / f"{digest}.json", json.dumps(meta, indent=2).encode())


def refuse_bytes(ctx: Any, digest: str, raw: bytes, source: str, reason: str, stage: str) -> None:
    """Where a refused input goes: at a site, into its quarantine folder; at the central platform
    (``deidentify`` off, `--verified-deidentified`), nowhere. What the platform refuses may be
    identified (that is why it is refused) and the platform must never hold identified data: the
    sender keeps its copy, the platform's catalog keeps the digest, size and reason
    (``quarantine_item``)."""
    if ctx.deidentify:
        _quarantine_bytes(ctx.quarantine_dir, digest, raw, source, reason, stage)


_IMAGE_MARKERS = ("Rows", "Columns", "BitsAllocated")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")  # their tags, little endian


def _check_complete(raw: bytes) -> None:
    """An image object must still hold its pixel data: a file cut exactly at an element boundary
    parses cleanly without it (pydicom cannot tell), so look for the element itself (first: when it is
    there, as in nearly every image, nothing needs parsing)."""
    if any(tag in raw for tag in _PIXEL_TAGS):
        return
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=list(_IMAGE_MARKERS))
    except Exception:
        return  # unreadable files are the de-identifier's to refuse, with its own reason
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):  # deflated, big endian
        return
    if all(k in ds for k in _IMAGE_MARKERS):
        raise InputError(
            "image object without pixel data (7FE0,0010): truncated file?",
            hint="send the complete file again",
        )


def _verify_deidentified(raw: bytes, prefixes: tuple[str, ...]) -> tuple[bytes, pydicom.Dataset]:
    """Central-platform mode: accept only objects already de-identified at a gateway. The
    PatientIdentityRemoved flag alone is not trusted: the de-identification engine's checks run too."""
    from curata.collect.deid import check_deidentified

    return raw, check_deidentified(raw, prefixes=prefixes)


def process_one(source: Source | tuple[str, bytes], ctx: _WorkerContext | None = None) -> IngestOutcome:
    """De-identify (or verify), store and index one input. Never raises for a bad input."""
    ctx = ctx or _CTX
    assert ctx is not None, "worker not initialised"
    if isinstance(source, Source):
        name = source.name
        if source.problem:
            return IngestOutcome(source.kind, name, reason=sanitize(source.problem))
        if source.skipped:
            return IngestOutcome(
                "skipped", name, reason="not an image object (directory record or desktop file)"
            )
        try:
            raw = source.read()
        except InputError as exc:
            return IngestOutcome("failed", name, reason=sanitize(exc.reason))
    else:
        name, raw = source
    digest = hashlib.sha256(raw).hexdigest()
    if digest in ctx.known_inputs:
        return IngestOutcome("present", name, input_digest=digest)
    from curata.collect import wsi

    if wsi.is_sidecar(name):
        return IngestOutcome("skipped", name, reason="slide sidecar (read with its slide)")
    if wsi.mrxs_role(name) == "part":
        return IngestOutcome("skipped", name, reason="part of a 3DHISTECH MRXS slide folder")
    if wsi.mrxs_role(name) == "slide":  # a multi-file slide: converted from its data folder
        return wsi.ingest_mrxs_outcome(name, raw, digest, ctx)
    if wsi.looks_like_slide(name, raw[:132]):
        return wsi.ingest_slide_outcome(name, raw, digest, ctx)
    try:
        _check_complete(raw)
        out_digest = None  # the sha256 of out_bytes, where the de-identifier has computed it
        if ctx.deidentify:
            result = ctx.deidentifier.deidentify_bytes(raw, source=name, input_sha256=digest)
            out_bytes, rec = result.output_bytes, result.record
            # read from the output's bytes: its data set is built only when a value needs pydicom
            ds = RawView.of(out_bytes, lambda: result.dataset) or result.dataset
            if wsi.is_wsm(ds):
                out_bytes, ds = wsi.clean_wsm(out_bytes, result.dataset, raw, ctx.deidentifier.pseudo)
            deid_record = rec.as_dict() if hasattr(rec, "as_dict") else dict(rec)
            if out_bytes is result.output_bytes:
                out_digest = deid_record.get("output_sha256")
        else:
            out_bytes, ds = _verify_deidentified(raw, ctx.prefixes)
            deid_record = None
        fields = index_fields(ds)
        blob = ctx.store.put_bytes(out_bytes, digest=out_digest)
        faults.point("ingest.after_blob")
    except wsi.LabelImageRemoved as exc:
        return IngestOutcome("skipped", name, input_digest=digest, reason=exc.message)
    except BaseException as exc:  # a bad input or a bug: quarantine with a safe reason, never stop
        if is_fatal(exc):
            raise  # an interrupt, an exit
        if is_disk_full(exc):
            return IngestOutcome("failed", name, input_digest=digest, reason=DISK_FULL_REASON, size=len(raw))
        reason = safe_reason(exc)
        try:
            refuse_bytes(ctx, digest, raw, name, reason, "ingest")
        except OSError as qexc:
            if is_disk_full(qexc):
                return IngestOutcome(
                    "failed", name, input_digest=digest, reason=DISK_FULL_REASON, size=len(raw)
                )
            return IngestOutcome("failed", name, input_digest=digest, reason=safe_reason(qexc))
        return IngestOutcome("quarantined", name, input_digest=digest, reason=reason, size=len(raw))
    return IngestOutcome(
        "ingested",
        name,
        input_digest=digest,
        sop_instance_uid=fields["instance"]["sop_instance_uid"],
        blob_digest=blob,
        size=len(out_bytes),
        fields=fields,
        deid_record=deid_record,
    )


class CatalogWriter:
    """Files outcomes into the catalog with small batched commits; keeps id caches per batch run."""

    def __init__(self, session: Session, site: Site) -> None:
        self.session = session
        self.site = site
        self._patients: dict[str, Patient] = {}
        self._studies: dict[str, Study] = {}
        self._series: dict[str, Series] = {}

    def _patient(self, values: dict[str, Any]) -> Patient:
        key = values["pseudonym"]
        patient = self._patients.get(key) or self.session.scalar(
            select(Patient).where(Patient.site_id == self.site.id, Patient.pseudonym == key)
        )
        if patient is None:
            patient = Patient(site=self.site, **values)
            self.session.add(patient)
        elif values.get("sex") and not patient.sex:
            patient.sex = values["sex"]
        self._patients[key] = patient
        return patient

    def _study(self, patient: Patient, values: dict[str, Any]) -> Study:
        key = values["study_uid"]
        study = self._studies.get(key) or self.session.scalar(select(Study).where(Study.study_uid == key))
        if study is None:
            study = Study(patient=patient, **values)
            self.session.add(study)
        self._studies[key] = study
        return study

    def _series_row(self, study: Study, values: dict[str, Any]) -> Series:
        key = values["series_uid"]
        series = self._series.get(key) or self.session.scalar(select(Series).where(Series.series_uid == key))
        if series is None:
            series = Series(study=study, instance_count=0, **values)
            self.session.add(series)
        self._series[key] = series
        return series

    def series_for(self, fields: dict[str, Any]) -> Series:
        """The series row (with its study and patient, added when new) for ``index_fields`` output."""
        return self._series_row(
            self._study(self._patient(fields["patient"]), fields["study"]), fields["series"]
        )

    def file(self, outcome: IngestOutcome) -> str:
        """Insert the rows for an ingested outcome; returns the final status (ingested or present)."""
        if outcome.children:
            from curata.collect.wsi import file_slide

            # a slide's levels take their UIDs from its slide key (the sidecar's specimen or accession
            # number): another slide under a key filed already is refused whole, none of its levels
            # filed (they were counted present, and the levels the other slide lacks filed into its
            # series: two pyramids in one)
            if any(self._conflicts(child, strict=True) for child in outcome.children):
                return self._refuse_duplicate(outcome)
            statuses = [self._file_instance(child) for child in outcome.children]
            if outcome.slide is not None:
                file_slide(self.session, outcome.children[0].fields["series"]["series_uid"], outcome.slide)
            return "ingested" if "ingested" in statuses else "present"
        return self._file_instance(outcome)

    def _filed(self, outcome: IngestOutcome) -> tuple[str, str | None] | None:
        """The blob and transfer syntax filed under the SOP Instance UID of ``outcome``, if any."""
        uid = outcome.fields["instance"]["sop_instance_uid"]
        row = self.session.execute(
            select(Instance.blob_digest, Instance.transfer_syntax).where(Instance.sop_instance_uid == uid)
        ).first()
        return None if row is None else (row[0], row[1])

    def _conflicts(self, outcome: IngestOutcome, *, strict: bool = False) -> bool:
        """Whether the SOP Instance UID of ``outcome`` is filed already with other content."""
        filed = self._filed(outcome)
        return filed is not None and conflicts_with(filed[0], filed[1], outcome, strict=strict)

    def _refuse_duplicate(self, outcome: IngestOutcome) -> str:
        outcome.reason = DUPLICATE_UID_REASON
        self.quarantine(outcome)
        return "quarantined"

    def _file_instance(self, outcome: IngestOutcome) -> str:
        """One instance's rows: "ingested", or "present" where its SOP Instance UID is filed already
        with the same content, or "quarantined" (the reason set, the quarantine row added) where that
        UID holds other content."""
        f = outcome.fields
        filed = self._filed(outcome)
        if filed is not None:
            if not conflicts_with(filed[0], filed[1], outcome):
                return "present"
            return self._refuse_duplicate(outcome)
        patient = self._patient(f["patient"])
        study = self._study(patient, f["study"])
        series = self._series_row(study, f["series"])
        if self.session.get(Blob, outcome.blob_digest) is None:
            self.session.add(Blob(digest=outcome.blob_digest, size=outcome.size))
        self.session.add(
            Instance(
                series=series,
                blob_digest=outcome.blob_digest,
                source_digest=outcome.input_digest,
                **f["instance"],
            )
        )
        series.instance_count = (series.instance_count or 0) + 1
        if outcome.deid_record is not None:
            record_provenance(
                self.session,
                "deid",
                [outcome.input_digest or ""],
                {k: outcome.deid_record.get(k) for k in ("profile", "options") if k in outcome.deid_record},
                {"blob": outcome.blob_digest, "record": outcome.deid_record},
                version=str(outcome.deid_record.get("code_version") or "") or None,
            )
        self.session.flush()
        return "ingested"

    def quarantine(self, outcome: IngestOutcome, stage: str = "ingest") -> None:
        item = self.session.scalar(
            select(QuarantineItem).where(
                QuarantineItem.stage == stage, QuarantineItem.input_digest == outcome.input_digest
            )
        )
        if item is None:
            self.session.add(
                QuarantineItem(
                    stage=stage,
                    input_digest=outcome.input_digest,
                    reason=outcome.reason or "",
                    size=outcome.size,
                )
            )
        else:
            item.reason = outcome.reason or item.reason
        self.session.flush()


def ensure_site(session: Session, name: str, region: str | None = None, country: str | None = None) -> Site:
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        site = Site(name=name, region=region or None, country=country or None)
        session.add(site)
        session.flush()
    return site


def _tally(summary: RunSummary, problems: list[IngestOutcome], filed: list[IngestOutcome]) -> None:
    for outcome in filed:
        summary.add(outcome.status)
        if outcome.status in ("quarantined", "failed"):
            problems.append(outcome)


class Ingestor:
    """The ingest service the CLI, the demo and the network gateway share."""

    def __init__(
        self,
        ws: Workspace,
        *,
        deidentify: bool = True,
        profile: str | None = None,
        profile_config: Path | None = None,
        site: str | None = None,
        workers: int | None = None,
        region: str | None = None,
        country: str | None = None,
    ) -> None:
        self.ws = ws
        self.deidentify = deidentify
        site_profile, site_config = ws.deid_profile()
        self.profile = profile or site_profile
        cfg = profile_config or site_config
        self.profile_config = cfg
        self.site_name = site or ws.site_name
        self.region = region or ws.settings.site.region or None
        self.country = country or ws.settings.site.country or None
        self.workers = ws.workers(workers)
        self._single: _WorkerContext | None = None
        ws.catalog.check_schema()
        # a refused input's bytes a killed run left under a temporary name: nothing else removes them
        sweep_private(ws.quarantine_path, time.time())
        if deidentify:  # a bad profile or config: one clear error here, not a crash in every worker
            from curata.collect.deid import load_profile

            load_profile(self.profile, config=cfg)

    def _context(self, known: frozenset[str]) -> _WorkerContext:
        return _WorkerContext(
            store_url=self.ws.store_url,
            quarantine_dir=str(self.ws.quarantine_path),
            deidentify=self.deidentify,
            key=self.ws.site_key() if self.deidentify else None,
            profile=self.profile,
            profile_config=str(self.profile_config) if self.profile_config else None,
            vault_dir=str(self.ws.vault_path) if self.deidentify else None,
            known_inputs=known,
            wsi=dict(self.ws.config.get("wsi") or {}),
            prefixes=accepted_prefixes(self.ws.site_prefixes()),
        )

    def _known_inputs(self, session: Session) -> frozenset[str]:
        rows = session.scalars(select(Instance.source_digest).where(Instance.source_digest.is_not(None)))
        return frozenset(r for r in rows if r is not None)

    def ingest_paths(
        self,
        paths: list[Path],
        *,
        on_progress: Callable[[IngestOutcome], None] | None = None,
        total_hint: Callable[[int], None] | None = None,
    ) -> tuple[RunSummary, list[IngestOutcome]]:
        sources = list(iter_sources(paths))
        if total_hint:
            total_hint(len(sources))
        # clinical (CSV, Excel, FHIR) and genomic (VCF, BCF) inputs go to their own collector, by file type
        # (a slide's identity sidecar, slide.svs.json, is the slide collector's, not a FHIR file)
        from curata.collect import wsi
        from curata.collect.clinical.service import input_kind

        def clinical(s: Source) -> bool:
            return input_kind(s.name) is not None and not wsi.is_sidecar(s.name)

        other = [s for s in sources if clinical(s)]
        if not other:
            return self.ingest_sources(sources, on_progress=on_progress)
        images = [s for s in sources if not clinical(s)]
        if images:
            summary, problems = self.ingest_sources(images, on_progress=on_progress)
        else:  # no image to read: no worker context (store, profile, de-identifier) to set up
            summary, problems = self._empty_summary(), []
        c_summary, c_problems = self.ingest_clinical(other, on_progress=on_progress)
        for key, n in c_summary.counts.items():
            summary.add(key, n)
        summary.failure_keys = (*summary.failure_keys, "rows refused")
        problems.extend(
            IngestOutcome(
                p.status if p.status != "ingested" else "quarantined", p.source, p.input_digest, p.reason
            )
            for p in c_problems
        )
        return summary, problems

    def ingest_clinical(
        self, sources: list[Source], *, on_progress: Callable[[Any], None] | None = None
    ) -> tuple[RunSummary, list[Any]]:
        """Clinical and genomic inputs, de-identified with the same site key as the images. At the
        central platform (``deidentify`` off) they are refused instead (:meth:`_refuse_clinical`)."""
        from curata.collect.clinical.service import ClinicalIngestor, site_prefix

        if not self.deidentify:
            return self._refuse_clinical(sources, on_progress)

        with self.ws.catalog.session() as session:
            site_id = ensure_site(session, self.site_name, self.region, self.country).id
        # the prefix of the profile this ingest de-identifies images with: one pseudonym per patient
        prefix = site_prefix(self.ws, self.profile, self.profile_config)
        return ClinicalIngestor(self.ws, site_id, prefix=prefix).ingest(sources, on_progress=on_progress)

    def _refuse_clinical(
        self, sources: list[Source], on_progress: Callable[[Any], None] | None
    ) -> tuple[RunSummary, list[IngestOutcome]]:
        """A CSV, Excel, FHIR or VCF file is a site's raw export: it holds names, record numbers and
        dates, and nothing in it is marked de-identified. The platform never de-identifies it with its
        own key (that would make the platform a holder of identities, and its vault their keeper):
        it is refused, the digest, size and reason kept, the bytes not (:func:`refuse_bytes`)."""
        from curata.collect.clinical.service import input_kind

        summary = RunSummary("ingest")
        problems: list[IngestOutcome] = []
        with self.ws.catalog.session() as session:
            writer = CatalogWriter(session, ensure_site(session, self.site_name, self.region, self.country))
            for src in sources:
                if input_kind(src.name) == "skip":  # a mapping or an index: read with its export
                    summary.add("skipped")
                    continue
                try:
                    raw = src.read()
                except InputError as exc:
                    outcome = IngestOutcome("failed", src.name, reason=sanitize(exc.reason))
                else:
                    kind = Path(src.name).suffix.lower().lstrip(".") or "clinical"
                    outcome = IngestOutcome(
                        "quarantined",
                        src.name,
                        input_digest=hashlib.sha256(raw).hexdigest(),
                        reason=f"a raw {kind} export reached the central platform; refused (it is never "
                        "de-identified here: a site's gateway pushes it de-identified, `curata gateway push`)",
                        size=len(raw),
                    )
                    writer.quarantine(outcome, stage="clinical")
                summary.add(outcome.status)
                problems.append(outcome)
                if on_progress:
                    on_progress(outcome)
            session.commit()
        return summary, problems

    def ingest_sources(
        self,
        sources: Iterable[Source | tuple[str, bytes]],
        *,
        on_progress: Callable[[IngestOutcome], None] | None = None,
        batch_seconds: float = 1.0,
        batch_size: int = 256,
    ) -> tuple[RunSummary, list[IngestOutcome]]:
        summary = self._empty_summary()
        problems: list[IngestOutcome] = []
        try:
            self._ingest(sources, summary, problems, on_progress, batch_seconds, batch_size)
        except SQLAlchemyError as exc:
            if is_disk_full(exc):
                raise CatalogError(DISK_FULL_REASON, hint=DISK_FULL_HINT) from exc
            raise CatalogError(
                f"the catalog failed ({type(exc).__name__})",
                hint="check the database (curata status); a rerun resumes where this one stopped",
            ) from exc
        except OSError as exc:
            if is_disk_full(exc):
                raise StoreError(DISK_FULL_REASON, hint=DISK_FULL_HINT) from exc
            raise
        return summary, problems

    @staticmethod
    def _empty_summary() -> RunSummary:
        summary = RunSummary("ingest")
        for key in ("ingested", "present", "skipped", "quarantined", "failed"):
            summary.counts[key] = 0
        return summary

    def _ingest(
        self,
        sources: Iterable[Source | tuple[str, bytes]],
        summary: RunSummary,
        problems: list[IngestOutcome],
        on_progress: Callable[[IngestOutcome], None] | None,
        batch_seconds: float,
        batch_size: int,
    ) -> None:
        catalog = self.ws.catalog
        with catalog.session() as session:
            try:
                site = ensure_site(session, self.site_name, self.region, self.country)
                session.commit()
            except IntegrityError:  # another ingest created the site a moment ago
                session.rollback()
                site = ensure_site(session, self.site_name, self.region, self.country)
            known = self._known_inputs(session)
            session.commit()
            writer = CatalogWriter(session, site)
            ctx = self._context(known)
            pending: list[IngestOutcome] = []
            last_commit = time.monotonic()
            disk_full = False
            for src, outcome in imap_unordered(
                process_one, sources, workers=self.workers, initializer=_init_worker, initargs=(ctx,)
            ):
                if outcome.reason == DISK_FULL_REASON:  # stop: every later input would fail alike
                    disk_full = True
                    summary.add("failed")
                    break
                if outcome.status in ("ingested", "quarantined"):
                    pending.append(outcome)
                    filed_as = outcome.status
                    try:
                        outcome.status = self._file_one(writer, outcome)
                    except (IntegrityError, OperationalError) as exc:  # another ingest filed it first
                        writer = self._retry(session, pending, exc)
                    if filed_as == "ingested" and outcome.status == "quarantined":
                        _keep_refused(ctx, src, outcome)
                else:
                    summary.add(outcome.status)
                    if outcome.status == "failed":
                        problems.append(outcome)
                if pending and (len(pending) >= batch_size or time.monotonic() - last_commit > batch_seconds):
                    writer = self._commit(session, site, writer, pending)
                    drop_refused_blobs(session, self.ws.store, pending)
                    _tally(summary, problems, pending)
                    pending, last_commit = [], time.monotonic()
                if on_progress:
                    on_progress(outcome)
            writer = self._commit(session, site, writer, pending)
            drop_refused_blobs(session, self.ws.store, pending)
            _tally(summary, problems, pending)
            if disk_full:
                raise StoreError(
                    f"{DISK_FULL_REASON}; stopped after {summary.counts.get('ingested', 0)} ingested",
                    hint=DISK_FULL_HINT,
                )

    @staticmethod
    def _file_one(writer: CatalogWriter, outcome: IngestOutcome) -> str:
        if outcome.status == "ingested":
            return writer.file(outcome)
        writer.quarantine(outcome)
        return "quarantined"

    def _commit(
        self, session: Session, site: Site, writer: CatalogWriter, pending: list[IngestOutcome]
    ) -> CatalogWriter:
        """Commit the rows of ``pending``; if another ingest filed the same rows first, re-file."""
        faults.point("ingest.before_commit")
        try:
            session.commit()
        except (IntegrityError, OperationalError) as exc:
            writer = self._retry(session, pending, exc)
        faults.point("ingest.after_commit")
        return writer

    def _retry(self, session: Session, pending: list[IngestOutcome], exc: Exception) -> CatalogWriter:
        """Roll back and file ``pending`` again, then commit. Another ingest may have filed the same
        instances (or the same site, patient, study, series) since: those come back ``present``."""
        for attempt in range(10):
            session.rollback()
            if is_disk_full(exc):
                raise CatalogError(DISK_FULL_REASON, hint=DISK_FULL_HINT) from exc
            if attempt == 9:
                raise CatalogError(
                    f"the catalog kept refusing a commit ({type(exc).__name__})",
                    hint="another process may hold the catalog; run again (the rerun resumes)",
                ) from exc
            time.sleep(0.05 * (attempt + 1))
            try:
                site = ensure_site(session, self.site_name, self.region, self.country)
                writer = CatalogWriter(session, site)
                for outcome in pending:
                    if outcome.fields and (
                        outcome.status == "present" or outcome.reason == DUPLICATE_UID_REASON
                    ):
                        # decided again against what is filed now
                        outcome.status, outcome.reason = "ingested", None
                    outcome.status = self._file_one(writer, outcome)
                session.commit()
                return writer
            except (IntegrityError, OperationalError) as again:
                exc = again
        raise AssertionError("unreachable")

    def ingest_bytes(self, raw: bytes, source: str) -> IngestOutcome:
        """One input, durably filed (blob written, catalog committed) before this returns.

        The network gateway calls this per received instance and acknowledges only after it returns
        ``ingested`` or ``present``. The de-identifier is built once and reused across calls.
        """
        if self._single is None:
            ctx = self._context(frozenset())
            _setup_context(ctx)
            self._single = ctx
        outcome = process_one((source, raw), self._single)
        with self.ws.catalog.session() as session:
            if (
                outcome.input_digest
                and outcome.status == "ingested"
                and session.scalar(select(Instance.id).where(Instance.source_digest == outcome.input_digest))
                is not None
            ):
                outcome.status = "present"
                return outcome
            site = ensure_site(session, self.site_name, self.region, self.country)
            writer = CatalogWriter(session, site)
            if outcome.status == "ingested":
                outcome.status = writer.file(outcome)
                if outcome.status == "quarantined":
                    _keep_refused(self._single, (source, raw), outcome)
            elif outcome.status == "quarantined":
                writer.quarantine(outcome)
            session.commit()
            drop_refused_blobs(session, self._single.store, [outcome])
        return outcome


def _keep_refused(ctx: _WorkerContext, source: Source | tuple[str, bytes], outcome: IngestOutcome) -> None:
    """An input refused when filed (``DUPLICATE_UID_REASON``), after its worker read it: its bytes go
    where a refused input's go (:func:`refuse_bytes`), read again from the source. Where they cannot
    be read again, or have changed since, the catalog's quarantine row (digest, size, reason) stays
    alone."""
    if not ctx.deidentify or not outcome.input_digest:
        return  # the platform keeps no refused bytes
    try:
        raw = source[1] if isinstance(source, tuple) else source.read()
        if hashlib.sha256(raw).hexdigest() == outcome.input_digest:
            refuse_bytes(ctx, outcome.input_digest, raw, outcome.source, outcome.reason or "", "ingest")
    except (InputError, OSError):
        pass


def refused_blobs(outcomes: Iterable[IngestOutcome]) -> set[str]:
    """The blobs written for outcomes refused when filed (``DUPLICATE_UID_REASON``): the instance's,
    a slide's levels and its vendor file."""
    digests: set[str] = set()
    for o in outcomes:
        if o.status != "quarantined" or o.reason != DUPLICATE_UID_REASON:
            continue
        digests.update(d for d in [o.blob_digest, *(c.blob_digest for c in o.children)] if d)
        if o.slide and o.slide.get("vendor_blob_digest"):
            digests.add(str(o.slide["vendor_blob_digest"]))
    return digests


def drop_refused_blobs(session: Session, store: Any, outcomes: Iterable[IngestOutcome]) -> int:
    """Remove from the store the blobs of outcomes refused when filed, once their refusal is committed,
    each only where no catalog row refers to it (instance, blob, slide). Their worker wrote them before
    the catalog could tell; nothing pointed at them since. A blob of a refused instance names bytes
    that hold its SOP Instance UID, and that UID is filed with other content: no later row can point
    at it (rows are filed only under a UID not filed yet). A crash before this leaves the blob as it
    was (harmless); a failure here is logged, never raised: the refusal is filed already. Ends the
    session's transaction (nothing is written). Returns how many were removed."""
    digests = refused_blobs(outcomes)
    if not digests:
        return 0
    from curata.collect.wsi.models import Slide

    removed = 0
    try:
        wanted = sorted(digests)
        used = set(session.scalars(select(Blob.digest).where(Blob.digest.in_(wanted))))
        used.update(session.scalars(select(Instance.blob_digest).where(Instance.blob_digest.in_(wanted))))
        used.update(
            d
            for d in session.scalars(
                select(Slide.vendor_blob_digest).where(Slide.vendor_blob_digest.in_(wanted))
            )
            if d
        )
        session.commit()
        for digest in wanted:
            if digest not in used:
                store.delete(digest)
                removed += 1
    except Exception as exc:  # the store or the catalog: the blob stays, as it did before
        session.rollback()
        log.warning("a refused instance's blob could not be removed: %s", safe_reason(exc))
    return removed


# -- the public face of the worker set-up, for other services of this stage (the gateway's Receiver) --
def keep_refused(ctx: _WorkerContext, source: Source | tuple[str, bytes], outcome: IngestOutcome) -> None:
    """Keep the bytes of an input refused when filed, as :func:`refuse_bytes` keeps any refused
    input's (for other services of this stage: the gateway's Receiver)."""
    _keep_refused(ctx, source, outcome)


def worker_context(ingestor: Ingestor) -> _WorkerContext:
    """What a process needs to de-identify and store inputs the way ``ingestor`` does (picklable)."""
    return ingestor._context(frozenset())


def prepare_worker(ctx: _WorkerContext) -> None:
    """Open the store and build the de-identifier of ``ctx`` in this thread or process."""
    _setup_context(ctx)


def current_worker_context() -> _WorkerContext:
    """The context :func:`init_worker_process` set up in this process (a pool worker)."""
    assert _CTX is not None, "worker not initialised"
    return _CTX


def init_worker_process(ctx: _WorkerContext) -> None:
    """A process-pool initializer: :func:`prepare_worker`, then :func:`process_one` uses ``ctx``."""
    _init_worker(ctx)


def quarantine_bytes(folder: str, digest: str, raw: bytes, source: str, reason: str, stage: str) -> None:
    """Keep a refused input on site (never in the store) with its reason, atomically (for other
    collectors of this stage: slides, clinical files)."""
    _quarantine_bytes(folder, digest, raw, source, reason, stage)
