"""The header fields a curator filters on, read from a (de-identified) dataset."""

from __future__ import annotations

import re
import struct
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue

from curata.errors import InputError

REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")

# The plain values are read straight from the raw element (a received instance is read lazily, and
# pydicom's conversion of ~40 elements cost as much as de-identifying it). Plain: printable ASCII
# (identical in every character set a data set may declare), no component with its own leading or
# trailing spaces, a number of the strict DICOM form. Anything else is read through pydicom, and
# tests/catalog/test_dicom_index.py holds both readings equal on every pydicom-data file.
FAST = True
_SLOW = object()
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI"})
_NUMBER_VRS = frozenset({"DS", "IS"})
_DS = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IS = re.compile(r"[+-]?\d+")
_U16 = struct.Struct("<H").unpack
_TAG_VR: dict[str, tuple[int, str]] = {}


def _tag_vr(keyword: str) -> tuple[int, str]:
    found = _TAG_VR.get(keyword)
    if found is None:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        found = _TAG_VR[keyword] = (tag, dictionary_VR(tag))
    return found


def _plain(ds: Dataset, keyword: str) -> Any:
    """``keyword``'s value as text, a number or a list of numbers, read from its raw bytes when
    plain; None when absent or empty; ``_SLOW`` when pydicom must read it."""
    tag, dict_vr = _tag_vr(keyword)
    try:
        elem = ds.get_item(tag)
    except KeyError:
        return None
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement) or not FAST:
        return _SLOW
    vr = elem.VR or dict_vr
    raw = elem.value
    if raw is None or vr != dict_vr or ds.original_encoding[1] is not True:
        return _SLOW
    if vr == "US":
        return _U16(raw)[0] if len(raw) == 2 else (None if not raw else _SLOW)
    if vr not in _TEXT_VRS and vr not in _NUMBER_VRS:
        return _SLOW
    text = raw.rstrip(b"\0 ")
    if not text:
        return None
    if not text.isascii() or not text.decode("ascii").isprintable():
        return _SLOW
    parts = text.decode("ascii").split("\\")
    if any(part != part.strip() for part in parts):
        return _SLOW
    if vr in _TEXT_VRS:
        return "\\".join(parts)
    pattern = _DS if vr == "DS" else _IS
    if not all(pattern.fullmatch(part) for part in parts):
        return _SLOW
    numbers = [float(part) if vr == "DS" else int(part) for part in parts]
    return numbers if len(numbers) > 1 else numbers[0]


def _str(ds: Dataset, keyword: str) -> str | None:
    fast = _plain(ds, keyword)
    if fast is not _SLOW and (fast is None or isinstance(fast, str)):
        return fast
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip() or None


def _float(ds: Dataset, keyword: str, index: int | None = None) -> float | None:
    fast = _plain(ds, keyword)
    if fast is None or isinstance(fast, float):
        return fast if index is None else None
    if isinstance(fast, list):
        return float(fast[index or 0]) if index is None or index < len(fast) else None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        if index is not None:
            return float(value[index]) if isinstance(value, MultiValue | list) else None
        return float(value[0] if isinstance(value, MultiValue | list) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    fast = _plain(ds, keyword)
    if fast is None or type(fast) is int:
        return fast
    if isinstance(fast, list):
        return None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, keyword: str) -> list[float] | None:
    fast = _plain(ds, keyword)
    if fast is None:
        return None
    if isinstance(fast, list):
        return [float(v) for v in fast]
    if isinstance(fast, float):  # one number is not a list of them (as pydicom's single value)
        return None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


_AGE = re.compile(r"^(\d{1,3})([DWMY])$")


def age_in_years(age: str | None) -> float | None:
    """DICOM AS ('045Y', '006M', '012W', '003D') as years."""
    if not age:
        return None
    m = _AGE.match(age.strip().upper())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return round(n / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[unit], 3)


