"""Steps: geometry exact, intensities as specified, registration recovers known transforms."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from curata.errors import ConfigError, InputError
from curata.preprocess import intensity, spatial
from curata.preprocess.register import apply_transform, dice, register, rigid_error, transform_from_text
from curata.preprocess.steps import STEPS, make_step
from curata.preprocess.synthetic import body_phantom
from curata.preprocess.volume import Volume


def _vol(data: np.ndarray, spacing=(1.5, 1.5, 1.5), origin=(50.0, 60.0, -40.0), flips=(-1, -1, 1)) -> Volume:
    aff = np.diag([*(f * s for f, s in zip(flips, spacing, strict=True)), 1.0])
    aff[:3, 3] = origin
    return Volume(np.asfortranarray(data), aff)


def test_reorient_is_a_lossless_permutation() -> None:
    rng = np.random.default_rng(0)
    vol = _vol(rng.normal(size=(5, 6, 7)).astype(np.float32))
    assert spatial.axcodes(vol) == "LPS"
    ras = spatial.reorient(vol, "RAS")
    assert spatial.axcodes(ras) == "RAS"
    # every voxel keeps its world position
    for idx in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        world = vol.affine @ [*idx, 1]
        j = np.rint(np.linalg.inv(ras.affine) @ world).astype(int)[:3]
        assert ras.data[tuple(j)] == vol.data[idx]
    back = spatial.reorient(ras, "LPS")
    assert np.array_equal(back.data, vol.data) and np.allclose(back.affine, vol.affine)
    with pytest.raises(InputError):
        spatial.reorient(vol, "XYZ")


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 2.1, 1.3)])
def test_separable_resampling_equals_simpleitk(spacing: tuple[float, float, float]) -> None:
    rng = np.random.default_rng(1)
    vol = _vol(rng.normal(size=(40, 36, 22)).astype(np.float32), spacing=(0.8, 0.9, 2.5))
    affine, shape = spatial.spacing_grid(vol, spacing)
    fast = spatial.resample_separable(vol, affine, shape, fill=-3.0)
    assert fast is not None
    slow = spatial.resample_to_grid(vol, affine, shape, transform=sitk.Euler3DTransform(), fill=-3.0)
    assert fast.shape == slow.shape == shape
    assert np.abs(fast.data - slow.data).max() < 1e-4
    assert np.allclose(fast.affine, slow.affine)
    # the field of view is kept: outer edges coincide
    old_edge = vol.affine @ [-0.5, -0.5, -0.5, 1]
    new_edge = fast.affine @ [-0.5, -0.5, -0.5, 1]
    assert np.allclose(old_edge, new_edge)


def test_label_resampling_keeps_labels_and_oblique_grids_use_simpleitk() -> None:
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[5:15, 5:20, 10:25] = 1
    labels[18:26, 8:22, 4:12] = 2
    vol = _vol(labels)
    for interp in ("nearest", "label"):
        out = spatial.resample(vol, spacing=(1.0, 1.0, 1.0), interpolator=interp)
        assert out.data.dtype == np.uint8 and set(np.unique(out.data)) == {0, 1, 2}
        ml = [(out.data == k).sum() * 1.0 for k in (1, 2)]
        expected = [(labels == k).sum() * 1.5**3 for k in (1, 2)]
        assert all(abs(a - b) / b < 0.08 for a, b in zip(ml, expected, strict=True))
    rot = np.eye(4)
    c, s = math.cos(0.3), math.sin(0.3)
    rot[:2, :2] = [[c, -s], [s, c]]
    oblique = rot @ vol.affine
    assert spatial.resample_separable(vol, oblique, vol.shape) is None
    out = spatial.resample_to_grid(vol, oblique, vol.shape, interpolator="nearest")
    assert out.shape == vol.shape and set(np.unique(out.data)) <= {0, 1, 2}


def test_crop_pad_and_body_crop_move_the_affine() -> None:
    data = body_phantom((20, 24, 28)).T
    vol = _vol(np.asfortranarray(data))
    out = spatial.crop_pad(vol, (20, 30, 16))
    assert out.shape == (20, 30, 16)
    # a voxel that survives keeps its world position and value
    world = vol.affine @ [14, 12, 10, 1]
    j = np.rint(np.linalg.inv(out.affine) @ world).astype(int)[:3]
    assert out.data[tuple(j)] == vol.data[14, 12, 10]
    body = spatial.crop_to_body(vol, threshold=-500, margin=1)
    assert all(b < a for b, a in zip(body.shape, vol.shape, strict=True))
    assert np.isclose(body.data.max(), vol.data.max())


def test_window_clip_zscore_percentile() -> None:
    vol = _vol(np.linspace(-1000, 1000, 8000, dtype=np.float32).reshape(20, 20, 20))
    w = intensity.window(vol, 40, 400)
    assert w.data.min() == 0.0 and w.data.max() == 1.0
    assert np.isclose(
        w.data[vol.data == vol.data.flat[np.argmin(np.abs(vol.data - 40))]].item(), 0.5, atol=0.01
    )
    c = intensity.clip(vol, -100, 100)
    assert c.data.min() == -100 and c.data.max() == 100
    z = intensity.zscore(vol)
    assert abs(z.data.mean()) < 1e-4 and abs(z.data.std() - 1) < 1e-4
    zb = intensity.zscore(vol, mask="body", threshold=0)
    assert abs(zb.data[vol.data > 0].mean()) < 1e-3
    p = intensity.percentile_scale(vol, low=1, high=99)
    assert p.data.min() == 0 and p.data.max() == 1
    with pytest.raises(InputError):
        intensity.zscore(_vol(np.ones((3, 3, 3), np.float32)))


def test_histogram_match_brings_distributions_together() -> None:
    ref_data = body_phantom((24, 24, 24)).T
    ref = _vol(np.asfortranarray(ref_data))
    moving = _vol(np.asfortranarray(ref_data * 0.5 + 300))
    out = intensity.histogram_match(moving, ref)
    before = abs(np.median(moving.data) - np.median(ref.data))
    after = abs(np.median(out.data) - np.median(ref.data))
    assert after < before / 5


def test_n4_removes_a_smooth_bias_field() -> None:
    data = body_phantom((32, 32, 32)).T + 1100.0  # MR-like: positive, dark background
    x = np.linspace(-1, 1, 32)
    bias = np.exp(0.3 * x)[:, None, None] * np.ones((32, 32, 32))
    vol = _vol(np.asfortranarray((data * bias).astype(np.float32)))
    out = intensity.n4_bias_correction(vol, shrink=2, iterations=(30, 30))
    body = data > 1000
    inner = body & (np.abs(data - data[body].mean()) < 50)  # the uniform tissue class

    def spread(a: np.ndarray) -> float:
        v = a[inner]
        return float(v.std() / v.mean())

    assert spread(out.data) < 0.6 * spread(vol.data)


@pytest.mark.parametrize("name", ["curvature_flow", "anisotropic", "nlm"])
def test_denoisers_reduce_noise(name: str) -> None:
    clean = body_phantom((24, 24, 24)).T
    noisy = clean + np.random.default_rng(3).normal(0, 60, clean.shape).astype(np.float32)
    vol = _vol(np.asfortranarray(noisy))
    fn = {
        "curvature_flow": intensity.denoise_curvature_flow,
        "anisotropic": intensity.denoise_anisotropic,
        "nlm": intensity.denoise_nlm,
    }[name]
    out = fn(vol)
    assert np.abs(out.data - clean).mean() < 0.8 * np.abs(noisy - clean).mean()


def _pair(n: int = 48, rotation=(4.0, -3.0, 5.0), translation=(4.0, -3.0, 2.5)):
    data = body_phantom((n, n, n))
    fixed = _vol(np.asfortranarray(data.T), spacing=(2.0, 2.0, 2.0))
    f_img = spatial.to_sitk(fixed)
    truth = sitk.Euler3DTransform()
    truth.SetCenter(f_img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in f_img.GetSize()]))
    truth.SetRotation(*(math.radians(a) for a in rotation))
    truth.SetTranslation(translation)
    moving = spatial.from_sitk(sitk.Resample(f_img, f_img, truth, sitk.sitkLinear, -1000.0))
    idx = np.stack(np.meshgrid(*[np.linspace(n * 0.2, n * 0.8, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    points = np.array([f_img.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in idx])
    # registration maps fixed points into the moving image: the inverse of how moving was made
    return fixed, moving, truth.GetInverse(), points


@pytest.mark.parametrize(
    ("metric", "method", "tolerance"),
    [("mattes", "auto", 0.5), ("meansquares", "simpleitk", 0.5), ("meansquares", "auto", 0.1)],
    ids=["simpleitk-mattes", "simpleitk-meansquares", "gauss-newton"],
)
def test_rigid_registration_recovers_a_known_transform(metric: str, method: str, tolerance: float) -> None:
    fixed, moving, expected, points = _pair()
    result = register(fixed, moving, kind="rigid", metric=metric, method=method, body_threshold=-500)  # type: ignore[arg-type]
    err_mm, err_deg = rigid_error(result.transform, expected, points)
    assert err_mm < tolerance and err_deg < tolerance, (err_mm, err_deg)
    assert ("Gauss-Newton" in result.stop) == (method == "auto" and metric == "meansquares")
    before = dice(fixed.data > -500, moving.data > -500)
    assert result.dice is not None and result.dice > 0.98 > before
    # the saved transform, read back, maps label maps the same way
    t = transform_from_text(result.transform_text)
    labels = Volume(np.asfortranarray((moving.data > -500).astype(np.uint8)), moving.affine)
    moved_labels = apply_transform(labels, t, fixed, interpolator="nearest")
    assert moved_labels.data.dtype == np.uint8
    assert dice(moved_labels.data > 0, fixed.data > -500) > 0.98
    q = result.quality()
    assert q["metric"] == metric and q["dice_body"] == result.dice and q["iterations"] > 0


def test_affine_and_bspline_registration_improve_overlap() -> None:
    fixed, moving, expected, points = _pair(40, rotation=(2.0, 0.0, -3.0), translation=(3.0, 2.0, -2.0))
    aff = register(fixed, moving, kind="affine", metric="meansquares", body_threshold=-500)
    err_mm, _ = rigid_error(aff.transform, expected, points)
    assert err_mm < 1.5  # 12 parameters: looser than rigid, still under a voxel (2 mm)
    # B-spline on top of the affine: a deformable refinement that must not make things worse
    bs = register(
        fixed,
        moving,
        kind="bspline",
        metric="meansquares",
        initial=aff.transform,
        shrink=(2, 1),
        smoothing=(1.0, 0.0),
        sampling=0.1,
        iterations=10,
        body_threshold=-500,
    )
    before = dice(fixed.data > -500, moving.data > -500)
    assert bs.dice is not None and bs.dice > 0.98 > before
    text = bs.transform_text
    assert "BSplineTransform" in text


def test_make_step_validates_parameters() -> None:
    s = make_step({"op": "resample", "spacing": [1, 1, 2]})
    assert s.params() == {"spacing": [1.0, 1.0, 2.0], "interpolator": "linear", "fill": None}
    assert s.describe()["op"] == "resample"
    with pytest.raises(ConfigError, match="unknown step"):
        make_step({"op": "sharpen"})
    with pytest.raises(ConfigError, match="no parameter"):
        make_step({"op": "window", "centre": 40})
    with pytest.raises(ConfigError, match="number"):
        make_step({"op": "window", "level": "forty"})
    assert {"reorient", "resample", "register", "n4", "zscore", "denoise_nlm", "crop_body"} <= set(STEPS)


def test_nifti_of_a_float_result_is_readable() -> None:
    out = intensity.zscore(_vol(body_phantom((8, 9, 10)).T.copy(order="F")))
    img = out.to_nifti()
    assert img.get_data_dtype() == np.float32
    assert np.allclose(nib.Nifti1Image.from_bytes(img.to_bytes()).get_fdata(), out.data)


def test_deshear_removes_the_shear_for_each_time_point() -> None:
    aff = np.eye(4)
    aff[1, 2] = 0.5  # each slice shifted half a row further along y
    vol = Volume(np.asfortranarray(np.random.default_rng(5).random((6, 7, 5, 3), dtype=np.float32)), aff)
    out = spatial.deshear(vol)
    assert out.shape == (6, 9, 5, 3) and out.affine[1, 2] == 0.0
    single = spatial.deshear(Volume(np.asfortranarray(vol.data[..., 2]), aff))
    assert np.allclose(out.data[..., 2], single.data)
    # an integer shift (slice 2 moves one whole row) copies voxels exactly
    assert np.allclose(single.data[:, 1:8, 2], vol.data[:, :, 2, 2])
