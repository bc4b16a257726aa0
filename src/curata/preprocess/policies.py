"""How conversion treats uneven slice spacing and gantry tilt: the allowed values and the defaults,
spelled once (the CLI, pipeline TOML, tasks and ``dicom_stack`` read these). No heavy imports here:
the command line reads it at start-up."""

from __future__ import annotations

UNEVEN_POLICIES: tuple[str, ...] = ("refuse", "split", "interpolate")
TILT_POLICIES: tuple[str, ...] = ("shear", "resample")
DEFAULT_UNEVEN = "refuse"  # missing slices / variable spacing: refuse the series, with the reason
DEFAULT_TILT = "shear"  # gantry tilt: keep the exact sheared affine
