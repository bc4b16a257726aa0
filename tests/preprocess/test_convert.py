"""Conversion against the real dcm2niix, case by case, and against the geometry each case was built with."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curata.preprocess.convert import convert_folder
from curata.preprocess.synthetic import axial_slices, phantom, write_enhanced, write_series
from curata.preprocess.volume import read_volume
from tests.preprocess.conftest import misplaced, run_dcm2niix

VOL = phantom((8, 10, 12))
OBLIQUE = (0.9659258, 0.2588190, 0.0, -0.2331, 0.8693, 0.4358899)


def _ours(source: Path, out: Path, **kw: object) -> dict[str, nib.Nifti1Image]:
    result = convert_folder(source, out, **kw)  # type: ignore[arg-type]
    assert not result.refused, result.refused
    return {c.volume_path.name: nib.load(c.volume_path) for c in result.converted}


def _assert_same(ours: nib.Nifti1Image, theirs: nib.Nifti1Image) -> None:
    assert ours.shape == theirs.shape
    assert ours.get_data_dtype() == theirs.get_data_dtype()
    assert np.array_equal(ours.dataobj.get_unscaled(), theirs.dataobj.get_unscaled())
    assert np.abs(ours.affine - theirs.affine).max() < 1e-3
    assert ours.dataobj.slope == pytest.approx(theirs.dataobj.slope)
    assert ours.dataobj.inter == pytest.approx(theirs.dataobj.inter)


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("axial", {}),
        ("flipped-rows", {"orientation": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)}),
        ("negative-spacing", {"spacing": -2.5}),
        ("sagittal", {"orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)}),
        ("coronal-flipped-negative", {"orientation": (-1.0, 0.0, 0.0, 0.0, 0.0, -1.0), "spacing": -3.0}),
        ("oblique", {"orientation": OBLIQUE}),
    ],
)
def test_orientations_match_dcm2niix(tmp_path: Path, case: str, kwargs: dict) -> None:
    slices = axial_slices(VOL, **kwargs)
    write_series(tmp_path / "in", slices)
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")
    ours = _ours(tmp_path / "in", tmp_path / "cur")
    assert list(ours) == list(theirs) == ["1_phantom.nii"]
    _assert_same(ours["1_phantom.nii"], theirs["1_phantom.nii"])
    assert misplaced(ours["1_phantom.nii"], slices) == []


@pytest.mark.parametrize(
    ("dtype", "slope", "intercept", "poke"),
    [
        ("int16", 1.0, -1024.0, None),
        ("int16", 0.5, -10.25, None),
        ("uint16", 2.0, -1000.0, None),
        ("uint16", 1.0, 0.0, 60000),
    ],
)
def test_rescale_and_16_bit(
    tmp_path: Path, dtype: str, slope: float, intercept: float, poke: int | None
) -> None:
    vol = phantom((6, 10, 12), dtype=dtype)
    if poke is not None:
        vol[0, 0, 0] = poke
    write_series(tmp_path / "in", axial_slices(vol), slope=slope, intercept=intercept)
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")["1_phantom.nii"]
    ours = _ours(tmp_path / "in", tmp_path / "cur")["1_phantom.nii"]
    _assert_same(ours, theirs)
    assert ours.get_data_dtype() == np.dtype(dtype)
    real = read_volume(tmp_path / "cur" / "1_phantom.nii").real()
    assert real.max() == pytest.approx(vol.max() * slope + intercept)


def test_gantry_tilt_shear_matches_and_resample_is_exact(tmp_path: Path) -> None:
    # A linear ramp: linear interpolation reproduces it exactly, so the de-sheared values have a truth.
    nz, ny, nx = 8, 10, 12
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    ramp = (40 * y + 3 * x + 7 * z).astype(np.int16)
    shear = (0.0, float(np.tan(np.radians(15))), 0.0)
    slices = axial_slices(ramp, shear=shear)
    write_series(tmp_path / "in", slices, gantry_tilt=15.0)
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")
    assert set(theirs) == {"1_phantom.nii", "1_phantom_Tilt_1.nii"}
    sheared = _ours(tmp_path / "in", tmp_path / "cur")["1_phantom.nii"]
    _assert_same(sheared, theirs["1_phantom.nii"])  # both keep the exact sheared sform
    assert misplaced(sheared, slices) == []
    res = convert_folder(tmp_path / "in", tmp_path / "cur2", tilt="resample")
    assert res.converted[0].report.gantry_tilt_deg == pytest.approx(15.0, abs=0.01)
    ours = nib.load(res.converted[0].volume_path)
    d2n = theirs["1_phantom_Tilt_1.nii"]
    assert ours.shape == d2n.shape
    assert np.abs(ours.affine - d2n.affine).max() < 1e-3
    # truth: the ramp at the world position of each output voxel
    a, b = ours.dataobj.get_unscaled().astype(float), d2n.dataobj.get_unscaled().astype(float)
    src_aff = sheared.affine
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in ours.shape], indexing="ij"), -1).reshape(-1, 3)
    src = (np.linalg.inv(src_aff) @ ours.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].T
    inside = np.all((src >= 0) & (src <= np.array(sheared.shape) - 1), axis=1)
    i, j, k = src[inside].T
    truth = 40 * (ny - 1 - j) + 3 * i + 7 * k  # rows were flipped on the way in
    ours_err = np.abs(a.reshape(-1)[inside] - np.rint(truth)).max()
    theirs_err = np.abs(b.reshape(-1)[inside] - truth).max()
    assert ours_err <= 1.0  # rounding to int16 only
    print(f"tilt: max error vs truth curata {ours_err:.2f}, dcm2niix {theirs_err:.2f}")


GAP = [0.0, 2.5, 5.0, 7.5, 12.5, 15.0, 17.5, 20.0]  # one slice missing at 10.0
VARIABLE = [0.0, 2.0, 4.0, 6.0, 9.0, 12.0, 15.0, 18.0]


@pytest.mark.parametrize("offsets", [GAP, VARIABLE], ids=["missing-slice", "variable-spacing"])
def test_uneven_slices_never_misplaced(tmp_path: Path, offsets: list[float]) -> None:
    slices = axial_slices(VOL, offsets=offsets)
    write_series(tmp_path / "in", slices)
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")
    # dcm2niix's main output spaces the slices evenly: the slices after the change sit off.
    assert misplaced(theirs["1_phantom.nii"], slices) != []
    # default: refused with the reason
    refused = convert_folder(tmp_path / "in", tmp_path / "refuse")
    assert refused.converted == [] and len(refused.refused) == 1
    assert "missing" in refused.refused[0][1] or "variable" in refused.refused[0][1]
    # split: evenly spaced runs, every slice in place
    split = _ours(tmp_path / "in", tmp_path / "split", uneven="split")
    assert len(split) == 2
    placed = sum(len(slices) - len(misplaced(img, slices)) for img in split.values())
    assert placed == len(slices)
    # interpolate: an even grid, every original slice kept exactly where it was
    res = convert_folder(tmp_path / "in", tmp_path / "interp", uneven="interpolate")
    img = nib.load(res.converted[0].volume_path)
    step = min(np.diff(offsets))
    on_grid = [n for n, d in enumerate(offsets) if abs(d / step - round(d / step)) < 1e-6]
    assert [n for n in misplaced(img, slices) if n in on_grid] == []
    expected_new = [k for k in range(img.shape[2]) if not any(abs(k * step - d) < 1e-6 for d in offsets)]
    assert res.converted[0].report.interpolated_slices == expected_new
    if offsets is GAP:
        assert img.shape[2] == 9 and expected_new == [4]
        assert res.converted[0].report.missing_slices == 1
        # the filled slice is the mean of its neighbours (linear, rounded)
        data = img.dataobj.get_unscaled().astype(float)
        assert np.abs(data[..., 4] - np.rint((data[..., 3] + data[..., 5]) / 2)).max() <= 0.5


def test_two_stacks_in_one_series_are_split(tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    write_series(tmp_path / "in" / "a", axial_slices(VOL), series_uid=uid)
    other = phantom((5, 12, 10), seed=3)
    write_series(
        tmp_path / "in" / "b",
        axial_slices(other, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), origin=(0, -50, 80), spacing=3.0),
        series_uid=uid,
        pixel_spacing=(0.9, 0.9),
    )
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")
    ours = _ours(tmp_path / "in", tmp_path / "cur")
    assert len(theirs) == len(ours) == 2
    for img in ours.values():
        twin = [t for t in theirs.values() if t.shape == img.shape]
        assert len(twin) == 1
        _assert_same(img, twin[0])


@pytest.mark.parametrize(
    ("modality", "dtype", "kw"),
    [
        ("CT", "int16", {}),
        ("MR", "uint16", {"slope": 1.5, "intercept": 0.0, "orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)}),
    ],
    ids=["enhanced-ct", "enhanced-mr-sagittal"],
)
def test_enhanced_multiframe(tmp_path: Path, modality: str, dtype: str, kw: dict) -> None:
    write_enhanced(tmp_path / "in" / "mf.dcm", phantom((8, 10, 12), dtype=dtype), modality=modality, **kw)
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")
    ours = _ours(tmp_path / "in", tmp_path / "cur")
    assert list(ours) == list(theirs)
    name = next(iter(ours))
    _assert_same(ours[name], theirs[name])


@pytest.mark.parametrize("slice_major", [False, True], ids=["time-major-frames", "slice-major-frames"])
def test_enhanced_4d_follows_frame_content(tmp_path: Path, slice_major: bool) -> None:
    nt, nz = 3, 4
    vol = phantom((nt * nz, 10, 12), dtype="uint16")
    write_enhanced(
        tmp_path / "in" / "mf.dcm",
        vol,
        modality="MR",
        slope=1.0,
        intercept=0.0,
        temporal=nt,
        slice_major_dimensions=slice_major,
    )
    truth = np.stack([vol[t * nz : (t + 1) * nz].transpose(2, 1, 0)[:, ::-1, :] for t in range(nt)], axis=-1)
    theirs = next(iter(run_dcm2niix(tmp_path / "in", tmp_path / "d2n").values()))
    ours = next(iter(_ours(tmp_path / "in", tmp_path / "cur").values()))
    assert ours.shape == theirs.shape == (12, 10, nz, nt)
    assert np.abs(ours.affine - theirs.affine).max() < 1e-3
    assert np.array_equal(ours.dataobj.get_unscaled(), truth)  # ordered by TemporalPositionIndex
    d2n_right = np.array_equal(theirs.dataobj.get_unscaled(), truth)
    print(
        f"enhanced 4D ({'slice' if slice_major else 'time'}-major frames): dcm2niix frame order right: {d2n_right}"
    )


def test_dynamic_4d_classic(tmp_path: Path) -> None:
    nt, nz = 3, 6
    vol = phantom((nt * nz, 10, 12))
    slices = []
    for t in range(nt):
        for spec in axial_slices(vol[t * nz : (t + 1) * nz]):
            spec.extra = {
                "AcquisitionNumber": t + 1,
                "TemporalPositionIdentifier": t + 1,
                "TriggerTime": str(t * 1000),
            }
            slices.append(spec)
    write_series(tmp_path / "in", slices, modality="MR", slope=1.0, intercept=0.0)
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")["1_phantom.nii"]
    ours = _ours(tmp_path / "in", tmp_path / "cur")["1_phantom.nii"]
    _assert_same(ours, theirs)
    data = ours.dataobj.get_unscaled()
    assert data.shape == (12, 10, nz, nt)
    assert np.array_equal(data[..., 1], vol[nz : 2 * nz].transpose(2, 1, 0)[:, ::-1, :])


def test_formats_round_trip_and_bad_files_are_skipped(tmp_path: Path) -> None:
    write_series(tmp_path / "in", axial_slices(VOL))
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    nii = convert_folder(tmp_path / "in", tmp_path / "nii", fmt="nifti")
    assert [s[0] for s in nii.skipped] == [str(tmp_path / "in" / "notes.txt")]
    gz = convert_folder(tmp_path / "in", tmp_path / "gz", fmt="nifti-gz")
    zr = convert_folder(tmp_path / "in", tmp_path / "zarr", fmt="zarr")
    raw = nii.converted[0].volume_path.read_bytes()
    assert gzip.decompress(gz.converted[0].volume_path.read_bytes()) == raw  # multi-member gzip, same bytes
    a, b, c = (read_volume(r.converted[0].volume_path) for r in (nii, gz, zr))
    for other in (b, c):
        assert np.array_equal(a.data, other.data) and np.allclose(a.affine, other.affine)
        assert (a.slope, a.inter) == (other.slope, other.inter)
    sidecar = nii.converted[0].sidecar_path.read_text()
    assert '"Modality": "CT"' in sidecar and '"max_slice_residual_mm"' in sidecar


def test_incomplete_4d_is_refused(tmp_path: Path) -> None:
    slices = axial_slices(VOL) + axial_slices(VOL)[:3]
    write_series(tmp_path / "in", slices)
    res = convert_folder(tmp_path / "in", tmp_path / "out")
    assert res.converted == [] and "incomplete 4D" in res.refused[0][1]


def test_convert_command(tmp_path: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from curata.preprocess.cli import register

    app = typer.Typer()
    register(app)
    write_series(tmp_path / "in", axial_slices(VOL, offsets=GAP))
    runner = CliRunner()
    refused = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "a"), "--json"])
    assert refused.exit_code == 1
    assert "missing slice" in json.loads(refused.stdout)["refused"][0]["reason"]
    ok = runner.invoke(
        app,
        [
            "convert",
            str(tmp_path / "in"),
            str(tmp_path / "b"),
            "--uneven",
            "split",
            "-f",
            "nifti-gz",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    paths = [c["path"] for c in json.loads(ok.stdout)["converted"]]
    assert len(paths) == 2 and all(p.endswith(".nii.gz") and Path(p).exists() for p in paths)
    assert json.loads(ok.stdout)["not_deidentified"] == 2


def test_converting_identified_input_says_convert_is_no_deidentifier(tmp_path: Path) -> None:
    """Outputs are named by series number and description (as dcm2niix names them) and sidecars keep
    descriptions and UIDs: run on identified DICOM, the command says so; on de-identified input it
    does not."""
    import pydicom
    import typer
    from typer.testing import CliRunner

    from curata.preprocess.cli import register

    app = typer.Typer()
    register(app)
    write_series(tmp_path / "raw", axial_slices(VOL))
    runner = CliRunner()
    raw = runner.invoke(app, ["convert", str(tmp_path / "raw"), str(tmp_path / "a")])
    assert raw.exit_code == 0, raw.output
    assert "not marked de-identified" in raw.output and "convert is no de-identifier" in raw.output
    for path in (tmp_path / "raw").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientIdentityRemoved = "YES"
        ds.save_as(path)
    marked = runner.invoke(app, ["convert", str(tmp_path / "raw"), str(tmp_path / "b")])
    assert marked.exit_code == 0, marked.output
    assert "not marked de-identified" not in marked.output


def test_12_bit_unsigned_pixels_are_masked_to_bits_stored(tmp_path: Path) -> None:
    """Unsigned 12-bit pixels in 16-bit words: the upper 4 bits are not part of the value.

    Scanners leave overlay or garbage bits there; the fast uncompressed path read them as value,
    off by multiples of 4096.
    """
    import pydicom

    vol = phantom((4, 10, 12), dtype="uint16") % 4096
    paths = write_series(tmp_path / "in", axial_slices(vol), modality="MR", slope=1.0, intercept=0.0)
    rng = np.random.default_rng(3)
    for path in paths:
        ds = pydicom.dcmread(path)
        clean = np.frombuffer(ds.PixelData, "<u2")
        garbage = rng.integers(0, 16, clean.shape, dtype=np.uint16) << 12
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (clean | garbage).astype("<u2").tobytes()
        ds.save_as(path)
    ours = _ours(tmp_path / "in", tmp_path / "cur")["1_phantom.nii"]
    data = np.asanyarray(ours.dataobj.get_unscaled())
    assert data.max() < 4096
    assert np.array_equal(data[:, ::-1, :].transpose(2, 1, 0), vol)


def test_rgb_series_converted_like_dcm2niix(tmp_path: Path) -> None:
    """A colour map (e.g. a colour FA map) becomes an RGB24 volume, channel for channel."""
    import pydicom

    vol = phantom((3, 10, 12), dtype="uint16")
    paths = write_series(tmp_path / "in", axial_slices(vol), modality="MR", slope=1.0, intercept=0.0)
    rng = np.random.default_rng(5)
    colour = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        rgb = rng.integers(0, 256, (int(ds.Rows), int(ds.Columns), 3), dtype=np.uint8)
        colour[int(ds.InstanceNumber)] = rgb
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = rgb.tobytes()
        ds.save_as(path)
    ours = _ours(tmp_path / "in", tmp_path / "cur")["1_phantom.nii"]
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "d2n")["1_phantom.nii"]
    assert ours.get_data_dtype() == theirs.get_data_dtype()  # RGB24
    a, b = np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj)
    assert a.shape == b.shape == (12, 10, 3)
    for channel in "RGB":
        assert np.array_equal(a[channel], b[channel])
    assert np.abs(ours.affine - theirs.affine).max() < 1e-3
    assert np.array_equal(a["G"][:, ::-1, 0].T, colour[1][..., 1])


def test_spectroscopy_is_refused_with_its_reason(tmp_path: Path) -> None:
    import pydicom

    paths = write_series(tmp_path / "in", axial_slices(phantom((2, 6, 6))), modality="MR")
    ds = pydicom.dcmread(paths[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.2"
    del ds.PixelData
    ds.SpectroscopyData = np.zeros(16, np.float32).tobytes()
    ds.save_as(paths[0])
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    assert [r for p, r in result.skipped if p == str(paths[0])] == [
        "MR spectroscopy holds spectra, not images: it is not converted to a volume"
    ]
    assert len(result.converted) == 1  # the other slice still converts


def test_single_volume_series_of_one_run_become_one_4d(tmp_path: Path) -> None:
    """Siemens XA exports each volume of an fMRI run as its own series under one series number."""
    from pydicom.uid import generate_uid

    study, frame = str(generate_uid()), str(generate_uid())
    volumes = [phantom((4, 10, 12), seed=t) for t in range(3)]
    for t, vol in enumerate(volumes):
        specs = axial_slices(vol)
        for spec in specs:
            spec.extra = {"FrameOfReferenceUID": frame, "AcquisitionNumber": t + 1}
        write_series(
            tmp_path / "in" / f"v{t}",
            specs,
            modality="MR",
            study_uid=study,
            series_number=7,
            series_description="bold",
            intercept=0.0,
        )
    # a series under another number, same geometry: its own volume
    write_series(
        tmp_path / "in" / "other",
        axial_slices(volumes[0]),
        modality="MR",
        study_uid=study,
        series_number=8,
        series_description="bold",
        intercept=0.0,
    )
    out = _ours(tmp_path / "in", tmp_path / "cur")
    assert sorted(out) == ["7_bold.nii", "8_bold.nii"]
    run = np.asanyarray(out["7_bold.nii"].dataobj.get_unscaled())
    assert run.shape == (12, 10, 4, 3)
    for t, vol in enumerate(volumes):  # in acquisition order
        assert np.array_equal(run[:, ::-1, :, t].transpose(2, 1, 0), vol)
    assert out["8_bold.nii"].shape == (12, 10, 4)


@pytest.mark.parametrize(
    ("mode", "reversed_volumes"), [(2, {0, 2}), (3, {1, 3}), (1, {0, 1, 2, 3}), (0, set())]
)
def test_ge_pepolar_reversed_volumes_flipped_and_separate(
    tmp_path: Path, mode: int, reversed_volumes: set[int]
) -> None:
    """GE epi_pepolar stores reversed-polarity volumes with their rows reversed (header unchanged):
    UserData12 (0019,10B3) gives the mode; they are flipped back and written as their own output."""
    import pydicom

    vol = phantom((3, 10, 12))
    specs = []
    for t in range(4):
        for spec in axial_slices(vol):
            pixels = spec.pixels[::-1] if t in reversed_volumes else spec.pixels
            specs.append(
                type(spec)(
                    np.ascontiguousarray(pixels),
                    spec.position,
                    spec.orientation,
                    {"TemporalPositionIdentifier": t + 1},
                )
            )
    paths = write_series(tmp_path / "in", specs, modality="MR", series_description="pepolar", intercept=0.0)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.add_new((0x0019, 0x0010), "LO", "GEMS_ACQU_01")
        ds.add_new((0x0019, 0x109C), "LO", "epi_pepolar")
        ds.add_new((0x0019, 0x10B3), "DS", str(mode))
        ds.save_as(path)
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    assert not result.refused
    names = sorted(c.name for c in result.converted)
    expected = (["1_pepolar"] if len(reversed_volumes) < 4 else []) + (
        ["1_pepolar_rev"] if reversed_volumes else []
    )
    assert names == expected
    for c in result.converted:
        data = read_volume(c.volume_path).data
        n = len(reversed_volumes) if c.name.endswith("_rev") else 4 - len(reversed_volumes)
        assert data.shape == ((12, 10, 3, n) if n > 1 else (12, 10, 3))
        frames = data if data.ndim == 4 else data[..., None]
        for t in range(n):  # every volume, flipped back where it was reversed, is the true anatomy
            assert np.array_equal(frames[:, ::-1, :, t].transpose(2, 1, 0), vol)
        side = json.loads(c.sidecar_path.read_text())
        assert side.get("PhaseEncodingReversed", False) == c.name.endswith("_rev")


def _ge_epi(folder: Path, reorder: str | None, **extra: object) -> list[Path]:
    import pydicom

    vol = phantom((3, 10, 12))
    specs = [
        type(spec)(spec.pixels, spec.position, spec.orientation, {"TemporalPositionIdentifier": t + 1})
        for t in range(2)
        for spec in axial_slices(vol)
    ]
    paths = write_series(folder, specs, modality="MR", series_description="epi", intercept=0.0)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.InPlanePhaseEncodingDirection = "COL"
        ds.AcquisitionMatrix = [0, 12, 10, 0]
        if reorder is not None:
            ds.RectilinearPhaseEncodeReordering = reorder
        ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
        ds.add_new((0x0043, 0x102C), "SS", 500)  # echo spacing, microseconds
        ds.add_new((0x0043, 0x1083), "DS", ["0.5", "1"])  # ASSET: in-plane reduction 2
        for tag, (vr, value) in extra.items():
            ds.add_new(int(tag, 16), vr, value)  # type: ignore[arg-type]
        ds.save_as(path)
    return paths


@pytest.mark.parametrize(
    ("reorder", "direction", "polarity"),
    [("REVERSE_LINEAR", "j-", "Unflipped"), ("LINEAR", "j", "Flipped"), (None, None, None)],
)
def test_ge_phase_encoding_polarity_and_readout(
    tmp_path: Path, reorder: str | None, direction: str | None, polarity: str | None
) -> None:
    """GE (RX27 on) states the polarity in RectilinearPhaseEncodeReordering (0018,9034): LINEAR is
    dcm2niix's 'Flipped' (j for COL), REVERSE_LINEAR 'Unflipped' (j-). The readout time comes from the
    echo spacing (0043,102C) and the ASSET factor (0043,1083): 10 lines x 0.5 = 5, rounded up to 6
    read, 5 echo spacings of 500 us; the effective spacing spreads that over the 10 reconstructed rows."""
    _ge_epi(tmp_path / "in", reorder)
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    ((conv,),) = [result.converted]
    side = json.loads(conv.sidecar_path.read_text())
    assert side.get("PhaseEncodingDirection") == direction
    assert side.get("PhaseEncodingPolarityGE") == polarity
    assert side["TotalReadoutTime"] == pytest.approx(5 * 500e-6)
    assert side["EffectiveEchoSpacing"] == pytest.approx(5 * 500e-6 / 9)
    if direction is None:
        assert side["PhaseEncodingAxis"] == "j"


def test_ge_pepolar_reversed_volumes_have_the_opposite_polarity(tmp_path: Path) -> None:
    """The reversed volumes of an epi_pepolar series (UserData12 = 3: forward then reversed) are the
    other half of a TOPUP pair: their sidecar carries the opposite PhaseEncodingDirection."""
    _ge_epi(
        tmp_path / "in",
        "REVERSE_LINEAR",
        **{"00190010": ("LO", "GEMS_ACQU_01"), "0019109C": ("LO", "epi_pepolar"), "001910B3": ("DS", "3")},
    )
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    sides = {c.name: json.loads(c.sidecar_path.read_text()) for c in result.converted}
    assert sorted(sides) == ["1_epi", "1_epi_rev"]
    assert sides["1_epi"]["PhaseEncodingDirection"] == "j-"
    assert sides["1_epi_rev"]["PhaseEncodingDirection"] == "j"
    assert sides["1_epi_rev"]["PhaseEncodingPolarityGE"] == "Flipped"


def test_ge_raw_header_polarity_before_rx27() -> None:
    """Before RX27 the polarity is only in the raw header block (0043,102A): the EPI flag (0x800 at
    0x3A), the flip bit (4 in the word at 0x30), and a bottom-up ky order (2) that inverts it."""
    import struct

    from curata.preprocess.dicom_stack import _ge_user_define_polarity

    def block(version: float, epi: bool, flip: bool, ky: int) -> bytes:
        data = bytearray(2048)
        struct.pack_into("<H", data, 24, 64)  # the header starts at 64
        struct.pack_into("<f", data, 64, version)
        hdr, kydir = (64 + 0x4C, 0x308) if version >= 25.002 else (64, 0x394)
        struct.pack_into("<H", data, hdr + 0x3A, 0x800 if epi else 0)
        struct.pack_into("<H", data, hdr + 0x30, 4 if flip else 0)
        struct.pack_into("<H", data, hdr + kydir, ky)
        return bytes(data)

    for version in (24.0, 26.0):
        assert _ge_user_define_polarity(block(version, True, False, 0)) == 1  # unflipped
        assert _ge_user_define_polarity(block(version, True, True, 0)) == 0
        assert _ge_user_define_polarity(block(version, True, True, 2)) == 1  # bottom-up inverts
        assert _ge_user_define_polarity(block(version, False, True, 0)) is None  # not EPI
    assert _ge_user_define_polarity(b"\0" * 100) is None
    assert _ge_user_define_polarity(block(99.0, True, True, 0)) is None  # not a header version


@pytest.mark.parametrize("n", [9, 7])
def test_uih_grid_vframe_without_image_position(tmp_path: Path, n: int) -> None:
    """A UIH 'GRID' (ImageType VFRAME) tiles a volume's slices ceil(sqrt(n)) across and places each
    in the private VFrame sequence (0065,1051); there is no ImagePositionPatient. It converts to the
    same volume as the same slices written one file each."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    vol = phantom((n, 10, 12), dtype="uint16")
    specs = axial_slices(vol, orientation=OBLIQUE)
    classic = _ours_write(tmp_path / "classic", specs)
    per_row = int(np.ceil(np.sqrt(n)))
    grid_rows = int(np.ceil(n / per_row))
    tiled = np.zeros((grid_rows * 10, per_row * 12), np.uint16)
    for k in range(n):
        r, c = divmod(k, per_row)
        tiled[r * 10 : (r + 1) * 10, c * 12 : (c + 1) * 12] = vol[k]
    (path,) = write_series(
        tmp_path / "grid", [type(specs[0])(tiled, specs[0].position, OBLIQUE)], modality="MR", intercept=0.0
    )
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "VFRAME"]
    ds.add_new((0x0065, 0x0010), "LO", "Image Private Header")
    ds.add_new((0x0065, 0x1050), "DS", str(n))
    items = []
    for k, spec in enumerate(specs):
        item = Dataset()
        item.ImagePositionPatient = [f"{v:.6f}" for v in spec.position]
        item.AcquisitionTime = f"1200{k:02d}.500000"
        items.append(item)
    ds.add_new((0x0065, 0x1051), "SQ", Sequence(items))
    ds.save_as(path)
    result = convert_folder(tmp_path / "grid", tmp_path / "out")
    assert not result.refused and not result.skipped, (result.refused, result.skipped)
    (conv,) = result.converted
    ours = nib.load(conv.volume_path)
    assert ours.shape == (12, 10, n)
    assert np.array_equal(ours.dataobj.get_unscaled(), classic.dataobj.get_unscaled())
    assert np.abs(ours.affine - classic.affine).max() < 1e-4
    assert json.loads(conv.sidecar_path.read_text())["SliceTiming"] == [float(k) for k in range(n)]


