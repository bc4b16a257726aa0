"""Smoke test of bench/deid.py: a tiny planted corpus through the quick-starting tools, JSON checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = ["copy", "pydicom", "curata", "dicognito", "dicom-anonymizer", "gdcmanon", "orthanc"]
SPEED = ("seconds_1", "files_per_s_1", "mb_per_s_1", "seconds_n", "files_per_s_n", "mb_per_s_n")
QUALITY = (
    "planted_tried", "leaked", "leaked_files", "leaks_by_kind", "dciodvfy_new_errors", "references_total",
    "references_broken", "date_intervals_total", "date_intervals_lost", "geometry_lost", "pixels_changed",
)  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "deid.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "deid.py"), "--files", "3", "--workers", "2",
         "--tools", ",".join(TOOLS), "--out", str(out)],
        capture_output=True, text=True, timeout=170, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "De-identification, 3 planted files" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.integration
def test_a_row_per_tool_with_speed_and_quality_fields(results):
    rows = {row["tool"]: row for row in results["tools"]}
    assert len(rows) == len(TOOLS)
    assert results["corpus"]["files"] == 3 and results["corpus"]["planted"] > 100
    for name, row in rows.items():
        assert row["asked"], name  # every row says what the tool was asked to do
        if row["status"] != "ok":
            assert name == "curata" and row["reason"], row  # only the engine may be absent, with the reason
            continue
        for key in (*SPEED, *QUALITY):
            assert key in row, (name, key)
        assert row["files_per_s_1"] > 0 and row["workers"] == 2


@pytest.mark.integration
def test_the_unchanged_copy_leaks_everything_and_breaks_nothing(results):
    """The scanner sees every planted value in an untouched copy: the peers' counts are meaningful."""
    copy = next(r for r in results["tools"] if r["tool"] == "file copy")
    assert copy["leaked"] == copy["planted_tried"] > 100
    assert copy["leaked_files"] == 3
    assert copy["dciodvfy_new_errors"] == 0
    assert copy["references_broken"] == 0 and copy["references_total"] >= 1
    assert copy["date_intervals_lost"] == 0 and copy["pixels_changed"] == 0


@pytest.mark.integration
def test_peers_remove_something(results):
    rows = {r["tool"]: r for r in results["tools"] if r["status"] == "ok"}
    for name in ("dicognito", "dicom-anonymizer", "gdcmanon", "orthanc"):
        assert name in rows, results
        assert rows[name]["leaked"] < rows[name]["planted_tried"], name


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_deid_under_test", REPO / "bench" / "deid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_path_leaks_skip_dates_spelled_by_chance_inside_uuid_uids():
    """A remapped UUID UID is a hash's digits; eight of them can spell a planted date. The bench's
    path and report scans do not count that, and still count a date written anywhere else and a
    planted UID of that form."""
    import random

    from curata.demo.phi import Identity, PlantedSet

    bench = _bench_module()
    identity = Identity.random(random.Random(5))
    planted = PlantedSet(identity=identity, study=0, sop_instance_uid="2.25.1234", sop_class_uid="")
    born = identity.birth_date.strftime("%Y%m%d")
    planted.add(born, "date", "PatientBirthDate")
    planted.add("2.25.99" + born + "1", "uid", "SOPInstanceUID")
    items = [bench.Item(0, Path("in.dcm"), planted, 1)]
    by_chance = Path(f"out/2.25.31{born}77/2.25.4/2.25.5.dcm")
    assert planted.scan(str(by_chance).encode())  # what the bench counted before
    assert bench._path_leaks(items, [by_chance]) == 0
    assert bench._path_leaks(items, [Path(f"out/{born}/2.25.4/2.25.5.dcm")]) == 1
    assert bench._path_leaks(items, [Path(f"out/1.2.3.{born}/x.dcm")]) == 1  # not a UUID UID
    assert bench._path_leaks(items, [Path(f"out/2.25.99{born}1/x.dcm")]) == 1  # the planted UID itself
