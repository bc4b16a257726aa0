"""The index fields read from raw bytes (the fast reading) equal pydicom's reading, value for value."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from curata.catalog import dicom_index
from curata.collect.deid import _reader
from curata.demo.phi import pydicom_data_files

VIEWED: list[bool] = []  # per _both call: whether the bytes' view (RawView) could read the file


def _both(ds_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """index_fields of the same bytes, read fast and read by pydicom (each from a fresh read); the
    reading from the bytes' view (``RawView``), where it reads the file, must equal the fast one."""

    def read() -> pydicom.Dataset:
        return _reader.read(ds_bytes) or pydicom.dcmread(io.BytesIO(ds_bytes), force=True)

    def fields(fast: bool, view: bool = False) -> Any:
        monkeypatch.setattr(dicom_index, "FAST", fast)
        try:
            source = dicom_index.RawView.of(ds_bytes, read) if view else None
            if view:
                VIEWED.append(source is not None)
            return dicom_index.index_fields(source if source is not None else read())
        except Exception as exc:  # the same refusal either way
            return type(exc).__name__, str(exc)

    fast, viewed = fields(True), fields(True, view=True)
    assert _same(fast, viewed), ("the bytes' view reads otherwise", fast, viewed)
    return fast, fields(False)


def _same(a: Any, b: Any) -> bool:
    """Equal, with types (an int is not a float here), NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _testdata() -> list[str]:
    return [p for p in pydicom_data_files() if Path(p).is_file()]


def test_every_pydicom_data_file_is_indexed_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = 0
    VIEWED.clear()
    for path in _testdata():
        with open(path, "rb") as fh:
            raw = fh.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast, slow = _both(raw, monkeypatch)
        assert _same(fast, slow), (path, fast, slow)
        compared += isinstance(fast, dict)
    assert compared > 80  # most files are indexed, not refused
    assert sum(VIEWED) > 80  # and most are read from their bytes' view


def _with_sequences(implicit: bool, nested_undefined: bool) -> bytes:
    """An instance whose sequences (before and among the indexed elements, and the enhanced
    multi-frame functional groups) are written with undefined lengths, items too."""
    ds = pydicom.dcmread(io.BytesIO(_instance(implicit, PixelSpacing="0.7\\0.7", Modality="CT")))
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, generate_uid()
    if nested_undefined:
        inner = pydicom.Dataset()
        inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "1", "DCM", "x"
        ref.PurposeOfReferenceCodeSequence = [inner]
    ds.ReferencedImageSequence = [ref, ref]
    ds.SourceImageSequence = []
    measures = pydicom.Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 2.0
    shared = pydicom.Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    del ds.PixelSpacing
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("nested", [False, True])
def test_sequences_of_undefined_length_are_stepped_over(
    implicit: bool, nested: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _with_sequences(implicit, nested)
    assert b"\xfe\xff\xdd\xe0" in raw  # written with sequence delimiters
    VIEWED.clear()
    fast, slow = _both(raw, monkeypatch)
    assert VIEWED == [True]
    assert _same(fast, slow), (fast, slow)
    assert fast["series"]["pixel_spacing_row"] == 0.5  # from the functional groups, via pydicom
    assert fast["series"]["slice_thickness"] == 2.0


def test_files_the_view_does_not_read_are_read_by_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _instance(False, Modality="MR")
    loads: list[int] = []

    def load() -> pydicom.Dataset:
        loads.append(1)
        return pydicom.dcmread(io.BytesIO(plain))

    view = dicom_index.RawView.of(plain, load)
    assert view is not None
    assert dicom_index.index_fields(view)["series"]["modality"] == "MR"
    assert loads == []  # every value was plain: no data set was built
    cut = plain[:-3]  # a value runs past the end
    assert dicom_index.RawView.of(cut, load) is None
    big = bytearray(plain)
    ts = big.index(ExplicitVRLittleEndian.encode())
    big[ts : ts + len(ExplicitVRLittleEndian)] = b"1.2.840.10008.1.2.2"  # declared big endian
    assert dicom_index.RawView.of(bytes(big), load) is None
    assert dicom_index.RawView.of(b"not dicom" * 40, load) is None


def _instance(implicit: bool, **values: Any) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = generate_uid(), generate_uid(), "P1"
    for keyword, value in values.items():
        if isinstance(value, bytes):  # written as these very bytes, valid for their VR or not
            tag = BaseTag(pydicom.datadict.tag_for_keyword(keyword))
            vr = pydicom.datadict.dictionary_VR(tag)
            ds._dict[tag] = RawDataElement(
                tag, None if implicit else vr, len(value), value, 0, implicit, True
            )
        else:
            setattr(ds, keyword, value)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


ODD_VALUES: list[dict[str, Any]] = [
    {"ImageType": "ORIGINAL\\PRIMARY\\AXIAL", "PixelSpacing": "0.7\\0.7", "Rows": 512},
    {"ImageType": b" ORIGINAL\\ PRIMARY ", "SeriesDescription": b"  padded both sides "},
    {"PixelSpacing": b"0.7", "ImagePositionPatient": b"1\\2\\3", "SliceThickness": b"1e-1 "},
    {"PixelSpacing": b" 0.5\\0.5", "SliceLocation": b"-.5", "KVP": b"+120."},
    {"PixelSpacing": b"0.5\\\\0.5", "SpacingBetweenSlices": b"abc", "KVP": b"1,5"},
    {"InstanceNumber": b"12", "SeriesNumber": b" 3 ", "AcquisitionNumber": b"1.5", "NumberOfFrames": b"1\\2"},
    {"InstanceNumber": b"", "SeriesNumber": b"  ", "StudyDescription": b"", "Modality": b"\x00"},
    {"StudyDescription": "Thorax caf\u00e9".encode("latin-1"), "SpecificCharacterSet": "ISO_IR 100"},
    {"StudyDescription": "\u80f8\u90e8".encode(), "SpecificCharacterSet": "ISO_IR 192"},
    {"SeriesDescription": b"tab\there", "ProtocolName": b"a\\b\\c", "PatientAge": b"045Y"},
    {"StudyDate": b"20240301", "StudyTime": b"101500.123 ", "SeriesDate": b"2024-03-01"},
    {"Rows": b"\x00\x02\x00\x02", "Columns": b"\x00\x02"},
    {"MagneticFieldStrength": b"1.5\\3", "ImageOrientationPatient": b"1\\0\\0\\0\\1\\0"},
]


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("values", ODD_VALUES)
def test_odd_values_are_indexed_alike(
    values: dict[str, Any], implicit: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = _both(_instance(implicit, **values), monkeypatch)
    assert isinstance(fast, dict)
    assert _same(fast, slow), (fast, slow)
