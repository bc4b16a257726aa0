"""The number of a patient ID written with letters (4417702 for MRN4417702) is the patient's ID too:
systems, device fields and notes write it without its prefix. The clinical readers took it
(``Identifiers.add_word``); the DICOM engine did not, so the bare number survived in kept device
fields and free text under every profile (and the gate did not look for it)."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest

from curata.collect.deid import Deidentifier, load_profile

from .conftest import KEY
from .planting import pixel_spans, release_of

FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm"]
ELEMENTS = {  # kept or cleaned text elements a scanner or a person fills
    "SoftwareVersions": "SS{n}",
    "ManufacturerModelName": "v{n}",
    "DeviceSerialNumber": "{n}",
    "StationName": "WS{n}",
    "ImageComments": "see {n} again",
    "StudyDescription": "CT chest {n}",
    "SeriesDescription": "{n} axial",
}
IDS = ["MRN4417702", "JP5550193377", "KR-700193", "H00912345"]


def _digits(pid: str) -> str:
    return max("".join(c if c.isdigit() else " " for c in pid).split(), key=len)


def _planted(name: str, pid: str) -> bytes:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
    ds.PatientID, ds.PatientName = pid, "OKAFOR^YETUNDE"
    for keyword, form in ELEMENTS.items():
        setattr(ds, keyword, form.format(n=_digits(pid)))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("profile", ["research", "basic", "research-strict"])
def test_an_ids_number_without_its_prefix_does_not_survive(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    released, survived = 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in FILES:
            for pid in IDS:
                result = release_of(deid, _planted(name, pid))
                assert result is not None, (name, pid)  # cleaned, not refused
                released += 1
                out = result.output_bytes
                for a, b in sorted(pixel_spans(out), reverse=True):
                    out = out[:a] + out[b:]
                if _digits(pid).encode() in out:
                    survived.append(f"{name} {pid}")
    assert released == len(FILES) * len(IDS)
    assert survived == []
