"""Clinical and genomic ingest: CSV / Excel, FHIR and VCF / BCF into the catalog, de-identified first.

Called by ``curata ingest`` (``collect.ingest.Ingestor``) for the inputs whose names say they are
clinical or genomic; DICOM goes on through the DICOM engine. Order of writes per input, as for DICOM:
the de-identified output goes to the store (atomic), then every catalog row of that input is committed
at once, so an interrupted run leaves at worst an unreferenced blob and a re-run files each input once
(inputs are known by their sha256).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from curata.collect.clinical import _writer
from curata.collect.clinical._records import ClinicalBatch, no_cycle_collection
from curata.collect.clinical.deid import AGE_CAP, SiteNames
from curata.collect.clinical.exchange import Batch
from curata.collect.clinical.mapping import SiteMapping, find_mapping
from curata.collect.deid.identities import FOLDER, SiteIdentities
from curata.collect.deid.pseudonyms import accepted_prefixes, sample_patient
from curata.collect.dicomweb.multipart import Part
from curata.collect.reasons import is_disk_full
from curata.collect.sources import Source
from curata.console import RunSummary
from curata.errors import CurataError, safe_reason, sanitize
from curata.workspace import Workspace

if TYPE_CHECKING:
    from curata.collect.genomics.vcf import VcfResult

IDENTITIES_FOLDER = FOLDER  # under the vault folder: the site's identities, sealed (deid.identities)
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
    # a VCF's: records and record values the record rules took out (``vcf.record_values``)
    values_dropped: int = 0


# a place our readers count and name in a reason (line 48213 of a large export, byte 9 of the mapping):
# never a value, so kept through the sanitiser, which takes every number of five digits or more out
_COUNTED = re.compile(r"\b(line|lines|byte|column|entry|row|record) (\d+)\b")


def kept_reason(reason: str) -> str:
    """A reason as it is kept and shown (catalog, quarantine, console): :func:`~curata.errors.sanitize`d,
    quoted text, paths and long numbers out, the places it counts kept. Our readers' reasons name no
    value or path on purpose; this catches the one that would."""
    held: list[str] = []

    def hold(m: re.Match[str]) -> str:
        held.append(m.group(2))
        return f"{m.group(1)} {chr(0xF0000 + len(held) - 1)}"  # a private-use character: no digit, no mark

    out = sanitize(_COUNTED.sub(hold, reason))
    return "".join(held[ord(ch) - 0xF0000] if 0xF0000 <= ord(ch) < 0xF0000 + len(held) else ch for ch in out)


def _reason(exc: BaseException) -> str:
    """The reason an input is refused for ``exc``: our own message (kept_reason), any other by its type."""
    if isinstance(exc, CurataError):
        return kept_reason(getattr(exc, "reason", None) or exc.message)
    return safe_reason(exc)


def _read(src: Source) -> bytes | ClinicalOutcome:
    """An input's bytes, or its failure where it cannot be read (its reason sanitised: no value, no path)."""
    try:
        return src.read()
    except CurataError as exc:
        return ClinicalOutcome("failed", src.name, reason=_reason(exc))


def site_prefix(ws: Workspace, profile: str | None = None, config: Path | None = None) -> str:
    """The pseudonym prefix of the site's de-identification profile (``[deid]`` in curata.toml, or
    ``profile`` and ``config`` where an ingest names its own)."""
    from curata.collect.deid import load_profile

    site_profile, site_config = ws.deid_profile()
    return load_profile(profile or site_profile, config=config or site_config).pseudonym_prefix


