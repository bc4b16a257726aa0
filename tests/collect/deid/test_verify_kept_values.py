"""The verified mode reads every value a site's engine releases as the engine leaves it (outside review
11, findings 2 and 3): structured free text no profile lists (an SR's TextValue, a presentation state's
text object) is a fixed point of the engine's cleaner; text and URLs the engine keeps as they came
(unlisted, or K: code meanings, segment and layer labels, station, serial numbers) hold none of the
shapes that are never a version, model or code; an ICC profile is one, its text zeroed; a safe private
element holds numbers its VR and multiplicity allow. Each value below was accepted and stored before."""

from __future__ import annotations

import io
from collections.abc import Callable

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from curata.collect.deid import Deidentifier, check_deidentified, load_profile
from curata.errors import DeidError
from tests.collect.wsi.test_slide_hidden_text import icc_with_free_text

from .conftest import KEY, read, to_bytes

PR_CLASS, SEG_CLASS = "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.66.4"
# what a site's cleaner reduces to "Patient: *", "MRN *"...: none is a version, model or code
IDENTIFYING = [
    "Patient: Marisol Quillfeather",
    "MRN 88421937",
    "DOB 1947-03-19",
    "born 19 March 1947",
    "DOB 19470319",
    "tel +1 914 555 0173",
]
SECRETS = ("Quillfeather", "88421937", "1947", "0173", "Thistlewood", "77310552", "OPHELIA")


def _release(name: str, profile: str, sop_class: str | None = None) -> Dataset:
    ds = read(name)
    if sop_class:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    out = Deidentifier(KEY, load_profile(profile), ocr=False).deidentify_bytes(to_bytes(ds)).output_bytes
    return pydicom.dcmread(io.BytesIO(out))


def _refused(ds: Dataset) -> str:
    with pytest.raises(DeidError) as refused:
        check_deidentified(to_bytes(ds))
    message = str(refused.value)
    assert not [s for s in SECRETS if s in message]  # the attribute is named, never its value
    return message


def _coded(meaning: str, value: str = "121071", scheme: str = "DCM") -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def _seven_deep(leaf: Dataset) -> Dataset:
    for _ in range(6):
        box = Dataset()
        box.RelationshipType, box.ValueType, box.ContinuityOfContent = "CONTAINS", "CONTAINER", "SEPARATE"
        box.ConceptNameCodeSequence = Sequence([_coded("Section Heading", "IHE.08", "99_OFFIS_DCMTK")])
        box.ContentSequence = Sequence([leaf])
        leaf = box
    return leaf


def _text_item(text: str, meaning: str = "Finding") -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType, item.TextValue = "CONTAINS", "TEXT", text
    item.ConceptNameCodeSequence = Sequence([_coded(meaning)])
    return item


def _code_item(meaning: str) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "CODE"
    item.ConceptNameCodeSequence = Sequence([_coded("Finding")])
    item.ConceptCodeSequence = Sequence([_coded(meaning, "99X1", "99LOCAL")])
    return item


@pytest.mark.parametrize("profile", ["basic", "research"])
@pytest.mark.parametrize("text", IDENTIFYING)
@pytest.mark.parametrize("place", ["TextValue", "ConceptCode meaning", "ConceptName meaning"])
def test_sr_content_text_seven_deep_is_as_the_engine_leaves_it(profile: str, text: str, place: str) -> None:
    """TextValue: the engine cleans an SR's free text (Clean Structured Content) or writes the dummy,
    so it must be a fixed point of the cleaner; a code meaning it keeps, so it holds no such shape."""
    ds = _release("reportsi.dcm", profile)
    assert check_deidentified(to_bytes(ds)).PatientIdentityRemoved == "YES"
    leaf = {
        "TextValue": lambda: _text_item(text),
        "ConceptCode meaning": lambda: _code_item(text),
        "ConceptName meaning": lambda: _text_item("normal", meaning=text),
    }[place]()
    ds.ContentSequence.append(_seven_deep(leaf))
    assert "holds a value the profiles do not release" in _refused(ds)


def test_sr_text_the_engine_cleaned_passes() -> None:
    """What the engine writes for that text under each profile ("Patient: * *", REMOVED) is accepted."""
    for profile in ("basic", "research", "research-strict"):
        ds = read("reportsi.dcm")
        ds.ContentSequence.append(_seven_deep(_text_item("Patient: Marisol Quillfeather MRN 88421937")))
        out = Deidentifier(KEY, load_profile(profile), ocr=False).deidentify_bytes(to_bytes(ds))
        assert check_deidentified(out.output_bytes).PatientIdentityRemoved == "YES", profile