def _ours_write(folder: Path, specs: list) -> nib.Nifti1Image:  # type: ignore[type-arg]
    write_series(folder / "in", specs, modality="MR", intercept=0.0)
    return _ours(folder / "in", folder / "out")["1_phantom.nii"]


@pytest.mark.parametrize("source", ["TriggerTime", "AcquisitionTime"])
def test_slice_timing_of_a_classic_4d_series(tmp_path: Path, source: str) -> None:
    """fMRI written one file per slice: GE gives each slice's time in the TR as TriggerTime, others
    stamp the AcquisitionTime; either way SliceTiming lists them in the volume's slice order."""
    vol = phantom((5, 8, 8))
    order = [0, 2, 4, 1, 3]  # interleaved acquisition
    specs = []
    for t in range(2):
        for k, spec in enumerate(axial_slices(vol)):
            ms = order.index(k) * 400.0
            extra: dict[str, object] = {"TemporalPositionIdentifier": t + 1}
            if source == "TriggerTime":
                extra["TriggerTime"] = f"{ms:g}"
            else:
                seconds = 2.0 * t + ms / 1000.0  # within the minute after 12:00
                extra["AcquisitionTime"] = f"1200{int(seconds):02d}.{round((seconds % 1) * 1e6):06d}"
            specs.append(type(spec)(spec.pixels, spec.position, spec.orientation, extra))
    write_series(tmp_path / "in", specs, modality="MR", intercept=0.0)
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    (conv,) = result.converted
    side = json.loads(conv.sidecar_path.read_text())
    assert side["SliceTiming"] == pytest.approx([0.0, 1.2, 0.4, 1.6, 0.8])