class ClinicalIngestor:
    def __init__(
        self, ws: Workspace, site_id: int, *, mapping_file: Path | None = None, prefix: str | None = None
    ) -> None:
        self.ws = ws
        self.site_id = site_id
        self.mapping_file = mapping_file
        self.key = ws.site_key()
        self._prefix = prefix
        self.store = ws.store
        # what the site knows of its patients and of itself (deid.identities): from its images (sealed by
        # the DICOM engine), and from this run's clinical inputs and those of earlier runs, sealed on
        # site with the site key; every clinical input is cleaned of them
        self.known = SiteIdentities(ws.vault_path, self.key)
        self._site: tuple[tuple[int, int], SiteNames] | None = None

    @property
    def prefix(self) -> str:
        """The site's pseudonym prefix (its DICOM profile's ``pseudonym_prefix``, read when first
        needed: filing a batch pseudonymises nothing): a patient's rows, variants and images carry
        one pseudonym."""
        if self._prefix is None:
            self._prefix = site_prefix(self.ws)
        return self._prefix

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
        # Identities first, whatever order the inputs come in: those sealed before (the images of this
        # run and earlier ones, clinical inputs of earlier runs), then the identity columns of every
        # table of this run; then FHIR (its Patients and people), the tables, and the VCFs last.
        self.known.recall()
        fhir: list[tuple[Source, bytes, str]] = []
        vcfs: list[tuple[Source, bytes, str]] = []
        tables: list[tuple[Source, str, str]] = []  # read again when cleaned: a table is not held
        for src in sources:
            kind = input_kind(src.name)
            if kind == "skip":
                continue
            raw = _read(src)
            if isinstance(raw, ClinicalOutcome):
                self._report(raw, summary, problems, on_progress)
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest in known:
                self._report(ClinicalOutcome("present", src.name, digest), summary, problems, on_progress)
                continue
            known.add(digest)
            if kind == "fhir":
                fhir.append((src, raw, digest))
            elif kind == "vcf":
                vcfs.append((src, raw, digest))
            else:
                self._learn_table(src, raw)
                tables.append((src, digest, kind or "csv"))
        if fhir:
            for out in self._fhir(fhir):
                self._report(out, summary, problems, on_progress)
        for src, digest, kind in tables:
            raw = _read(src)
            if isinstance(raw, ClinicalOutcome):
                self._report(raw, summary, problems, on_progress)
                continue
            if hashlib.sha256(raw).hexdigest() != digest:  # changed since it was first read
                out = ClinicalOutcome("failed", src.name, digest, reason="the file changed while it was read")
                self._report(out, summary, problems, on_progress)
                continue
            self._report(self._guarded(src, raw, digest, kind), summary, problems, on_progress)
        for src, raw, digest in vcfs:
            self._report(self._guarded(src, raw, digest, "vcf"), summary, problems, on_progress)
        return summary, problems

    def _learn_table(self, src: Source, raw: bytes) -> None:
        """The identities a table's identity columns declare, known before any input is cleaned. A table
        that cannot be read here is refused, with its reason, when it is cleaned."""
        from curata.collect.clinical.tabular import declares_identities, table_identities

        try:
            mapping = self._mapping(src).table
            if mapping is None or not declares_identities(mapping):
                return
            with no_cycle_collection():
                found = table_identities(raw, src.name, mapping, self.key, prefix=self.prefix)
        except Exception as exc:  # the same input is cleaned next, and refused there with its reason
            if is_disk_full(exc):
                raise
            return
        self.known.remember(found)

    def _site_names(self) -> SiteNames:
        """The site's people and institutions (``self.known``), made again only when it learnt more."""
        size = (len(self.known.people), len(self.known.institutions))
        if self._site is None or self._site[0] != size:
            self._site = (size, SiteNames(self.known.people, self.known.institutions))
        return self._site[1]

    def _guarded(self, src: Source, raw: bytes, digest: str, kind: str) -> ClinicalOutcome:
        from curata.collect.ingest import _quarantine_bytes

        try:
            with no_cycle_collection():
                if kind == "vcf":
                    return self._vcf(src, raw, digest)
                return self._table(src, raw, digest, kind)
        except CurataError as exc:
            # sanitised like every reason kept (paths, quoted values, long numbers out): an error names
            # no path or value on purpose, and this keeps the one that would slip through out of the
            # catalog, the quarantine and the console
            reason = _reason(exc)
        except Exception as exc:  # a bad input a reader did not foresee, or a bug
            if is_disk_full(exc):
                raise
            # quarantined with its kind alone, as `ingest` does for DICOM: the message may quote the
            # input, and one file must not stop the run (nor, in a watched drop, every later one)
            reason = safe_reason(exc)
        _quarantine_bytes(str(self.ws.quarantine_path), digest, raw, src.name, reason, "clinical")
        self._quarantine_row(digest, reason, len(raw))
        return ClinicalOutcome("quarantined", src.name, digest, reason)

    @staticmethod
    def _report(out, summary, problems, on_progress) -> None:  # type: ignore[no-untyped-def]
        summary.add(out.status)
        if out.refused_rows:
            summary.add("rows refused", len(out.refused_rows))
        if out.values_dropped:
            summary.add("VCF values dropped or cleaned", out.values_dropped)
        if out.status in ("quarantined", "failed") or out.refused_rows:
            problems.append(out)
        if on_progress:
            on_progress(out)

    # -- filing ------------------------------------------------------------------------------------
    def _quarantine_row(self, digest: str, reason: str, size: int) -> None:
        _quarantine_row(self.ws, digest, reason, size)

    def file_batch(self, batch: ClinicalBatch, source_name: str, raw: bytes | None = None) -> ClinicalOutcome:
        """File one de-identified batch (CSV, Excel or FHIR): each table as Parquet in the store, then the
        persons, the per-patient index and the input in one commit. The entry point for batches that were
        de-identified elsewhere (a gateway's push) too. ``raw``: the input, kept in quarantine when rows
        were refused (absent where the input never left the site)."""
        import json

        from curata.collect.clinical import _index
        from curata.collect.ingest import _quarantine_bytes

        self._remember(batch)
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
            # each row's reason names its field, never its value; sanitised all the same, row by row
            # (so that no reason is cut short and the line numbers stay)
            shown = "; ".join(f"line {n}: {kept_reason(why)}" for n, why in batch.quarantined[:20])
            more = f"; and {len(batch.quarantined) - 20} more" if len(batch.quarantined) > 20 else ""
            reason = f"{len(batch.quarantined)} of {batch.rows} rows refused: {shown}{more}"
            out.reason = reason
            if raw is not None:
                _quarantine_bytes(
                    str(self.ws.quarantine_path), batch.input_digest, raw, source_name, reason, "clinical"
                )
            self._quarantine_row(batch.input_digest, reason, len(raw) if raw is not None else 0)
        return out

    def _remember(self, batch: ClinicalBatch) -> None:
        """The batch's patients' identifiers and the site's names it gave: for this run, and sealed on
        site for later runs."""
        if batch.identities or batch.people or batch.institutions:
            self.known.remember(
                {pid: who.ids for pid, who in batch.identities.items()},
                people=batch.people,
                institutions=batch.institutions,
            )

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
        batch = deidentify_table(
            raw,
            src.name,
            digest,
            mapping.table,
            self.key,
            kind,
            known=self.known,
            site=self._site_names(),
            prefix=self.prefix,
        )
        return self._file_batch(src, raw, batch)

    def _fhir(self, items: list[tuple[Source, bytes, str]]) -> list[ClinicalOutcome]:
        from curata.collect.clinical.fhir import deidentify_fhir

        try:
            mapping = self._mapping(items[0][0])
        except CurataError as exc:  # a malformed mapping: every file quarantined with its reason
            why = _reason(exc)
            return [self._quarantine_fhir(s, raw, d, why) for s, raw, d in items]
        batches, failed = deidentify_fhir(
            [(s.name, raw, d) for s, raw, d in items],
            mapping.fhir,
            self.key,
            known=self.known,
            site=self._site_names(),
            prefix=self.prefix,
        )
        by_digest = {d: (s, raw) for s, raw, d in items}
        outs = []
        for digest, reason in failed:
            s, raw = by_digest[digest]
            outs.append(self._quarantine_fhir(s, raw, digest, kept_reason(reason)))
        for batch in batches:
            s, raw = by_digest[batch.input_digest]
            outs.append(self._file_batch(s, raw, batch))
        return outs

    def _quarantine_fhir(self, src: Source, raw: bytes, digest: str, reason: str) -> ClinicalOutcome:
        from curata.collect.ingest import _quarantine_bytes

        _quarantine_bytes(str(self.ws.quarantine_path), digest, raw, src.name, reason, "clinical")
        self._quarantine_row(digest, reason, len(raw))
        return ClinicalOutcome("quarantined", src.name, digest, reason)

    def _vcf(self, src: Source, raw: bytes, digest: str) -> ClinicalOutcome:
        from curata.collect.genomics.vcf import deidentify_vcf

        mapping = self._mapping(src)
        self.known.recall()
        res = deidentify_vcf(
            raw, src.name, mapping.vcf, self.key, self.known, site=self._site_names(), prefix=self.prefix
        )
        return self.file_vcf(res, digest, src.name)

    def file_vcf(self, res: VcfResult, input_digest: str, source_name: str) -> ClinicalOutcome:
        """File one de-identified VCF (``genomics.deidentify_vcf``'s result): the VCF whole and its variant
        index as Parquet in the store, then the file, its samples' persons and their index in one commit."""
        import numpy as np
        import pyarrow as pa

        from curata.collect.clinical import _index
        from curata.collect.clinical._records import PersonFacts
        from curata.collect.genomics.models import genomic_file

        if self._filed(input_digest):
            return ClinicalOutcome("present", source_name, input_digest)
        blob = self.store.put_bytes(res.output)
        base = [sample_patient(p) for p in res.samples]
        frame = {k: v for k, v in res.index.items() if k != "sample"}
        # each row's patient: its sample's pseudonym, dictionary-encoded (a few samples, many rows)
        owners, of_sample = np.unique(np.array(base or [""], dtype=object), return_inverse=True)
        codes = of_sample.astype(np.int32)[np.asarray(res.index["sample"], dtype=np.int64)]
        frame["pseudonym"] = pa.DictionaryArray.from_arrays(codes, pa.array(owners.tolist(), pa.string()))
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
        out = ClinicalOutcome("ingested", source_name, input_digest, rows=res.records)
        if res.dropped:  # what the record rules took out (``vcf.record_values``): counts, never values
            out.reason = f"{res.dropped.says()} (values no record rule keeps)"
            out.values_dropped = res.dropped.records + res.dropped.dropped + res.dropped.cleaned
        return out


