"""``curata convert`` against dcm2niix's reference conversions of real scanner data.

Takes any folder holding dcm_qa-style repositories (each with ``In/`` DICOM and ``Ref/`` NIfTI +
JSON written by dcm2niix), or one such repository. Every reference NIfTI is a case: Curata converts
the repository's ``In/`` once, and a case passes when one of Curata's outputs, once both are put in
the closest canonical (RAS) voxel order, has the reference's shape, the same physical values voxel
for voxel (stored value x slope + intercept, to float32 precision) and an affine that puts every
corner voxel within 1e-3 mm of the reference's. (Canonical order: two converters may store the
same voxel at the same place with a different axis direction; dcm2niix flips some GE series.)

    .venv/bin/python bench/convert_real.py ../shared/data/dicom-real
    .venv/bin/python bench/convert_real.py ../shared/data/dicom-real/dcm_qa_mosaic -v

Prints ``cases pass fail error`` per repository and the reason for every case that did not pass;
writes ``bench/results/convert_real.json``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import console, write_json
from curata.preprocess.convert import convert_folder
from curata.preprocess.volume import read_volume

RESULTS = Path(__file__).resolve().parent / "results" / "convert_real.json"
AFFINE_TOL_MM = 1e-3


@dataclass
class Case:
    repo: str
    ref: str
    status: str  # pass | fail | error
    reason: str = ""
    output: str = ""


def repositories(root: Path) -> list[Path]:
    if (root / "In").is_dir() and (root / "Ref").is_dir():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "In").is_dir() and (p / "Ref").is_dir())


def corner_error(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) between where two affines put the corner voxels of ``shape``."""
    dims = [(0, max(n - 1, 0)) for n in shape[:3]]
    corners = np.array([[*c, 1.0] for c in itertools.product(*dims)]).T
    return float(np.max(np.linalg.norm((a @ corners - b @ corners)[:3], axis=0)))


def _real(vol: Any) -> np.ndarray:
    return vol.data if vol.data.dtype.names else vol.real()


def _values(img: Any) -> np.ndarray:
    """Physical values; colour (RGB24) as its three uint8 channels on a last axis."""
    data = np.asanyarray(img.dataobj)
    if data.dtype.names:
        return np.stack([data[c] for c in data.dtype.names], axis=-1).astype(np.float64)
    return data.astype(np.float64)


def values_match(ours: np.ndarray, ref: np.ndarray) -> tuple[bool, str]:
    if ours.shape != ref.shape:
        return False, f"shape {ours.shape} vs {ref.shape}"
    ours64, ref64 = ours.astype(np.float64), ref.astype(np.float64)
    scale = max(float(np.max(np.abs(ref64))), 1.0)
    diff = np.abs(ours64 - ref64)
    # Values are equal up to float32 arithmetic: dcm2niix computes scale factors such as Philips'
    # 1 / (2005,100E) in float32 (0.24420166 for 0.24420022): 6e-6 of the stored range, 1.2e-5
    # of the value range once the intercept (-500 Hz) is added.
    tol = max(scale * 2e-5, 1e-6)
    bad = diff > tol
    if not bad.any():
        return True, f"max |diff| {float(diff.max()):.3g}"
    return (
        False,
        f"{int(bad.sum())} of {bad.size} voxels differ (max {float(diff.max()):g}, at value scale {scale:g})",
    )


def compare(repo: Path, out: Path) -> list[Case]:
    refs = sorted(repo.glob("Ref/*.nii")) + sorted(repo.glob("Ref/*.nii.gz"))
    cases: list[Case] = []
    try:
        result = convert_folder(repo / "In", out, fmt="nifti")
    except Exception as exc:  # the whole repository failed: every case is an error
        return [
            Case(repo.name, r.name, "error", f"conversion raised {type(exc).__name__}: {exc}") for r in refs
        ]
    outputs: list[tuple[str, Any]] = []
    for conv in result.converted:
        vol = read_volume(conv.volume_path)
        outputs.append((conv.name, vol))
    refused = "; ".join(f"{w}: {r}" for w, r in result.refused)
    for ref_path in refs:
        ref_img = nib.as_closest_canonical(nib.load(str(ref_path)))
        ref_data = _values(ref_img)
        best: Case | None = None
        for name, vol in outputs:
            ours_img = nib.as_closest_canonical(nib.Nifti1Image(_real(vol), vol.affine))
            if ours_img.shape != ref_img.shape:
                continue
            ok, why = values_match(_values(ours_img), ref_data)
            err = corner_error(ours_img.affine, ref_img.affine, ref_img.shape)
            if ok and err <= AFFINE_TOL_MM:
                best = Case(repo.name, ref_path.name, "pass", f"{why}; affine within {err:.2g} mm", name)
                break
            reason = why if not ok else f"voxels match but affine is {err:.4g} mm off"
            if best is None or (ok and "voxels match" not in best.reason):
                best = Case(repo.name, ref_path.name, "fail", f"{name}: {reason}", name)
        if best is None:
            shapes = sorted({str(tuple(v.data.shape)) for _, v in outputs})
            reason = f"no output of shape {ref_img.shape} (outputs: {', '.join(shapes) or 'none'})"
            if refused:
                reason += f"; refused: {refused}"
            best = Case(repo.name, ref_path.name, "fail" if outputs else "error", reason)
        cases.append(best)
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="a dcm_qa-style repository or a folder of them")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list the cases that pass")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/convert_real.json")
    args = parser.parse_args(argv)
    repos = repositories(args.root)
    if not repos:
        console.print(f"no dcm_qa-style repositories (In/ and Ref/) under {args.root}")
        return 2
    all_cases: list[Case] = []
    table: list[dict[str, Any]] = []
    for repo in repos:
        with tempfile.TemporaryDirectory(prefix="curata-real-") as tmp:
            cases = compare(repo, Path(tmp))
        all_cases.extend(cases)
        counts = {s: sum(c.status == s for c in cases) for s in ("pass", "fail", "error")}
        table.append({"repo": repo.name, "cases": len(cases), **counts})
    console.print(f"{'repo':<28} {'cases':>5} {'pass':>5} {'fail':>5} {'error':>5}")
    for row in table:
        console.print(
            f"{row['repo']:<28} {row['cases']:>5} {row['pass']:>5} {row['fail']:>5} {row['error']:>5}"
        )
    total = {k: sum(r[k] for r in table) for k in ("cases", "pass", "fail", "error")}
    console.print(
        f"{'total':<28} {total['cases']:>5} {total['pass']:>5} {total['fail']:>5} {total['error']:>5}"
    )
    for case in all_cases:
        if case.status != "pass" or args.verbose:
            console.print(f"  {case.status:<5} {case.repo}/{case.ref}: {case.reason}", markup=False)
    if not args.no_save:
        write_json(RESULTS, {"repos": table, "total": total, "cases": [asdict(c) for c in all_cases]})
    return 0 if total["pass"] == total["cases"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
