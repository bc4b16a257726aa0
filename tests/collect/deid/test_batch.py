"""Batches write in chunks: outputs staged under temporary names, made durable together, then named.
Duplicates inside one chunk, re-runs and conflicts behave as with one file at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curata.collect.deid import load_profile
from curata.collect.deid.batch import run_batch
from curata.errors import ConfigError

from .conftest import KEY, read, to_bytes


def _run(src: Path, out: Path, tmp_path: Path, workers: int = 1):  # type: ignore[no-untyped-def]
    return run_batch(src, out, key=KEY, profile=load_profile("research"), vault_dir=tmp_path / "v",
                     quarantine=tmp_path / "q", workers=workers, ocr=False)  # fmt: skip


def test_chunked_batch_duplicates_conflicts_and_rerun(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ct = read("CT_small.dcm")
    (src / "a").write_bytes(to_bytes(ct))
    (src / "b").write_bytes(to_bytes(ct))  # the same object twice: one output, one duplicate
    other = read("CT_small.dcm")
    other.InstanceNumber = 99  # same SOP Instance UID, different content: a conflict, never overwritten
    (src / "c").write_bytes(to_bytes(other))
    for i in range(12):  # enough files for several chunks with two workers
        ds = read("MR_small.dcm")
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{1000 + i}"
        (src / f"mr{i:02d}").write_bytes(to_bytes(ds))
    out = tmp_path / "out"
    report = _run(src, out, tmp_path, workers=2)
    assert report.counts.get("deidentified") == 13, report.counts
    assert report.counts.get("duplicates") == 1 and report.counts.get("quarantined") == 1, report.counts
    assert "duplicate SOP Instance UID" in report.quarantined[0]["reason"]
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 13
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # nothing staged is left
    before = {p: p.read_bytes() for p in written}
    again = _run(src, out, tmp_path)  # a re-run: every output already there, the same bytes
    assert again.counts.get("deidentified") == 13 and again.counts.get("quarantined") == 1, again.counts
    assert {p: p.read_bytes() for p in sorted(out.rglob("*.dcm"))} == before
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_link_inside_output_never_leads_out(tmp_path: Path) -> None:
    """Output folders are resolved once per folder and made once: a series folder, or an output
    file, that is a link to somewhere outside OUTPUT is refused, and nothing is written there."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "ct").write_bytes(to_bytes(read("CT_small.dcm")))
    out = tmp_path / "out"
    _run(src, out, tmp_path)
    (written,) = out.rglob("*.dcm")
    outside = tmp_path / "outside"
    outside.mkdir()
    series = written.parent
    written.unlink()
    series.rmdir()
    series.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError):
        _run(src, out, tmp_path)
    assert not list(outside.iterdir())
    series.unlink()
    series.mkdir()
    written.symlink_to(outside / "x.dcm")  # the file name itself a link
    with pytest.raises(ConfigError):
        _run(src, out, tmp_path)
    assert not list(outside.iterdir())