SHAPED = "Patient: Marisol Quillfeather MRN 88421937 DOB 1947-03-19"


def _pr_text_object(ds: Dataset) -> None:
    text = Dataset()
    text.UnformattedTextValue, text.AnchorPointAnnotationUnits, text.AnchorPoint = SHAPED, "PIXEL", [1.0, 1.0]
    layer = Dataset()
    layer.GraphicLayer, layer.TextObjectSequence = "LAYER1", Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([layer])


def _pr_layer(ds: Dataset) -> None:
    layer = Dataset()
    layer.GraphicLayer, layer.GraphicLayerOrder, layer.GraphicLayerDescription = "LAYER1", 1, SHAPED
    ds.GraphicLayerSequence = Sequence([layer])


def _segment(**text: str) -> Callable[[Dataset], None]:
    def plant(ds: Dataset) -> None:
        segment = Dataset()
        segment.SegmentNumber, segment.SegmentLabel, segment.SegmentAlgorithmType = 1, "liver", "MANUAL"
        for keyword, value in text.items():
            setattr(segment, keyword, value)
        ds.SegmentSequence = Sequence([segment])

    return plant


UNLISTED_TEXT: dict[str, tuple[str | None, Callable[[Dataset], None]]] = {
    "PR UnformattedTextValue": (PR_CLASS, _pr_text_object),
    "PR GraphicLayerDescription": (PR_CLASS, _pr_layer),
    "PR ContentDescription": (PR_CLASS, lambda ds: setattr(ds, "ContentDescription", SHAPED)),
    "PR ContentLabel": (PR_CLASS, lambda ds: setattr(ds, "ContentLabel", "MRN88421937")),
    "SEG SegmentLabel": (SEG_CLASS, _segment(SegmentLabel="MRN 88421937")),
    "SEG SegmentDescription": (SEG_CLASS, _segment(SegmentDescription=SHAPED)),
    "SEG SegmentAlgorithmName": (SEG_CLASS, _segment(SegmentAlgorithmName="MRN 88421937")),
    "K EthnicGroup": (None, lambda ds: setattr(ds, "EthnicGroup", "914-555-0173")),
    "K StationName": (None, lambda ds: setattr(ds, "StationName", "MRN88421937")),
    "K DeviceSerialNumber": (
        None,
        lambda ds: setattr(ds, "DeviceSerialNumber", "born 03/19/1947 tel 914-555-0173, 12 Elm Street"),
    ),
    "K ScheduledStudyLocation": (
        None,
        lambda ds: setattr(ds, "ScheduledStudyLocation", "Quillfeather, 12 Elm Street"),
    ),
    "K DeviceDescription": (
        None,
        lambda ds: setattr(ds, "DeviceDescription", "Patient: Marisol Quillfeather"),
    ),
    "UR RetrieveURL": (
        None,
        lambda ds: ds.add_new(0x00081190, "UR", "http://pacs/patient/Zebediah_Thistlewood/MRN77310552"),
    ),
    "UR PixelDataProviderURL": (
        None,
        lambda ds: ds.add_new(0x00287FE0, "UR", "http://pacs/Thistlewood^Zebediah/77310552"),
    ),
    "OB ICCProfile": (None, lambda ds: ds.add_new(0x00282000, "OB", b"Thistlewood^Zebediah MRN 77310552 ")),
}


@pytest.mark.parametrize("profile", ["basic", "research", "research-strict"])
@pytest.mark.parametrize("place", sorted(UNLISTED_TEXT))
def test_kept_and_unlisted_values_hold_no_identifier_shape(profile: str, place: str) -> None:
    sop_class, plant = UNLISTED_TEXT[place]
    ds = _release("CT_small.dcm", profile, sop_class)
    assert check_deidentified(to_bytes(ds)).PatientIdentityRemoved == "YES"
    plant(ds)
    _refused(ds)


def test_kept_values_a_site_releases_pass() -> None:
    """Versions, serial numbers, build dates, code meanings and URLs of real kept values are accepted."""
    ds = _release("CT_small.dcm", "research")
    ds.SoftwareVersions = ["Ver02.00.00[20010925]", "Tue Oct  4 18:39:42 EDT 2022", "LightSpeed 5.1"]
    ds.DeviceSerialNumber, ds.StationName = "88421937", "CT01_OC0"
    ds.add_new(0x00081190, "UR", "https://pacs.example.org/dicomweb/studies/" + ds.StudyInstanceUID)
    ds.DeviceDescription = "Patient Position Support, tel. extension none"
    assert check_deidentified(to_bytes(ds)).PatientIdentityRemoved == "YES"