def _quarantine_row(ws: Workspace, digest: str, reason: str, size: int) -> None:
    from curata.catalog import QuarantineItem

    with ws.catalog.session() as session:
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


# -- between a gateway and the platform (wire format: exchange.py) ------------------------------------
@dataclass(frozen=True)
class FiledInput:
    """One clinical or genomic input filed in this workspace: what `curata gateway push` delivers."""

    site_id: int
    input_digest: str  # sha256 of the input as the site gave it (never sent: see batch_name)
    kind: str  # csv, excel, fhir, vcf


@dataclass
class FiledBatch:
    """What the platform made of one pushed batch."""

    batch: str
    kind: str
    status: str  # filed, present, quarantined, refused (lost or altered on the way: send it again)
    rows: int = 0
    reason: str | None = None


def filed_inputs(ws: Workspace) -> list[FiledInput]:
    """Every clinical and genomic input filed here (by `curata ingest` or `curata gateway watch`)."""
    from curata.collect.clinical.models import clinical_source
    from curata.collect.genomics.models import genomic_file

    with ws.catalog.session() as s:
        rows = [
            FiledInput(int(site), d, k)
            for site, d, k in s.execute(
                sa.select(
                    clinical_source.c.site_id, clinical_source.c.input_digest, clinical_source.c.kind
                ).order_by(clinical_source.c.id)
            )
        ]
        rows += [
            FiledInput(int(site), d, "vcf")
            for site, d in s.execute(
                sa.select(genomic_file.c.site_id, genomic_file.c.input_digest).order_by(genomic_file.c.id)
            )
        ]
    return rows


