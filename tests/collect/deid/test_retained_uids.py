"""Retain UIDs and the patient's own numbers (outside review, finding 5): UIDs whose components held
the PatientID (88421937), the birth date (19470319) or the accession number (5521987) were kept and
released: the gate does not look inside UIDs (a number after a dot is a UID's part, and remapped
UIDs hold such digits by chance). With retain_uids the UIDs are the input's own, so the gate now
refuses an object where a UID holds one of them, in every lane, with a reason that names no value."""

from __future__ import annotations

import pydicom
import pytest

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid.profile import Profile
from curata.errors import DeidError

from .conftest import KEY, read, to_bytes

PID, BORN, ACCESSION = "88421937", "19470319", "5521987"
ROOT = "1.2.826.0.1.3680043.8.498"


def _ct(**uids: str) -> bytes:
    ds = read("CT_small.dcm")
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = PID, "Quillfeather^Marisol", BORN
    ds.AccessionNumber = ACCESSION
    for keyword, value in uids.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return to_bytes(ds)


def _retaining(profile: str, whole: bool) -> Deidentifier:
    base = load_profile(profile)
    prof = Profile(name=base.name, options=base.options | {"retain_uids"})
    deid = Deidentifier(KEY, prof, ocr=False)
    deid.raw_lane = deid.native_lane = not whole
    return deid


HOLDING = [
    {"StudyInstanceUID": f"{ROOT}.{PID}.1"},  # the PatientID as a component
    {"SeriesInstanceUID": f"{ROOT}.{ACCESSION}.2"},  # the accession number
    {"SOPInstanceUID": f"{ROOT}.{BORN}.3"},  # the birth date
    {"SOPInstanceUID": f"{ROOT}.7{PID}01.3"},  # inside a longer component
    {"FrameOfReferenceUID": f"{ROOT}.19031947.4"},  # the birth date day first
    {"StudyInstanceUID": f"{ROOT}.5.470319"},  # the birth date in six digits, a whole component
]


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("profile", ["basic", "research"])
@pytest.mark.parametrize("uids", HOLDING)
def test_a_retained_uid_holding_the_patients_number_is_refused(
    uids: dict[str, str], profile: str, whole: bool
) -> None:
    with pytest.raises(DeidError) as caught:
        _retaining(profile, whole).deidentify_bytes(_ct(**uids))
    message = str(caught.value)
    assert "retain" in message.lower() or "UID" in message
    assert not [v for v in (PID, BORN, ACCESSION, "470319", "19031947") if v in message]


def test_a_referenced_uid_in_a_sequence_counts_too() -> None:
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(_ct()))
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = f"{ROOT}.{PID}.9"
    ds.ReferencedImageSequence = pydicom.Sequence([ref])
    with pytest.raises(DeidError):
        _retaining("research", False).deidentify_bytes(to_bytes(ds))


@pytest.mark.parametrize("whole", [False, True])
def test_other_uids_are_kept_as_the_option_says(whole: bool) -> None:
    # a study date and time in a UID (a timestamp, common) is kept: see the README; other digits too
    uids = {
        "StudyInstanceUID": f"{ROOT}.20040119.153000.1",
        "SeriesInstanceUID": f"{ROOT}.8842193.2",  # one digit short of the ID
        "SOPInstanceUID": f"{ROOT}.1947.3.19.3",  # the birth date's parts in separate components
    }
    out = _retaining("research", whole).deidentify_bytes(_ct(**uids)).dataset
    assert out.StudyInstanceUID == uids["StudyInstanceUID"]
    assert out.SeriesInstanceUID == uids["SeriesInstanceUID"]
    assert out.SOPInstanceUID == uids["SOPInstanceUID"]


def test_without_the_option_such_uids_are_remapped() -> None:
    deid = Deidentifier(KEY, load_profile("research"), ocr=False)
    out = deid.deidentify_bytes(_ct(StudyInstanceUID=f"{ROOT}.{PID}.1")).dataset
    assert PID not in str(out.StudyInstanceUID)
