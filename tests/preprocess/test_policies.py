"""The conversion policies are spelled once: the light module the CLI reads matches the converter's types."""

from __future__ import annotations

from typing import get_args

from curata.preprocess import policies
from curata.preprocess.dicom_stack import TiltPolicy, UnevenPolicy


def test_the_policies_match_the_converter() -> None:
    assert get_args(UnevenPolicy) == policies.UNEVEN_POLICIES
    assert get_args(TiltPolicy) == policies.TILT_POLICIES
    assert policies.DEFAULT_UNEVEN in policies.UNEVEN_POLICIES
    assert policies.DEFAULT_TILT in policies.TILT_POLICIES