def test_convert_names_skipped_and_refused_inputs_by_sha256(tmp_path: Path) -> None:
    """A folder's name may be a patient's: `convert` names a skipped or refused input by the sha256 of its
    bytes, as `curata ingest` and `curata deid` do, and by path only with --show-paths."""
    import hashlib
    import json

    import typer
    from typer.testing import CliRunner

    from curata.preprocess.cli import register

    app = typer.Typer()
    register(app)
    src = tmp_path / "Okonkwo_Adaeze_MRN77123"
    write_series(src, axial_slices(VOL, offsets=GAP))
    (src / "notes.txt").write_text("not an image")
    digest = hashlib.sha256(b"not an image").hexdigest()[:16]
    runner = CliRunner()
    out = runner.invoke(app, ["convert", str(src), str(tmp_path / "a"), "--json"])
    assert out.exit_code == 1
    assert "Okonkwo" not in out.stdout and "MRN77123" not in out.stdout
    got = json.loads(out.stdout)
    assert got["skipped"][0]["input"] == f"sha256:{digest}"
    assert "missing slice" in got["refused"][0]["reason"] and "sha256:" in got["refused"][0]["where"]
    text = runner.invoke(app, ["convert", str(src), str(tmp_path / "b")])
    assert text.exit_code == 1 and "refused" in text.output and "Okonkwo" not in text.output
    shown = runner.invoke(app, ["convert", str(src), str(tmp_path / "c"), "--json", "--show-paths"])
    got = json.loads(shown.stdout)
    assert got["skipped"][0]["input"] == str(src / "notes.txt") and str(src) in got["refused"][0]["where"]