# forms near the shapes the check knew that it accepted (outside review 13, B2): record numbers after
# other labels, dotted, ISO and written dates, a dotted phone, a name after Pat:, Name= or Pt.
NEAR_FORMS = [
    "Omnipaque MR# 88421937",
    "Omnipaque Hosp No 88421937",
    "Omnipaque PID 88421937",
    "Acc 88421937",
    "Omnipaque geb. 19.03.1947",
    "Omnipaque 1947-03-19",
    "Omnipaque Mar 19 1947",
    "Omnipaque 914.555.0173",
    "Omnipaque Pat: Quillfeather",
    "Omnipaque Name=Quillfeather",
    "Pt. Quillfeather",
    "Omnipaque M.R.N. 4471203",  # outside review 14
    "Omnipaque Unit No: 4471203",
    "Omnipaque 020 7946 0958",
]


@pytest.mark.parametrize("attribute", ["Manufacturer", "ManufacturerModelName"])
@pytest.mark.parametrize("text", NEAR_FORMS)
def test_kept_text_holds_no_near_form_of_an_identifier(attribute: str, text: str) -> None:
    ds = _release("CT_small.dcm", "research")
    setattr(ds, attribute, text)
    _refused(ds)


def test_kept_text_like_the_near_forms_that_is_no_identifier_passes() -> None:
    """A GE model named MR750, a version with its build date, a model year and a dotted version pass."""
    ds = _release("CT_small.dcm", "research")
    ds.ManufacturerModelName, ds.Manufacturer = "Discovery MR750", "GE MEDICAL SYSTEMS"
    ds.SoftwareVersions = ["21.0.1 2019-05-12", "VB20.12.2019", "build 19.03.1947"]
    ds.DeviceDescription = "Accessory 2.11.2 (2015)"
    assert check_deidentified(to_bytes(ds)).PatientIdentityRemoved == "YES"


def test_an_icc_profile_is_accepted_as_the_engine_leaves_it() -> None:
    """The engine zeroes an ICC profile's text; the platform takes that and refuses the same profile
    with its text, and bytes that are no profile (no 'acsp' signature)."""
    ds = read("CT_small.dcm")
    icc = icc_with_free_text(b"Thistlewood^Zebediah MRN 77310552")
    ds.ICCProfile = icc + bytes(len(icc) % 2)
    out = Deidentifier(KEY, load_profile("research"), ocr=False).deidentify_bytes(to_bytes(ds)).output_bytes
    released = pydicom.dcmread(io.BytesIO(out))
    assert released.ICCProfile[36:40] == b"acsp"
    assert check_deidentified(out).PatientIdentityRemoved == "YES"
    released.ICCProfile = ds.ICCProfile
    _refused(released)


def _item_with_name() -> bytes:
    name = b"\x10\x00\x10\x00" + (20).to_bytes(4, "little") + b"HONEYSUCKLE^OPHELIA "  # implicit LE
    return b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + name + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"


def _private(element: int, vr: str, value: bytes) -> Callable[[Dataset], None]:
    def plant(ds: Dataset) -> None:
        ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
        tag = Tag(0x00191000 | element)
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)

    return plant


PRIVATE = {
    "DS holding a word": _private(0x0A, "DS", b"Thistlewood "),
    "US holding a name": _private(0x0B, "US", b"HONEYSUCKLE^OPHELIA "),
    "UN holding an item with PatientName": _private(0x0A, "UN", _item_with_name()),
    "FD x3 spelling a name": _private(0x0E, "FD", b"Thistlewood^Zebediah MRN"),
}


@pytest.mark.parametrize("place", sorted(PRIVATE))
def test_a_safe_private_element_holds_numbers(place: str) -> None:
    ds = _release("CT_small.dcm", "research")
    PRIVATE[place](ds)
    _refused(ds)


@pytest.mark.parametrize(
    ("element", "vr", "value"),
    [(0x0A, "US", b"\x04\x00"), (0x0B, "DS", b"1.5 "), (0x0C, "IS", b"1000"), (0x0E, "FD", bytes(24))],
)
def test_a_safe_private_number_passes(element: int, vr: str, value: bytes) -> None:
    ds = _release("CT_small.dcm", "research")
    _private(element, vr, value)(ds)
    assert check_deidentified(to_bytes(ds)).PatientIdentityRemoved == "YES"