def batch_name(key: bytes, input_digest: str) -> str:
    """The site's keyed name of an input on the wire: stable across runs, telling nothing of the input."""
    import hmac

    return hmac.digest(key, b"clinical-push\0" + input_digest.encode(), "sha256").hex()


def deidentified_batch(ws: Workspace, item: FiledInput) -> Batch:
    """The de-identified content of one filed input as it travels (exchange.py): its OMOP rows as tables,
    or its de-identified VCF whole. Read from what this workspace stores, so the wire does not change when
    the storage does."""
    import pyarrow as pa

    from curata.collect.clinical.exchange import EVENT_TABLES, PERSON_COLUMNS, arrow_type, wire_columns
    from curata.collect.clinical.models import OMOP
    from curata.collect.genomics.models import genomic_file

    name = batch_name(ws.site_key(), item.input_digest)
    if item.kind == "vcf":
        with ws.catalog.session() as s:
            blob = s.scalar(
                sa.select(genomic_file.c.blob_digest).where(
                    genomic_file.c.site_id == item.site_id, genomic_file.c.input_digest == item.input_digest
                )
            )
        if blob is None:
            raise CurataError(f"no VCF filed as sha256:{item.input_digest[:12]}")
        data = ws.store.get_bytes(blob)
        if hashlib.sha256(data).hexdigest() != blob:
            raise CurataError(
                f"the stored VCF of sha256:{item.input_digest[:12]} does not match its sha256",
                hint="run `curata store verify`",
            )
        return Batch(name, "vcf", vcf=data)
    from curata.collect.clinical import _index
    from curata.collect.clinical.models import clinical_table

    person = OMOP["person"]
    batch = Batch(name, item.kind)
    people: list[Any] = [
        sa.select(person.c.person_id).where(
            person.c.site_id == item.site_id, person.c.source_digest == item.input_digest
        )
    ]
    pseudonyms: set[str] = set()
    with ws.catalog.session() as s:
        stored = {
            r.table_name: r.blob_digest
            for r in s.execute(
                sa.select(clinical_table.c.table_name, clinical_table.c.blob_digest).where(
                    clinical_table.c.site_id == item.site_id,
                    clinical_table.c.source_digest == item.input_digest,
                )
            )
        }
        for table in EVENT_TABLES:
            t = OMOP[table]
            cols = wire_columns(table)
            types = [arrow_type(person.c.pseudonym), *(arrow_type(t.c[c]) for c in cols[1:])]
            if table in stored:  # the input's Parquet table (collect/clinical/_index.py)
                data = _index.read_parquet(ws.store.get_bytes(stored[table]), table)
                n = data.num_rows
                batch.tables[table] = pa.table(
                    {
                        c: data.column(c).cast(ty) if c in data.column_names else pa.nulls(n, ty)
                        for c, ty in zip(cols, types, strict=True)
                    }
                )
                pseudonyms.update(data.column("pseudonym").unique().to_pylist())
                continue
            # a catalog older than the Parquet tables keeps the rows in SQL
            mine = sa.and_(t.c.site_id == item.site_id, t.c.source_digest == item.input_digest)
            stmt = (
                sa.select(person.c.pseudonym, *(t.c[c] for c in cols[1:]))
                .join(person, t.c.person_id == person.c.person_id)
                .where(mine)
                .order_by(*t.primary_key.columns)
            )
            rows = s.execute(stmt).all()
            if rows:
                values = list(zip(*rows, strict=True))
                batch.tables[table] = pa.table(
                    {c: pa.array(v, type=ty) for c, v, ty in zip(cols, values, types, strict=True)}
                )
                people.append(sa.select(t.c.person_id).where(mine))
        wanted = sorted(pseudonyms)
        for i in range(0, len(wanted), 500):
            people.append(
                sa.select(person.c.person_id).where(
                    person.c.site_id == item.site_id, person.c.pseudonym.in_(wanted[i : i + 500])
                )
            )
        facts: list[sa.Column[Any]] = [person.c[c] for c in PERSON_COLUMNS]
        period = OMOP["observation_period"]
        rows = s.execute(
            sa.select(*facts, period.c.observation_period_end_date)
            .outerjoin(period, period.c.person_id == person.c.person_id)
            .where(person.c.person_id.in_(sa.union(*people)))
            .order_by(person.c.pseudonym)
        ).all()
    columns: list[Any] = list(zip(*[_capped(r) for r in rows], strict=True)) or [[] for _ in facts]
    batch.tables["person"] = pa.table(
        {c.name: pa.array(v, type=arrow_type(c)) for c, v in zip(facts, columns, strict=True)}
    )
    return batch


