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


def test_the_defaults_are_spelled_once() -> None:
    """No signature, CLI option or pipeline spells a policy default as a string of its own."""
    import inspect
    import re

    from curata.preprocess import convert, dicom_stack

    assert policies.DEFAULT_PHILIPS in policies.PHILIPS_SCALINGS
    for fn in (
        dicom_stack.assemble_stack,
        convert.convert_folder,
        convert.convert_series,
        convert.convert_selection,
    ):
        params = inspect.signature(fn).parameters
        assert params["uneven"].default is policies.DEFAULT_UNEVEN, fn.__name__
        assert params["tilt"].default is policies.DEFAULT_TILT, fn.__name__
        assert params["philips"].default is policies.DEFAULT_PHILIPS, fn.__name__
    spelled = re.compile(r'[^=!<>]= "(refuse|split|interpolate|shear|resample|precise|display)"')
    for module in (convert, dicom_stack):
        assert not spelled.findall(inspect.getsource(module)), f"{module.__name__} spells a default"
