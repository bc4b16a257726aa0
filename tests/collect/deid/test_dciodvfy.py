"""Valid output: dciodvfy (dicom3tools) reports no error on an output that it did not report on its input."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from curata.collect.deid import Deidentifier, load_profile
from tests.conftest import require_programs

from .conftest import KEY, dressed, read, to_bytes

pytestmark = [pytest.mark.integration]
require_programs("dciodvfy")

FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "reportsi.dcm", "MR2_J2KR.dcm",
         "emri_small_jpeg_2k_lossless.dcm", "CT_small.dcm#dressed", "MR_small.dcm#dressed"]  # fmt: skip


def _errors(path: Path) -> set[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    # Compare what is wrong, not the values: drop element values and positions from the messages.
    out_lines = set()
    for ln in lines:
        if ln.startswith("Error"):
            ln = re.sub(r"\b\d+(\.\d+)*\b", "<n>", ln)  # UIDs and numbers differ by design
            out_lines.add(re.sub(r"\s+", " ", ln).strip())
    return out_lines


@pytest.mark.parametrize("name", FILES)
def test_no_new_dciodvfy_errors(name: str, tmp_path: Path, research, basic) -> None:
    base, _, variant = name.partition("#")
    raw = dressed(base, seed=77)[0] if variant else to_bytes(read(base))
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    before = _errors(src)
    strict = Deidentifier(KEY, load_profile("research-strict"), ocr=False)
    for deid in (research, basic, strict):
        res = deid.deidentify_bytes(raw)
        dst = tmp_path / f"out-{deid.profile.name}.dcm"
        dst.write_bytes(res.output_bytes)
        pydicom.dcmread(dst)  # every output re-reads
        new = _errors(dst) - before
        assert not new, f"{name} ({deid.profile.name}): {sorted(new)[:5]}"