def _functional_group(ds: Dataset, seq: str, keyword: str, inner: str) -> Any:
    """A value from the Shared Functional Groups of an enhanced multi-frame object."""
    groups = ds.get("SharedFunctionalGroupsSequence")
    if not groups:
        return None
    item = groups[0]
    sub = item.get(seq)
    if not sub:
        return None
    return sub[0].get(inner if keyword is None else keyword)


def check_required(ds: Dataset) -> None:
    missing = [k for k in REQUIRED if not _str(ds, k)]
    if missing:
        raise InputError(
            f"missing required attribute(s) {', '.join(missing)}",
            hint="the file cannot be filed under patient/study/series without them",
        )


def index_fields(ds: Dataset) -> dict[str, dict[str, Any]]:
    """Patient, study, series and instance fields, grouped by level."""
    check_required(ds)
    spacing = _floats(ds, "PixelSpacing")
    thickness = _float(ds, "SliceThickness")
    if spacing is None and "SharedFunctionalGroupsSequence" in ds:
        measures = _functional_group(ds, "PixelMeasuresSequence", "PixelSpacing", "PixelSpacing")
        spacing = [float(v) for v in measures] if measures else None
        st = _functional_group(ds, "PixelMeasuresSequence", "SliceThickness", "SliceThickness")
        thickness = float(st) if st not in (None, "") else thickness
    ts = (
        str(ds.file_meta.TransferSyntaxUID)
        if getattr(ds, "file_meta", None) and "TransferSyntaxUID" in ds.file_meta
        else None
    )
    image_type = _str(ds, "ImageType")
    return {
        "patient": {"pseudonym": _str(ds, "PatientID"), "sex": _str(ds, "PatientSex")},
        "study": {
            "study_uid": _str(ds, "StudyInstanceUID"),
            "study_date": _str(ds, "StudyDate"),
            "study_time": _str(ds, "StudyTime"),
            "description": _str(ds, "StudyDescription"),
            "patient_age_years": age_in_years(_str(ds, "PatientAge")),
        },
        "series": {
            "series_uid": _str(ds, "SeriesInstanceUID"),
            "series_number": _int(ds, "SeriesNumber"),
            "modality": _str(ds, "Modality"),
            "body_part": _str(ds, "BodyPartExamined"),
            "description": _str(ds, "SeriesDescription"),
            "protocol_name": _str(ds, "ProtocolName"),
            "sop_class_uid": _str(ds, "SOPClassUID"),
            "manufacturer": _str(ds, "Manufacturer"),
            "model": _str(ds, "ManufacturerModelName"),
            "series_date": _str(ds, "SeriesDate"),
            "slice_thickness": thickness,
            "spacing_between_slices": _float(ds, "SpacingBetweenSlices"),
            "pixel_spacing_row": spacing[0] if spacing else None,
            "pixel_spacing_col": spacing[1] if spacing and len(spacing) > 1 else None,
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "number_of_frames": _int(ds, "NumberOfFrames"),
            "transfer_syntax": ts,
            "image_type": image_type,
            "kvp": _float(ds, "KVP"),
            "magnetic_field_strength": _float(ds, "MagneticFieldStrength"),
            "sequence_name": _str(ds, "SequenceName"),
            "contrast_agent": _str(ds, "ContrastBolusAgent"),
        },
        "instance": {
            "sop_instance_uid": _str(ds, "SOPInstanceUID"),
            "sop_class_uid": _str(ds, "SOPClassUID"),
            "instance_number": _int(ds, "InstanceNumber"),
            "transfer_syntax": ts,
            "number_of_frames": _int(ds, "NumberOfFrames"),
            "image_position": _floats(ds, "ImagePositionPatient"),
            "image_orientation": _floats(ds, "ImageOrientationPatient"),
            "slice_location": _float(ds, "SliceLocation"),
            "acquisition_number": _int(ds, "AcquisitionNumber"),
        },
    }
