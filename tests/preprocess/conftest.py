"""Fixtures for pre-processing tests: the real dcm2niix, and truth checks on written volumes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np

from curata.preprocess.synthetic import SliceSpec
from tests.conftest import require_programs

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def run_dcm2niix(source: Path, out: Path) -> dict[str, nib.Nifti1Image]:
    require_programs("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcm2niix", "-f", "%s_%d", "-o", str(out), str(source)], check=True, capture_output=True)
    return {p.name: nib.load(p) for p in sorted(out.glob("*.nii"))}


def slice_index(img: nib.Nifti1Image, spec: SliceSpec, *, tol_mm: float = 1e-3) -> int | None:
    """Index k of the slice whose affine position is ``spec.position`` and whose voxels are its pixels."""
    data = np.asanyarray(img.dataobj.get_unscaled())
    rows = data.shape[1]
    for k in range(data.shape[2]):
        ras = img.affine @ [0, rows - 1, k, 1]
        if np.linalg.norm(LPS_TO_RAS @ ras[:3] - np.asarray(spec.position)) <= tol_mm:
            return k if np.array_equal(data[:, ::-1, k].T, spec.pixels) else None
    return None


def misplaced(img: nib.Nifti1Image, slices: list[SliceSpec]) -> list[int]:
    """Source slices that are not at the place the affine puts them (with their own pixels)."""
    return [n for n, s in enumerate(slices) if slice_index(img, s) is None]
