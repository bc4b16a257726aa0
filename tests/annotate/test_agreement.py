"""Agreement metrics against the references: DeepMind's surface-distance (surfel convention) and MONAI
(voxel convention), on random anisotropic shapes, a missed lesion (the far-point path) and edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from curata.annotate._agreement import (
    cohens_kappa,
    detection,
    dice,
    fleiss_kappa,
    label_agreement,
    surface_distances,
)

sdl = pytest.importorskip("surface_distance")
torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")

TOL_MM = 1e-6


def _blob(shape: tuple[int, int, int], seed: int, amp: float = 8.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    z, y, x = np.indices(shape)
    s = ((z - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((y - shape[1] / 2) / (shape[1] / 3)) ** 2
    s = s + ((x - shape[2] / 2) / (shape[2] / 3.5)) ** 2
    return (s + f * amp) < 1


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(24, 48, size=3))
    spacing = tuple(float(v) for v in rng.uniform(0.4, 3.0, size=3))
    a, b = _blob(shape, seed), _blob(shape, seed + 100)
    # a lesion only reader a drew, far from everything b drew: exercises the far-point search
    a[1:4, 1:4, 1:4] = True
    return a, b, spacing  # type: ignore[return-value]


def _t(m: np.ndarray):  # type: ignore[no-untyped-def]
    return torch.from_numpy(m[None, None].astype(np.float32))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_surfel_convention_matches_surface_distance(seed: int) -> None:
    a, b, spacing = _pair(seed)
    ref = sdl.compute_surface_distances(a, b, spacing)
    ours = surface_distances(a, b, spacing, "surfel")
    assert ours.a_to_b.size == ref["distances_gt_to_pred"].size > 0
    np.testing.assert_allclose(ours.a_to_b, ref["distances_gt_to_pred"], atol=TOL_MM, rtol=0)
    np.testing.assert_allclose(ours.b_to_a, ref["distances_pred_to_gt"], atol=TOL_MM, rtol=0)
    # the same surface elements (order among equal distances may differ by rounding)
    np.testing.assert_allclose(np.sort(ours.weight_a), np.sort(ref["surfel_areas_gt"]), atol=1e-9)
    assert abs(ours.hd(95) - sdl.compute_robust_hausdorff(ref, 95)) <= TOL_MM
    assert abs(ours.hd(100) - sdl.compute_robust_hausdorff(ref, 100)) <= TOL_MM
    for mine, theirs in zip(ours.directed_means(), sdl.compute_average_surface_distance(ref), strict=True):
        assert abs(mine - theirs) <= TOL_MM
    for tol in (0.5, 1.0, 2.0, 4.0):
        assert abs(ours.surface_dice(tol) - sdl.compute_surface_dice_at_tolerance(ref, tol)) <= 1e-9
    assert ours.hd(100) > 5 * min(spacing)  # the far lesion is really far


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_voxel_convention_matches_monai(seed: int) -> None:
    a, b, spacing = _pair(seed)
    ours = surface_distances(a, b, spacing, "voxel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = monai_metrics.compute_hausdorff_distance(_t(b), _t(a), percentile=95, spacing=spacing).item()
        hd = monai_metrics.compute_hausdorff_distance(_t(b), _t(a), spacing=spacing).item()
        assd = monai_metrics.compute_average_surface_distance(_t(b), _t(a), symmetric=True, spacing=spacing)
        two = lambda m: torch.cat([1 - _t(m), _t(m)], 1)  # noqa: E731
        sdice = monai_metrics.compute_surface_dice(two(b), two(a), [2.0], spacing=spacing).item()
    # MONAI holds distances in float32 (and interpolates its percentile in float32): its own rounding
    # is allowed on top of 1e-6 mm, relative to the largest distance involved
    f32 = TOL_MM + 4 * float(np.finfo(np.float32).eps) * max(ours.hd(100), 1.0)
    assert abs(ours.hd(95) - hd95) <= f32
    assert abs(ours.hd(100) - hd) <= f32
    assert abs(ours.assd() - assd.item()) <= f32
    assert abs(ours.surface_dice(2.0) - sdice) <= 1e-6
    # and the per-point distances are MONAI's own, to float32 rounding; our percentile of MONAI's
    # distances (widened to float64) is our HD95 to 1e-6 mm
    from monai.metrics.utils import get_edge_surface_distance

    _, (d_ba, d_ab), _ = get_edge_surface_distance(
        torch.from_numpy(b), torch.from_numpy(a), spacing=spacing, symmetric=True
    )
    d_ab, d_ba = np.sort(d_ab.numpy().astype(np.float64)), np.sort(d_ba.numpy().astype(np.float64))
    np.testing.assert_allclose(ours.a_to_b, d_ab, rtol=2 * float(np.finfo(np.float32).eps), atol=TOL_MM)
    np.testing.assert_allclose(ours.b_to_a, d_ba, rtol=2 * float(np.finfo(np.float32).eps), atol=TOL_MM)
    theirs = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert abs(ours.hd(95) - theirs) <= TOL_MM


def test_identical_and_empty_masks() -> None:
    a, _, spacing = _pair(9)
    same = label_agreement(a, a.copy(), spacing)
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0 and same["assd_mm"] == 0.0
    assert same["surface_dice"] == 1.0 and same["detection_f1"] == 1.0
    empty = np.zeros_like(a)
    none = label_agreement(empty, empty, spacing)
    assert none["dice"] == 1.0 and none["hd95_mm"] == 0.0 and none["lesions_a"] == 0
    one_sided = label_agreement(a, empty, spacing)
    assert one_sided["dice"] == 0.0 and one_sided["hd95_mm"] is None and one_sided["detection_f1"] == 0.0


def test_shifted_cube_distances_are_exact() -> None:
    a = np.zeros((20, 20, 20), bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 2, axis=0)  # shifted by two slices of 2.5 mm
    sd = surface_distances(a, b, (2.5, 1.0, 1.0), "voxel")
    assert sd.hd(100) == pytest.approx(5.0)
    assert dice(a, b) == pytest.approx(0.8)


def test_detection_counts_a_missed_and_a_split_lesion() -> None:
    a = np.zeros((30, 30, 30), bool)
    b = np.zeros_like(a)
    a[2:6, 2:6, 2:6] = b[2:6, 2:7, 2:6] = True  # matched
    a[20:25, 20:25, 20:25] = True  # missed by b
    b[10:13, 20:23, 2:5] = True  # only in b
    det = detection(a, b)
    assert (det.lesions_a, det.lesions_b, det.matched) == (2, 2, 1)
    assert det.f1 == pytest.approx(0.5)
    assert label_agreement(a, b, (1.0, 1.0, 1.0))["lesions_matched"] == 1


def test_kappas_match_textbook_values() -> None:
    # Cohen: 2x2 table [[20, 5], [10, 15]] -> po 0.7, pe 0.5, kappa 0.4
    x = ["y"] * 25 + ["n"] * 25
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohens_kappa(x, y) == pytest.approx(0.4)
    # Fleiss (1971) worked example from Wikipedia: 10 items, 14 raters, 5 categories -> 0.210
    counts = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    ratings = [[c for c, n in enumerate(row) for _ in range(n)] for row in counts]
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 2], [1]])
