"""The header fields a curator filters on, read from a (de-identified) dataset."""

from __future__ import annotations

import re
import struct
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import PrivateTransferSyntaxes

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


def _plain(ds: Dataset | RawView, keyword: str) -> Any:
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


def _str(ds: Dataset | RawView, keyword: str) -> str | None:
    fast = _plain(ds, keyword)
    if fast is not _SLOW and (fast is None or isinstance(fast, str)):
        return fast
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip() or None


def _float(ds: Dataset | RawView, keyword: str, index: int | None = None) -> float | None:
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


def _int(ds: Dataset | RawView, keyword: str) -> int | None:
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


def _floats(ds: Dataset | RawView, keyword: str) -> list[float] | None:
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


def _functional_group(ds: Dataset | RawView, seq: str, keyword: str, inner: str) -> Any:
    """A value from the Shared Functional Groups of an enhanced multi-frame object."""
    groups = ds.get("SharedFunctionalGroupsSequence")
    if not groups:
        return None
    item = groups[0]
    sub = item.get(seq)
    if not sub:
        return None
    return sub[0].get(inner if keyword is None else keyword)


_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_IMPLICIT = struct.Struct("<HHI").unpack_from
_U32 = struct.Struct("<I").unpack_from
# explicit VRs with a 4-byte length (PS3.5 7.1.2), and every VR a plain file may hold
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_VRS = _LONG_VRS | frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS",
     "ST", "TM", "UI", "UL", "US"}
)  # fmt: skip
_LAST_READ = 0x52009229  # SharedFunctionalGroupsSequence: no element after it is kept (all are walked)
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_NOT_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflate


class RawView:
    """A Part-10 file's top-level elements as :func:`index_fields` reads them: found by one walk
    over its bytes that copies no value and builds no data set (on a received CT slice, reading it
    back with pydicom cost as much as de-identifying it). A value that is not plain, and every other
    question, is answered by the full data set (``load``), built only when asked.
    ``tests/catalog/test_dicom_index.py`` holds both readings equal on every pydicom-data file."""

    __slots__ = ("_ds", "_found", "_implicit", "_load", "_raw", "transfer_syntax")

    def __init__(
        self,
        raw: bytes,
        found: dict[int, tuple[str | None, int, int]],
        implicit: bool,
        transfer_syntax: str,
        load: Any,
    ) -> None:
        self._raw = raw
        self._found = found
        self._implicit = implicit
        self.transfer_syntax = transfer_syntax
        self._load = load
        self._ds: Dataset | None = None

    @classmethod
    def of(cls, raw: bytes, load: Any) -> RawView | None:
        """The view of ``raw`` (``load()`` returns its full data set when needed), or None when the
        file is not a plain little-endian Part-10 file (then read the data set itself)."""
        if len(raw) < 144 or raw[128:132] != b"DICM":
            return None
        meta: dict[int, tuple[str | None, int, int]] = {}
        pos = _walk_top(raw, 132, False, meta, 0x0002FFFF)
        if pos < 0 or 0x00020010 not in meta:
            return None
        _vr, start, length = meta[0x00020010]
        ts = raw[start : start + length].decode("ascii", "replace").strip("\0 ")
        if not ts or ts in _NOT_LITTLE_ENDIAN or ts in PrivateTransferSyntaxes or pos + 8 > len(raw):
            return None
        implicit = ts == "1.2.840.10008.1.2"  # any other: explicit VR little endian (compressed too)
        # as pydicom: a data set must be encoded as declared (two upper-case letters where an
        # explicit VR stands), and no command group or more group 2 may follow the meta
        looks_explicit = all(0x40 < b < 0x5B for b in raw[pos + 4 : pos + 6])
        if looks_explicit == implicit or _IMPLICIT(raw, pos)[0] < 0x0008:
            return None
        found: dict[int, tuple[str | None, int, int]] = {}
        if _walk_top(raw, pos, implicit, found, 0xFFFFFFFF) != len(raw):  # whole, as pydicom reads it
            return None
        return cls(raw, found, implicit, ts, load)

    def dataset(self) -> Dataset:
        if self._ds is None:
            self._ds = self._load()
        return self._ds

    @property
    def original_encoding(self) -> tuple[bool, bool]:
        return self._implicit, True

    def get_item(self, tag: int) -> RawDataElement | None:
        found = self._found.get(tag)
        if found is None:
            return None
        vr, start, length = found
        value = self._raw[start : start + length] if length else None
        return RawDataElement(BaseTag(tag), vr, length, value, start, self._implicit, True)

    def get(self, keyword: str, default: Any = None) -> Any:
        fast = _plain(self, keyword)
        if fast is None and _tag_vr(keyword)[0] not in self._found:
            return default
        if fast is _SLOW or fast is None:  # not plain, or empty: as pydicom gives it
            return self.dataset().get(keyword, default)
        return fast

    def __contains__(self, keyword: str) -> bool:
        return _tag_vr(keyword)[0] in self._found


