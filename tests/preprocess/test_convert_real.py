"""Conversion of real scanner series against dcm2niix's reference outputs (dcm_qa sets in ../shared).

Each case converts one real series and checks the voxels (physical values), the affine (every
corner within 1e-3 mm, in canonical voxel order) and the sidecar fields BIDS tools read.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from curata.preprocess.convert import convert_folder
from curata.preprocess.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]


def _real_data() -> Path:
    for base in (ROOT.parent, ROOT.parent.parent, ROOT):
        candidate = base / "shared" / "data" / "dicom-real"
        if candidate.is_dir():
            return candidate
    if os.environ.get("CI") == "true":
        pytest.fail("../shared/data/dicom-real is missing (real scanner data beside the repository)")
    pytest.skip("../shared/data/dicom-real not present")


@pytest.fixture(scope="module")
def real() -> Path:
    return _real_data()


def _canonical(data: np.ndarray, affine: np.ndarray) -> Any:
    return nib.as_closest_canonical(nib.Nifti1Image(data, affine))


def _corner_error(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, n - 1) for n in shape[:3]])]).T
    return float(np.max(np.linalg.norm((a @ corners - b @ corners)[:3], axis=0)))


def _matches(vol: Any, ref_path: Path, *, rel: float = 2e-5) -> bool:
    ref = nib.as_closest_canonical(nib.load(str(ref_path)))
    ours = _canonical(vol.real(), vol.affine)
    if ours.shape != ref.shape:
        return False
    a, b = np.asanyarray(ours.dataobj, np.float64), np.asanyarray(ref.dataobj, np.float64)
    scale = max(float(np.abs(b).max()), 1.0)
    return (
        bool(np.abs(a - b).max() <= rel * scale) and _corner_error(ours.affine, ref.affine, ref.shape) <= 1e-3
    )


def _convert(src: Path, out: Path, **kw: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
    result = convert_folder(src, out, **kw)
    assert not result.refused, result.refused
    return {
        c.name: (read_volume(c.volume_path), json.loads(c.sidecar_path.read_text())) for c in result.converted
    }


@pytest.mark.parametrize(
    ("series", "ref"),
    [("ep2d_Int_HF_5", "5_ep2d_Int_HF"), ("cmrr_Asc_6", "6_cmrr_Asc")],
)
def test_siemens_mosaic_unpacked_like_dcm2niix(real: Path, tmp_path: Path, series: str, ref: str) -> None:
    src = real / "dcm_qa_mosaic"
    out = _convert(src / "In" / series, tmp_path)
    assert len(out) == 1
    vol, side = next(iter(out.values()))
    assert vol.shape[:2] == (64, 64)  # tiles, not the 384x384 / 448x448 mosaic
    assert _matches(vol, src / "Ref" / f"{ref}.nii")
    theirs = json.loads((src / "Ref" / f"{ref}.json").read_text())
    assert side["PhaseEncodingDirection"] == theirs["PhaseEncodingDirection"]
    assert side["SliceTiming"] == pytest.approx(theirs["SliceTiming"], abs=1e-4)
    assert side["EchoTime"] == pytest.approx(theirs["EchoTime"])
    assert side["RepetitionTime"] == pytest.approx(theirs["RepetitionTime"])
    assert "MOSAIC" in side["ImageType"]
    for key in ("EffectiveEchoSpacing", "TotalReadoutTime"):  # what TOPUP / fieldmap tools read
        assert side[key] == pytest.approx(theirs[key], rel=1e-5)  # dcm2niix prints 6 digits
    assert side["AcquisitionTime"] == theirs["AcquisitionTime"]


def test_siemens_echoes_and_phase_are_separate_volumes(real: Path, tmp_path: Path) -> None:
    src = real / "dcm_qa_fmap"
    mags = _convert(src / "In" / "Siemens" / "2_gre_field_magph", tmp_path / "mag")
    assert sorted(mags) == ["2_gre_field_magph_e1", "2_gre_field_magph_e2"]
    for name, ref in (
        ("2_gre_field_magph_e1", "Si_2_gre_field_magph_e1"),
        ("2_gre_field_magph_e2", "Si_2_gre_field_magph_e2"),
    ):
        vol, side = mags[name]
        assert vol.data.ndim == 3 and _matches(vol, src / "Ref" / f"{ref}.nii")
        assert side["EchoTime"] == pytest.approx(
            json.loads((src / "Ref" / f"{ref}.json").read_text())["EchoTime"]
        )
    phase = _convert(src / "In" / "Siemens" / "3_gre_field_magph", tmp_path / "ph")
    ((name, (vol, side)),) = phase.items()
    assert name.endswith("_ph") and "P" in side["ImageType"]
    assert _matches(vol, src / "Ref" / "Si_3_gre_field_magph_e2_ph.nii")


def test_ge_magnitude_and_field_map_are_not_time_points(real: Path, tmp_path: Path) -> None:
    """GE writes the magnitude and the field map of a B0 map into one series, one of each per slice."""
    src = real / "dcm_qa_fmap"
    out = _convert(src / "In" / "GE" / "6_CV_Neuro", tmp_path)
    assert len(out) == 2 and all(v.data.ndim == 3 for v, _ in out.values())
    refs = [src / "Ref" / "GE_6_CV_Neuro_HH_Adv.nii", src / "Ref" / "GE_6_CV_Neuro_HH_Adv_fieldmaphz.nii"]
    for ref in refs:
        assert sum(_matches(v, ref) for v, _ in out.values()) == 1, ref.name


@pytest.mark.parametrize(
    ("series", "ref"), [("6_CV_Neuro", "GE_6_CV_Neuro_HH_Adv"), ("2_3db0maps", "GE_2_3db0maps_patient")]
)
def test_ge_echo_spacing_and_readout_time_like_dcm2niix(
    real: Path, tmp_path: Path, series: str, ref: str
) -> None:
    """GE keeps the echo spacing (0043,102C) and the ASSET factor (0043,1083) in private tags; the
    readout time is derived from them as dcm2niix does (the lines read rounded up to even)."""
    src = real / "dcm_qa_fmap"
    out = _convert(src / "In" / "GE" / series, tmp_path)
    theirs = json.loads((src / "Ref" / f"{ref}.json").read_text())
    for _vol, side in out.values():
        for key in ("EffectiveEchoSpacing", "TotalReadoutTime"):
            assert side[key] == pytest.approx(theirs[key], rel=1e-5)  # dcm2niix prints 6 digits
        # not an EPI and no (0018,9034): the polarity is unknown, only the axis is given
        assert (
            side["PhaseEncodingAxis"] == theirs["PhaseEncodingAxis"] and "PhaseEncodingDirection" not in side
        )


def test_philips_precise_and_display_scaling(real: Path, tmp_path: Path) -> None:
    src = real / "dcm_qa_fmap"
    precise = _convert(src / "In" / "Philips", tmp_path / "fp")
    display = _convert(src / "In" / "Philips", tmp_path / "dv", philips="display")
    mag = next(k for k in precise if not k.endswith("fieldmaphz"))
    fmap = next(k for k in precise if k.endswith("fieldmaphz"))
    assert _matches(precise[mag][0], src / "Ref" / "Ph_801_WIP_B0_NS_e1.nii")
    assert _matches(precise[fmap][0], src / "Ref" / "Ph_801_WIP_B0_NS_e2_fieldmaphz.nii")
    side = precise[mag][1]
    assert side["UsePhilipsFloatNotDisplayScaling"] == 1
    assert side["PhilipsScaleSlope"] == pytest.approx(8.44864e-06, rel=1e-5)
    assert display[mag][1]["UsePhilipsFloatNotDisplayScaling"] == 0
    # display value = stored x RescaleSlope + RescaleIntercept; precise = display / (RS x SS)
    dv, fp = display[mag][0].real(), precise[mag][0].real()
    rs, ss = side["PhilipsRescaleSlope"], side["PhilipsScaleSlope"]
    assert np.allclose(fp, dv / (rs * ss), rtol=1e-5)
    assert not np.allclose(fp, dv)


def test_dcm2niix_agrees_on_the_unpacked_mosaic(real: Path, tmp_path: Path) -> None:
    """The installed dcm2niix, run here, gives the same voxels as Curata (not only the stored Ref)."""
    if shutil.which("dcm2niix") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dcm2niix missing (scripts/system-deps.sh installs it)")
        pytest.skip("dcm2niix not installed")
    import subprocess

    src = real / "dcm_qa_mosaic" / "In" / "cmrr_Int_HF_9"
    (tmp_path / "d2n").mkdir()
    subprocess.run(
        ["dcm2niix", "-b", "n", "-f", "%s", "-o", str(tmp_path / "d2n"), str(src)],
        check=True,
        capture_output=True,
    )
    ((vol, _),) = _convert(src, tmp_path / "cur").values()
    assert _matches(vol, tmp_path / "d2n" / "9.nii")


def test_mosaic_without_its_csa_header_is_refused_with_the_reason(real: Path, tmp_path: Path) -> None:
    """De-identification that strips the Siemens CSA header leaves a mosaic that cannot be unpacked."""
    import pydicom

    src = sorted((real / "dcm_qa_mosaic" / "In" / "ep2d_Asc_2").glob("*.dcm"))[0]
    ds = pydicom.dcmread(src)
    del ds[0x0029, 0x1010]
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "m.dcm")
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    assert not result.converted
    ((_, reason),) = result.skipped
    assert "CSA header missing" in reason
