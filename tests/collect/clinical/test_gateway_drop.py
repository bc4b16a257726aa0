"""The gateway's drop folder: clinical exports, FHIR bulk files and VCFs left by the site are de-identified
at the edge with the site key and filed like received images (`curata gateway watch DIR`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from curata.catalog import Patient
from curata.cli import app
from curata.collect.clinical import INDEXED, clinical_rows
from curata.collect.clinical.dropfolder import DropFolder
from curata.collect.clinical.models import OMOP
from curata.collect.genomics.models import genomic_file
from tests.collect.clinical._fixtures import (
    MAPPING,
    NEEDLES,
    PATIENT,
    csv_row,
    fhir_resources,
    vcf_text,
    write_csv,
    write_ndjson,
)
from tests.conftest import make_ct


def _count(ws, table) -> int:  # type: ignore[no-untyped-def]
    """Rows of a catalog table; of a clinical table, the rows filed (Parquet in the store)."""
    with ws.catalog.session() as s:
        if table.name in INDEXED:
            return len(clinical_rows(s, ws.store, table.name))
        return int(s.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def test_a_file_is_taken_once_it_stands_still_and_only_once(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    drop = tmp_path / "drop"
    make_ct(drop / "ct" / "IM0001", patient_id=PATIENT["mrn"], patient_name="Okonkwo-Bello^Adaeze")
    csv = write_csv(drop / "clinical" / "dx.csv", [csv_row()])
    folder = DropFolder(workspace, drop)
    assert folder.ready() == []  # first sight: nothing has stood still yet
    with csv.open("a", newline="", encoding="utf-8") as fh:  # still being written
        import csv as csv_module

        csv_module.writer(fh).writerow(csv_row(diagnosis_date="2024-02-22").values())
    ready = folder.ready()
    assert csv not in ready and drop / "ct" / "IM0001" in ready
    (drop / "clinical" / "dx.csv.part").write_text("half a copy")
    batch = folder.poll()
    assert batch is not None and csv in batch.files and not any(p.suffix == ".part" for p in batch.files)
    assert batch.summary.counts["ingested"] == 2, batch.summary.counts  # the CT and the CSV
    assert _count(workspace, OMOP["condition_occurrence"]) == 2
    assert folder.poll() is None  # nothing new
    with workspace.catalog.session() as s:
        pseudonym = s.scalar(sa.select(Patient.pseudonym))
        persons = list(s.scalars(sa.select(OMOP["person"].c.pseudonym)))
    assert persons == [pseudonym]  # the clinical rows carry the pseudonym of the patient's images
    # a restarted watcher sees the same files again: known by their sha256, filed once
    again = DropFolder(workspace, drop)
    again.ready()
    batch = again.poll()
    assert batch is not None and batch.summary.counts.get("present") == 2
    assert _count(workspace, OMOP["condition_occurrence"]) == 2


def test_a_csv_waiting_for_its_mapping_is_filed_when_the_mapping_arrives(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    drop = tmp_path / "drop"
    csv = write_csv(drop / "dx.csv", [csv_row()])
    (drop / "clinical-map.toml").unlink()
    folder = DropFolder(workspace, drop)
    folder.ready()
    batch = folder.poll()
    assert batch is not None and batch.summary.counts.get("quarantined") == 1
    assert "mapping" in (batch.problems[0].reason or "")
    (drop / "clinical-map.toml").write_text(MAPPING)
    folder.ready()
    batch = folder.poll()
    assert batch is not None and csv in batch.files
    assert batch.summary.counts.get("ingested") == 1, batch.summary.counts
    assert _count(workspace, OMOP["condition_occurrence"]) == 1


def test_gateway_watch_once_files_csv_fhir_and_vcf_with_nothing_identifying(
    workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    drop = tmp_path / "drop"
    write_csv(drop / "his" / "dx.csv", [csv_row()])
    write_ndjson(drop / "fhir" / "Patient.ndjson", fhir_resources()[:1])
    write_ndjson(drop / "fhir" / "Clinical.ndjson", fhir_resources()[1:])
    (drop / "lab").mkdir()
    (drop / "lab" / "case.vcf").write_text(vcf_text(sample=PATIENT["mrn"]))
    result = CliRunner().invoke(
        app,
        ["gateway", "watch", str(drop), "--once", "--interval", "0.2", "--json", "-w", str(workspace.root)],
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout[result.stdout.index("{") :])
    assert counts["ingested"] == 4, counts
    assert _count(workspace, genomic_file) == 1 and _count(workspace, OMOP["measurement"]) >= 2
    with workspace.catalog.session() as s:
        persons = set(s.scalars(sa.select(OMOP["person"].c.pseudonym)))
    assert len(persons) == 1  # CSV, FHIR and VCF of one patient: one pseudonym
    # every stored object and every catalog row: none of the planted identifiers
    blobs = b"".join(p.read_bytes() for p in Path(workspace.root, "store").rglob("*") if p.is_file())
    import gzip

    texts = [blobs]
    for p in Path(workspace.root, "store").rglob("*"):
        if p.is_file() and p.read_bytes()[:2] == b"\x1f\x8b":
            texts.append(gzip.decompress(p.read_bytes()))
    with workspace.catalog.session() as s:
        for t in OMOP.values():
            texts.append(
                json.dumps([dict(r._mapping) for r in s.execute(sa.select(t))], default=str).encode()
            )
    assert any(b"p.Leu858Arg" in t for t in texts) and any(b"lung adenocarcinoma" in t for t in texts)
    for needle in NEEDLES:
        assert not any(needle.lower().encode() in t.lower() for t in texts), needle


def test_gateway_watch_runs_until_stopped(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The real command as a service runs it: files dropped while it runs are filed; SIGTERM ends it."""
    drop = tmp_path / "drop"
    drop.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "curata.cli", "gateway", "watch", str(drop), "--interval", "0.3", "--json",
         "-w", str(workspace.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        staging = tmp_path / "staging"
        write_csv(staging / "dx.csv", [csv_row()])
        shutil.copytree(staging, drop / "batch1")
        deadline = time.monotonic() + 120
        while _count(workspace, OMOP["condition_occurrence"]) == 0:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the dropped CSV was not filed"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out[out.index(b"{") :])
    assert summary["ingested"] == 1


def test_gateway_watch_names_a_refused_file_by_its_digest_not_its_name(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    drop = tmp_path / "drop"
    write_csv(drop / f"{PATIENT['mrn']}.csv", [csv_row()])
    (drop / "clinical-map.toml").unlink()  # no mapping: the export is quarantined
    result = CliRunner().invoke(
        app, ["gateway", "watch", str(drop), "--once", "--interval", "0.1", "-w", str(workspace.root)]
    )
    assert result.exit_code == 1, result.output
    assert "sha256:" in result.output and "mapping" in result.output
    assert PATIENT["mrn"] not in result.output
