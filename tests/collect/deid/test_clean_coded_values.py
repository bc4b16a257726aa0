"""An element the profile cleans (action C) is cleaned whatever its VR. Under the Retain Device
Identity option (``research``), Retrieve AE Title (0008,0054) is "C": an AE title that holds the
patient's name used to be kept unread, so the gate refused the whole object (never a leak, but an
object lost to the dataset for one element a cleaning removes). Now it is cleaned as a kept AE, CS or
UR value is: a value that holds an identifier becomes a dummy, and the object is released."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest

from curata.collect.deid import Deidentifier, load_profile

from .conftest import KEY
from .planting import PATIENTS, Patient, pixel_spans, release_of, survivors

FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "waveform_ecg.dcm"]
ASCII = [p for p in PATIENTS if p.family.isascii()]  # AE and UR hold ASCII only


def _planted(name: str, p: Patient) -> bytes:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
    ds.SpecificCharacterSet = p.charset
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = f"{p.family}^{p.given}", p.pid, p.birth
    ds.add_new(0x00080054, "AE", p.family[:16])  # Retrieve AE Title
    ds.add_new(0x00081190, "UR", f"https://pacs.example/wado?patient={p.family}^{p.given}&id={p.pid}")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("profile", ["research", "research-strict", "basic"])
def test_an_ae_title_holding_the_name_is_cleaned_not_refused(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    released, leaked = 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in FILES:
            for p in ASCII:
                result = release_of(deid, _planted(name, p))
                if result is None:
                    continue
                released += 1
                out = result.output_bytes
                leaked += [f"{name}: {s}" for s in survivors(out, p, pixel_spans(out))]
                ds = pydicom.dcmread(io.BytesIO(out))
                title = str(ds.get("RetrieveAETitle", "") or "")
                assert p.family.upper()[:6] not in title.upper(), (name, title)
    assert leaked == []
    assert released == len(FILES) * len(ASCII)
