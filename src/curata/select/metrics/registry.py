"""Every QC metric with its type, unit and definition: the single list the query language, the rules,
``curata qc explain`` and the report read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "num", "bool" or "str"
    unit: str
    definition: str
    modalities: tuple[str, ...] = ("CT", "MR")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("slice_count", "num", "images", "images in the series"),
        Metric("modality", "str", "", "the series' modality as measured"),
        Metric(
            "header_complete",
            "bool",
            "",
            "PixelSpacing, ImageOrientationPatient, ImagePositionPatient, Rows/Columns present on every image and sane (spacing in (0, 10] mm, orthonormal direction cosines)",
        ),
        Metric(
            "missing_slices",
            "num",
            "slices",
            "slices missing from isolated gaps: a short run of steps close to k times the neighbouring steps counts k-1 (positions projected on the slice normal)",
        ),
        Metric("gap_count", "num", "gaps", "isolated gaps in the slice positions"),
        Metric(
            "irregular_steps",
            "num",
            "steps",
            "steps between sorted positions that are neither part of a run of constant step nor a whole-number gap",
        ),
        Metric(
            "spacing_deviation",
            "num",
            "fraction",
            "largest relative deviation of a step from its run's (or neighbouring run's) step",
        ),
        Metric(
            "variable_spacing",
            "bool",
            "",
            "two or more runs (3+ steps each) of different constant steps: variable spacing by protocol, not missing slices",
        ),
        Metric("spacing_levels", "num", "", "distinct constant steps among the long runs"),
        Metric("slice_step_mm", "num", "mm", "median step between sorted slice positions along the normal"),
        Metric(
            "duplicate_positions", "num", "images", "images sharing a position (within 0.01 mm) with another"
        ),
        Metric(
            "mixed_orientation", "bool", "", "slice normals differ by more than 0.5 degrees inside the series"
        ),
        Metric(
            "orientation_spread_deg",
            "num",
            "deg",
            "largest angle between the first image's normal and another image's",
        ),
        Metric("mixed_size", "bool", "", "more than one Rows x Columns inside the series"),
        Metric(
            "mixed_pixel_spacing",
            "bool",
            "",
            "more than one PixelSpacing (beyond 0.001 mm) inside the series",
        ),
        Metric(
            "is_localizer",
            "bool",
            "",
            "a localizer/scout series: every image of type LOCALIZER, a scout word in the description, or up to 3 images of mixed orientation",
        ),
        Metric(
            "localizer_images",
            "num",
            "images",
            "images of type LOCALIZER mixed into the series (left out of every other metric)",
        ),
        Metric("plane", "str", "", "AXIAL, CORONAL or SAGITTAL: the patient axis nearest the slice normal"),
        Metric("obliquity_deg", "num", "deg", "angle between the slice normal and the nearest patient axis"),
        Metric(
            "shear_deg",
            "num",
            "deg",
            "gantry tilt / shear: angle between the slice normal and the line through the first and last positions",
        ),
        Metric("gantry_tilt_deg", "num", "deg", "largest |GantryDetectorTilt| in the headers"),
        Metric(
            "lossy_compression",
            "bool",
            "",
            "LossyImageCompression = 01 or a lossy transfer syntax on any image",
        ),
        Metric("lossy_ratio", "num", "x", "largest LossyImageCompressionRatio recorded"),
        Metric(
            "fov_truncation",
            "num",
            "fraction",
            "largest share (over analysed slices) of the body outline lying on the image edge or the edge of the reconstructed field",
        ),
        Metric(
            "clip_high_fraction",
            "num",
            "fraction",
            "body pixels at the series' maximum stored value (saturation); for CT not counted when the maximum is metal",
        ),
        Metric(
            "clip_low_fraction",
            "num",
            "fraction",
            "body pixels at the series' minimum stored value (clipping)",
        ),
        Metric(
            "noise_hu",
            "num",
            "HU",
            "CT noise in homogeneous soft tissue: SD of right-neighbour differences / sqrt(2) inside the body where the 5x5 mean is in (-30, 150) HU, pairs beyond 3.5 sigma (edges) dropped and the truncation corrected",
            ("CT",),
        ),
        Metric(
            "noise_air_hu",
            "num",
            "HU",
            "CT noise in the air around the body (away from the reconstruction-field padding), same estimator",
            ("CT",),
        ),
        Metric(
            "air_hu", "num", "HU", "median CT number of the air around the body (calibration: -1000)", ("CT",)
        ),
        Metric("hu_air_offset", "num", "HU", "air_hu + 1000: the calibration error of the air peak", ("CT",)),
        Metric(
            "soft_tissue_hu",
            "num",
            "HU",
            "median CT number of homogeneous soft tissue (water-like peak)",
            ("CT",),
        ),
        Metric("fat_hu", "num", "HU", "median CT number of homogeneous fat, where present", ("CT",)),
        Metric(
            "snr",
            "num",
            "",
            "CT: (soft_tissue_hu + 1000) / noise_hu; MR: mean body signal / background noise sigma",
        ),
        Metric(
            "cnr",
            "num",
            "",
            "CT: |soft tissue - fat| / noise_hu; MR: difference of the bright and dark tissue classes (Otsu) / noise sigma",
        ),
        Metric("metal_slices", "num", "slices", "slices with any pixel at or above 2500 HU", ("CT",)),
        Metric(
            "metal_streak_fraction",
            "num",
            "fraction",
            "share of soft-tissue pixels in metal slices deviating > 120 HU from their 5x5 mean, minus the same share in metal-free slices",
            ("CT",),
        ),
        Metric(
            "noise_background",
            "num",
            "signal",
            "MR noise sigma from the Rayleigh-distributed air background: median / sqrt(2 ln 2)",
            ("MR",),
        ),
        Metric(
            "noise_tissue",
            "num",
            "signal",
            "MR noise sigma inside the body from neighbour differences",
            ("MR",),
        ),
        Metric("signal_mean", "num", "signal", "MR mean body signal", ("MR",)),
        Metric(
            "ghost_ratio",
            "num",
            "fraction",
            "MR ghosting (ACR): |mean(background above+below the body) - mean(left+right)| / mean body signal",
            ("MR",),
        ),
        # whole-slide images (modality SM): see curata.select.metrics.wsi for each heuristic
        Metric(
            "brightfield",
            "bool",
            "",
            "a light background (brightfield); false for fluorescence slides",
            ("SM",),
        ),
        Metric(
            "tissue_fraction",
            "num",
            "fraction",
            "thumbnail pixels that are tissue (saturated, not white, not ink)",
            ("SM",),
        ),
        Metric(
            "focus_median",
            "num",
            "grey^2",
            "median variance of the Laplacian over full-resolution tissue tiles",
            ("SM",),
        ),
        Metric(
            "blur_fraction",
            "num",
            "fraction",
            "tissue tiles whose Laplacian variance is below 40 (out of focus)",
            ("SM",),
        ),
        Metric("focus_tiles", "num", "tiles", "full-resolution tissue tiles measured for focus", ("SM",)),
        Metric(
            "pen_fraction",
            "num",
            "fraction",
            "thumbnail pixels of pen ink (saturated green/blue hues, or near black)",
            ("SM",),
        ),
        Metric(
            "fold_fraction",
            "num",
            "fraction",
            "tissue in connected patches of more than twice the median optical density (folds)",
            ("SM",),
        ),
        Metric(
            "bubble_fraction",
            "num",
            "fraction",
            "round holes in the tissue outline ringed by a darker rim (air bubbles), over tissue",
            ("SM",),
        ),
        Metric(
            "clipped_fraction",
            "num",
            "fraction",
            "pixels with every channel >= 254 or <= 1 (over- or under-exposed)",
            ("SM",),
        ),
        Metric(
            "stain_h",
            "num",
            "OD",
            "mean haematoxylin density of tissue (Ruifrok-Johnston deconvolution)",
            ("SM",),
        ),
        Metric(
            "stain_e", "num", "OD", "mean eosin density of tissue (Ruifrok-Johnston deconvolution)", ("SM",)
        ),
        Metric(
            "colour_saturation", "num", "", "mean colour saturation (max-min)/max of tissue pixels", ("SM",)
        ),
        Metric("tissue_r", "num", "0-255", "mean red of tissue pixels", ("SM",)),
        Metric("tissue_g", "num", "0-255", "mean green of tissue pixels", ("SM",)),
        Metric("tissue_b", "num", "0-255", "mean blue of tissue pixels", ("SM",)),
        Metric(
            "corrupted_tiles",
            "num",
            "tiles",
            "frames empty, not a complete codestream, missing or not decodable",
            ("SM",),
        ),
        Metric(
            "corrupted_tile",
            "str",
            "",
            "the first frame counted in corrupted_tiles: its level, number, column and row, and why",
            ("SM",),
        ),
        Metric("levels", "num", "levels", "pyramid levels of the slide", ("SM",)),
        Metric("slide_width", "num", "px", "width of the full-resolution level", ("SM",)),
        Metric("slide_height", "num", "px", "height of the full-resolution level", ("SM",)),
        Metric("mpp", "num", "um/px", "microns per pixel of the full-resolution level", ("SM",)),
    ]
}


# -- what else a measurement records ---------------------------------------------------------------------
# header_problems (geometry.header_problems) lists which of these checks failed; the strings are the API.
HEADER_PROBLEMS: tuple[str, ...] = (
    "PixelSpacing missing",
    "PixelSpacing not in (0, 10] mm",
    "ImageOrientationPatient missing",
    "ImageOrientationPatient not two orthonormal vectors",
    "ImagePositionPatient missing",
    "Rows/Columns missing",
)
EXTRA_OUTPUTS: dict[str, str] = {"header_problems": "the header checks that failed, from HEADER_PROBLEMS"}

# -- the QC version is part of the registry ------------------------------------------------------------
# Every stored measurement carries "qc/<QC_VERSION>"; a new version measures every series again. Change a
# metric's definition, add or drop one, or change a header check, and definitions_digest() changes:
# tests/select/metrics/test_registry.py then fails until QC_VERSION is bumped and the new digest recorded.
QC_VERSION = 6
VERSION_DIGESTS: dict[int, str] = {
    2: "b475cc9471d125760a457595eca9d96057f54e453c252ba14df00988466697e4",
    # 3: same definitions, new code (MR ghost background keeps anatomy by size; FOV edge toward the feet)
    3: "b475cc9471d125760a457595eca9d96057f54e453c252ba14df00988466697e4",
    4: "5825806084cb22f60d1d444abb345972a0b223aa797cf4e6b7984cb95a71efd3",  # + whole-slide metrics
    # 5: + corrupted_tile; a frame that does not decode counts in corrupted_tiles wherever it is met
    5: "9a40b2c6b4900677329a985d2cee6c95fc26ddd95d561080388c75ac87f92b50",
    # 6: a JPEG 2000 frame is a whole codestream (SOC...EOC): every frame of such a slide counted as corrupt
    6: "7669b32cd4472418694bf62c04069d6be3da3a9bb85ae884360b6415855a134b",
}


def definitions_digest() -> str:
    """A digest of every metric's name, kind, unit, definition and modalities, and the header checks."""
    import hashlib
    import json

    body = {
        "metrics": [[m.name, m.kind, m.unit, m.definition, list(m.modalities)] for m in METRICS.values()],
        "header_problems": list(HEADER_PROBLEMS),
        "extra": sorted(EXTRA_OUTPUTS),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
