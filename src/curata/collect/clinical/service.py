"""Clinical and genomic ingest: CSV / Excel, FHIR and VCF / BCF into the catalog, de-identified first.

Called by ``curata ingest`` (``collect.ingest.Ingestor``) for the inputs whose names say they are
clinical or genomic; DICOM goes on through the DICOM engine. Order of writes per input, as for DICOM:
the de-identified output goes to the store (atomic), then every catalog row of that input is committed
at once, so an interrupted run leaves at worst an unreferenced blob and a re-run files each input once
(inputs are known by their sha256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from curata.collect.clinical import _writer
from curata.collect.clinical._records import ClinicalBatch
from curata.collect.clinical.mapping import SiteMapping, find_mapping
from curata.collect.sources import Source
from curata.console import RunSummary
from curata.errors import CurataError
from curata.workspace import Workspace

if TYPE_CHECKING:
    from curata.collect.genomics.vcf import VcfResult

TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx", ".xlsm", ".xls")
FHIR_SUFFIXES = (".ndjson", ".json")
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
SKIP_SUFFIXES = (".toml", ".tbi", ".csi")


def input_kind(name: str) -> str | None:
    """csv, fhir, vcf or skip by the file name; None for everything else (DICOM)."""
    low = name.split("!")[-1].lower()
    if low.endswith(VCF_SUFFIXES):
        return "vcf"
    if low.endswith(TABLE_SUFFIXES):
        return "excel" if low.endswith((".xlsx", ".xlsm", ".xls")) else "csv"
    if low.endswith(FHIR_SUFFIXES):
        return "fhir"
    if low.endswith(SKIP_SUFFIXES):
        return "skip"
    return None


@dataclass
class ClinicalOutcome:
    """What became of one clinical or genomic input (the shape of ``collect.ingest.IngestOutcome``)."""

    status: str  # ingested, present, quarantined, skipped
    source: str
    input_digest: str | None = None
    reason: str | None = None
    rows: int = 0
    refused_rows: list[tuple[int, str]] = field(default_factory=list)


class ClinicalIngestor:
    def __init__(self, ws: Workspace, site_id: int, *, mapping_file: Path | None = None) -> None:
        self.ws = ws
        self.site_id = site_id
        self.mapping_file = mapping_file
        self.key = ws.site_key()
        self.store = ws.store
        self.known: dict[str, object] = {}  # patient ID -> Identifiers seen this run (memory only)

    def _mapping(self, source: Source) -> SiteMapping:
        cfg = self.ws.config.get("clinical", {}) or {}
        explicit = self.mapping_file or (Path(cfg["mapping"]) if cfg.get("mapping") else None)
        return find_mapping(Path(source.path), explicit)

    def ingest(
        self, sources: Iterable[Source], *, on_progress: Callable[[ClinicalOutcome], None] | None = None
    ) -> tuple[RunSummary, list[ClinicalOutcome]]:

        summary = RunSummary("ingest (clinical, genomic)")
        problems: list[ClinicalOutcome] = []
        with self.ws.catalog.session() as session:
            known = _writer.known_inputs(session, self.site_id)
        fhir: list[tuple[Source, bytes, str]] = []
        vcfs: list[tuple[Source, bytes, str]] = []
        for src in sources:
            kind = input_kind(src.name)
            if kind == "skip":
                continue
            try:
                raw = src.read()
            except CurataError as exc:
                out = ClinicalOutcome("failed", src.name, reason=getattr(exc, "reason", exc.message))
                self._report(out, summary, problems, on_progress)
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest in known:
                self._report(ClinicalOutcome("present", src.name, digest), summary, problems, on_progress)
                continue
            known.add(digest)
            if kind == "fhir":
                fhir.append((src, raw, digest))
                continue
            if kind == "vcf":  # after the clinical inputs, whose identifiers then clean the VCF headers too
                vcfs.append((src, raw, digest))
                continue
            self._report(self._guarded(src, raw, digest, kind or "csv"), summary, problems, on_progress)
        if fhir:
            for out in self._fhir(fhir):
                self._report(out, summary, problems, on_progress)
        for src, raw, digest in vcfs:
            self._report(self._guarded(src, raw, digest, "vcf"), summary, problems, on_progress)
        return summary, problems

    def _guarded(self, src: Source, raw: bytes, digest: str, kind: str) -> ClinicalOutcome:
        from curata.collect.ingest import _quarantine_bytes

        try:
            if kind == "vcf":
                return self._vcf(src, raw, digest)
            return self._table(src, raw, digest, kind)
        except CurataError as exc:
            reason = getattr(exc, "reason", None) or exc.message
            _quarantine_bytes(str(self.ws.quarantine_path), digest, raw, src.name, reason, "clinical")
            self._quarantine_row(digest, reason, len(raw))
            return ClinicalOutcome("quarantined", src.name, digest, reason)

    @staticmethod
    def _report(out, summary, problems, on_progress) -> None:  # type: ignore[no-untyped-def]
        summary.add(out.status)
        if out.refused_rows:
            summary.add("rows refused", len(out.refused_rows))
        if out.status in ("quarantined", "failed") or out.refused_rows:
            problems.append(out)
        if on_progress:
            on_progress(out)

    # -- filing ------------------------------------------------------------------------------------
    def _quarantine_row(self, digest: str, reason: str, size: int) -> None:
        from curata.catalog import QuarantineItem

        with self.ws.catalog.session() as session:
            item = session.scalar(
                sa.select(QuarantineItem).where(
                    QuarantineItem.stage == "clinical", QuarantineItem.input_digest == digest
                )
            )
            if item is None:
                session.add(
                    QuarantineItem(stage="clinical", input_digest=digest, reason=reason[:4000], size=size)
                )
            else:
                item.reason = reason[:4000]

    def file_batch(self, batch: ClinicalBatch, source_name: str, raw: bytes | None = None) -> ClinicalOutcome:
        """File one de-identified batch (CSV, Excel or FHIR): each table as Parquet in the store, then the
        persons, the per-patient index and the input in one commit. The entry point for batches that were
        de-identified elsewhere (a gateway's push) too. ``raw``: the input, kept in quarantine when rows
        were refused (absent where the input never left the site)."""
        import json

        from curata.collect.clinical import _index
        from curata.collect.ingest import _quarantine_bytes

        for pid, who in batch.identities.items():
            self.known[pid] = who.ids
        if self._filed(batch.input_digest):
            return ClinicalOutcome("present", source_name, batch.input_digest)
        tables = _writer.batch_tables(batch)
        blobs = {
            name: self.store.put_bytes(_index.parquet_bytes(t, batch.input_digest))
            for name, t in tables.items()
        }
        manifest = {
            "kind": batch.kind,
            "input_digest": batch.input_digest,
            "persons": [vars(p) | {"birth": None} for p in batch.persons.values()],
            "tables": blobs,
        }
        output = self.store.put_bytes(json.dumps(manifest, sort_keys=True, default=str).encode())
        if not self._file_once(
            batch.input_digest, lambda s: _writer.file_batch(s, self.site_id, batch, output, tables, blobs)
        ):
            return ClinicalOutcome("present", source_name, batch.input_digest)
        out = ClinicalOutcome(
            "ingested", source_name, batch.input_digest, rows=batch.rows, refused_rows=list(batch.quarantined)
        )
        if batch.quarantined:
            shown = "; ".join(f"line {n}: {why}" for n, why in batch.quarantined[:20])
            more = f"; and {len(batch.quarantined) - 20} more" if len(batch.quarantined) > 20 else ""
            reason = f"{len(batch.quarantined)} of {batch.rows} rows refused: {shown}{more}"
            out.reason = reason
            if raw is not None:
                _quarantine_bytes(
                    str(self.ws.quarantine_path), batch.input_digest, raw, source_name, reason, "clinical"
                )
            self._quarantine_row(batch.input_digest, reason, len(raw) if raw is not None else 0)
        return out

    def _filed(self, input_digest: str) -> bool:
        with self.ws.catalog.session() as session:
            return input_digest in _writer.known_inputs(session, self.site_id, input_digest)

    def _file_once(self, input_digest: str, write: Callable[[Session], object]) -> bool:
        """Run ``write`` in one transaction unless the input is filed already (by an earlier run, or by
        a filer that got there first: the unique input keys refuse the second). False: it was."""
        from sqlalchemy.exc import IntegrityError

        if self._filed(input_digest):
            return False
        try:
            with self.ws.catalog.session() as session:
                write(session)
        except IntegrityError:
            if self._filed(input_digest):
                return False
            raise
        return True

    def _file_batch(self, src: Source, raw: bytes, batch: ClinicalBatch) -> ClinicalOutcome:
        return self.file_batch(batch, src.name, raw)

    def _table(self, src: Source, raw: bytes, digest: str, kind: str) -> ClinicalOutcome:
        from curata.collect.clinical.tabular import deidentify_table

        mapping = self._mapping(src)
        batch = deidentify_table(raw, src.name, digest, mapping.table, self.key, kind)
        return self._file_batch(src, raw, batch)

    def _fhir(self, items: list[tuple[Source, bytes, str]]) -> list[ClinicalOutcome]:
        from curata.collect.clinical.fhir import deidentify_fhir
        from curata.collect.ingest import _quarantine_bytes

        mapping = self._mapping(items[0][0])
        batches, failed = deidentify_fhir([(s.name, raw, d) for s, raw, d in items], mapping.fhir, self.key)
        by_digest = {d: (s, raw) for s, raw, d in items}
        outs = []
        for digest, reason in failed:
            s, raw = by_digest[digest]
            _quarantine_bytes(str(self.ws.quarantine_path), digest, raw, s.name, reason, "clinical")
            self._quarantine_row(digest, reason, len(raw))
            outs.append(ClinicalOutcome("quarantined", s.name, digest, reason))
        for batch in batches:
            s, raw = by_digest[batch.input_digest]
            outs.append(self._file_batch(s, raw, batch))
        return outs

    def _vcf(self, src: Source, raw: bytes, digest: str) -> ClinicalOutcome:
        from curata.collect.genomics.vcf import deidentify_vcf

        mapping = self._mapping(src)
        res = deidentify_vcf(raw, src.name, mapping.vcf, self.key, self.known)  # type: ignore[arg-type]
        return self.file_vcf(res, digest, src.name)

    def file_vcf(self, res: VcfResult, input_digest: str, source_name: str) -> ClinicalOutcome:
        """File one de-identified VCF (``genomics.deidentify_vcf``'s result): the VCF whole and its variant
        index as Parquet in the store, then the file, its samples' persons and their index in one commit."""
        import numpy as np

        from curata.collect.clinical import _index
        from curata.collect.clinical._records import PersonFacts
        from curata.collect.genomics.models import genomic_file

        if self._filed(input_digest):
            return ClinicalOutcome("present", source_name, input_digest)
        blob = self.store.put_bytes(res.output)
        base = [p.split("_")[0] for p in res.samples]
        frame = {k: v for k, v in res.index.items() if k != "sample"}
        owner = np.array(base or [""], dtype=object)
        frame["pseudonym"] = owner[res.index["sample"]] if res.count else np.zeros(0, dtype=object)
        tables = (
            {"genomic_variant": _index.to_arrow("genomic_variant", frame, res.count)} if res.count else {}
        )
        blobs = {
            name: self.store.put_bytes(_index.parquet_bytes(t, input_digest)) for name, t in tables.items()
        }
        batch = ClinicalBatch(kind="vcf", input_digest=input_digest)
        for p in base:
            batch.persons.setdefault(p, PersonFacts(p))

        def write(session: Session) -> None:
            ids = _writer.ensure_persons(session, self.site_id, batch, input_digest)
            session.execute(
                sa.insert(genomic_file).values(
                    site_id=self.site_id,
                    input_digest=input_digest,
                    blob_digest=blob,
                    format=res.fmt,
                    samples=res.samples,
                    variant_count=res.records,
                    dropped_header_lines=res.dropped_header_lines,
                )
            )
            _writer.file_tables(session, self.site_id, input_digest, tables, blobs, ids)

        if not self._file_once(input_digest, write):
            return ClinicalOutcome("present", source_name, input_digest)
        return ClinicalOutcome("ingested", source_name, input_digest, rows=res.records)


__all__ = ["ClinicalIngestor", "ClinicalOutcome", "input_kind"]
