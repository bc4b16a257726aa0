"""Plant one patient's own identifiers into EVERY text-bearing element of a real object, at any depth,
plus overlays, icons, private blocks, unknown tags and SR content items at depth; then look for them.

Used by ``test_plant_everywhere.py`` and ``bench/deid.py``. The identity's values are written in the
spellings an outside tester tries: ``FAMILY^GIVEN``, ``FAMILY GIVEN``, ``FAMILYGIVEN``, ``GIVEN
FAMILY``, ``family, given``, the family name repeated without spaces, the IDs, and the birth date in
three written forms.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pydicom
import pydicom.data
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from curata.demo.phi import pydicom_data_files

TEXT_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS")
_MAX = {"SH": 16, "LO": 64, "PN": 64, "CS": 16, "ST": 1024, "LT": 10240, "UT": 10240, "UC": 10240}
_SEP = re.compile(rb"[\s^,.\-_'/\\\x00]+")


@dataclass(frozen=True)
class Patient:
    family: str
    given: str
    pid: str
    accession: str
    birth: str  # YYYYMMDD
    charset: str = "ISO_IR 100"

    def spellings(self) -> list[str]:
        f, g = self.family, self.given
        y, m, d = self.birth[:4], self.birth[4:6], self.birth[6:]
        return [
            f"{f}^{g}",
            f"{f} {g}",
            f"{f}{g}",
            f"{g} {f}",
            f"{f.lower()}, {g.lower()}",
            f"{f.title()}{f.title()}{f.title()}",
            self.pid,
            self.accession,
            f"{y}-{m}-{d}",
            f"{d}/{m}/{y}",
            self.birth,
        ]

    def needles(self) -> list[tuple[str, str]]:
        """(text, class) looked for in the output: name parts, IDs, birth date forms."""
        y, m, d = self.birth[:4], self.birth[4:6], self.birth[6:]
        return [
            (self.family, "family name"),
            (self.given, "given name"),
            (self.pid, "patient id"),
            (self.accession, "accession"),
            (self.birth, "birth date"),
            (f"{y}-{m}-{d}", "birth date"),
            (f"{d}/{m}/{y}", "birth date"),
        ]


PATIENTS = [
    Patient("SUZUKI", "KENJI", "PX40417", "ACC99172", "19610314"),
    Patient("MÜLLER", "JÜRGEN", "DE7731902", "A2203118", "19480229"),
    Patient("OKONKWO", "CHIDINMA", "NG550912", "ACX66120", "19790701"),
    Patient("Đặng", "Thùy Linh", "VN881234", "ACV30021", "19920415", charset="ISO_IR 192"),
]

_UNKNOWN_EVEN_TAG = 0x00100011  # not in the data dictionary: a one-bit flip away from PatientName


@dataclass
class Planted:
    patient: Patient
    elements: int = 0  # text elements overwritten
    classes: set[str] = field(default_factory=set)


def _datasets(ds: Dataset, depth: int = 0) -> Iterator[tuple[Dataset, int]]:
    yield ds, depth
    for elem in list(ds):
        if elem.VR == "SQ" and elem.value:
            for item in elem.value:
                yield from _datasets(item, depth + 1)


def _fit(text: str, vr: str) -> str:
    if vr == "CS":
        text = re.sub(r"[^A-Z0-9 _]", "_", text.upper())
    return text[: _MAX.get(vr, 64)]


def plant_everywhere(ds: Dataset, patient: Patient, *, sr_depth: int = 5) -> Planted:
    """Overwrite every text element with a spelling of the patient's identifiers; add the hiding places."""
    out = Planted(patient)
    forms = patient.spellings()
    ds.SpecificCharacterSet = patient.charset
    ds.PatientName = f"{patient.family}^{patient.given}"
    ds.PatientID = patient.pid
    ds.AccessionNumber = patient.accession
    ds.PatientBirthDate = patient.birth
    i = 0
    skip = {0x00080005, 0x00100010, 0x00100020, 0x00080050}
    for sub, depth in _datasets(ds):
        for elem in list(sub):
            if elem.tag in skip or elem.tag >> 16 in (0x0002, 0xFFFE) or elem.VR not in TEXT_VRS:
                continue
            if (elem.tag >> 16 == 0x0028 and elem.VR == "CS") or elem.tag == 0x00080060:
                continue  # PhotometricInterpretation, Modality: the pixels' shape, the template's key
            form = forms[i % len(forms)]
            i += 1
            elem.value = _fit(f"seen {form} today" if elem.VR in ("ST", "LT", "UT") else form, elem.VR)
            out.elements += 1
            out.classes.add(f"{elem.VR} element at depth {depth}")
    # date-bearing elements carry the birth date
    for sub, _ in _datasets(ds):
        for elem in list(sub):
            if elem.VR == "DA":
                elem.value = patient.birth
            elif elem.VR == "DT":
                elem.value = patient.birth + "101500"
    out.classes.add("DA/DT elements")
    _plant_private(ds, patient, out)
    _plant_overlay(ds, patient, out)
    _plant_icon(ds, patient, out)
    _plant_unknown(ds, patient, out)
    _plant_sr_tree(ds, patient, out, sr_depth)
    return out