@pytest.mark.parametrize(
    "damage", ["corrupt_rle", "truncate_pixels", "garbage_jpeg_lossless", "garbage_jpeg2000"]
)
def test_a_damaged_series_is_refused_and_the_others_convert(tmp_path: Path, damage: str) -> None:
    """Through the CLI: a damaged frame (the Rust RLE decoder's panic; pixel data cut short, where
    numpy and pydicom raise ValueError; a garbage JPEG codestream, where every plugin raises
    RuntimeError) refuses that series with a reason (no path, no patient); the intact series is
    converted, the command ends and says it failed."""
    from typer.testing import CliRunner

    import tests.conftest
    from curata.cli import app

    tests.conftest.write_good_and_corrupt_series(tmp_path / "in", damage=getattr(tests.conftest, damage))
    out = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--json"])
    assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
    assert out.exit_code == 1
    result = json.loads(out.output)
    assert len(result["converted"]) == 1 and len(result["refused"]) == 1, result
    refused = json.dumps(result["refused"])
    # the damaged series by its number (3); its description is not repeated (it may hold a name)
    assert (
        "cannot decode pixel data" in refused and '"series 3 (sha256:' in refused and "DAMAGED" not in refused
    )
    assert str(tmp_path) not in refused
    assert "Doe" not in refused and "PAT-0001" not in refused


