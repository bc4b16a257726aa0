"""Image metrics on the validation corpus: every defect class caught at the severity nearest its
threshold, clean series never excluded, and the noise estimators close to the planted noise.
(The full corpus, every severity at 512x512, runs in bench/qc.py --validate.)"""

from __future__ import annotations

import pytest

from curata.select.metrics.ct_mr import images_of, measure
from curata.select.phantoms import DEFECTS, VARIABLE_SPACING, Spec, build, clean_specs, make_series
from curata.select.rules import apply, default_ruleset

ROWS, SLICES = 96, 12


def _verdict(series: list) -> tuple[bool, set[str], dict]:  # type: ignore[type-arg]
    metrics, _thumb = measure(images_of(series))
    record = {"modality": metrics["modality"], **{f"qc.{k}": v for k, v in metrics.items()}}
    passed, _, firings = apply(default_ruleset(), record)
    return passed, {f.rule for f in firings}, metrics


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.name for d in DEFECTS])
def test_each_defect_class_is_caught_at_its_mildest_severity(defect) -> None:  # type: ignore[no-untyped-def]
    mildest = min(defect.severities, key=abs) if defect.name != "mr_low_snr" else max(defect.severities)
    _, fired, metrics = _verdict(make_series(defect, mildest, rows=ROWS, slices=SLICES, seed=3))
    assert set(defect.rules) <= fired, (defect.name, fired, metrics)


def test_clean_series_are_never_excluded() -> None:
    for spec in clean_specs(rows=ROWS, slices=SLICES, count=6, seed=11):
        passed, fired, metrics = _verdict(build(spec))
        assert passed and not fired, (spec, fired, metrics)


def test_variable_spacing_warns_but_reports_no_missing_slice() -> None:
    passed, fired, metrics = _verdict(make_series(VARIABLE_SPACING, 2.0, rows=ROWS, slices=SLICES))
    assert passed and fired == {"variable_spacing"} and metrics["missing_slices"] == 0


def test_mild_noise_below_the_threshold_is_not_excluded() -> None:
    defect = next(d for d in DEFECTS if d.name == "ct_noise")
    passed, fired, metrics = _verdict(make_series(defect, 25.0, rows=ROWS, slices=SLICES))
    assert passed and "ct_noise" not in fired and 23 < metrics["noise_hu"] < 27


@pytest.mark.parametrize("sigma", [8.0, 20.0, 45.0])
def test_ct_noise_estimates_are_within_5_percent(sigma: float) -> None:
    m, _ = measure(images_of(build(Spec("CT", 256, 10, noise=sigma, seed=5))))
    assert m["noise_hu"] == pytest.approx(sigma, rel=0.05)
    assert m["noise_air_hu"] == pytest.approx(sigma, rel=0.05)
    assert m["hu_air_offset"] == pytest.approx(0, abs=3)
    assert m["soft_tissue_hu"] == pytest.approx(40, abs=3)


@pytest.mark.parametrize("sigma", [10.0, 30.0])
def test_mr_rician_background_noise_is_within_5_percent(sigma: float) -> None:
    m, thumb = measure(images_of(build(Spec("MR", 256, 10, noise=sigma, seed=7))))
    assert m["noise_background"] == pytest.approx(sigma, rel=0.05)
    assert m["ghost_ratio"] < 0.01
    assert thumb is not None and thumb.startswith(b"\x89PNG")


def test_the_hu_offset_moves_the_air_peak() -> None:
    m, _ = measure(images_of(build(Spec("CT", 96, 8, hu_offset=80.0))))
    assert m["hu_air_offset"] == pytest.approx(80, abs=3)