def _plant_private(ds: Dataset, p: Patient, out: Planted) -> None:
    block = ds.private_block(0x0099, "PLANTED VENDOR", create=True)
    block.add_new(0x10, "LO", f"{p.family}^{p.given}")
    block.add_new(0x11, "UT", f"patient {p.given} {p.family} id {p.pid}")
    block.add_new(0x12, "OB", (f"{p.family}{p.pid}".encode() + b"\0") * 3)
    block.add_new(0x13, "UN", f"{p.family}{p.given}".encode() + b" ")
    seq_item = Dataset()
    seq_item.add_new(0x00100010, "PN", f"{p.given} {p.family}")
    block.add_new(0x14, "SQ", Sequence([seq_item]))
    out.classes.add("private block (LO, UT, OB, UN, SQ)")


def _plant_overlay(ds: Dataset, p: Patient, out: Planted) -> None:
    rows, cols = 16, 16
    name = (p.family.upper().encode("utf-8") * 40)[: rows * cols // 8]
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", f"{p.family} {p.given}")
    ds.add_new(0x60001500, "LO", f"{p.family}^{p.given}")
    ds.add_new(0x60003000, "OW", name + b"\0" * (rows * cols // 8 - len(name)))
    out.classes.add("overlay description/label/data")


def _plant_icon(ds: Dataset, p: Patient, out: Planted) -> None:
    icon = Dataset()
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.Rows = icon.Columns = 8
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PixelData = (p.family.encode("utf-8") * 16)[:64].ljust(64, b"\0")
    ds.IconImageSequence = Sequence([icon])
    out.classes.add("icon image")


def _plant_unknown(ds: Dataset, p: Patient, out: Planted) -> None:
    ds.add(DataElement(_UNKNOWN_EVEN_TAG, "LO", f"{p.family}^{p.given}"))
    ds.add(DataElement(0x00180002, "UN", f"{p.given}{p.family}".encode() + b" "))
    out.classes.add("unknown standard tag (LO, UN)")


def _plant_sr_tree(ds: Dataset, p: Patient, out: Planted, depth: int) -> None:
    item = None
    for level in range(depth, 0, -1):
        node = Dataset()
        node.RelationshipType = "CONTAINS"
        node.ValueType = "CONTAINER" if level < depth else "TEXT"
        concept = Dataset()
        concept.CodeValue = "121071"
        concept.CodingSchemeDesignator = "DCM"
        concept.CodeMeaning = f"Finding about {p.family}"
        node.ConceptNameCodeSequence = Sequence([concept])
        if level == depth:
            node.TextValue = (
                f"{p.given} {p.family} (id {p.pid}) born {p.birth[6:]}/{p.birth[4:6]}/{p.birth[:4]}"
            )
        else:
            node.ContinuityOfContent = "SEPARATE"
            pn = Dataset()
            pn.RelationshipType = "HAS OBS CONTEXT"
            pn.ValueType = "PNAME"
            pn.PersonName = f"{p.family}^{p.given}"
            pn.ConceptNameCodeSequence = Sequence([concept])
            dt = Dataset()
            dt.RelationshipType = "HAS OBS CONTEXT"
            dt.ValueType = "DATETIME"
            dt.DateTime = p.birth + "083000"
            dt.ConceptNameCodeSequence = Sequence([concept])
            uid = Dataset()
            uid.RelationshipType = "HAS OBS CONTEXT"
            uid.ValueType = "UIDREF"
            uid.UID = "1.2.826.0.1.3680043.2.1125." + p.birth
            uid.ConceptNameCodeSequence = Sequence([concept])
            code = Dataset()
            code.RelationshipType = "HAS OBS CONTEXT"
            code.ValueType = "CODE"
            meaning = Dataset()
            meaning.CodeValue = "99X"
            meaning.CodingSchemeDesignator = "99LOCAL"
            meaning.CodeMeaning = f"Observer {p.family} {p.given}"
            code.ConceptCodeSequence = Sequence([meaning])
            code.ConceptNameCodeSequence = Sequence([concept])
            node.ContentSequence = Sequence([pn, dt, uid, code, *([item] if item else [])])
        item = node
    ds.ContentSequence = Sequence([*list(ds.get("ContentSequence", []) or []), item])
    req = Dataset()
    req.AccessionNumber = p.accession
    req.RequestedProcedureDescription = f"CT for {p.family} {p.given}"
    req.PlacerOrderNumberImagingServiceRequest = p.pid
    ds.ReferencedRequestSequence = Sequence([req])
    out.classes.add(f"SR content tree at depth {depth} (TEXT, PNAME, DATETIME, UIDREF, CODE meaning)")
    out.classes.add("referenced request")


# ---------------------------------------------------------------- looking for survivors
def _norm(data: bytes) -> bytes:
    return _SEP.sub(b"", data.lower())


def _inflate(raw: bytes) -> bytes:
    try:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(raw), stop_before_pixels=True)
        if ds.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian:
            meta_end = 144 + int.from_bytes(raw[140:144], "little")
            return raw[:meta_end] + zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
    except Exception:
        pass
    return raw


def survivors(output: bytes, patient: Patient, pixel_spans: list[tuple[int, int]] = ()) -> list[str]:
    """Every planted value found in ``output``: raw bytes (any case, separators removed, UTF-8, Latin-1,
    UTF-16) outside the pixel data, and every decoded text element."""
    raw = _inflate(output)
    for a, b in sorted(pixel_spans, reverse=True):
        raw = raw[:a] + raw[b:]
    hay = _norm(raw)
    found = []
    for text, kind in patient.needles():
        for codec in ("utf-8", "latin-1", "utf-16-le"):
            try:
                needle = _norm(text.encode(codec))
            except UnicodeEncodeError:
                continue
            if needle and needle in hay:
                found.append(f"{kind} {text!r} ({codec} bytes)")
                break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(output), force=True)
        for elem in ds.iterall():
            if elem.VR in TEXT_VRS and elem.value:
                text = re.sub(r"[\s^,.\-_'/\\]+", "", str(elem.value).lower())
                for needle, kind in patient.needles():
                    n = re.sub(r"[\s^,.\-_'/\\]+", "", needle.lower())
                    if n in text:
                        found.append(f"{kind} {needle!r} in {elem.keyword or elem.tag}")
    return found


def pixel_spans(output: bytes) -> list[tuple[int, int]]:
    """Byte range of the top-level pixel data value (image bytes match short strings by chance)."""
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(output), defer_size=64)
    elem = ds.get_item(0x7FE00010)
    if elem is None:
        return []
    value = ds.PixelData
    start = output.rfind(value[:64]) if len(value) >= 64 else -1
    return [(start, start + len(value))] if start > 0 else []


