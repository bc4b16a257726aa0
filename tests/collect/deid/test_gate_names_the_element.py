"""The final gate's refusal names the element a surviving identifier lies in, by its tag and keyword
(nested: the path of tags), never its value: it named a byte offset (``survived near byte 340 of the
output``) for a patient's name in an IS, DS, TM or AS value, which cleaning does not read as text.
Every lane (the native, the raw, the whole engine; the fast reader or dcmread) gives the same reason."""

from __future__ import annotations

import warnings

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from curata.collect.deid import Deidentifier, load_profile
from curata.collect.deid._located import element_at, element_where
from curata.errors import DeidError

from .conftest import HEADER_FILES, KEY, read, to_bytes

FAMILY, GIVEN = "KOWALCZYK", "BRONISLAWA"


def _plant(ds: Dataset, keyword: str, vr: str, value: bytes) -> None:
    tag = BaseTag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def _nested(ds: Dataset) -> None:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    _plant(item, "ReferencedFrameNumber", "IS", FAMILY.encode() + b" ")
    ds.ReferencedImageSequence = Sequence([item])


CASES = [  # (profile, how, the element the reason names)
    ("research", lambda ds: _plant(ds, "SeriesNumber", "IS", b"KOWALCZYK "), "(0020,0011) SeriesNumber"),
    ("basic", lambda ds: _plant(ds, "InstanceNumber", "IS", b"KOWALCZYK "), "(0020,0013) InstanceNumber"),
    ("research", lambda ds: _plant(ds, "SliceThickness", "DS", b"KOWALCZYK "), "(0018,0050) SliceThickness"),
    ("basic", lambda ds: _plant(ds, "FrameTime", "DS", b"BRONISLAWA"), "(0018,1063) FrameTime"),
    ("research", lambda ds: _plant(ds, "ContentTime", "TM", b"KOWALCZYK "), "(0008,0033) ContentTime"),
    (
        "research",
        lambda ds: _plant(ds, "SelectorASValue", "AS", b"KOWALCZYK "),
        "(0072,005F) SelectorASValue",
    ),
    ("research", _nested, "(0008,1140) ReferencedImageSequence[0] > (0008,1160) ReferencedFrameNumber"),
    ("basic", _nested, "(0008,1140) ReferencedImageSequence[0] > (0008,1160) ReferencedFrameNumber"),
]


def _reasons(raw: bytes, profile: str) -> set[str]:
    out = set()
    for raw_lane, fast_read in ((True, True), (False, True), (False, False)):
        deid = Deidentifier(KEY, load_profile(profile), ocr=False)
        deid.raw_lane, deid.fast_read = raw_lane, fast_read
        with pytest.raises(DeidError) as caught:
            deid.deidentify_bytes(raw)
        out.add(str(caught.value))
    return out


@pytest.mark.parametrize("source", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
@pytest.mark.parametrize(("profile", "plant", "where"), CASES)
def test_the_reason_names_the_element_not_a_byte(source: str, profile: str, plant, where: str) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read(source)
        ds.PatientName = f"{FAMILY}^{GIVEN}"
        plant(ds)
        raw = to_bytes(ds)
    reasons = _reasons(raw, profile)
    assert len(reasons) == 1, reasons  # every lane gives the same reason
    reason = reasons.pop()
    assert f"survived in {where} " in reason, reason
    assert "near byte" not in reason
    assert FAMILY.lower() not in reason.lower() and GIVEN.lower() not in reason.lower()


@pytest.mark.parametrize("source", HEADER_FILES)
def test_any_byte_of_a_value_is_named_by_its_element_at_any_depth(source: str) -> None:
    """The walk over the output's bytes: a nested LO, in each syntax of the vendor files (implicit,
    big endian, encapsulated pixel data, long sequences)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read(source)
        inner = Dataset()
        inner.CodeMeaning = FAMILY
        item = Dataset()
        item.ConceptNameCodeSequence = Sequence([Dataset(), inner])
        ds.add_new(0x00400275, "SQ", Sequence([item]))  # RequestAttributesSequence
        data = to_bytes(ds)
    at = data.find(FAMILY.encode())
    nested = (
        "(0040,0275) RequestAttributesSequence[0] > (0040,A043) ConceptNameCodeSequence[1] > "
        "(0008,0104) CodeMeaning"
    )
    for pos in range(at, at + len(FAMILY)):
        assert element_at(data, pos) == nested
    assert element_at(data, at - 8) == nested  # the element's header
    assert element_where(data, lambda hay: FAMILY.lower().encode() in hay) == nested
    assert element_at(data, 140).startswith("(0002,0000)")
    assert element_at(data, 10) == ""  # the preamble
    assert dictionary_VR(0x00400275) == "SQ"