def test_a_killed_run_resumes_without_duplicates(tmp_path: Path) -> None:
    """Kill -9 `curata deid` midway: every output it named is whole (an uninterrupted run's bytes),
    and the re-run finishes the rest with no duplicate, no conflict and nothing quarantined."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from curata.collect.keys import generate_key_file, read_key_file

    n = 400
    src = tmp_path / "in"
    src.mkdir()
    mr = read("MR_small.dcm")
    for i in range(n):
        mr.PatientID = f"P{i // 4:04d}"
        mr.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{5000 + i}"
        (src / f"{i:04d}.dcm").write_bytes(to_bytes(mr))
    key_file = generate_key_file(tmp_path / "site.key")
    whole = tmp_path / "whole"
    run_batch(src, whole, key=read_key_file(key_file), profile=load_profile("research"),
              vault_dir=tmp_path / "v0", quarantine=tmp_path / "q0", workers=1)  # fmt: skip
    expected = {p.relative_to(whole): p.read_bytes() for p in whole.rglob("*.dcm")}
    assert len(expected) == n

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "curata.cli", "deid", str(src), str(out), "--key-file", str(key_file),
           "-j", "1", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    named = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and named < 20:
        named = sum(1 for _ in out.rglob("*.dcm")) if out.exists() else 0
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.dcm")}
    assert 0 < len(at_kill) < n, f"the kill must land mid-run (saw {len(at_kill)} of {n} named)"
    assert not (out / "deid-report.json").exists()
    assert all(expected[rel] == data for rel, data in at_kill.items())  # nothing named is torn
    # what the killed run staged and never named stays behind, hidden; one more is planted (in case
    # the kill fell between chunks), with files the sweep must leave: names it never makes, and a
    # staged name whose writer (this test) is alive
    series = next(iter(at_kill)).parent
    (out / series / f".1.2.3.dcm.{proc.pid}.7.tmp").write_bytes(b"partial")
    (out / f".deid-report.json.{proc.pid}.0badcafe.tmp").write_bytes(b"{")
    foreign = [out / series / ".notes.tmp", out / series / f".1.2.3.dcm.{proc.pid}.tmp",
               out / series / f".1.2.3.dcm.{os.getpid()}.0.tmp", out / f".x.dcm.{proc.pid}.1.tmp"]  # fmt: skip
    for f in foreign:
        f.write_bytes(b"not the sweep's")
    assert [p for p in out.rglob(f".*.{proc.pid}.*.tmp") if p not in foreign]

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p for p in out.rglob(".*.tmp")) == sorted(foreign)  # the dead run's gone, no more
    assert all(f.read_bytes() == b"not the sweep's" for f in foreign)
    report = json.loads((out / "deid-report.json").read_text())
    assert report["counts"] == {"deidentified": n}, report["counts"]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.dcm")} == expected
    assert sorted(f["output"] for f in report["files"]) == sorted(str(rel) for rel in expected)


def test_a_vault_removed_midway_stops_the_batch_and_releases_nothing_more(tmp_path: Path) -> None:
    """The vault folder is made once per worker; removed mid-run, the next file's records cannot be
    kept: that file is neither released nor quarantined, its chunk leaves nothing staged, and the
    error (VaultError, fatal) stops the batch. It used to be released without its vault records."""
    import shutil

    from curata.collect.deid import batch
    from curata.errors import VaultError

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for i in range(3):
        ds = read("MR_small.dcm")
        ds.PatientID = f"P{i}"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{7000 + i}"
        (src / str(i)).write_bytes(to_bytes(ds))
    batch._init_worker(
        KEY, load_profile("research"), str(tmp_path / "v"), str(out), str(tmp_path / "q"), False
    )
    (first,) = batch._process_chunk([str(src / "0")])
    assert first["status"] == "ok"
    shutil.rmtree(tmp_path / "v")
    with pytest.raises(VaultError, match="vault folder"):
        batch._process_chunk([str(src / "1"), str(src / "2")])
    assert [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()] == [first["output"]]
    assert not (tmp_path / "q").exists()


def test_a_dicomdir_is_quarantined_as_a_directory_and_its_files_are_deidentified(tmp_path: Path) -> None:
    """A DICOMDIR indexes patients by name: it is refused with a reason that says what it is (not
    "missing attributes"), names nobody, and the instances it lists still go through."""
    from pydicom.fileset import FileSet

    ds = read("CT_small.dcm")
    ds.PatientName = "QWORTLE^ZEPHYRINE"
    fs = FileSet()
    fs.add(ds)
    fs.write(tmp_path / "in")
    report = run_batch(
        tmp_path / "in",
        tmp_path / "out",
        key=KEY,
        profile=load_profile("research"),
        vault_dir=tmp_path / "vault",
        quarantine=tmp_path / "q",
    )
    assert report.counts.get("deidentified") == 1
    assert [q["reason"] for q in report.quarantined] == [
        "a media directory (DICOMDIR), not an instance: its records index the files beside it"
    ]
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert b"QWORTLE" not in path.read_bytes().upper()