_UNDEFINED = 0xFFFFFFFF


def _walk_top(
    raw: bytes, pos: int, implicit: bool, out: dict[int, tuple[str | None, int, int]], last: int
) -> int:
    """Record ``tag: (VR, value start, length)`` for the elements from ``pos`` up to tag ``last``;
    the position reached, or -1 where something is not plain (a top-level element of undefined
    length other than a sequence, a value running past the end, an unknown VR)."""
    end = len(raw)
    while pos + 8 <= end:
        group, elem = _IMPLICIT(raw, pos)[:2]
        tag = group << 16 | elem
        if tag > last:
            return pos
        if group == 0xFFFE:
            return -1
        head = _element(raw, pos, implicit)
        if head is None:
            return -1
        vr, start, length = head
        after = _after(raw, tag, vr, start, length, implicit)
        if after < 0:
            return -1
        if tag <= _LAST_READ:
            out[tag] = (vr, start, 0 if length == _UNDEFINED else length)
        pos = after
    return pos if pos == end else -1


def _element(raw: bytes, pos: int, implicit: bool) -> tuple[str | None, int, int] | None:
    """``(VR, value start, length)`` of the element at ``pos``; None for an unknown VR."""
    if implicit:
        return None, pos + 8, _IMPLICIT(raw, pos)[2]
    _group, _elem, vr_bytes, length = _EXPLICIT(raw, pos)
    vr = vr_bytes.decode("latin-1")
    if vr not in _VRS:
        return None
    if vr in _LONG_VRS:
        if pos + 12 > len(raw):
            return None
        return vr, pos + 12, _U32(raw, pos + 8)[0]
    return vr, pos + 8, length


def _after(raw: bytes, tag: int, vr: str | None, start: int, length: int, implicit: bool) -> int:
    """The position after an element's value (a sequence of undefined length skipped item by
    item), or -1."""
    if length != _UNDEFINED:
        return start + length if start + length <= len(raw) else -1
    if vr == "SQ" or (implicit and _dictionary_sq(tag)):
        return _skip_items(raw, start, implicit)
    if tag == 0x7FE00010 and vr in ("OB", "OW"):  # encapsulated pixel data: fragments as items
        return _skip_items(raw, start, implicit)
    return -1  # a UN of undefined length (pydicom may read it as a sequence): not read here


def _dictionary_sq(tag: int) -> bool:
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


def _skip_items(raw: bytes, pos: int, implicit: bool) -> int:
    """The position after a sequence of undefined length whose items start at ``pos``, or -1."""
    end = len(raw)
    while pos + 8 <= end:
        group, elem, length = _IMPLICIT(raw, pos)
        tag = group << 16 | elem
        if tag == _SEQ_END:
            return pos + 8
        if tag != _ITEM:
            return -1
        pos = _skip_item(raw, pos + 8, implicit) if length == _UNDEFINED else pos + 8 + length
        if pos < 0:
            return -1
    return -1


def _skip_item(raw: bytes, pos: int, implicit: bool) -> int:
    """The position after an item of undefined length whose elements start at ``pos``, or -1."""
    end = len(raw)
    while pos + 8 <= end:
        group, elem, length = _IMPLICIT(raw, pos)
        if group == 0xFFFE:
            return pos + 8 if (group << 16 | elem) == _ITEM_END and length == 0 else -1
        head = _element(raw, pos, implicit)
        if head is None:
            return -1
        vr, start, length = head
        pos = _after(raw, group << 16 | elem, vr, start, length, implicit)
        if pos < 0:
            return -1
    return -1


def check_required(ds: Dataset | RawView) -> None:
    missing = [k for k in REQUIRED if not _str(ds, k)]
    if missing:
        raise InputError(
            f"missing required attribute(s) {', '.join(missing)}",
            hint="the file cannot be filed under patient/study/series without them",
        )


def index_fields(ds: Dataset | RawView) -> dict[str, dict[str, Any]]:
    """Patient, study, series and instance fields, grouped by level."""
    check_required(ds)
    spacing = _floats(ds, "PixelSpacing")
    thickness = _float(ds, "SliceThickness")
    if spacing is None and "SharedFunctionalGroupsSequence" in ds:
        measures = _functional_group(ds, "PixelMeasuresSequence", "PixelSpacing", "PixelSpacing")
        spacing = [float(v) for v in measures] if measures else None
        st = _functional_group(ds, "PixelMeasuresSequence", "SliceThickness", "SliceThickness")
        thickness = float(st) if st not in (None, "") else thickness
    if isinstance(ds, RawView):
        ts: str | None = ds.transfer_syntax
    else:
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
