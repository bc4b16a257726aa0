"""Smoke test of bench/clinical.py: a tiny CSV and VCF through the bare read, the de-identification and
the ingest; the JSON it writes is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_clinical_writes_its_ratios(tmp_path: Path) -> None:
    out = tmp_path / "clinical.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "clinical.py"), "--rows", "2000", "--variants", "500",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert (
        data["csv"]["rows"] == 2000 and data["csv"]["omop_rows"] == 4000 and data["csv"]["refused_rows"] == 0
    )
    assert data["vcf"]["variants"] == 500 and data["vcf"]["indexed_variants"] == 500
    for key in ("deid_ratio_vs_pandas", "ingest_ratio_vs_pandas"):
        assert data["csv"][key] > 0
    for key in ("deid_ratio_vs_pysam", "ingest_ratio_vs_pysam"):
        assert data["vcf"][key] > 0