def test_a_refused_stack_is_named_by_its_series_number_not_its_description(tmp_path: Path) -> None:
    """A scanner's description may hold the patient's name (typed into the protocol at the console):
    a refused stack has no output to name, so messages name it by series number and input digest."""
    import json

    import typer
    from typer.testing import CliRunner

    from curata.preprocess.cli import register

    app = typer.Typer()
    register(app)
    src = tmp_path / "in"
    write_series(
        src, axial_slices(VOL, offsets=GAP), series_description="QUIXBORNE ZELPHINA", series_number=3
    )
    runner = CliRunner()
    got = runner.invoke(app, ["convert", str(src), str(tmp_path / "a"), "--json"])
    assert got.exit_code == 1
    (refused,) = json.loads(got.stdout)["refused"]
    assert refused["where"].startswith("series 3 (sha256:") and "missing slice" in refused["reason"]
    text = runner.invoke(app, ["convert", str(src), str(tmp_path / "b")])
    assert text.exit_code == 1 and "series 3" in text.output
    for out in (got.output, text.output):
        assert "QUIXBORNE" not in out.upper() and "ZELPHINA" not in out.upper()


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_a_geometry_value_that_is_no_number_skips_its_file_without_quoting_it(
    tmp_path: Path, keyword: str
) -> None:
    """A damaged DS (here holding a patient ID) used to end the run with a traceback quoting the value;
    the file is skipped with the attribute named, and the other series are converted."""
    import pydicom

    bad = write_series(tmp_path / "in" / "bad", axial_slices(VOL), series_number=7)
    write_series(tmp_path / "in" / "good", axial_slices(VOL), series_number=8)
    ds = pydicom.dcmread(bad[0])
    count = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}[keyword]
    ds[keyword].value = ["123456789"] + ["1"] * (count - 1)  # as long as the ID written over it below
    ds.save_as(bad[0])
    data = bad[0].read_bytes()
    assert data.count(b"123456789") == 1
    bad[0].write_bytes(data.replace(b"123456789", b"PID-99121"))
    result = convert_folder(tmp_path / "in", tmp_path / "out")
    assert [c.name for c in result.converted] == ["8_phantom"]
    skipped = dict(result.skipped)
    assert str(bad[0]) in skipped and "not a list of numbers" in skipped[str(bad[0])]
    assert "PID-99121" not in " ".join(reason for _, reason in result.skipped + result.refused)
