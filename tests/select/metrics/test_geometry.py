"""Header-only geometry: gaps vs variable spacing vs irregular steps, duplicates, shear, localizers."""

from __future__ import annotations

import numpy as np
import pytest

from curata.select.metrics.geometry import SliceHeader, geometry_metrics, header_problems, spacing_metrics

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _headers(z: list[float], *, y_shift: float = 0.0, **kw: object) -> list[SliceHeader]:
    return [
        SliceHeader(
            position=(-100.0, -100.0 + i * y_shift, zz),
            orientation=AXIAL,
            rows=512,
            columns=512,
            pixel_spacing=(0.7, 0.7),
            **kw,  # type: ignore[arg-type]
        )
        for i, zz in enumerate(z)
    ]


def test_regular_series_has_no_spacing_findings() -> None:
    m = spacing_metrics(np.arange(50) * 1.25)
    assert m["missing_slices"] == 0 and m["irregular_steps"] == 0 and m["duplicate_positions"] == 0
    assert m["variable_spacing"] is False and m["slice_step_mm"] == pytest.approx(1.25)


@pytest.mark.parametrize(
    ("drop", "missing", "gaps"), [([20], 1, 1), ([20, 21], 2, 1), ([10, 30, 31, 32], 4, 2)]
)
def test_isolated_gaps_count_missing_slices(drop: list[int], missing: int, gaps: int) -> None:
    z = [i * 2.5 for i in range(50) if i not in drop]
    m = spacing_metrics(np.array(z))
    assert (m["missing_slices"], m["gap_count"], m["irregular_steps"]) == (missing, gaps, 0)


def test_variable_spacing_is_not_reported_as_missing_slices() -> None:
    # 30 slices at 1 mm through the region of interest, then 30 at 5 mm: a naive check sees 120 "missing"
    z = list(np.arange(30) * 1.0) + list(29 + np.arange(1, 31) * 5.0)
    m = spacing_metrics(np.array(z))
    assert m["missing_slices"] == 0 and m["irregular_steps"] == 0
    assert m["variable_spacing"] is True and m["spacing_levels"] == 2


def test_gap_inside_a_variable_spacing_series_is_still_found() -> None:
    z = list(np.arange(30) * 1.0) + list(29 + np.arange(1, 31) * 5.0)
    del z[45]
    m = spacing_metrics(np.array(z))
    assert m["missing_slices"] == 1 and m["variable_spacing"] is True


def test_a_moved_slice_is_an_irregular_step_with_its_deviation() -> None:
    z = list(np.arange(40) * 2.0)
    z[20] += 0.5
    m = spacing_metrics(np.array(z))
    assert m["irregular_steps"] == 2 and m["spacing_deviation"] == pytest.approx(0.25)
    assert m["missing_slices"] == 0


def test_duplicates_are_counted() -> None:
    z = [*list(np.arange(20) * 1.0), 5.0, 7.0]
    assert spacing_metrics(np.array(z))["duplicate_positions"] == 2


def test_positions_not_slice_location_order_the_slices() -> None:
    z = list(np.arange(30) * 3.0)
    rng = np.random.default_rng(1)
    rng.shuffle(z)
    assert geometry_metrics(_headers(z))["missing_slices"] == 0


def test_gantry_tilt_is_measured_as_shear() -> None:
    step, tilt = 2.0, 15.0
    m = geometry_metrics(_headers([i * step for i in range(30)], y_shift=step * np.tan(np.radians(tilt))))
    assert m["shear_deg"] == pytest.approx(tilt, abs=0.01)
    assert m["missing_slices"] == 0 and m["irregular_steps"] == 0
    assert geometry_metrics(_headers([i * step for i in range(30)]))["shear_deg"] == pytest.approx(0)


def test_plane_and_obliquity() -> None:
    t = np.radians(20)
    oblique = (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))
    hs = [
        SliceHeader(
            position=(0.0, 0.0, i * 1.0), orientation=oblique, rows=8, columns=8, pixel_spacing=(1.0, 1.0)
        )
        for i in range(5)
    ]
    m = geometry_metrics(hs)
    assert m["plane"] == "AXIAL" and m["obliquity_deg"] == pytest.approx(20, abs=0.01)
    coronal = [
        SliceHeader(
            position=(0.0, i * 1.0, 0.0),
            orientation=(1, 0, 0, 0, 0, -1),
            rows=8,
            columns=8,
            pixel_spacing=(1.0, 1.0),
        )
        for i in range(5)
    ]
    assert geometry_metrics(coronal)["plane"] == "CORONAL"


def test_localizer_by_type_by_name_and_by_three_planes() -> None:
    assert geometry_metrics(_headers([0.0], image_type="ORIGINAL\\PRIMARY\\LOCALIZER"))["is_localizer"]
    assert geometry_metrics(_headers([0.0, 1.0]), description="Topogram 0.6 T20f")["is_localizer"]
    tri = _headers([0.0, 0.0, 0.0])
    tri[1].orientation = (1, 0, 0, 0, 0, -1)
    tri[2].orientation = (0, 1, 0, 0, 0, -1)
    assert geometry_metrics(tri)["is_localizer"]
    assert not geometry_metrics(_headers([float(i) for i in range(40)]))["is_localizer"]


def test_mixed_orientation_size_and_spacing() -> None:
    hs = _headers([float(i) for i in range(20)])
    assert not any(
        geometry_metrics(hs)[k] for k in ("mixed_orientation", "mixed_size", "mixed_pixel_spacing")
    )
    hs[3].orientation = (1.0, 0.0, 0.0, 0.0, 0.9998, 0.0175)  # 1 degree
    hs[4].rows = 256
    hs[5].pixel_spacing = (0.8, 0.8)
    m = geometry_metrics(hs)
    assert m["mixed_orientation"] and m["mixed_size"] and m["mixed_pixel_spacing"]
    assert m["orientation_spread_deg"] == pytest.approx(1.0, abs=0.05)


def test_header_problems_name_what_is_missing() -> None:
    hs = _headers([0.0, 1.0, 2.0])
    assert header_problems(hs) == []
    hs[1].position = None
    hs[2].pixel_spacing = None
    assert header_problems(hs) == ["PixelSpacing missing", "ImagePositionPatient missing"]
    bad = _headers([0.0, 1.0])
    bad[0].orientation = (1, 0, 0, 1, 0, 0)
    assert "not two orthonormal vectors" in " ".join(header_problems(bad))
    m = geometry_metrics(hs)
    assert m["header_complete"] is False and m["missing_slices"] is None


def test_lossy_history_from_flag_or_transfer_syntax() -> None:
    assert not geometry_metrics(_headers([0.0, 1.0]))["lossy_compression"]
    assert geometry_metrics(_headers([0.0, 1.0], lossy=True, lossy_ratio=12.0))["lossy_ratio"] == 12.0
    assert geometry_metrics(_headers([0.0, 1.0], transfer_syntax="1.2.840.10008.1.2.4.50"))[
        "lossy_compression"
    ]