def _capped(row: Any) -> tuple[Any, ...]:
    """(pseudonym, sex, year of birth, capped) with the year of birth capped against the person's last
    event of any input (observation_period): a birth year filed from one input (a FHIR Patient file)
    and events from another (its Condition file) must not tell an age above 89 once they travel together."""
    pseudonym, sex, born, capped, last = row
    if born is not None and last is not None and last.year - born > AGE_CAP + 1:
        return pseudonym, sex, last.year - (AGE_CAP + 1), True
    return pseudonym, sex, born, capped


def _frame(table: Any) -> dict[str, Any]:
    """A checked wire table as the catalog writer's column frame ({column: numpy array})."""
    import numpy as np
    import pyarrow as pa

    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        if col.null_count == len(col):  # nothing to write: the column's default (NULL, or 0 for a concept)
            continue
        if pa.types.is_integer(col.type) and col.null_count:  # no float detour: PostgreSQL wants ints
            arr = np.empty(len(col), dtype=object)
            arr[:] = col.to_pylist()
            out[name] = arr
        else:
            out[name] = col.to_numpy()
    return out


def _site_id(ws: Workspace, site: str | None) -> int:
    """The site the platform files pushed data under: the one its DICOM receiver files images under."""
    from curata.collect.ingest import Ingestor, ensure_site

    ing = Ingestor(ws, deidentify=False, site=site)
    with ws.catalog.session() as session:
        return int(ensure_site(session, ing.site_name, ing.region, ing.country).id)


