"""DICOMweb metadata of a stored instance with a value that does not read as its VR (a private DS
holding a word, which the verified mode accepted before outside review 11): the element is left out,
the rest is served (it raised ValueError in to_json_dict: an HTTP 500 for the viewer's whole study)."""

from __future__ import annotations

import io
import warnings

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from curata.server.dicomweb import _metadata


def test_metadata_leaves_out_a_value_that_does_not_read_as_its_vr() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    tag = Tag(0x0019100A)
    ds[tag] = RawDataElement(tag, "DS", 12, b"Thistlewood ", 0, False, True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _metadata(buf.getvalue(), "http://platform/dicomweb/studies/1/series/2/instances/3")
    assert "0019100A" not in out
    assert out["00100020"]["Value"] == [ds.PatientID] and out["00020010"]["Value"]
