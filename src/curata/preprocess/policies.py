"""How conversion treats uneven slice spacing, gantry tilt and Philips scaling: the allowed values and
the defaults, spelled once. Every signature that takes a policy (``dicom_stack.assemble_stack``,
``convert.convert_folder`` / ``convert_series`` / ``convert_selection`` / ``stacks_to_volumes``), the CLI
options, the pipeline TOML and its tasks read them from here. No heavy imports: the command line reads
this module at start-up."""

from __future__ import annotations

from typing import Final, Literal, get_args

UnevenPolicy = Literal["refuse", "split", "interpolate"]
TiltPolicy = Literal["shear", "resample"]
PhilipsScaling = Literal["precise", "display"]

UNEVEN_POLICIES: tuple[str, ...] = get_args(UnevenPolicy)
TILT_POLICIES: tuple[str, ...] = get_args(TiltPolicy)
PHILIPS_SCALINGS: tuple[str, ...] = get_args(PhilipsScaling)

DEFAULT_UNEVEN: Final[UnevenPolicy] = "refuse"  # missing slices / variable spacing: refuse, with the reason
DEFAULT_TILT: Final[TiltPolicy] = "shear"  # gantry tilt: keep the exact sheared affine
DEFAULT_PHILIPS: Final[PhilipsScaling] = "precise"  # Philips private scale slope applied, as dcm2niix