def _births(ws: Workspace, site_id: int, keys: set[str]) -> dict[str, int]:
    """The years of birth this platform already holds for these patients."""
    from curata.collect.clinical.models import person

    found: dict[str, int] = {}
    wanted = sorted(keys)
    with ws.catalog.session() as s:
        for i in range(0, len(wanted), 500):
            stmt = sa.select(person.c.pseudonym, person.c.year_of_birth).where(
                person.c.site_id == site_id,
                person.c.pseudonym.in_(wanted[i : i + 500]),
                person.c.year_of_birth.is_not(None),
            )
            found.update({p: int(y) for p, y in s.execute(stmt)})
    return found


def _is_filed(ws: Workspace, digest: str) -> bool:
    from curata.collect.clinical.models import clinical_source
    from curata.collect.genomics.models import genomic_file

    with ws.catalog.session() as s:
        return any(
            s.scalar(sa.select(t.c.id).where(t.c.input_digest == digest).limit(1))
            for t in (clinical_source, genomic_file)
        )


def _site_for(ws: Workspace, keys: set[str], site: str | None, series: Any) -> tuple[int | None, str | None]:
    """(site id, None) to file a batch of these patients under, or (None, why it may not be filed).

    The site of the patients' images (so that cohorts join them), else the site the platform's STOW
    receiver files images under (the images come later). ``series``: the series the uploader may touch
    (a project's scope); every patient must have one of them."""
    from curata.catalog import Patient, Series, Study

    if site is not None:
        return _site_id(ws, site), None
    found: dict[str, int] = {}
    wanted = sorted(keys)
    with ws.catalog.session() as s:
        for i in range(0, len(wanted), 500):
            stmt = sa.select(Patient.pseudonym, Patient.site_id).where(
                Patient.pseudonym.in_(wanted[i : i + 500])
            )
            if series is not None:
                stmt = stmt.join(Study, Study.patient_id == Patient.id).join(
                    Series, Series.study_id == Study.id
                )
                stmt = stmt.where(Series.id.in_(series))
            found.update({p: int(site_id) for p, site_id in s.execute(stmt)})
    if series is not None and len(found) < len(keys):
        return None, f"{len(keys) - len(found)} of its {len(keys)} patients are not in this project"
    sites = set(found.values())
    if len(sites) > 1:
        return None, "its patients' images are filed under more than one site"
    return (sites.pop() if sites else _site_id(ws, None)), None


def _quarantined(ws: Workspace, batch: Batch, message: str) -> FiledBatch:
    """A pushed batch the platform refuses: it looks identified or malformed, so its bytes are not kept
    (the platform never holds identified data; the gateway keeps the input and sends it again), only
    the batch name, size and reason."""
    reason = f"pushed {batch.kind} batch refused: {kept_reason(message)}"
    _quarantine_row(ws, batch.batch, reason, len(batch.quarantine_bytes()))
    return FiledBatch(batch.batch, batch.kind, "quarantined", reason=reason)


