"""Ingest semantics: filing, idempotence, quarantine with reasons, zip archives, crash safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curata.catalog import Blob, Instance, Patient, QuarantineItem, Series, Study
from curata.collect.ingest import Ingestor
from tests.conftest import make_ct


def _count(ws, model) -> int:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_verified_ingest_files_and_indexes(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    folder = ct_series(4, deidentified=True)
    summary, problems = Ingestor(workspace, deidentify=False, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 4 and not problems and not summary.failed
    with workspace.catalog.session() as s:
        series = s.scalar(select(Series))
        assert series is not None
        assert (series.modality, series.body_part, series.manufacturer) == (
            "CT",
            "CHEST",
            "GE MEDICAL SYSTEMS",
        )
        assert (series.rows, series.columns, series.slice_thickness) == (16, 16, 1.0)
        assert series.pixel_spacing_row == pytest.approx(0.7)
        assert series.transfer_syntax == "1.2.840.10008.1.2.1"
        assert series.instance_count == 4
        study = s.scalar(select(Study))
        assert study is not None and study.patient_age_years == 64.0
        positions = sorted(i.image_position[2] for i in s.scalars(select(Instance)))
        assert positions == [-3.0, -2.0, -1.0, 0.0]
        for inst in s.scalars(select(Instance)):
            assert workspace.store.exists(inst.blob_digest)


def test_reingest_adds_nothing(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    folder = ct_series(3, deidentified=True)
    ing = Ingestor(workspace, deidentify=False, workers=1)
    ing.ingest_paths([folder])
    blobs_before = sorted(workspace.store.digests())
    summary, _ = ing.ingest_paths([folder])
    assert summary.counts["present"] == 3 and summary.counts["ingested"] == 0
    assert _count(workspace, Instance) == 3 and _count(workspace, Patient) == 1
    assert sorted(workspace.store.digests()) == blobs_before


def test_bad_inputs_are_quarantined_with_reasons_and_the_batch_goes_on(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mixed"
    make_ct(folder / "good1.dcm", deidentified=True)
    make_ct(folder / "sub" / "good2", deidentified=True, index=1)
    (folder / "report.txt").write_text("Radiology report for Jane Doe")
    good = (folder / "good1.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(good[: len(good) // 3])
    no_uid = make_ct(deidentified=True)
    del no_uid.SOPInstanceUID
    no_uid.save_as(folder / "nouid.dcm", enforce_file_format=False)
    not_deid = make_ct(folder / "identified.dcm", index=5)
    assert not_deid.PatientName == "Doe^Jane"
    (folder / "DICOMDIR").write_bytes(b"directory record")
    summary, problems = Ingestor(workspace, deidentify=False, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 2
    assert summary.counts["skipped"] == 1
    assert summary.counts["quarantined"] == 4
    assert summary.failed
    reasons = {Path(p.source).name: p.reason for p in problems}
    assert "not a readable DICOM" in reasons["report.txt"]
    assert "SOPInstanceUID" in reasons["nouid.dcm"] or "not a readable" in reasons["nouid.dcm"]
    assert "not marked de-identified" in reasons["identified.dcm"]
    assert _count(workspace, QuarantineItem) == 4
    # de-identification off is the central platform's mode: what it refuses may be identified, so it
    # keeps no copy (the sender has it); the catalog keeps the digest, size and reason; never the store
    assert list(workspace.quarantine_path.glob("*")) == []
    with workspace.catalog.session() as s:
        items = list(s.scalars(select(QuarantineItem)))
    assert len(items) == 4 and all(i.reason and i.input_digest for i in items)
    with workspace.catalog.session() as s:
        stored = set(s.scalars(select(Blob.digest)))
    assert set(workspace.store.digests()) == stored
    # quarantining again does not duplicate rows
    Ingestor(workspace, deidentify=False, workers=1).ingest_paths([folder])
    assert _count(workspace, QuarantineItem) == 4


def test_zip_archives_are_read_member_by_member(workspace, ct_series, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = ct_series(3, deidentified=True)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"nested/{f.name}")
    summary, _ = Ingestor(workspace, deidentify=False, workers=1).ingest_paths([archive])
    assert summary.counts["ingested"] == 3


def test_parallel_ingest_matches_serial(workspace, ct_series) -> None:  # type: ignore[no-untyped-def]
    folder = ct_series(12, deidentified=True)
    summary, _ = Ingestor(workspace, deidentify=False, workers=2).ingest_paths([folder])
    assert summary.counts["ingested"] == 12
    assert _count(workspace, Instance) == 12 and _count(workspace, Blob) == 12


def test_ingest_bytes_is_durable_on_return(workspace) -> None:  # type: ignore[no-untyped-def]
    import io

    buf = io.BytesIO()
    make_ct(deidentified=True).save_as(buf, enforce_file_format=True)
    ing = Ingestor(workspace, deidentify=False)
    out = ing.ingest_bytes(buf.getvalue(), "assoc-1")
    assert out.status == "ingested" and out.blob_digest and workspace.store.exists(out.blob_digest)
    assert _count(workspace, Instance) == 1
    assert ing.ingest_bytes(buf.getvalue(), "assoc-2").status == "present"
    bad = ing.ingest_bytes(b"garbage", "assoc-3")
    assert bad.status == "quarantined" and _count(workspace, QuarantineItem) == 1


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_is_consistent(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Kill -9 an ingest midway; the re-run completes with no duplicates and no row without its blob."""
    from pydicom.uid import generate_uid

    n = 600
    folder = tmp_path / "many"
    study, series = generate_uid(), generate_uid()
    for i in range(n):
        make_ct(
            folder / f"{i:05d}.dcm",
            study_uid=study,
            series_uid=series,
            index=i,
            deidentified=True,
            rows=8,
            columns=8,
        )
    env = {**os.environ, "CURATA_WORKSPACE": str(workspace.root)}
    cmd = [
        sys.executable,
        "-m",
        "curata.cli",
        "ingest",
        str(folder),
        "--verified-deidentified",
        "-j",
        "1",
        "-q",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = workspace.root / "catalog.sqlite"
    seen = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                seen = conn.execute("select count(*) from instance").fetchone()[0]
        except sqlite3.OperationalError:
            seen = 0
        if seen >= 50:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < seen < n, f"the kill must land mid-ingest (saw {seen} of {n} committed)"
    killed_at = _count(workspace, Instance)
    assert killed_at < n
    rerun = subprocess.run([*cmd[:-1], "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["ingested"] + summary["present"] == n
    assert summary["present"] == killed_at
    assert _count(workspace, Instance) == n
    with workspace.catalog.session() as s:
        uids = list(s.scalars(select(Instance.sop_instance_uid)))
        digests = set(s.scalars(select(Instance.blob_digest)))
        assert s.scalar(select(Series.instance_count)) == n
    assert len(set(uids)) == n
    assert digests <= set(workspace.store.digests())
    assert workspace.store.verify(digests).ok


def test_a_broken_deid_config_is_one_error_before_any_worker_starts(tmp_path: Path) -> None:
    """It was a BrokenProcessPool traceback from every worker (with -j 2), each naming the config's path."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src, "COLUMNS": "200"}
    run = [sys.executable, "-m", "curata.cli"]
    assert subprocess.run([*run, "init", "ws"], cwd=tmp_path, env=env, capture_output=True).returncode == 0
    (tmp_path / "in").mkdir()
    make_ct(tmp_path / "in" / "a.dcm")
    (tmp_path / "bad.toml").write_text("x = [\n")
    r = subprocess.run(
        [*run, "ingest", "in", "--config", "bad.toml", "-j", "2", "-w", "ws"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and "not valid TOML" in r.stderr
    assert "Traceback" not in r.stderr and "BrokenProcessPool" not in r.stderr
