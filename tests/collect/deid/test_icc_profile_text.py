"""An ICCProfile element keeps its colour data and loses its text in every lane of the engine (the
native and raw lanes copied a top-level profile byte for byte), for any profile, on a plain CT."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from curata.collect.deid import Deidentifier, load_profile
from tests.collect.wsi.test_slide_hidden_text import icc_with_free_text, survivors
from tests.conftest import make_ct

OTHERS = "BC778899XQ Nguyễn Văn Thành 김민준"  # a barcode and other people: not in the patient's header


@pytest.mark.parametrize("profile", ["basic", "research"])
def test_a_top_level_icc_profile_loses_its_text_in_every_lane(tmp_path: Path, profile: str) -> None:
    ds = make_ct()
    icc = icc_with_free_text(OTHERS.encode() + b" " + OTHERS.encode("utf-16-be"))
    ds.ICCProfile = icc + bytes(len(icc) % 2)
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    deid = Deidentifier(key=b"k" * 32, profile=load_profile(profile))
    out = deid.deidentify_bytes(path.read_bytes(), source="ct.dcm").output_bytes
    assert survivors([out], OTHERS.split()) == []
    kept = pydicom.dcmread(io.BytesIO(out)).ICCProfile
    assert kept[:128][:24] == icc[:24] and len(kept) == len(ds.ICCProfile)  # the colour data stays