def file_deidentified_batch(
    ws: Workspace, batch: Batch, *, site: str | None = None, series: Any = None
) -> FiledBatch:
    """File one batch a gateway de-identified with its own site key, as it is: nothing is de-identified
    again (no other key ever touches it). Checked first (exchange.check: pseudonyms, keyed IDs, clean
    text, codes, known columns, ages; a VCF's samples, header and records): a batch that fails is quarantined
    with its reason and nothing of it is filed. Filed under the site of its patients' images (``site``
    names one instead); ``series`` (a project's ``select(Series.id)``) bounds the patients an uploader
    may add to: a batch with others is refused. A batch filed before answers ``present`` (idempotent)."""
    from sqlalchemy.exc import IntegrityError

    from curata.collect.clinical.exchange import (
        check,
        check_ages,
        check_samples,
        check_vcf_header,
        check_vcf_records,
    )
    from curata.collect.genomics.vcf import index_vcf
    from curata.errors import DeidError, InputError

    if _is_filed(ws, batch.batch):
        return FiledBatch(batch.batch, batch.kind, "present")
    prefixes = accepted_prefixes(ws.site_prefixes())
    try:
        check(batch, prefixes)
        vcf = None
        if batch.vcf is not None:
            vcf = index_vcf(batch.vcf, "pushed.vcf.gz")
            check_samples(vcf.samples, prefixes)
            check_vcf_header(batch.vcf, vcf.output)
            check_vcf_records(batch.vcf, vcf.output)
    except (InputError, DeidError) as exc:
        return _quarantined(ws, batch, exc.message)
    keys = {sample_patient(p) for p in vcf.samples} if vcf is not None else set()
    for table in batch.tables.values():
        keys.update(table.column("pseudonym").to_pylist())
    site_id, why = _site_for(ws, keys, site, series)
    if site_id is None:
        return FiledBatch(batch.batch, batch.kind, "refused", reason=why)
    try:
        check_ages(batch, _births(ws, site_id, keys))
    except DeidError as exc:
        return _quarantined(ws, batch, exc.message)
    cb = _clinical_batch(batch) if vcf is None else None
    # the writer's bulk insert speaks to the driver itself: its own IntegrityError, beside SQLAlchemy's
    conflicts = (IntegrityError, ws.catalog.engine.dialect.loaded_dbapi.IntegrityError)
    ingestor = ClinicalIngestor(ws, site_id)
    for attempt in (1, 2):
        try:
            if vcf is not None:
                out = ingestor.file_vcf(vcf, batch.batch, "push")
            else:
                assert cb is not None
                out = ingestor.file_batch(cb, "push")
            if out.status == "present":
                return FiledBatch(batch.batch, batch.kind, "present")
            return FiledBatch(batch.batch, batch.kind, "filed", rows=out.rows)
        except conflicts:  # a request beside this one filed the same batch, or a new patient of it
            if _is_filed(ws, batch.batch):
                return FiledBatch(batch.batch, batch.kind, "present")
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _clinical_batch(batch: Batch) -> ClinicalBatch:
    """A checked wire batch as the catalog writer's ClinicalBatch (persons, one column frame a table)."""
    from curata.collect.clinical._records import PersonFacts

    cb = ClinicalBatch(kind=batch.kind, input_digest=batch.batch)
    persons = batch.tables.get("person")
    for row in persons.to_pylist() if persons is not None else ():
        cb.persons[row["pseudonym"]] = PersonFacts(
            row["pseudonym"],
            sex=row.get("gender_source_value"),
            year_of_birth=row.get("year_of_birth"),
            age_capped=bool(row.get("age_capped")),
        )
    for n, (name, table) in enumerate(sorted(batch.tables.items())):
        if name == "person" or not table.num_rows:
            continue
        frame = _frame(table)
        frame["record_key"] = [f"{batch.batch[:40]}:{n}:{i}" for i in range(table.num_rows)]
        cb.frames[name] = frame
        cb.rows += table.num_rows
    return cb


def receive_batches(
    ws: Workspace, parts: list[Part], *, site: str | None = None, series: Any = None
) -> list[FiledBatch]:
    """A gateway's request (``curata-clinical/1`` parts): each batch filed, present, quarantined or
    refused, independently of the others (``site``, ``series``: see file_deidentified_batch)."""
    from curata.collect.clinical.exchange import decode

    batches, refused = decode(parts)
    out = [FiledBatch(r.batch, "", "refused", reason=r.reason) for r in refused]
    return out + [file_deidentified_batch(ws, b, site=site, series=series) for b in batches]


__all__ = [
    "ClinicalIngestor",
    "ClinicalOutcome",
    "FiledBatch",
    "FiledInput",
    "batch_name",
    "deidentified_batch",
    "file_deidentified_batch",
    "filed_inputs",
    "input_kind",
    "receive_batches",
]
