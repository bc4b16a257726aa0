"""Slide de-identification at the edge: vendor TIFFs rewritten tag by tag, pixels kept bit for bit.

What goes, for every vendor file (Aperio SVS, Hamamatsu NDPI, Philips TIFF, OME-TIFF, generic TIFF):

- label and macro/overview images (and NDPI's macro map): unlinked from the IFD chain, their bytes
  overwritten with zeros;
- identifying TIFF tags (Artist, HostComputer, Copyright, DocumentName, PageName, ImageUniqueID,
  XMP, IPTC, EXIF and GPS directories, Make/Model when configured, every private text tag not known
  to be harmless); ``DateTime`` is shifted by the patient's date shift;
- vendor metadata: Aperio ``ImageDescription`` fields are kept only when on an allow-list of
  technical fields (``Filename`` becomes the slide pseudonym, ``Date`` is shifted, everything else —
  ``Title``, ``User``, ``Time``, ``DSR ID``, ``ScanScope ID``, ``ImageID``, custom fields — goes); the NDPI
  property map keeps only numeric technical values under harmless keys; Philips and OME XML lose
  patient, barcode, date, serial and operator attributes and their label/macro images;
- the final gate scans every output byte outside the kept level tiles for every identifying value
  seen in the input (and the site's sidecar and the file name) and refuses the slide on a hit.

The patient pseudonym and date shift come from the same keyed functions as radiology
(``Pseudonymizer``), with the same patient key, so a patient's slides and scans link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curata.collect.deid import codestream
from curata.collect.deid.pseudonyms import Pseudonymizer
from curata.collect.deid.text import Identifiers, find_identifier
from curata.collect.wsi._tiff import INT_FORMATS, Ifd, TiffEditor
from curata.collect.wsi.formats import SlideFormat, classify_description
from curata.errors import DecodeError, DeidError, InputError

CODE_VERSION = "wsi-deid-4"  # 2: comment and application segments inside tiles zeroed; 3: unreferenced
# bytes, non-colour ICC elements, Philips/OME/NDPI text by shape, tiles past the grid, non-level tiled pages;
# 4: a kept value holding the known identity is removed (not left to refuse the slide), an ID's digit run
# is no device string or measurement, a date is no ICC profile name

_COMPRESSION, _JPEG_TABLES = 259, 347
# TIFF compressions whose tiles hold samples only; and those whose tiles are codestreams with metadata
_PLAIN_COMPRESSIONS = {1, 2, 3, 4, 5, 8, 32773, 32946, 50000}  # none, CCITT, LZW, deflate, PackBits, zstd
_CODESTREAM_COMPRESSIONS = {7, 33003, 33004, 33005, 34712, 34892, 50001, 50002}  # JPEG, J2K, WebP, JPEG XL

# Baseline and technical tags a slide needs to be read; everything else not handled below is dropped.
_STRUCTURAL = {
    254,
    255,
    256,
    257,
    258,
    259,
    262,
    263,
    266,
    273,
    274,
    277,
    278,
    279,
    280,
    281,
    282,
    283,
    284,
    296,
    297,
    305,
    317,
    318,
    319,
    320,
    322,
    323,
    324,
    325,
    330,
    338,
    339,
    340,
    341,
    347,
    512,
    513,
    514,
    515,
    529,
    530,
    531,
    532,
    32995,
    32996,
    32997,
    32998,
    34675,
}
# (GrayResponse 290/291 and TransferFunction 301 are not among them: curves no slide reader applies,
# whose numbers can carry anything.) A structural tag holds as many values as TIFF 6.0 says, per
# image or per sample; more values are not the writer's numbers (text spelled as numbers) and it goes.
_FIXED_COUNTS = {
    254: 1, 255: 1, 256: 1, 257: 1, 259: 1, 262: 1, 263: 1, 266: 1, 274: 1, 277: 1, 278: 1, 282: 1,
    283: 1, 284: 1, 296: 1, 297: 2, 317: 1, 318: 2, 319: 6, 322: 1, 323: 1, 512: 1, 513: 1, 514: 1,
    515: 1, 529: 3, 530: 2, 531: 1, 32995: 1, 32996: 1, 32997: 1, 32998: 1,
}  # fmt: skip
_PER_SAMPLE_COUNTS = {258: 1, 280: 1, 281: 1, 338: 1, 339: 1, 340: 1, 341: 1, 532: 2}
_COLOR_MAP, _PHOTOMETRIC_PALETTE = 320, 3
_DESCRIPTION, _DATETIME, _MAKE, _MODEL, _SOFTWARE = 270, 306, 271, 272, 305
_ICC_PROFILE = 34675
_KEPT_TEXT = (_MAKE, _MODEL, _SOFTWARE, 65434)
# NDPI private tags that carry no identity (numbers, the fluorescence channel name)
_NDPI_KEEP = {
    65324,
    65325,
    65420,
    65421,
    65422,
    65423,
    65424,
    65425,
    65426,
    65428,
    65432,
    65433,
    65434,
    65435,
    65436,
    65437,
    65438,
    65439,
    65440,
    65441,
    65443,
    65444,
    65445,
    65446,
    65447,
    65450,
    65451,
    65453,
    65454,
    65455,
    65456,
    65457,
    65458,
    65500,
}
_NDPI_COMMENTS, _NDPI_MAGNIFICATION, _NDPI_CHANNEL = 65449, 65421, 65434

_APERIO_KEEP = {
    "appmag",
    "mpp",
    "stripewidth",
    "left",
    "top",
    "linecameraskew",
    "lineareaxoffset",
    "lineareayoffset",
    "focus offset",
    "originalwidth",
    "originalheight",
    "filtered",
    "exposure time",
    "exposure scale",
    "gamma",
    "icc profile",
    "rack",
    "slide",
    "displaycolor",
}
# The first line of an Aperio description, token by token ("Aperio Image Library v11.2.1 \r\n46000x32914
# [42673,5576 2220x2967] (240x240) JPEG/RGB Q=30", "... 2220x2967 -> 574x768 - ", "... label 387x463"):
# a token of another shape (a name, an ID's digits, a date) is not the scanner's and goes.
_APERIO_HEADER_TOKEN = re.compile(
    r"(?i:aperio|image|library|label|macro|thumbnail)|v[A-Z]{0,3}\d[\d.]*|\d{1,3}|\d+x\d+|\[\d+,\d+|\d+x\d+\]"
    r"|\(\d+x\d+\)|->|-|(?:JPEG|J2K|RAW|LZW)/(?:RGB|YCbCr|KDU|YUV\d*)|Q=\d+"
)
_NUMERIC = re.compile(r"^[-+0-9.,eE /%]*$")
# A date has the shape of numbers (``1961/02/03``, ``03.02.1961``, ``19610203``): a field kept for its
# number keeps no date (a birth date written where a rack or exposure number goes)
_NUMBER_DATE = re.compile(
    r"(?<!\d)(?:19|20)\d\d(?:([-/.:, ])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?!\d)"
    r"|(?<!\d)\d{1,2}([-/.,])\d{1,2}\2(?:19|20)?\d\d(?!\d)"
)


def _calibration_hex(value: str) -> bool:
    """An NDPI ``AHEX`` calibration table: a long even run of hex digits whose bytes hold no word (a
    short one is an ID's or a date's digits, and hex can spell text: ``53555A554B49``)."""
    if not (_HEXISH.fullmatch(value) and len(value) >= 64 and len(value) % 2 == 0):
        return False
    return not re.search(rb"[A-Za-z]{4}", bytes.fromhex(value))


# A whole number of 7 digits or more (not a decimal's fraction) is no scanner measurement of a slide (sizes
# and stage positions run to 6 digits): it has the shape of a record number's or a phone's digits
_ID_DIGITS = re.compile(r"(?<![\d.])\d{7,}")


# Digits grouped as people write a record number, a phone or an accession: by a dash or a space
# (555-867-5309, 078-05-1120, 24-99871), or by thousands (4,417,702: one mark, before groups of
# exactly three digits, the number ending there). A decimal's fraction (0.4990, 23,449873 with a
# decimal comma) and a list of numbers (68,279,1256,685, an NDPI region) are no such groups.
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}([.,])\d{3}(?:\1\d{3})*(?!\d|[.,]\d)")
_DASHED = re.compile(r"(?<=\d)[- ](?=\d)")


def _technical_number(value: str) -> bool:
    """A value kept for its number: digits, signs, separators, and not the shape of a date or of an
    ID's digits (7 or more in a whole number: ``Rack = 4417702``), its groups joined too
    (``Rack = 4,417,702``, ``Slide = 555-867-5309``)."""
    if not _NUMERIC.fullmatch(value) or _NUMBER_DATE.search(value) or _ID_DIGITS.search(value):
        return False
    joined = _DASHED.sub("", _THOUSANDS.sub(lambda m: re.sub(r"[.,]", "", m.group()), value))
    return joined == value or not (_ID_DIGITS.search(joined) or _NUMBER_DATE.search(joined))


_HEXISH = re.compile(r"^[0-9A-Fa-f,]*$")
# an NDPI property's key: ASCII words joined by dots or slashes, indices in brackets
# (``Objective.Lens.Magnificant``, ``NDP.S/N``, ``AHEX[0].fluorescence``): a key of another shape (a name,
# words with spaces, another script) is text the writer chose, and its line goes
_NDPI_KEY = re.compile(
    r"[A-Za-z][A-Za-z0-9_]{0,40}(?:\[\d{1,3}\])?(?:[./][A-Za-z0-9_]{1,40}(?:\[\d{1,3}\])?){0,6}"
)
# ... and each of its words one the scanner writes (``_standard/ndpi_key_words.json``), a capital code of up to
# 4 letters (``PSHV``, ``YRNP``) or a number with a unit (``10x``, ``24bit``): a name is no key (``Okafor=1``)
_NDPI_KEY_WORDS = frozenset(
    json.loads((Path(__file__).parent / "_standard" / "ndpi_key_words.json").read_text("utf-8"))["words"]
)
_NDPI_KEY_CODE = re.compile(r"[A-Z]{2,4}|\d{1,3}[a-z]{1,3}")


def _ndpi_key_of_words(key: str) -> bool:
    words = [w for w in re.split(r"[./]|\[\d{1,3}\]", key) if w]
    return bool(words) and all(w.lower() in _NDPI_KEY_WORDS or _NDPI_KEY_CODE.fullmatch(w) for w in words)


_NDPI_DENY = re.compile(
    r"(?i)(created|updated|date|time|s/n|serial|barcode|user|name|label|comment|id\b|\bid|operator|title)"
)
# A Philips attribute is kept when it holds numbers (sizes, spacings, counts) or is one of the few text
# attributes a reader needs; all other text goes (descriptions, the source file's path, notes...).
_PHILIPS_KEEP_TEXT = {  # the text attributes a reader needs, each with the values it may hold
    "PIM_DP_IMAGE_TYPE": re.compile(r"WSI|LABELIMAGE|MACROIMAGE"),
    "DICOM_PHOTOMETRIC_INTERPRETATION": re.compile(r"RGB|MONOCHROME[12]|YBR_(?:FULL(?:_422)?|ICT|RCT)"),
    "DICOM_LOSSY_IMAGE_COMPRESSION": re.compile(r"0[01]"),
    "DICOM_LOSSY_IMAGE_COMPRESSION_METHOD": re.compile(r"ISO_\d{5}(?:_\d{1,2})?"),
    "DICOM_MANUFACTURER": None,  # None: a device string (device_like)
    "DICOM_MANUFACTURERS_MODEL_NAME": None,
    "DICOM_SOFTWARE_VERSIONS": None,
}
# Philips XML is rebuilt from what it is made of: DataObject, Attribute and Array elements with their
# structural XML attributes, each of its own shape (an object type, a DICOM or Philips attribute name,
# a hex group and element, a value representation); any other element, XML attribute, or text outside
# an Attribute's value is text the writer chose
_HEX = re.compile(r"0x[0-9A-Fa-f]{1,8}")
_PHILIPS_XML = {
    "DataObject": {"ObjectType": re.compile(r"DP[A-Z][A-Za-z]{2,48}|PixelDataRepresentation")},
    "Attribute": {
        "Name": re.compile(r"(?:DICOM|PIM|PIIM|UFS)_[A-Z0-9_]{1,64}"),
        "Group": _HEX,
        "Element": _HEX,
        "PMSVR": re.compile(r"I(?:String|Double|Float|Boolean|U?Int(?:8|16|32|64)|DataObject)(?:Array)?"),
    },
    "Array": {},
}
_PHILIPS_NUMBERS = re.compile(r'[\s"0-9.eE+\-,]*')
_PHILIPS_DENY = re.compile(
    r"(?i)(PATIENT|BARCODE|DATE|TIME|SERIAL|ACCESSION|INSTITUTION|OPERATOR|PHYSICIAN|STUDY_ID|"
    r"SPECIMEN|CONTAINER|LABEL|SLIDE_ID|DEVICE_SERIAL|STATION|UFS_ID|IMAGE_DATA)"
)
# OME-XML is kept by allow-list: the elements that describe the pixels and how they were acquired, with
# their technical attributes; everything else (experimenters, descriptions, annotations, plates, ROIs and
# their labels, folders, other namespaces, free text) goes, and the acquisition date is shifted.
_OME_KEEP_ELEMENTS = {
    "OME", "Image", "Pixels", "Channel", "TiffData", "Plane", "MetadataOnly", "AcquisitionDate",
    "Instrument", "InstrumentRef", "Objective", "ObjectiveSettings", "Detector", "DetectorSettings",
    "LightPath", "LightSourceSettings", "Laser", "LightEmittingDiode", "Filament", "Arc",
    "GenericExcitationSource", "Filter", "FilterSet", "FilterRef", "FilterSetRef", "Dichroic", "DichroicRef",
    "ExcitationFilterRef", "EmissionFilterRef", "TransmittanceRange", "ImagingEnvironment", "StageLabel",
}  # fmt: skip
_OME_KEEP_ATTRS = {
    "ID", "DimensionOrder", "Type", "SizeX", "SizeY", "SizeZ", "SizeC", "SizeT", "PhysicalSizeX",
    "PhysicalSizeY", "PhysicalSizeZ", "SamplesPerPixel", "IFD", "PlaneCount", "FirstC", "FirstZ", "FirstT",
    "BigEndian", "Interleaved", "SignificantBits", "Color", "Fluor", "EmissionWavelength",
    "ExcitationWavelength", "AcquisitionMode", "IlluminationType", "ContrastMethod", "PockelCellSetting",
    "NominalMagnification", "CalibratedMagnification", "LensNA", "Immersion", "Correction", "Iris",
    "WorkingDistance", "PinholeSize", "NDFilter", "TheC", "TheZ", "TheT", "DeltaT", "ExposureTime",
    "PositionX", "PositionY", "PositionZ", "X", "Y", "Z", "Binning", "Gain", "Voltage", "Offset", "Zoom",
    "ReadOutRate", "Integration", "Wavelength", "Power", "Attenuation", "RefractiveIndex", "Medium",
    "Temperature", "AirPressure", "Humidity", "CO2Percent", "CutIn", "CutOut", "CutInTolerance",
    "CutOutTolerance", "Transmittance", "schemaLocation",
}  # fmt: skip


# (TiffData's UUID, which names the source file, is not kept: the de-identified file is one file.)
# A kept OME attribute holds a number or a boolean, or, where the schema enumerates its values (units,
# immersion, correction, medium, acquisition mode, types...), one of those (``_standard/ome_enums.json``,
# built from the OME 2016-06 schema); the schema location is the OME schema's address
def _word_sets(name: str) -> dict[str, frozenset[str]]:
    """A ``_standard`` JSON file of named word lists, as sets."""
    data = json.loads((Path(__file__).parent / "_standard" / name).read_text("utf-8"))
    return {k: frozenset(v) for k, v in data.items()}


_OME_ENUMS: dict[str, frozenset[str]] = _word_sets("ome_enums.json")
_OME_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|true|false")
_OME_SCHEMA_LOCATION = re.compile(r"(?:\s*https?://www\.openmicroscopy\.org/Schemas/[\w./-]+)+\s*")


def _ome_value_kept(name: str, value: str) -> bool:
    if name not in _OME_KEEP_ATTRS and not name.endswith("Unit"):
        return False
    if name == "ID":
        return True  # rewritten to a structural one where it is not (``_ome_ids``)
    if name == "schemaLocation":
        return bool(_OME_SCHEMA_LOCATION.fullmatch(value))
    if name in _OME_ENUMS:
        return value in _OME_ENUMS[name]
    return bool(_OME_NUMBER.fullmatch(value.strip())) and not _NUMBER_DATE.search(value)


# Vendor fields that name the patient (Philips DICOM_PATIENT_NAME, an Aperio "Patient" field...): their
# values are the file's own identity, as PatientName and PatientID are a DICOM file's, and the gate looks
# for them in every spelling anywhere the file keeps text.
_NAME_FIELD = re.compile(r"(?i)patient.?s?.?name|^\s*(?:patient|name)\s*$")
_ID_FIELD = re.compile(r"(?i)patient.?id|other.?patient|(?<![a-z])mrn(?![a-z])|accession")
_BIRTH_FIELD = re.compile(r"(?i)birth|(?<![a-z])dob(?![a-z])")
# formats whose label is an IFD of its own (replaced in place); NDPI keeps its label inside the macro,
# Philips/OME inside their XML/series: those get the generated label only in DICOM-WSI
_GENERATED_LABEL_FORMATS = frozenset({SlideFormat.APERIO, SlideFormat.GENERIC_TIFF})
_ASSOCIATED_WORDS = ("label", "macro", "overview", "barcode", "slide preview")
# formats whose every tiled top-level image OpenSlide reads as a level (Philips pads levels to whole
# tiles, OME keeps series and levels in SubIFDs, NDPI tells images by magnification)
_PYRAMID_FORMATS = frozenset({SlideFormat.APERIO, SlideFormat.GENERIC_TIFF})


@dataclass
class SlideIdentity:
    """Who a vendor file belongs to, as the site knows it (a sidecar ``<file>.json`` beside it)."""

    patient_id: str | None = None
    patient_name: str | None = None
    issuer: str | None = None
    birth_date: str | None = None
    accession: str | None = None
    specimen_id: str | None = None
    stain: str | None = None
    organ: str | None = None
    extra: list[str] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SlideIdentity:
        known = {
            k: (str(v) if v is not None else None) for k, v in data.items() if k in cls.__dataclass_fields__
        }
        known.pop("extra", None)
        extra = [str(v) for k, v in data.items() if k not in cls.__dataclass_fields__ and v]
        extra += [str(v) for v in data.get("extra", []) or []]
        return cls(**known, extra=extra)

    def secrets(self) -> list[str]:
        """Identifying values that must not survive (stain and organ are not identifying)."""
        vals = [
            self.patient_id,
            self.patient_name,
            self.accession,
            self.specimen_id,
            self.birth_date,
            *self.extra,
        ]
        out: list[str] = []
        for v in vals:
            if v:
                out.append(v)
                out += [p for p in re.split(r"[\^ ,]+", v) if len(p) >= 3]
        return out

    def identifiers(self) -> Identifiers:
        """The sidecar's values as the DICOM engine holds a patient's identifiers, so the slide's gates
        find them in every spelling radiology's gate does: any case, any separators or none, name parts
        on their own and run together, the birth date in any written form, an ID's number without its
        prefix (``MRN-77123`` as ``77123``)."""
        ids = Identifiers()
        if self.patient_name:
            _add_name(ids, self.patient_name)
        for value in (self.patient_id, self.accession, self.specimen_id, *self.extra):
            _add_id(ids, value)
        if self.birth_date:
            ids.add_birth_date(_yyyymmdd(self.birth_date))
        return ids


def _add_name(ids: Identifiers, value: str) -> None:
    ids.add_name(value)
    ids.add_strong(value)


def _add_id(ids: Identifiers, value: str | None) -> None:
    """An identifier, and its number without a prefix (``MRN-77123`` is written ``77123`` too)."""
    if not value or not value.strip():
        return
    ids.add_word(value, min_len=2)
    ids.add_strong(value)
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 5 and re.fullmatch(r"[A-Za-z]*[\s\-_/#:.]*\d+", value.strip()):
        ids.add_word(digits)


@dataclass
class SlideDeidConfig:
    keep_make_model: bool = True
    keep_thumbnail: bool = True
    generated_label: bool = False  # replace a removed label image by one showing the slide pseudonym


@dataclass
class SlideDeidRecord:
    input_sha256: str
    output_sha256: str
    format: str
    patient_pseudonym: str
    slide_id: str
    removed_images: list[str]
    dropped_tags: list[int]
    rewritten: list[str]
    generated_label: bool = False
    code_version: str = CODE_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SlideDeidResult:
    output_bytes: bytes
    format: SlideFormat
    record: SlideDeidRecord
    patient_pseudonym: str
    slide_id: str
    date_shift: int
    kept_ranges: list[tuple[int, int]]
    reid: list[dict[str, Any]]
    needles: set[str] = field(default_factory=set)
    label_size: tuple[int, int] | None = None  # (width, height) of the removed label image, if any
    ids: Identifiers = field(default_factory=Identifiers)  # the sidecar's, matched in any spelling

    @property
    def file_name(self) -> str:
        """The de-identified file's name: pseudonyms only."""
        return f"{self.patient_pseudonym}/{self.slide_id}.{self.format.value}"


