"""research vs research-strict (and basic): dciodvfy findings and retention on real files, one run.

    PYTHONPATH=src .venv/bin/python bench/deid_profiles.py [--out bench/results/deid_profiles.json]

Files: every pydicom-data object that needs no OCR (header classes: CT, MR, enhanced MR/CT, RT, SEG,
SR, CR, waveform...), as they come. Per profile: objects released / refused; dciodvfy errors and
warnings that the OUTPUT has and its input had not (messages with numbers and values removed);
retention: the share of the input's standard (non-private) elements at any depth still present in
the output, of its top-level standard elements, of its private elements, and how many outputs keep
their pixel data bit for bit.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

from tests.collect.deid.planting import corpus_files  # noqa: E402

from curata.collect.deid import Deidentifier, load_profile  # noqa: E402
from curata.collect.deid.pixels import may_carry_burned_in_text  # noqa: E402
from curata.errors import CurataError  # noqa: E402

PROFILES = ("basic", "research", "research-strict")


def _findings(path: Path) -> tuple[set[str], set[str]]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    errors, warns = set(), set()
    for ln in (out.stdout + out.stderr).splitlines():
        norm = re.sub(r"\s+", " ", re.sub(r"<[^>]*>|\b\d+(\.\d+)*\b", "<v>", ln)).strip()
        if ln.startswith("Error"):
            errors.add(norm)
        elif ln.startswith("Warning"):
            warns.add(norm)
    return errors, warns


def _only_zeroed(before: bytes, after: bytes | None) -> bool:
    """The same pixel data but for bytes set to zero (metadata segments zeroed in place)."""
    if after is None or len(after) != len(before):
        return False
    a, b = np.frombuffer(before, np.uint8), np.frombuffer(after, np.uint8)
    return bool(((a == b) | (b == 0)).all())


def _tags(ds: pydicom.Dataset, path: str = "") -> set[str]:
    out = set()
    for elem in ds:
        key = f"{path}{elem.tag:08X}"
        out.add(key)
        if elem.VR == "SQ":
            for item in elem.value or ():
                out |= _tags(item, key + ">")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if shutil.which("dciodvfy") is None:
        sys.exit("dciodvfy (dicom3tools) is not installed")
    files = []
    for f in corpus_files():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if not may_carry_burned_in_text(ds):
            files.append(f)
    key = bytes(range(32))
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp())
    for name in PROFILES:
        deid = Deidentifier(key, load_profile(name), ocr=False)
        c: Counter[str] = Counter()
        new_errors: Counter[str] = Counter()
        for i, f in enumerate(files):
            raw = Path(f).read_bytes()
            try:
                res = deid.deidentify_bytes(raw)
            except CurataError as exc:
                c["refused"] += 1
                c[f"refused: {str(exc)[:60]}"] += 1
                continue
            c["released"] += 1
            src, dst = work / f"in{i}.dcm", work / f"out{i}.dcm"
            src.write_bytes(raw)
            dst.write_bytes(res.output_bytes)
            (e_in, w_in), (e_out, w_out) = _findings(src), _findings(dst)
            c["new_errors"] += len(e_out - e_in)
            c["new_warnings"] += len(w_out - w_in)
            c["outputs_with_new_errors"] += bool(e_out - e_in)
            new_errors.update(e_out - e_in)
            before = pydicom.dcmread(io.BytesIO(raw), force=True)
            after = pydicom.dcmread(io.BytesIO(res.output_bytes))
            tb, ta = _tags(before), _tags(after)
            std_b = {t for t in tb if not int(t.split(">")[-1][:4], 16) & 1}
            priv_b = tb - std_b
            c["std_in"] += len(std_b)
            c["std_kept"] += len(std_b & ta)
            top_b = {t for t in std_b if ">" not in t}
            c["top_in"] += len(top_b)
            c["top_kept"] += len(top_b & ta)
            c["private_in"] += len(priv_b)
            c["private_kept"] += len(priv_b & ta)
            if "PixelData" in before:
                c["with_pixels"] += 1
                c["pixels_bit_for_bit"] += after.get("PixelData") == before.PixelData
                c["pixels_only_zeroed"] += _only_zeroed(before.PixelData, after.get("PixelData"))
        results[name] = {
            "files": len(files),
            "released": c["released"],
            "refused": c["refused"],
            "new_dciodvfy_errors": c["new_errors"],
            "new_dciodvfy_warnings": c["new_warnings"],
            "outputs_with_new_errors": c["outputs_with_new_errors"],
            "retention_standard_elements": round(c["std_kept"] / max(c["std_in"], 1), 4),
            "retention_top_level_elements": round(c["top_kept"] / max(c["top_in"], 1), 4),
            "retention_private_elements": round(c["private_kept"] / max(c["private_in"], 1), 4),
            "pixels_bit_for_bit": f"{c['pixels_bit_for_bit']}/{c['with_pixels']}",
            # the same bytes but for zeroed codestream comments / application segments (codestream.py)
            "pixels_bit_for_bit_but_zeroed_metadata": f"{c['pixels_only_zeroed']}/{c['with_pixels']}",
            "refusals": {k[9:]: v for k, v in c.items() if k.startswith("refused: ")},
            "most_common_new_errors": new_errors.most_common(5),
        }
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