def corpus_where(keep: Any) -> list[str]:
    """The corpus files whose header (read without pixel data) ``keep(ds)`` takes."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus_files():
            if keep(pydicom.dcmread(path, stop_before_pixels=True)):
                out.append(path)
    return out


def corpus_files() -> list[str]:
    """Every pydicom-data file that reads as a DICOM object with a SOP class."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in pydicom_data_files("*"):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            if "SOPClassUID" in ds and "SOPInstanceUID" in ds and "StudyInstanceUID" in ds:
                out.append(path)
    return out


def release_of(deid: Any, raw: bytes) -> Any:
    """``deid.deidentify_bytes(raw)``, or None when the object is refused (quarantined)."""
    from curata.errors import CurataError

    try:
        return deid.deidentify_bytes(raw)
    except CurataError:
        return None


def falsely_marked_ct() -> pydicom.Dataset:
    """CT_small marked PatientIdentityRemoved YES by another tool while it keeps the raw MRN as
    PatientID and PatientName, the birth date, the accession number, the institution and the name in
    its description (outside review 8, finding 4: the platform stored such an object)."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "other tool"
    ds.PatientID = ds.PatientName = "QF88421937"
    ds.PatientBirthDate = "19470319"
    ds.AccessionNumber = "ACC5521987"
    ds.InstitutionName = "St Wendeline General Hospital"
    ds.StudyDescription = "CT chest Marisol Quillfeather"
    ds.ReferringPhysicianName = ds.OperatorsName = ""
    for kw in ("OtherPatientIDsSequence", "OtherPatientIDs", "OtherPatientNames", "PatientAddress"):
        if kw in ds:
            delattr(ds, kw)
    ds.remove_private_tags()
    return ds