class Needles:
    """Identifying values to look for in the output: the site's (always) and those the rewrite dropped."""

    def __init__(self, ids: Identifiers | None = None) -> None:
        self.identity: set[str] = set()
        self.dropped: set[str] = set()
        self.ids = ids if ids is not None else Identifiers()  # the patient's, matched in any spelling

    _STOP = frozenset({"none", "null", "unknown", "true", "false", "empty", "default", "---"})

    @classmethod
    def _worth(cls, value: str) -> bool:
        if value.lower().strip("-. ") in cls._STOP or value.lower().strip("- ") in cls._STOP:
            return False
        digits = sum(c.isdigit() for c in value)
        letters = sum(c.isalpha() for c in value)
        return len(value) >= 4 and (letters >= 3 or digits >= 6)

    def _split(self, value: str | None) -> set[str]:
        if not value:
            return set()
        value = value.strip().strip("\0").strip()
        out = {value} if self._worth(value) else set()
        for word in re.split(r"[\s|=;,\r\n\t\"<>/^]+", value):
            if len(word) >= 5 and self._worth(word):
                out.add(word)
        return out

    def add_identity(self, value: str | None) -> None:
        self.identity |= self._split(value)

    def add(self, value: str | None) -> None:
        """A value the rewrite dropped: looked for whole (its words may be ordinary words)."""
        value = (value or "").strip().strip("\0").strip()
        if self._worth(value):
            self.dropped.add(value)

    def add_field(self, key: str, value: str | None) -> None:
        """A dropped vendor field: looked for whole; where its key names the patient, its value joins
        the identity the gate finds in any spelling (``OKONKWO-BELLO^ADAEZE`` as ``okonkwo bello``)."""
        self.add(value)
        value = (value or "").strip().strip("\0").strip()
        if not value:
            return
        if _BIRTH_FIELD.search(key):
            self.ids.add_birth_date(_yyyymmdd(value))
        elif _NAME_FIELD.search(key):
            _add_name(self.ids, value)
        elif _ID_FIELD.search(key):
            _add_id(self.ids, value)

    def final(self, kept_texts: list[str]) -> set[str]:
        """Dropped values that also are a kept technical value (a channel name, the model) are not leaks."""
        kept = "\n".join(kept_texts).lower()
        return self.identity | {n for n in self.dropped if n.lower() not in kept}


