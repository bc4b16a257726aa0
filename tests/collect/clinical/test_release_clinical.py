"""Releases carry the clinical tables, OMOP CSVs, per-case VCFs and FHIR Bundles, split with the images."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from curata.collect.ingest import Ingestor
from curata.publish import create_release, export_release
from curata.publish.manifest import Manifest
from curata.publish.release import get_version
from tests.collect.clinical._fixtures import csv_row, vcf_text, write_csv
from tests.conftest import make_ct

MRNS = [f"MRN-{n:05d}" for n in range(10, 16)]


def test_release_carries_clinical_and_genomic_files_split_with_the_images(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    for i, mrn in enumerate(MRNS):
        make_ct(export / "ct" / mrn, patient_id=mrn, patient_name=f"Pat^{i}", seed=i)
    rows = [
        csv_row(mrn=m, patient_name=f"Pat {i}", stage=["I", "IIIA", "IV"][i % 3]) for i, m in enumerate(MRNS)
    ]
    write_csv(export / "clinical" / "dx.csv", rows)
    (export / "genomes").mkdir()
    for m in MRNS[:2]:
        (export / "genomes" / f"{m}.vcf").write_text(vcf_text(sample=m))
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    rel = create_release(workspace, "lung-clin", formats="dicom,fhir")
    with workspace.catalog.session() as s:
        v = get_version(s, rel.ref)
        manifest = Manifest.from_bytes(workspace.store.get_bytes(v.manifest_digest))
        splits_digest = next(f.sha256 for f in manifest.files if f.path == "splits.json")
    paths = {f.path: f.sha256 for f in manifest.files}
    for name in ("person", "condition_occurrence", "measurement", "specimen", "observation_period"):
        assert f"clinical/{name}.parquet" in paths and f"clinical/{name}.csv" in paths
        assert f"clinical/omop/{name.upper()}.csv" in paths
    splits = json.loads(workspace.store.get_bytes(splits_digest))
    cond = pd.read_parquet(
        io.BytesIO(workspace.store.get_bytes(paths["clinical/condition_occurrence.parquet"]))
    )
    assert len(cond) == len(MRNS)
    assert all(
        splits[p] == s for p, s in zip(cond["patient"], cond["split"], strict=True)
    )  # split with images
    omop = pd.read_csv(io.BytesIO(workspace.store.get_bytes(paths["clinical/omop/CONDITION_OCCURRENCE.csv"])))
    assert list(omop.columns)[:4] == [
        "condition_occurrence_id",
        "person_id",
        "condition_concept_id",
        "condition_start_date",
    ]
    vcfs = [p for p in paths if p.startswith("genomics/") and p.endswith(".vcf.gz")]
    assert len(vcfs) == 2 and all(p.split("/")[1] in ("train", "validation", "test") for p in vcfs)
    assert b"p.Leu858Arg" in gzip.decompress(workspace.store.get_bytes(paths[vcfs[0]]))
    bundles = [p for p in paths if p.startswith("fhir/")]
    assert len(bundles) == len(MRNS)
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate(json.loads(workspace.store.get_bytes(paths[bundles[0]])))
    kinds = {e.resource.get_resource_type() for e in bundle.entry}
    assert {"Patient", "Condition", "Observation", "Specimen"} <= kinds
    card = workspace.store.get_bytes(paths["card/clinical.md"]).decode()
    # two patients per stage: small cells, shown as <5 (six patients of the diagnosis are shown)
    assert "lung adenocarcinoma | 6 |" in card and "III: <5" in card and "re-identification" in card
    assert "Counts under 5 are shown as <5" in card
    assert "Missing data per field" in card
    assert b"clinical.md" in workspace.store.get_bytes(paths["card/README.md"])
    # the licensee's copy carries them and the shipped verifier accepts it
    out = export_release(workspace, rel.ref, tmp_path / "acme", licensee="ACME AI")
    folder = Path(out.directory)
    assert (folder / "clinical" / "omop" / "PERSON.csv").is_file()
    res = subprocess.run([sys.executable, "-I", str(folder / "verify_release.py"), str(folder)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    # same content, same version; new clinical data, new version
    assert not create_release(workspace, "lung-clin", formats="dicom,fhir").created
    write_csv(
        export / "clinical2" / "more.csv", [csv_row(mrn=MRNS[0], icd10="C78.0", diagnosis="lung metastasis")]
    )
    Ingestor(workspace, workers=1).ingest_paths([export / "clinical2"])
    assert create_release(workspace, "lung-clin", formats="dicom,fhir").created


def test_licensee_copies_mark_clinical_tables_and_vcfs_and_trace_names_the_licensee(
    workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from curata.publish import trace_file
    from curata.publish.models import ReleaseExport

    export = tmp_path / "export"
    mrns = MRNS[:4]
    for i, mrn in enumerate(mrns):
        make_ct(export / "ct" / mrn, patient_id=mrn, patient_name=f"Pat^{i}", seed=i)
    rows = [
        csv_row(
            mrn=m, patient_name=f"Pat {i}", diagnosis_date=f"2024-0{1 + k}-1{k}", lab_value=f"{10 + k}.{i}"
        )
        for i, m in enumerate(mrns)
        for k in range(5)
    ]
    write_csv(export / "clinical" / "dx.csv", rows)
    (export / "genomes").mkdir()
    (export / "genomes" / f"{mrns[0]}.vcf").write_text(vcf_text(sample=mrns[0]))
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    rel = create_release(workspace, "clin-fp", formats="dicom")
    with workspace.catalog.session() as s:
        v = get_version(s, rel.ref)
        stored = {
            f.path: f.sha256 for f in Manifest.from_bytes(workspace.store.get_bytes(v.manifest_digest)).files
        }
    copies = {}
    for who in ("ACME AI", "Globex"):
        out = export_release(workspace, rel.ref, tmp_path / who.replace(" ", "_"), licensee=who)
        copies[who] = Path(out.directory)
        res = subprocess.run([sys.executable, "-I", str(copies[who] / "verify_release.py"), str(copies[who])],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
    with workspace.catalog.session() as s:
        marks = {e.licensee: e.mark for e in s.scalars(sa.select(ReleaseExport))}
    name = "clinical/condition_occurrence"
    original = pd.read_csv(io.BytesIO(workspace.store.get_bytes(stored[f"{name}.csv"])))
    assert len(original) == 20
    orders = {}
    for who, folder in copies.items():
        # same rows, same values: only their order and the marks differ
        got = pd.read_csv(folder / f"{name}.csv")
        key = list(original.columns)
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True), original.sort_values(key).reset_index(drop=True)
        )
        orders[who] = list(got["record_key"])
        table = pq.read_table(folder / f"{name}.parquet")
        assert table.schema.metadata[b"curata_fingerprint"].decode() == marks[who]
        assert sorted(table.column("record_key").to_pylist()) == sorted(original["record_key"])
        for rel_path in (f"{name}.csv", f"{name}.parquet", "clinical/omop/MEASUREMENT.csv"):
            found = trace_file(workspace, folder / rel_path)
            assert found.unique and found.matches[0].licensee == who, (rel_path, found)
        # the Parquet mark stripped: the row order still names the licensee
        stripped = tmp_path / f"{who}-stripped.parquet"
        pq.write_table(table.replace_schema_metadata({}), stripped)
        found = trace_file(workspace, stripped)
        assert found.how == "row order keyed for the licensee" and found.matches[0].licensee == who
        vcf = next((folder / "genomics").rglob("*.vcf.gz"))
        text = gzip.decompress(vcf.read_bytes())
        assert f"##curata_fingerprint={marks[who]}\n".encode() in text
        vpath = str(vcf.relative_to(folder)).replace("\\", "/")
        body = gzip.decompress(workspace.store.get_bytes(stored[vpath]))
        assert text.replace(f"##curata_fingerprint={marks[who]}\n".encode(), b"") == body
        assert trace_file(workspace, vcf).matches[0].licensee == who
    assert orders["ACME AI"] != orders["Globex"]


def test_export_refuses_a_clinical_table_or_vcf_changed_in_the_store(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Tables and VCFs are stored when the release is built and marked at export from those bytes:
    a stored one rewritten since (still well-formed) refuses the export, logs nothing, leaves no folder."""
    import pytest

    from curata.errors import IntegrityError
    from curata.ledger import Ledger

    export = tmp_path / "export"
    mrns = MRNS[:2]
    for i, mrn in enumerate(mrns):
        make_ct(export / "ct" / mrn, patient_id=mrn, patient_name=f"Pat^{i}", seed=i)
    write_csv(
        export / "clinical" / "dx.csv", [csv_row(mrn=m, patient_name=f"Pat {i}") for i, m in enumerate(mrns)]
    )
    (export / "genomes").mkdir()
    (export / "genomes" / f"{mrns[0]}.vcf").write_text(vcf_text(sample=mrns[0]))
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    rel = create_release(workspace, "clin-tamper", formats="dicom")
    with workspace.catalog.session() as s:
        v = get_version(s, rel.ref)
        stored = {
            f.path: f.sha256 for f in Manifest.from_bytes(workspace.store.get_bytes(v.manifest_digest)).files
        }
    vcf = next(p for p in stored if p.startswith("genomics/") and p.endswith(".vcf.gz"))

    def table(data: bytes) -> bytes:  # a diagnosis rewritten: a valid Parquet file
        frame = pd.read_parquet(io.BytesIO(data))
        frame.iloc[0, frame.columns.get_loc("condition_source_value")] = "Pat 0 lung adenocarcinoma"
        out = io.BytesIO()
        frame.to_parquet(out, index=False)
        return out.getvalue()

    def genome(data: bytes) -> bytes:  # a header line added: a valid gzipped VCF
        return gzip.compress(gzip.decompress(data).replace(b"#CHROM", b"##note=Pat 0\n#CHROM", 1))

    for path, rewrite in (("clinical/condition_occurrence.parquet", table), (vcf, genome)):
        blob = workspace.store.local_path(stored[path])
        original = blob.read_bytes()
        blob.chmod(0o644)
        blob.write_bytes(rewrite(original))
        before = Ledger.open(workspace).size
        with pytest.raises(IntegrityError, match=f"corrupt in the store: {path}"):
            export_release(workspace, rel.ref, tmp_path / "out", licensee="Tamper Test")
        assert Ledger.open(workspace).size == before
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
        blob.write_bytes(original)
    out = export_release(workspace, rel.ref, tmp_path / "out", licensee="Tamper Test")  # restored: exported
    res = subprocess.run([sys.executable, "-I", str(Path(out.directory) / "verify_release.py"), out.directory],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