def test_enhanced_multiframe_frames_are_slices() -> None:
    """An enhanced CT: frames placed by their functional groups; a missing frame is a missing slice."""
    import numpy as np
    import pydicom
    from pydicom.sequence import Sequence as Seq

    series = build(Spec("CT", 96, 10, seed=2))
    del series[5]  # a gap
    first = series[0]
    ds = pydicom.Dataset()
    ds.file_meta = first.file_meta
    for kw in (
        "SOPClassUID",
        "SOPInstanceUID",
        "Modality",
        "SeriesDescription",
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        setattr(ds, kw, getattr(first, kw))
    ds.NumberOfFrames = len(series)
    ds.PixelData = b"".join(s.PixelData for s in series)

    def item(**kw: object) -> pydicom.Dataset:
        d = pydicom.Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    shared = item(
        PlaneOrientationSequence=Seq([item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
        PixelMeasuresSequence=Seq([item(PixelSpacing=[0.75, 0.75], SliceThickness=2.5)]),
        PixelValueTransformationSequence=Seq([item(RescaleSlope=1, RescaleIntercept=-1024)]),
    )
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    ds.PerFrameFunctionalGroupsSequence = Seq(
        [item(PlanePositionSequence=Seq([item(ImagePositionPatient=s.ImagePositionPatient)])) for s in series]
    )
    images = images_of([ds])
    assert len(images.pixels) == 9 and all(p.shape == (96, 96) for p in images.pixels)
    m, _ = measure(images)
    assert m["missing_slices"] == 1 and m["header_complete"] and m["slice_count"] == 9
    assert m["noise_hu"] == pytest.approx(12.0, rel=0.1) and np.isclose(m["hu_air_offset"], 0, atol=3)


def test_streaming_read_keeps_only_the_analysed_slices(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from curata.select.metrics.ct_mr import analysis_ranks, read_images
    from curata.select.phantoms import save

    folder = save(
        make_series(next(d for d in DEFECTS if d.name == "metal_streaks"), 600, rows=96, slices=40), tmp_path
    )
    paths = sorted(folder.iterdir())
    keep = set(analysis_ranks(len(paths)))
    streamed = read_images(paths, keep=keep)
    whole = read_images(paths)
    kept = {i for i, p in enumerate(streamed.pixels) if p is not None}
    assert keep <= kept and 0 < len(kept - keep) <= 3  # plus up to 3 slices with metal
    assert streamed.maxs == whole.maxs and len(streamed.headers) == 40
    a, _ = measure(streamed)
    b, _ = measure(whole)
    assert a["metal_slices"] == b["metal_slices"] == 4
    assert a["metal_streak_fraction"] > 0.01 and a["noise_hu"] == pytest.approx(b["noise_hu"], rel=0.1)


def test_mr_slice_past_the_anatomy_has_no_body_touching_the_edge() -> None:
    """Noise alone (a slice above the head) must not read as a body truncated by the field of view."""
    import numpy as np

    from curata.select.metrics import ct_mr

    rng = np.random.default_rng(3)
    sigma = 20.0
    noise = np.hypot(rng.normal(0, sigma, (96, 96)), rng.normal(0, sigma, (96, 96))).astype(np.float32)
    s = ct_mr._mr_slice(noise, np.zeros_like(noise, dtype=bool))
    assert s["contact"] == 0.0 and not s["body"].any()
    head = noise.copy()
    yy, xx = np.mgrid[:96, :96]
    head[((yy - 48) / 30) ** 2 + ((xx - 48) / 24) ** 2 <= 1] += 600
    s = ct_mr._mr_slice(head, np.zeros_like(head, dtype=bool))
    assert s["body"].sum() > 0.15 * head.size and s["contact"] == 0.0


def test_mr_ghost_bands_ignore_anatomy_outside_the_largest_object() -> None:
    """Found on the full demo: a sagittal head with the neck as a second object read as a 25% ghost."""
    import numpy as np

    from curata.select.metrics import ct_mr

    rng = np.random.default_rng(5)
    sigma, n = 15.0, 192
    img = np.hypot(rng.normal(0, sigma, (n, n)), rng.normal(0, sigma, (n, n))).astype(np.float32)
    yy, xx = np.mgrid[:n, :n]
    img[((yy - 70) / 50) ** 2 + ((xx - 96) / 45) ** 2 <= 1] += 800  # head
    img[(yy > 135) & (np.abs(xx - 96) < 20)] += 700  # neck, a separate object down to the edge

    def ratio(a: np.ndarray) -> float:
        s = ct_mr._mr_slice(a, np.zeros_like(a, dtype=bool))
        tb, lr = s["ghost"]
        return abs(tb - lr) / float(s["body_values"].mean())

    assert ratio(img) < 0.02
    ghosted = img.copy()
    head = ((yy - 70) / 50) ** 2 + ((xx - 96) / 45) ** 2 <= 1
    ghosted[np.roll(head, 60, axis=1) & ~head] += 250  # a replica along the phase direction, below tissue
    assert ratio(ghosted) > 0.05


def _sagittal_head(rng, n: int = 128, sigma: float = 15.0, ghost: float = 0.0):  # type: ignore[no-untyped-def]
    """A sagittal head as the full demo draws it: brain, a thin scalp ring beyond a dark skull, and
    the neck (with the brainstem joining it to the brain) running on out of the bottom of the image."""
    import numpy as np

    yy, xx = np.mgrid[:n, :n]
    r = np.hypot((yy - 52) / 36, (xx - 64) / 32)
    clean = np.zeros((n, n))
    clean[r <= 1.0] = 1400  # brain
    clean[(r > 1.0) & (r <= 1.1)] = 80  # skull
    clean[(r > 1.1) & (r <= 1.16)] = 1200  # scalp: a ring two pixels thin
    clean[(yy > 80) & (np.abs(xx - 64) < 14)] = 1000  # brainstem and neck, down to the edge
    if ghost:
        clean = clean + ghost * np.roll(clean, n // 4, axis=0)  # phase-encode replica, wrapped
    return np.hypot(clean + rng.normal(0, sigma, (n, n)), rng.normal(0, sigma, (n, n)))


@pytest.mark.parametrize("ghost", [0.0, 0.3])
def test_sagittal_head_through_the_fov_edge_is_not_truncated_or_ghosted(ghost: float) -> None:
    """Found on the full demo: clean sagittal T1 heads excluded for ghosting (the scalp ring, thinner
    than the opening that found tissue objects, and the neck counted as background) and for FOV
    truncation (the neck leaving the bottom of the image, the way every body leaves an axial series at
    its first slice). Real ghosts must still be caught, and the same picture read as an axial slice is
    a body cut by the field of view."""
    import numpy as np

    rng = np.random.default_rng(4)
    sag = Spec("MR", 128, 12, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), description="SAG T1", seed=2)
    passed, fired, metrics = _verdict(build(sag, edit=lambda i, img, pos: _sagittal_head(rng, ghost=ghost)))
    assert "fov_truncation" not in fired, metrics
    if ghost:
        assert "mr_ghosting" in fired, metrics
    else:
        assert passed and not fired, (fired, metrics)
        assert metrics["ghost_ratio"] < 0.01
    axial = Spec("MR", 128, 12, seed=2)
    _, fired, metrics = _verdict(build(axial, edit=lambda i, img, pos: _sagittal_head(rng)))
    assert "fov_truncation" in fired, metrics