def _yyyymmdd(value: str) -> str:
    """A sidecar's birth date (``19480614``, ``1948-06-14``, ``14/06/1948``) as YYYYMMDD."""
    parts = re.findall(r"\d+", value)
    if len(parts) == 3 and len(parts[2]) == 4:
        return f"{parts[2]}{int(parts[1]):02d}{int(parts[0]):02d}"
    if len(parts) == 3 and len(parts[0]) == 4:
        return f"{parts[0]}{int(parts[1]):02d}{int(parts[2]):02d}"
    return "".join(parts)


def patient_key(identity: SlideIdentity | None, fallback: str) -> str:
    """The same key the DICOM engine derives (``id:<issuer>|<id>``), so slides and scans share pseudonyms."""
    if identity and identity.patient_id:
        return f"id:{identity.issuer or ''}|{identity.patient_id.strip()}"
    if identity and identity.patient_name:
        return f"name:{identity.patient_name.strip()}|{(identity.birth_date or '').strip()}"
    return f"slide:{fallback}"


def slide_pseudonym(pseudo: Pseudonymizer, slide_key: str) -> str:
    return "SLD-" + pseudo.patient(f"slide:{slide_key}").removeprefix(pseudo.prefix)


class SlideDeidentifier:
    """De-identifies vendor slide files with one site secret (the same one radiology uses)."""

    def __init__(
        self, key: bytes, *, config: SlideDeidConfig | None = None, pseudo: Pseudonymizer | None = None
    ) -> None:
        self.pseudo = pseudo or Pseudonymizer(key)
        self.config = config or SlideDeidConfig()

    def deidentify_bytes(
        self, raw: bytes, *, source: str = "", identity: SlideIdentity | None = None
    ) -> SlideDeidResult:
        ed = TiffEditor(raw, source=source or None)
        first = ed.ifds[0]
        description = ed.text(first, _DESCRIPTION) or ""
        tiled = any(i.get(322) is not None for i in ed.ifds + ed.sub_ifds)
        fmt = classify_description(description, ed.ndpi, tiled)
        if fmt is None:
            raise InputError(
                "a TIFF without tiled pyramid levels is not a whole-slide image",
                path=source or None,
                hint="slides must be tiled, pyramidal TIFFs (SVS, NDPI, Philips, OME-TIFF, generic tiled TIFF)",
            )
        in_sha = hashlib.sha256(raw).hexdigest()
        slide_key = (identity and (identity.specimen_id or identity.accession)) or in_sha
        pkey = patient_key(identity, slide_key)
        pseudonym = self.pseudo.patient(pkey)
        shift = self.pseudo.date_shift(pkey)
        slide_id = slide_pseudonym(self.pseudo, slide_key)
        needles = Needles(identity.identifiers() if identity else None)
        for secret in identity.secrets() if identity else []:
            needles.add_identity(secret)
        stem = re.split(r"[/\\!]", source)[-1].split(".")[0] if source else ""
        if re.search(r"[\d_\- ^]", stem) and needles._worth(stem):
            # a composite file name (``Doe_Jane_S24-123``) must not survive; a plain word (``slide``) may
            needles.identity.add(stem)
        ctx = _Run(ed, fmt, pseudonym, slide_id, shift, self.config, needles)
        ctx.remove_associated()
        for ifd in ed.live_ifds():
            ctx.clean_ifd(ifd)
            ctx.trim_to_grid(ifd)
        ctx.scrub_tiles()
        generated = False
        if self.config.generated_label and ctx.label_size is not None and fmt in _GENERATED_LABEL_FORMATS:
            generated = True
            ctx.append_label()
        if ed.zero_unreferenced():  # what dropped tags pointed at (EXIF, GPS, private IFDs), gaps, tails
            ctx.rewritten.append("unreferenced bytes (zeroed)")
        out = bytes(ed.buf)
        kept = sorted(r for ifd in ed.live_ifds() for r in ed.data_ranges(ifd))
        kept_texts = [t for ifd in ed.live_ifds() for tag in _KEPT_TEXT if (t := ed.text(ifd, tag))]
        final = needles.final(kept_texts)
        ids = needles.ids  # the sidecar's identity and the one the file's own fields name
        _gate(out, kept, final, ctx.removed_ranges, ctx.tile_meta, ids)
        record = SlideDeidRecord(
            input_sha256=in_sha,
            output_sha256=hashlib.sha256(out).hexdigest(),
            format=fmt.name.lower(),
            patient_pseudonym=pseudonym,
            slide_id=slide_id,
            removed_images=ctx.removed,
            dropped_tags=sorted(set(ctx.dropped)),
            rewritten=sorted(set(ctx.rewritten)),
            generated_label=generated,
        )
        reid = [
            {
                "kind": "patient",
                "pseudonym": pseudonym,
                "patient_id": (identity.patient_id if identity else None) or "",
                "patient_name": (identity.patient_name if identity else None) or "",
            },
            {"kind": "slide", "pseudonym": pseudonym, "original": slide_key, "new": slide_id},
        ]
        return SlideDeidResult(
            out,
            fmt,
            record,
            pseudonym,
            slide_id,
            shift,
            kept,
            reid,
            final,
            label_size=ctx.label_size,
            ids=ids,
        )


class _Run:
    def __init__(
        self,
        ed: TiffEditor,
        fmt: SlideFormat,
        pseudonym: str,
        slide_id: str,
        shift: int,
        config: SlideDeidConfig,
        needles: Needles,
    ) -> None:
        self.ed, self.fmt, self.pseudonym, self.slide_id = ed, fmt, pseudonym, slide_id
        self.shift, self.config, self.needles = shift, config, needles
        self.removed: list[str] = []
        self.removed_ranges: list[tuple[int, int]] = []
        self.dropped: list[int] = []
        self.rewritten: list[str] = []
        self.label_size: tuple[int, int] | None = None
        self.tile_meta: list[tuple[int, int]] = []  # metadata kept inside tiles: scanned by the gate
        self.tile_segments = 0  # comment/application segments zeroed inside tiles

    # ------------------------------------------------------------------ tiles
    def scrub_tiles(self) -> None:
        """Zero the comment and application segments inside every kept tile or strip and its shared
        JPEG tables (``codestream.metadata_spans``), in place: lengths and offsets stay, the coded image
        is bit for bit. Tiles of another compression, or that are not codestreams, refuse the slide."""
        ed = self.ed
        for n, ifd in enumerate(ed.live_ifds()):
            compression = (ed.values(ifd, _COMPRESSION) or [1])[0]
            if compression in _PLAIN_COMPRESSIONS:
                continue
            if compression not in _CODESTREAM_COMPRESSIONS:
                raise InputError(
                    f"the slide cannot be opened here: its tiles use TIFF compression {compression}",
                    hint="export the slide as SVS, NDPI, Philips or OME-TIFF with JPEG, JPEG 2000 or lossless tiles",
                )
            ranges = list(ed.data_ranges(ifd))
            tables = ifd.get(_JPEG_TABLES)
            if tables is not None:
                ranges.append((tables.value_pos, tables.value_pos + tables.size))
            for k, (start, end) in enumerate(ranges):
                try:
                    zero, keep = codestream.metadata_spans(bytes(ed.buf[start:end]))
                except codestream.CodestreamError as exc:  # not a codestream: a corrupt slide
                    part = "tile" if ifd.get(322) is not None else "strip"
                    what = "the JPEG tables" if tables is not None and k == len(ranges) - 1 else f"{part} {k}"
                    raise DecodeError(
                        f"{what} of image {n} cannot be decoded ({exc})",
                        hint="the slide's tile data is damaged; send it again from the scanner or archive",
                    ) from None
                for a, b in zero:
                    if any(ed.buf[start + a : start + b]):
                        ed.zero(start + a, start + b)
                        self.tile_segments += 1
                self.tile_meta += [(start + a, start + b) for a, b in keep]

    def trim_to_grid(self, ifd: Ifd) -> None:
        """An image has as many tiles (or strips) as its grid holds; offsets past it point at bytes no
        reader decodes (a hidden image, text), which the gate would take for tiles and not scan. They
        are cut, and their bytes, no longer referenced, are zeroed with the rest."""
        ed = self.ed
        width, height = (ed.values(ifd, 256) or [0])[0], (ed.values(ifd, 257) or [0])[0]
        planes = (ed.values(ifd, 277) or [1])[0] if (ed.values(ifd, 284) or [1])[0] == 2 else 1
        if ifd.get(322) is not None:
            tw, th = (ed.values(ifd, 322) or [0])[0], (ed.values(ifd, 323) or [0])[0]
            depth = -(-(ed.values(ifd, 32997) or [1])[0] // max((ed.values(ifd, 32998) or [1])[0], 1))
            grid = -(-width // tw) * -(-height // th) * depth * planes if tw and th else 0
            tags = (324, 325)
        else:
            rows = (ed.values(ifd, 278) or [height])[0] or height
            grid = -(-height // rows) * planes if rows else 0
            tags = (273, 279)
        for tag in tags:
            e = ifd.get(tag)
            if e is None or not grid or e.count <= grid or e.dtype not in INT_FORMATS:
                continue
            values = ed.values(ifd, tag)[:grid]
            ed.set_bytes(ifd, tag, struct.pack(f"{ed.bo}{grid}{INT_FORMATS[e.dtype]}", *values))
            self.rewritten.append("tile or strip offsets past the image's grid (cut)")

    # ------------------------------------------------------------------ associated images
    def _kind(self, index: int, ifd: Ifd) -> str | None:
        ed = self.ed
        tiled = ifd.get(322) is not None
        desc = (ed.text(ifd, _DESCRIPTION) or "").lower()
        if self.fmt is SlideFormat.HAMAMATSU:
            e = ifd.get(_NDPI_MAGNIFICATION)
            mag = None
            if e is not None and e.dtype == 11:
                mag = struct.unpack_from(ed.bo + "f", ed.buf, e.value_pos)[0]
                if mag <= 0:
                    return "macro" if mag == -1 else "map"
            # a page with no magnification, or one that is not the base scaled down (a macro whose tag was
            # lost or rewritten): OpenSlide refused the slide for it; it is removed as an associated image
            if mag is None or not math.isfinite(mag) or not self._scaled_base(ifd):
                return "associated"
            return None
        if self.fmt is SlideFormat.APERIO:
            lines = desc.splitlines()
            tail = lines[1].split("|")[0] if len(lines) > 1 else ""
            for word in _ASSOCIATED_WORDS:
                if tail.strip().startswith(word):
                    return word
        else:
            m = re.match(r"\s*(label|macro|overview|barcode|slide preview)\b", desc)
            if m:
                return m.group(1)
        if tiled and self.fmt in _PYRAMID_FORMATS and not self._pyramid_level(ifd):
            return "associated"  # tiled, but not a downsample of the base: a label or macro OpenSlide
            # would show as a level (and the vendor file would keep)
        if tiled or index == 0:
            return None
        if (
            self.fmt is SlideFormat.APERIO
            and index == 1
            and self.config.keep_thumbnail
            and self._scaled_base(ifd)
        ):
            # the Aperio thumbnail: the scanned area scaled down. Its place alone is no proof (a label
            # written second, its description without the word, was kept whole: outside review 12)
            return None
        return "associated"

    def _scaled_base(self, ifd: Ifd) -> bool:
        """An image is the largest image of the file scaled down by one factor in both directions."""
        sizes = [(self.ed.values(i, 256), self.ed.values(i, 257)) for i in self.ed.ifds]
        base_w, base_h = max(((w[0], h[0]) for w, h in sizes if w and h), key=lambda s: s[0] * s[1])
        w, h = (self.ed.values(ifd, 256) or [0])[0], (self.ed.values(ifd, 257) or [0])[0]
        return bool(w and h) and abs(base_h * w / base_w - h) <= max(2.0, 0.02 * h)

    def _pyramid_level(self, ifd: Ifd) -> bool:
        """A tiled image is a level when it is the base (the largest tiled image) scaled down by one
        factor in both directions (to a pixel or two, or 2 %, of rounding)."""
        sizes = [
            (self.ed.values(i, 256), self.ed.values(i, 257)) for i in self.ed.ifds if i.get(322) is not None
        ]
        base_w, base_h = max(((w[0], h[0]) for w, h in sizes if w and h), key=lambda s: s[0] * s[1])
        w, h = (self.ed.values(ifd, 256) or [0])[0], (self.ed.values(ifd, 257) or [0])[0]
        if not w or not h:
            return False
        return abs(base_h * w / base_w - h) <= max(2.0, 0.02 * h)

    def remove_associated(self) -> None:
        for index, ifd in enumerate(list(self.ed.ifds)):
            kind = self._kind(index, ifd)
            if kind is None:
                continue
            if kind == "label" and self.label_size is None:
                w, h = self.ed.values(ifd, 256), self.ed.values(ifd, 257)
                if w and h:
                    self.label_size = (w[0], h[0])
            self.removed_ranges += self.ed.data_ranges(ifd)
            self.ed.remove_image(ifd)
            self.removed.append(f"{kind} (IFD {index})")

    def append_label(self) -> None:
        """A generated label (the slide pseudonym, text and QR code) where the glass label was."""
        from curata.collect.wsi.labels import render_label

        assert self.label_size is not None
        w, h = self.label_size
        pixels = render_label(self.slide_id, w, h)
        desc = f"Aperio Image Library Curata\nlabel {w}x{h}" if self.fmt is SlideFormat.APERIO else "label"
        self.ed.append_image(pixels.tobytes(), w, h, desc)
        self.rewritten.append("label (generated)")

    # ------------------------------------------------------------------ tags
    def clean_ifd(self, ifd: Ifd) -> None:
        ed = self.ed
        drop: set[int] = set()
        for e in ifd.entries:
            tag = e.tag
            if tag in (_MAKE, _MODEL) and not self.config.keep_make_model:
                drop.add(tag)
                self.needles.add(ed.text(ifd, tag))
                continue
            device = tag in (_MAKE, _MODEL, _SOFTWARE)
            channel = self.fmt is SlideFormat.HAMAMATSU and tag == _NDPI_CHANNEL
            if (device or channel) and e.dtype == 2:
                self._device_text(ifd, tag, channel=channel)
                continue
            if device or channel:  # a device string is ASCII: bytes of another type are not the scanner's
                self.needles.add(ed.text(ifd, tag))
                drop.add(tag)
                continue
            if tag == _ICC_PROFILE:
                self._icc_profile(e)
                continue
            if tag in _STRUCTURAL and not self._text_in_number(ifd, e) and self._count_fits(ifd, e):
                continue
            if tag in (_MAKE, _MODEL):
                continue
            if tag == _DESCRIPTION:
                self._description(ifd)
                continue
            if tag == _DATETIME:
                self._datetime(ifd)
                continue
            if self.fmt is SlideFormat.HAMAMATSU and tag == _NDPI_COMMENTS:
                self._ndpi_comments(ifd)
                continue
            if self.fmt is SlideFormat.HAMAMATSU and tag in _NDPI_KEEP and not self._text_in_number(ifd, e):
                continue
            if e.dtype in (1, 2, 7):
                self.needles.add(ed.text(ifd, tag))
            drop.add(tag)
        if drop:
            self.dropped += ed.drop_tags(ifd, drop)

    def _icc_profile(self, e: Any) -> None:
        """The ICC profile is kept for its colour transform; its text (description, copyright, device
        make and model descriptions, any ``text``/``desc``/``mluc`` element, dates) is free text a site
        or a scanner fills in, and nothing says whose name it would be: zeroed in place
        (:func:`codestream.icc_text_spans`), lengths and offsets kept, so the transform is the same."""
        zeroed = False
        for a, b in codestream.icc_text_spans(self.ed.raw_value(e)):
            if any(self.ed.buf[e.value_pos + a : e.value_pos + b]):
                self.ed.zero(e.value_pos + a, e.value_pos + b)
                zeroed = True
        if zeroed:
            self.rewritten.append("ICC profile (text)")

    def _device_text(self, ifd: Ifd, tag: int, *, channel: bool) -> None:
        """Make, Model, Software and the NDPI channel name are kept for the scanner's words; nothing says
        whose a name there would be, so a value is kept only in the shape of a device string (vendor and
        product words, model and version tokens) or, for the channel, of a stain or fluorophore; any other
        value becomes ``unknown``, and the record says so. A value holding the identity the sidecar or the
        file's own patient fields name is left to the final gate, which refuses the slide (as before)."""
        text = (self.ed.text(ifd, tag) or "").strip("\0 ")
        if not text:
            return
        if self.holds_identity(text):  # the patient's known identity (sidecar, the file's own fields)
            why = "held the patient's identity"
        elif _stain_like(text) if channel else device_like(text):
            return
        else:
            why = "not a device string"
        self.needles.add(text)
        self.ed.set_text(ifd, tag, "unknown")
        self.rewritten.append(f"{_DEVICE_TAG_NAMES[tag]} ({why}: unknown)")

    def holds_identity(self, value: str | None) -> bool:
        """``value`` holds the patient's known identity (the sidecar's, or the file's own patient fields)
        in any spelling the final gate finds: a kept field that does is removed, not left for the gate
        to refuse the whole slide on."""
        ids = self.needles.ids
        return bool(value and value.strip()) and bool(
            find_identifier(str(value).encode("utf-8", "replace"), ids.gate_needles())
        )

    def note_identity_fields(self, pairs: list[tuple[str, str]]) -> None:
        """The file's own patient fields (Aperio ``Patient``, Philips ``DICOM_PATIENT_ID``, an NDPI
        barcode...) join the identity before any kept value is judged, wherever they stand in the file."""
        for key, value in pairs:
            if _NAME_FIELD.search(key) or _ID_FIELD.search(key) or _BIRTH_FIELD.search(key):
                self.needles.add_field(key, value)

    def _count_fits(self, ifd: Ifd, e: Any) -> bool:
        """A structural tag with no more values than TIFF 6.0 gives it (per image, per sample; a colour
        map only in a palette image, of 3 x 2^bits values); tags of a variable count are not judged."""
        spp = (self.ed.values(ifd, 277) or [1])[0]
        if e.tag in _FIXED_COUNTS:
            return e.count <= _FIXED_COUNTS[e.tag]
        if e.tag in _PER_SAMPLE_COUNTS:
            return e.count <= _PER_SAMPLE_COUNTS[e.tag] * max(spp, 3)
        if e.tag == _COLOR_MAP:
            bits = (self.ed.values(ifd, 258) or [8])[0]
            palette = (self.ed.values(ifd, 262) or [0])[0] == _PHOTOMETRIC_PALETTE
            return palette and bits <= 16 and e.count == 3 * 2**bits
        return True

    def _text_in_number(self, ifd: Ifd, e: Any) -> bool:
        """A structural or NDPI tag is kept for its number: text there (ASCII, or bytes that read as
        words) is not the scanner's, and goes. Software, the NDPI channel name, the JPEG tables and the
        ICC profile are the tags kept for their text or bytes."""
        if e.tag in (_SOFTWARE, _NDPI_CHANNEL, _JPEG_TABLES, 34675) or e.dtype not in (1, 2, 7):
            return False
        return e.dtype != 1 or bool(re.search(r"[A-Za-z0-9]{4}", self.ed.text(ifd, e.tag) or ""))

    def _datetime(self, ifd: Ifd) -> None:
        text = self.ed.text(ifd, _DATETIME) or ""
        self.needles.add(text)
        m = re.match(r"^(\d{4}):(\d{2}):(\d{2})", text)
        new = ""
        if m:
            try:
                day = dt.date(*(int(g) for g in m.groups())) + dt.timedelta(days=self.shift)
                new = f"{day.year:04d}:{day.month:02d}:{day.day:02d} 00:00:00"
            except ValueError:
                new = ""
        if new:
            self.ed.set_text(ifd, _DATETIME, new)
            self.rewritten.append("DateTime")
        else:
            self.dropped += self.ed.drop_tags(ifd, {_DATETIME})

    def _description(self, ifd: Ifd) -> None:
        ed = self.ed
        text = ed.text(ifd, _DESCRIPTION) or ""
        new: str | None
        if self.fmt is SlideFormat.APERIO and text.lstrip().startswith("Aperio"):
            new = self._aperio(text)
        elif self.fmt is SlideFormat.PHILIPS and text.lstrip().startswith("<"):
            new = self._xml(text, philips=True)
        elif self.fmt is SlideFormat.OME and "<OME" in text[:2000]:
            new = self._xml(text, philips=False)
        else:
            new = None
        if new is None:
            self.needles.add(text)
            self.dropped += ed.drop_tags(ifd, {_DESCRIPTION})
            return
        ed.set_text(ifd, _DESCRIPTION, new)
        self.rewritten.append("ImageDescription")

    def _aperio(self, text: str) -> str:
        parts = text.split("|")
        self.note_identity_fields(
            [(k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in parts[1:])]
        )
        out = [self._aperio_header(parts[0])]
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            k, v = key.strip(), value.strip()
            kl = k.lower()
            if kl == "filename":
                self.needles.add(v)
                out.append(f"Filename = {self.slide_id}")
            elif kl == "date":
                self.needles.add(v)
                shifted = _shift_us_date(v, self.shift)
                if shifted:
                    out.append(f"Date = {shifted}")
            elif (
                sep
                and kl in _APERIO_KEEP
                and (_technical_number(v) if kl != "icc profile" else _profile_name_like(v))
                and not self.holds_identity(v)
            ):
                out.append(f"{k} = {v}")
            else:
                self.needles.add_field(k, v)
                if not sep:
                    self.needles.add(k)
        return "|".join(out)

    def _aperio_header(self, header: str) -> str:
        kept: list[str] = []
        for token in re.split(r"(\s+|;)", header):
            if not token or token.isspace() or token == ";" or _APERIO_HEADER_TOKEN.fullmatch(token):
                kept.append(token)
            else:
                self.needles.add(token)
        return "".join(kept)

    def _ndpi_comments(self, ifd: Ifd) -> None:
        text = self.ed.text(ifd, _NDPI_COMMENTS) or ""
        keep: list[str] = []
        lines = re.split(r"[\r\n]+", text)
        self.note_identity_fields([(k, v) for k, _, v in (line.partition("=") for line in lines)])
        for line in lines:
            key, sep, value = line.partition("=")
            ok = (
                sep
                and not key.startswith(";")
                and not _NDPI_DENY.search(key)
                and _NDPI_KEY.fullmatch(key)
                and _ndpi_key_of_words(key)
                and (_technical_number(value) or ("AHEX" in key and _calibration_hex(value)))
                and not self.holds_identity(value)
            )
            if ok:
                keep.append(line)
            else:
                self.needles.add_field(key, value) if sep else self.needles.add(line)
        self.ed.set_text(ifd, _NDPI_COMMENTS, "\r\n".join(keep))
        self.rewritten.append("NDPI properties")

    def _xml(self, text: str, *, philips: bool) -> str | None:
        try:
            root = ET.fromstring(text.encode("utf-8"))
        except ET.ParseError:
            return None
        if philips:
            self._philips(root)
        else:
            self._ome(root)
        return ET.tostring(root, encoding="unicode")

    def _philips(self, root: ET.Element) -> None:
        self.note_identity_fields(
            [(a.get("Name") or "", a.text or "") for a in root.iter("Attribute") if len(a) == 0]
        )
        self._philips_element(root)
        for parent in list(root.iter()):
            for child in list(parent):
                name = child.get("Name") or ""
                if child.tag not in _PHILIPS_XML:
                    self._note_xml(child)
                    self.needles.add(child.tail)
                    parent.remove(child)
                    continue
                if child.tag == "DataObject" and child.get("ObjectType") == "DPScannedImage":
                    kinds = [
                        a.text or "" for a in child.iter("Attribute") if a.get("Name") == "PIM_DP_IMAGE_TYPE"
                    ]
                    found = [k.strip() for k in kinds if k.strip() in ("LABELIMAGE", "MACROIMAGE")]
                    if found:  # named by the kind matched: another value of the attribute is the input's text
                        self._note_xml(child)
                        parent.remove(child)
                        self.removed.append(f"{found[0].lower()} (XML)")
                        continue
                self._philips_element(child)
                if (
                    child.tag == "Attribute"
                    and len(child) == 0
                    and (not _philips_kept(name, child.text or "") or self.holds_identity(child.text))
                ):
                    self.needles.add_field(name, child.text)
                    parent.remove(child)

    def _philips_element(self, elem: ET.Element) -> None:
        """Keep an element's structural XML attributes (of a name's or hex number's shape) and, for a leaf
        Attribute, its value; any other attribute, text and tail go."""
        allowed = _PHILIPS_XML.get(str(elem.tag), {})
        for key, value in list(elem.attrib.items()):
            if key not in allowed or not allowed[key].fullmatch(value):
                self.needles.add(value)
                del elem.attrib[key]
                self.rewritten.append(f"Philips XML attribute {key if key in allowed else '(other)'}")
        if not (elem.tag == "Attribute" and len(elem) == 0) and elem.text and elem.text.strip():
            self.needles.add(elem.text)
            elem.text = None
        if elem.tail and elem.tail.strip():
            self.needles.add(elem.tail)
            elem.tail = None

    def _ome(self, root: ET.Element) -> None:
        def local(tag: str) -> str:
            return tag.rsplit("}", 1)[-1]

        for parent in list(root.iter()):
            for child in list(parent):
                lt = local(child.tag)
                if lt == "Image" and any(w in (child.get("Name") or "").lower() for w in _ASSOCIATED_WORDS):
                    self._note_xml(child)
                    parent.remove(child)
                    # named by its kind: the image's own Name is the input's text (it goes to the catalog)
                    word = next(w for w in _ASSOCIATED_WORDS if w in (child.get("Name") or "").lower())
                    self.removed.append(f"{word} (OME image)")
                    continue
                if lt not in _OME_KEEP_ELEMENTS:
                    self._note_xml(child)
                    parent.remove(child)
                    continue
                self._ome_element(child, lt, local)
        self._ome_element(root, local(root.tag), local)
        self._ome_ids(root, local)

    def _ome_ids(self, root: ET.Element, local: Any) -> None:
        """OME's ``ID`` attributes are references (``Image:0``, ``Channel:0:1``); one of another form (an
        LSID naming a site, ``Image:Okonkwo``) is text the writer chose: every such ID becomes a structural
        one of its element's type, the same new value wherever it is referenced (``InstrumentRef``...)."""
        elements = [(e, local(e.tag)) for e in root.iter() if e.get("ID") is not None]
        taken = {e.get("ID") for e, _ in elements if _OME_STRUCTURAL_ID.fullmatch(e.get("ID") or "")}
        renamed: dict[str, str] = {}

        def fresh(kind: str) -> str:
            n = 0
            while f"{kind}:{n}" in taken:
                n += 1
            taken.add(f"{kind}:{n}")
            return f"{kind}:{n}"

        # definitions first, then references (a Ref element's type is its name less "Ref")
        for elem, lt in sorted(elements, key=lambda el: el[1].endswith("Ref")):
            old = elem.get("ID") or ""
            if _OME_STRUCTURAL_ID.fullmatch(old):
                continue
            if old not in renamed:
                renamed[old] = fresh(_OME_ID_KINDS.get(lt) or lt.removesuffix("Ref"))
                self.needles.add(old)
            elem.set("ID", renamed[old])
        if renamed:
            self.rewritten.append("OME IDs")

    def _ome_element(self, elem: ET.Element, lt: str, local: Any) -> None:
        for attr in list(elem.attrib):
            name = local(attr)
            free = (lt == "Channel" and name in ("Name", "Fluor")) or name == "Fluor"
            held = self.holds_identity(elem.attrib[attr]) and name != "ID"  # (IDs: rewritten below)
            if free and not held and _stain_like(elem.attrib[attr]):
                continue
            if free or held or not _ome_value_kept(name, elem.attrib[attr]):
                self.needles.add(elem.attrib[attr])
                del elem.attrib[attr]
                if free:
                    self.rewritten.append(f"OME {lt} {name} (not a stain or fluorophore)")
        text = (elem.text or "").strip()
        if lt == "AcquisitionDate" and text:
            self.needles.add(text)
            day = _shift_iso_date(text, self.shift)
            elem.text = f"{day}T00:00:00" if day else None
            self.rewritten.append("OME AcquisitionDate")
        elif text and not (lt == "UUID" and re.fullmatch(r"urn:uuid:[0-9a-fA-F-]{36}", text)):
            self.needles.add(text)
            elem.text = None
        if elem.tail and elem.tail.strip():
            self.needles.add(elem.tail.strip())
            elem.tail = None

    def _note_xml(self, elem: ET.Element) -> None:
        for node in elem.iter():
            if node.text and len(node.text) < 512:
                self.needles.add(node.text)
            for k, v in node.attrib.items():
                if k not in (
                    "ID",
                    "DimensionOrder",
                    "Type",
                    "ObjectType",
                    "Name",
                    "PixelType",
                    "PMSVR",
                    "Group",
                    "Element",
                ):
                    self.needles.add(v)


# OME's structural IDs (``Image:0``, ``Channel:0:1``, ``Pixels:0``): any other ID is rewritten
_OME_ID_KINDS = {
    "LightEmittingDiode": "LightSource", "Laser": "LightSource", "Arc": "LightSource", "Filament": "LightSource",
    "GenericExcitationSource": "LightSource", "LightSourceSettings": "LightSource", "DetectorSettings": "Detector",
    "ObjectiveSettings": "Objective", "ExcitationFilterRef": "Filter", "EmissionFilterRef": "Filter",
}  # fmt: skip
_OME_STRUCTURAL_ID = re.compile(
    r"(?:Image|Pixels|Channel|Instrument|Objective|Detector|LightSource|Filter|FilterSet|Dichroic|Plane)"
    r"(?::(?:0|[1-9]\d{0,2})){1,3}"
)  # small indices, never zero-padded: a number of 4+ digits or ``06`` (a year, an ID, a date) is not OME's
# Words of a stain, fluorophore or marker name (``DAPI``, ``Alexa Fluor 488``, ``H&E``, ``CD8``, ``Opal 520``):
# a channel name or fluor made only of these (or of marker-like tokens: a few letters, a few digits) is kept
_STAIN_WORDS = frozenset(
    [
        "dapi",
        "hoechst",
        "fitc",
        "tritc",
        "gfp",
        "egfp",
        "rfp",
        "yfp",
        "cfp",
        "bfp",
        "mcherry",
        "tdtomato",
        "texas",
        "red",
        "green",
        "blue",
        "cyan",
        "yellow",
        "magenta",
        "far",
        "alexa",
        "fluor",
        "af",
        "opal",
        "atto",
        "cy",
        "dylight",
        "pe",
        "apc",
        "percp",
        "bv",
        "brilliant",
        "violet",
        "pacific",
        "orange",
        "qdot",
        "h&e",
        "he",
        "hematoxylin",
        "haematoxylin",
        "eosin",
        "dab",
        "ihc",
        "brightfield",
        "bf",
        "fluorescence",
        "fluorescent",
        "rgb",
        "channel",
        "ch",
        "c",
        "luminance",
        "gray",
        "grey",
        "white",
        "phase",
        "contrast",
        "dic",
        "autofluorescence",
        "mono",
        "nuclei",
        "nuclear",
        "membrane",
        "cytoplasm",
        "dna",
        "tissue",
        "panck",
        "ck",
        "sma",
        "vimentin",
        "desmin",
        "ecad",
        "phalloidin",
        "wga",
        "lectin",
        "tubulin",
        "actin",
        "er",
        "pr",
        "her",
        "ki",
        "cd",
        "pd",
        "l",
    ]
)
_MARKER_TOKEN = re.compile(r"[A-Za-z]{0,5}\d{0,3}(?:\.\d)?[A-Za-z]{0,2}")


def _stain_like(value: str) -> bool:
    """A channel name or fluor made of stain/fluorophore words, wavelengths and marker-like tokens only;
    a person's name, an ID's number or a date is not (at most 3 digits a token, letters from a list or
    at most 5 of them beside digits)."""
    tokens = [t for t in re.split(r"[\s\-_/()+,]+", value.strip()) if t]
    if not tokens or len(value) > 64:
        return False
    for token in tokens:
        low = token.lower()
        if low in _STAIN_WORDS:
            continue
        if re.search(r"\d", token) and _MARKER_TOKEN.fullmatch(token):
            continue  # CD8, Ki67, AF488, Cy5.5, 488, 647nm
        return False
    return True


# The words a sidecar's ``organ`` and ``stain`` may hold (``_standard/specimen_words.json``: DICOM body parts,
# pathology sites and specimen words; routine, special and IHC stains)
_SPECIMEN_WORDS = _word_sets("specimen_words.json")
_SIDECAR_CUT = re.compile(r"(\s+|[,;()\[\]{}<>]+)")
_SIDECAR_WORD = re.compile(r"[\s,;:()\[\]{}<>/+]+")


def _sidecar_words(value: str | None, identity: SlideIdentity | None, kind: str) -> str | None:
    """A sidecar's ``organ`` or ``stain`` as the slide keeps it (slide row, DICOM-WSI descriptions and
    body part): the patient's identity the sidecar names is cut (``liver (MRN4417702)`` is ``liver``), and
    what is left is kept only when every word is an organ's or a stain's (a stain may also be a
    fluorophore or marker: ``Ki-67``, ``CD8``). A site types these; nothing else says whose a name there
    would be (``read by Dr. Okafor``), so a value with another word is not kept (None)."""
    if not value or not value.strip():
        return None
    text = value
    if identity is not None:
        needles = identity.identifiers().gate_needles()
        parts = _SIDECAR_CUT.split(text)
        text = "".join(p for p in parts if not (p.strip() and find_identifier(p.encode("utf-8"), needles)))
    text = re.sub(r"[(\[{<]\s*[)\]}>]", "", text)
    text = re.sub(r"\s+", " ", text).strip(" ,;:-")
    words = [w for w in _SIDECAR_WORD.split(text) if w]
    if not words or len(text) > 64:
        return None
    allowed = _SPECIMEN_WORDS[kind]
    for word in words:
        if word.lower().rstrip(".") in allowed or (kind == "stain" and _stain_like(word)):
            continue
        return None
    return text


def sidecar_stain(value: str | None, identity: SlideIdentity | None = None) -> str | None:
    """The sidecar's stain as the slide keeps it (see :func:`_sidecar_words`)."""
    return _sidecar_words(value, identity, "stain")


def sidecar_organ(value: str | None, identity: SlideIdentity | None = None) -> str | None:
    """The sidecar's organ as the slide keeps it (see :func:`_sidecar_words`)."""
    return _sidecar_words(value, identity, "organ")


def specimen_fields(identity: SlideIdentity | None) -> tuple[str | None, str | None, list[str]]:
    """(stain, organ, what the record says was rewritten) of a slide's sidecar."""
    if identity is None:
        return None, None, []
    stain, organ = sidecar_stain(identity.stain, identity), sidecar_organ(identity.organ, identity)
    notes = [
        f"sidecar {name} ({'cut to its words' if kept else 'not its words: unknown'})"
        for name, given, kept in (("stain", identity.stain, stain), ("organ", identity.organ, organ))
        if given and given.strip() and kept != given
    ]
    return stain, organ, notes


_DEVICE_TAG_NAMES = {
    _MAKE: "Make",
    _MODEL: "Model",
    _SOFTWARE: "Software",
    _NDPI_CHANNEL: "NDPI channel name",
}
# The words a scanner writes in Make, Model and Software (vendors, products, writers), lower case
_DEVICE_WORDS = frozenset(
    [
        "aperio",
        "leica",
        "biosystems",
        "scanscope",
        "console",
        "image",
        "library",
        "imagescope",
        "gt",
        "at",
        "at2",
        "cs",
        "cs2",
        "sc",
        "xt",
        "hamamatsu",
        "photonics",
        "ndp",
        "scan",
        "view",
        "nanozoomer",
        "ht",
        "xr",
        "rs",
        "sq",
        "s60",
        "s210",
        "s360",
        "s20",
        "flash",
        "philips",
        "ufs",
        "ims",
        "dp",
        "intellisite",
        "pathology",
        "solution",
        "digital",
        "3dhistech",
        "dhistech",
        "histech",
        "pannoramic",
        "midi",
        "desk",
        "flash",
        "mirax",
        "scanner",
        "slide",
        "zeiss",
        "axio",
        "axioscan",
        "scan",
        "z1",
        "olympus",
        "evident",
        "vs",
        "slideview",
        "ventana",
        "roche",
        "iscan",
        "coreo",
        "ht",
        "dp200",
        "dp600",
        "motic",
        "easyscan",
        "kfbio",
        "sakura",
        "visiotek",
        "huron",
        "tissuescope",
        "grundium",
        "ocus",
        "optrascan",
        "microvisioneer",
        "slideview",
        "precipoint",
        "m8",
        "glissando",
        "objective",
        "imaging",
        "indica",
        "halo",
        "visiopharm",
        "qupath",
        "openslide",
        "libvips",
        "vips",
        "pyvips",
        "tifffile",
        "py",
        "python",
        "libtiff",
        "imagej",
        "fiji",
        "bio",
        "formats",
        "bioformats",
        "ome",
        "glencoe",
        "bftools",
        "raw2ometiff",
        "bioformats2raw",
        "microscope",
        "system",
        "systems",
        "camera",
        "sensor",
        "ultra",
        "fast",
        "high",
        "throughput",
        "version",
        "v",
        "build",
        "rev",
        "release",
        "firmware",
        "software",
        "inc",
        "ltd",
        "gmbh",
        "co",
        "corp",
        "corporation",
        "kk",
        "k.k",
        "ag",
        "sa",
        "bv",
        "llc",
        "limited",
        "medical",
        "imaging",
        "healthcare",
        "ecosystem",
        "diagnostics",
        "technologies",
        "technology",
        "x",
        "lite",
        "pro",
        "plus",
        "uf",
        "uhr",
        "d",
        "mk",
        "ii",
        "iii",
        "iv",
        "dicom",
        "wsi",
        "curata",
        "generic",
        "unknown",
        "tiff",
        # DICOM-WSI converters name themselves in ManufacturerModelName and SoftwareVersions
        "converted",
        "by",
        "com",
        "pixelmed",
        "convert",
        "tifftodicom",
        "wsidicom",
        "wsidicomizer",
        "highdicom",
        "dcmtk",
    ]
)
_DEVICE_CHARS = re.compile(r"[A-Za-z0-9 .\-()_/,]{1,64}")
_DEVICE_DATE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d\d[-/.:_]?(?:0?[1-9]|1[0-2])[-/.:_]?(?:0?[1-9]|[12]\d|3[01])"
    r"|\d{1,2}[-/.:](?:\d{1,2})[-/.:](?:19|20)\d\d)(?!\d)"
)


def device_like(value: str) -> bool:
    """``value`` has the shape of a scanner's Make, Model or Software string: vendor and product words
    from a built-in list, model and version tokens (letters with digits, dots, dashes, parentheses:
    ``GT 450``, ``C13210-01``, ``NanoZoomer 2.0-HT``, ``4.1.7.0``). A person's name, a phrase, a date, a
    long number (an ID, a phone) is not. A letters-and-digits ID (``MRN77123``) has a model's shape: it
    is found by the gate only where a sidecar or the file's own patient field names it."""
    value = value.strip()
    if not _DEVICE_CHARS.fullmatch(value) or _DEVICE_DATE.search(value):
        return False
    for token in re.split(r"[\s/,]+", value):
        token = token.strip("()")
        if not token:
            continue
        if re.search(r"\d", token):
            letters = sum(c.isalpha() for c in token)
            digits = sum(c.isdigit() for c in token)
            if letters > 10 or not re.fullmatch(r"[A-Za-z0-9.\-()_]+", token):
                return False
            if letters == 0 and not re.fullmatch(r"[\d.]+", token) and digits > 6:
                return False  # 234-803-555-0199: a phone, not a version
            if letters == 0 and token.isdigit() and len(token) > 4:
                return False  # 77123: an ID's number, not a model
            if re.search(r"(?<![\d.])\d{6,}(?![\d.]*\.\d)", token) and not re.fullmatch(r"v?[\d.]+", token):
                return False  # MRN4417702, SS4417702: an ID's or a serial's digits (models run to 5: C13210)
            if re.fullmatch(r"[A-Za-z]+[-_.#:]\d{5,}", token):
                return False  # MRN-77123, ACC-5521907: an ID's shape (a model runs on: C13210-01)
            if re.fullmatch(r"[A-Za-z]{1,4}\d{2}[-/_]\d{4,}", token):
                return False  # S26-12345, SP24-00781: a pathology accession (a year, then a serial)
            if letters and not all(
                p.lower() in _DEVICE_WORDS or len(p) <= 3 for p in re.findall(r"[A-Za-z]+", token)
            ):
                return False  # "Okonkwo2": a name with a number
            continue
        if not all(p.lower() in _DEVICE_WORDS for p in re.split(r"[.\-_()]+", token) if p):
            return False
    return True


_PROFILE_WORDS = frozenset({"srgb", "rgb", "adobe", "icc", "profile", "display", "p3", "color", "colour"})


def _profile_name_like(value: str) -> bool:
    """An Aperio ``ICC Profile`` name (``ScanScope v1``, ``AT2``, ``sRGB``): scanner and profile words
    and version numbers only; a model-shaped ID (``S26-12345``) is not a profile's name."""
    tokens = re.split(r"[\s_]+", value.strip())
    if _NUMBER_DATE.search(value) or _DEVICE_DATE.search(value):
        return False  # 12.04.1961 has a version's dots: a date is not a profile's name
    return 0 < len(value) <= 40 and all(
        t.lower() in _DEVICE_WORDS
        or t.lower() in _PROFILE_WORDS
        or re.fullmatch(r"[vV]?\d{1,3}(?:\.\d{1,4}){0,3}", t)
        for t in tokens
        if t
    )


def _philips_kept(name: str, value: str) -> bool:
    """A Philips attribute's value is kept when it holds numbers (sizes, spacings, counts; not a date) or
    is one of the few text attributes a reader needs, with a value of its kind (an enumerated one, or
    a device string); its name must not say it is identity."""
    if _PHILIPS_DENY.search(name):
        return False
    if name in _PHILIPS_KEEP_TEXT:
        shape = _PHILIPS_KEEP_TEXT[name]
        parts = [p for p in re.split(r'"\s*"?|\s*"', value.strip()) if p.strip()] or [value.strip()]
        return all(device_like(p) if shape is None else bool(shape.fullmatch(p.strip())) for p in parts)
    numbers = bool(_PHILIPS_NUMBERS.fullmatch(value))  # sizes and counts run to 6 digits: 7 are an ID's
    return numbers and not _NUMBER_DATE.search(value) and not _ID_DIGITS.search(value)


def _shift_iso_date(value: str, days: int) -> str | None:
    """``2021-03-14T10:11:12`` (an ISO date, any time after it) moved by ``days``: the date only."""
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", value)
    try:
        return (dt.date(*(int(g) for g in m.groups())) + dt.timedelta(days=days)).isoformat() if m else None
    except ValueError:
        return None


def _shift_us_date(value: str, days: int) -> str | None:
    for fmt in ("%m/%d/%y", "%m/%d/%Y", "%Y-%m-%d"):
        try:
            d = dt.datetime.strptime(value, fmt).date() + dt.timedelta(days=days)
            return d.strftime(fmt)
        except ValueError:
            continue
    return None


def _complement(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    out, pos = [], 0
    for start, end in sorted(ranges):
        if start > pos:
            out.append((pos, start))
        pos = max(pos, end)
    if pos < size:
        out.append((pos, size))
    return out


def _gate(
    out: bytes,
    kept: list[tuple[int, int]],
    needles: set[str],
    removed: list[tuple[int, int]],
    tile_meta: list[tuple[int, int]] | None = None,
    ids: Identifiers | None = None,
) -> None:
    """Refuse the slide if an identifying value survives outside the kept level tiles or in the metadata
    those tiles keep (``tile_meta``), as a whole word, in UTF-8 or UTF-16, or a removed image still has a
    non-zero byte. The site's identity (``ids``) is looked for with radiology's rules: in any spelling."""
    for start, end in removed:
        if out[start:end].count(0) != end - start:
            raise DeidError("final gate: bytes of a removed label/macro image survived; not released")
    regions = _complement(kept, len(out)) + list(tile_meta or ())
    spelled = ids.gate_needles() if ids is not None else []
    for start, end in regions if spelled else ():
        if find_identifier(out[start:end], spelled):
            where = _where(out, start, end, lambda d: find_identifier(d, spelled) is not None)
            raise DeidError(
                f"final gate: the patient identity, in some spelling, survived in the slide metadata "
                f"({where}); not released"
            )
    if not needles:
        return
    alts = sorted({re.escape(n.lower().encode("utf-8", "replace")) for n in needles}, key=len, reverse=True)
    wide = sorted(
        {re.escape(n.lower().encode("utf-16-le")) for n in needles if len(n) >= 5}, key=len, reverse=True
    )
    pattern = re.compile(rb"(?<![a-z0-9])(?:" + b"|".join(alts) + rb")(?![a-z0-9])")
    pattern16 = re.compile(b"|".join(wide)) if wide else None

    def hit(data: bytes) -> bool:
        hay = data.lower()
        return bool(pattern.search(hay) or (pattern16 is not None and pattern16.search(hay)))

    for start, end in regions:
        if hit(out[start:end]):
            raise DeidError(
                f"final gate: an identifying value survived in the slide's metadata "
                f"({_where(out, start, end, hit)}); not released"
            )


_KEY_SHAPE = re.compile(r"[A-Za-z][\w .:\-]{0,63}")


def _where(out: bytes, start: int, end: int, hit: Any) -> str:
    """The place in ``out`` where ``hit`` (a test on bytes) finds an identifier, between ``start`` and
    ``end``: the TIFF page (its IFD index and role) and the tag whose value holds it, and the vendor
    property's key where the value is a list of them. Places only: never a value (a key that itself
    holds the identifier is left out)."""
    try:
        ed = TiffEditor(out)
    except InputError:
        return f"near byte {start}, in a TIFF whose pages cannot be walked"
    pages = [(ifd, _page_name(ed, ifd)) for ifd in ed.ifds + ed.sub_ifds]
    for ifd, page in pages:
        for e in ifd.entries:
            lo, hi = max(e.value_pos, start), min(e.value_pos + e.size, end)
            if lo < hi and hit(out[lo:hi]):
                key = _property_key(out[e.value_pos : e.value_pos + e.size], hit)
                return f"{page}, tag {_tag_name(e.tag)} ({e.tag}){f', property {key!r}' if key else ''}"
    for ifd, page in pages:
        for a, b in ed.data_ranges(ifd):
            lo, hi = max(a, start), min(b, end)
            if lo < hi and hit(out[lo:hi]):
                return f"{page}, in the metadata of its image data (a tile or strip)"
    for ifd, page in pages:
        if ifd.offset <= start < ifd.next_pos + ed.off_size:
            return f"{page}, in its directory entries"
    return f"near byte {start}, in no tag's value"


def _page_name(ed: TiffEditor, ifd: Ifd) -> str:
    """``TIFF page 2 (label)``: the IFD's index in the chain (a SubIFD named by its parent's) and its
    role where the file says it (a fixed word, never the description's text)."""
    name = f"TIFF page {ifd.index}" + (" (a SubIFD)" if ifd.parent is not None else "")
    role = None
    e = ifd.get(_NDPI_MAGNIFICATION)
    desc = (ed.text(ifd, _DESCRIPTION) or "").lower()
    if ed.ndpi and e is not None and e.dtype == 11:
        mag = struct.unpack_from(ed.bo + "f", ed.buf, e.value_pos)[0]
        role = "macro" if mag == -1 else "map" if mag <= 0 else "level"
    elif m := re.search(r"\b(label|macro|overview|thumbnail|barcode)\b", desc[:400]):
        role = m.group(1)
    elif ifd.get(322) is not None:
        role = "level"
    elif ifd.index == 1 and desc.startswith("aperio"):
        role = "thumbnail"
    return f"{name} ({role})" if role else name


def _tag_name(tag: int) -> str:
    try:
        import tifffile

        return str(tifffile.TIFF.TAGS.get(tag, None) or "tag")
    except ImportError:  # pragma: no cover - tifffile is a dependency of the slide reader
        return "tag"


def _property_key(value: bytes, hit: Any) -> str | None:
    """The key of the vendor property that holds the hit, in a tag's text value: a Philips or OME XML
    attribute (``Name="..."``, else the element or attribute name), an Aperio ``key = value`` between
    ``|``, or a ``key=value`` line (Hamamatsu). None when the value is not such a list, or the key
    itself holds the identifier."""
    text = value.decode("utf-8", errors="replace")
    pairs: list[tuple[str, str]] = []
    if "<" in text:
        pairs += [(m[1], m[2]) for m in re.finditer(r'Name="([^"<>]{1,64})"[^>]*>([^<]*)<', text)]
        pairs += [(m[1], m[2]) for m in re.finditer(r"<([\w:.\-]{1,64})[^<>]*>([^<]*)<", text)]
        pairs += [(m[1], m[2]) for m in re.finditer(r'([\w:.\-]{1,64})="([^"]*)"', text)]
    else:
        for part in re.split(r"[|\r\n]", text):
            k, sep, v = part.partition("=")
            if sep:
                pairs.append((k.strip(), v))
    for k, v in pairs:
        if hit(v.encode("utf-8")) and _KEY_SHAPE.fullmatch(k) and not hit(k.encode("utf-8")):
            return k
    return None
