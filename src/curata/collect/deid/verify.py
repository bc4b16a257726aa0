"""Checks for objects that arrive already de-identified (``--verified-deidentified``).

The PatientIdentityRemoved flag is a claim, not a proof: any tool can set it. An object is accepted
only when it looks like what a Curata site releases. The expectations come from the de-identification
profiles' own actions (Table E.1-1 resolved for the object's SOP class under ``basic``, ``research``
and ``research-strict``), not from a hand list, so they follow the table:

- PatientID, at every depth, holds a keyed pseudonym under an accepted prefix (``CUR-``, and the
  site prefixes a platform was told: ``[deid] site_prefixes``; then 16 base32:
  :func:`is_accepted_pseudonym`, a shape, no key needed); PatientName the pseudonym too, or the
  dummy, or nothing;
- an attribute every profile removes (X) or empties (Z) holds no value (birth date, accession number,
  institution, other IDs, physicians...); one they replace with a dummy (D) holds the dummy; a person
  name holds the dummy or nothing;
- free text the profiles clean (C) is a fixed point of the site's generic cleaner (cleaning it again
  changes nothing, as ``POST /clinical/batches`` checks its text columns), and so is the free text no
  profile lists inside a sequence they clean or replace (an SR's TextValue at any depth);
- text and URLs the engine keeps as they came (unlisted, or K) hold none of the shapes that are never
  a version, model or code (``_KEPT_SHAPES``); an ICC profile is one, its text zeroed; a safe private
  element holds numbers its VR and the private dictionary's multiplicity allow;
- everywhere: no e-mail, SSN, title with a name or ``FAMILY^GIVEN`` in text, no burned-in annotation
  flagged YES, no overlay, curve or private element holding readable text, no encapsulated document;
- the bytes hold nothing the parsed data set does not show (the platform stores them as they came): a
  zero preamble, as Curata writes it, and no tag written twice.

What no shape can show is not caught here: a bare name in kept free text (``CT chest Marisol
Quillfeather`` is a fixed point of a cleaner that does not know the name).
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Collection
from functools import cache

import pydicom
from pydicom.datadict import (
    dictionary_has_tag,
    dictionary_VR,
    keyword_for_tag,
    private_dictionary_VM,
    private_dictionary_VR,
    repeater_has_tag,
    tag_for_keyword,
)
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from curata.collect.deid import codestream, pixels
from curata.collect.deid.engine import (
    DUMMY_BY_VR,
    DUMMY_TEXT,
    FREE_TEXT_VRS,
    SAFE_PRIVATE_VRS,
    _refuse_encapsulated_documents,
    _safe_private,
)
from curata.collect.deid.profile import PROFILES, load_profile
from curata.collect.deid.pseudonyms import DEFAULT_PREFIX, is_accepted_pseudonym, is_site_pseudonym
from curata.collect.deid.table import action_maps
from curata.collect.deid.text import GENERIC_PATTERNS, Identifiers, clean_text
from curata.errors import DeidError, InputError

# Patient identity attributes that a de-identified object carries empty or not at all.
IDENTITY_KEYWORDS = (
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "OtherPatientNames",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "PatientBirthName",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "MilitaryRank",
    "BranchOfService",
    "PatientInsurancePlanCodeSequence",
    "ResponsiblePerson",
    "PersonAddress",
    "PersonTelephoneNumbers",
)
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
# The generic shapes that never belong in released text: e-mail, SSN, a title with a name, and a
# DICOM person name (FAMILY^GIVEN) written into text. (Dates and "by <word>" are ordinary there.)
_SHAPES = [GENERIC_PATTERNS[i] for i in (0, 7, 8, 9)]
# In text the engine keeps as it came (an attribute no profile lists, or one a profile keeps: K), what
# is never a version, model, serial number or code: those shapes, a date with slashes and a four-digit
# year, a telephone number (hyphens, spaces, an international prefix), a street address, an identifier
# after its label (MRN 88421937, DOB 1947-03-19, born 19 March 1947, tel +1 914..., Patient ID 12345), a
# name after "Patient:" or "Name:". Not a bare compact or written date: software versions carry their
# build's ("Ver02.00.00[20010925]", "Tue Oct  4 18:39:42 EDT 2022"); not a bare digit run: serial
# numbers are one.
_KEPT_SHAPES = [
    *_SHAPES,
    GENERIC_PATTERNS[11],
    re.compile(r"\b\d{1,2}/\d{1,2}/(?:19|20)\d{2}\b"),
    re.compile(r"(?:\(\d{3}\)\s?|\b\d{3}[- ])\d{3}[- ]\d{4}\b"),
    re.compile(r"(?<![\d.])\d{3}\.\d{3}\.\d{4}(?![\d.])"),  # 914.555.0173 (a version has no 3-3-4)
    re.compile(r"(?<![\w.])0\d{2,4}[ -]\d{3,4}[ -]\d{4}(?![\w.])"),  # a national number: 020 7946 0958
    re.compile(r"(?<![\w.+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]\d{2,4}){2,3}\b"),
    re.compile(
        r"\b(?:MRN|M\.R\.N\.?|DOB|D\.O\.B\.?|SSN)(?![^\W\d_])[\s:#=_./-]*\d"
        r"|\b(?:born|birth\s*date|date\s+of\s+birth|tel|telephone|phone|fax)\b\.?[\s:#=_-]*[+(]?\d"
        r"|\bpatient[\s_-]*(?:id|no|number|#)\b\.?[\s:#=_-]*\d{3}"
        # a record's number after its label (outside review 13): MR# 88421937, Hosp No 88421937,
        # PID 88421937, Acc 88421937; five digits or more (GE's "Discovery MR750" is a model)
        r"|(?:\bMR\s*(?:#|no\b\.?|number\b)|\b(?:hosp(?:ital)?|chart|case|record|reg(?:istration)?|nhs|unit)"
        r"\s*(?:#|no\b\.?|number\b)|\b(?:PID|NHS|acc(?:ession)?)\b)[\s:#=_./-]*\d{5}",
        re.I,
    ),
    re.compile(r"\b(?i:patient|pat|pt|name)\s*(?::|=|\.\s)\s*[A-Z\u00c0-\u024f][^\W\d_]+"),
]
# and, where the value is no version (a build's date is one: SoftwareVersions), a date with a
# four-digit year: 19.03.1947, 1947-03-19, Mar 19 1947, 19 March 1947
_KEPT_DATE_SHAPES = [
    re.compile(r"(?<![\d.])(?:0?[1-9]|[12]\d|3[01])\.(?:0?[1-9]|1[0-2])\.(?:19|20)\d{2}(?![\d.])"),
    re.compile(r"(?<![\d.-])(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?![\d.-])"),
    re.compile(
        r"\b(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+(?:19|20)\d{2}\b"
        r"|\b\d{1,2}\s+(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,?\s+(?:19|20)\d{2}\b"
    ),
]
_VERSION_TAGS = frozenset(
    tag_for_keyword(k) or 0
    for k in ("SoftwareVersions", "SecondaryCaptureDeviceSoftwareVersions", "HardcopyDeviceSoftwareVersion",
              "ImplementationVersionName", "DeviceVersion", "ManufacturerModelVersion")
)  # fmt: skip
_MARKING = {0x00120063, 0x00120064}
_PATIENT_ID, _PATIENT_NAME = 0x00100020, 0x00100010
_NO_IDS = Identifiers()
_EMPTY_ACTIONS = frozenset({"X", "Z"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_PN_SPLIT = re.compile(r"[=^]")

Expected = dict[int, frozenset[str]]


@cache
def expected_actions(sop_class_uid: str) -> tuple[Expected, Expected]:
    """tag -> every action one of Curata's profiles takes on it, for the top level and for nested
    data sets of ``sop_class_uid`` (Table E.1-1 resolved by the IOD's attribute types)."""
    top: dict[int, set[str]] = {}
    nested: dict[int, set[str]] = {}
    for name in PROFILES:
        t, n = action_maps(load_profile(name), sop_class_uid)
        for tag, action in t.items():
            top.setdefault(tag, set()).add(action)
        for tag, action in n.items():
            nested.setdefault(tag, set()).add(action)
    return (
        {t: frozenset(a) for t, a in top.items()},
        {t: frozenset(a) for t, a in nested.items()},
    )


def check_deidentified(raw: bytes, *, prefixes: Collection[str] = (DEFAULT_PREFIX,)) -> Dataset:
    """The parsed object when it passes; DeidError naming the attribute (never its value) when not.
    ``prefixes``: the pseudonym prefixes accepted (``CUR-`` and a platform's ``[deid] site_prefixes``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=False, defer_size=4096)
    except Exception as exc:
        raise InputError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        raise DeidError(
            "not marked de-identified (PatientIdentityRemoved is not YES); refused",
            hint="send it through a Curata gateway, or ingest with de-identification on",
        )
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise DeidError("marked de-identified but BurnedInAnnotation is YES; refused")
    for keyword in IDENTITY_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, "") and (not hasattr(value, "__len__") or len(value)):
            raise DeidError(f"marked de-identified but {keyword} holds a value; refused")
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid and not is_accepted_pseudonym(pid, prefixes):  # none: an input without one (the engine adds none)
        raise DeidError(_NOT_A_PSEUDONYM.format("PatientID", ", ".join(prefixes)), hint=_PREFIX_HINT)
    top, nested = expected_actions(str(ds.get("SOPClassUID", "") or ""))
    _check_meta(ds)
    _walk(ds, top, nested, "")
    _check_pseudonyms(ds, prefixes)
    _check_bytes(raw, ds)
    _refuse_encapsulated_documents(ds)
    pixel_data = ds.get("PixelData")
    try:
        # native pixel data: a site's engine cleared what lies outside the image (encapsulated frames
        # are the gate's and the codestream steps' at the site, and re-encoded there)
        native = pixel_data is not None and not ds["PixelData"].is_undefined_length
        outside = pixels.clear_outside_image(ds) if native else []
    except DeidError as exc:
        raise DeidError(f"marked de-identified but {exc.message}; refused") from exc
    if outside:
        raise DeidError(
            "marked de-identified but its pixel data holds bytes outside the image "
            f"({', '.join(outside)}); refused"
        )
    return ds


# File Meta Information (PS3.10 7.1) a Curata site writes, or a sender may add: the rest (private
# information, addresses) is refused; its text is checked as any text
_META_ALLOWED = frozenset(
    {0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013, 0x00020016,
     0x00020017, 0x00020018}
)  # fmt: skip


def _check_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    for elem in meta or ():
        where = f"file meta {elem.keyword or elem.tag}"
        if int(elem.tag) not in _META_ALLOWED:
            raise DeidError(f"marked de-identified but {where} is present (a site writes none); refused")
        if elem.VR in ("SH", "AE") and not _clean_text(str(elem.value or "")):
            raise DeidError(f"marked de-identified but {where} holds an identifier shape; refused")


def _clean_text(text: str) -> bool:
    """Whether ``text`` is as a site's cleaner leaves free text: a fixed point of the generic cleaner
    (no patient's identifiers known here) with none of the shapes that never belong in released text."""
    text = text.strip(" \0")
    return clean_text(text, _NO_IDS, generic=True) == text and not any(p.search(text) for p in _SHAPES)


def _check_bytes(raw: bytes, ds: Dataset) -> None:
    """The platform stores the bytes as they came: they may hold nothing the data set does not show.
    The whole byte stream is walked, at every depth: a tag written twice in one data set (pydicom
    shows the last), anything after the data set's end (an item delimiter at the top level ends
    pydicom's reading; stray bytes after the last element), and text whose bytes read otherwise
    without the declared character set (ISO 2022 escapes: an ASCII reader sees the bytes)."""
    if raw[128:132] == b"DICM" and raw[:128].strip(b"\0"):
        raise DeidError("marked de-identified but its preamble holds data (Curata writes zeros); refused")
    pos = 132 if raw[128:132] == b"DICM" else 0
    while pos + 8 <= len(raw) and raw[pos : pos + 2] == b"\x02\x00":  # the file meta (explicit VR LE)
        vr = raw[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"):
            pos += 12 + int.from_bytes(raw[pos + 8 : pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(raw[pos + 6 : pos + 8], "little")
    body = raw[pos:]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
        try:
            body = zlib.decompress(body, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise DeidError(
                "marked de-identified but its deflated data set does not inflate; refused"
            ) from exc
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        raise DeidError("marked de-identified but its encoding is not known; refused")
    walk = _Bytes(body, implicit, little)
    walk.dataset(0, len(body), "", in_item=False)


_LONG_VRS = frozenset(
    {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"}
)
_ITEM, _ITEM_END, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)


class _Bytes:
    """A data set's bytes walked element by element, at every depth, as they are (no parsing into a
    data set, which keeps one value per tag and stops at a stray delimiter)."""

    def __init__(self, data: bytes, implicit: bool, little: bool):
        self.data, self.implicit, self.order = data, implicit, "little" if little else "big"

    def _u(self, pos: int, n: int) -> int:
        if pos + n > len(self.data):
            raise DeidError("marked de-identified but its bytes end inside an element; refused")
        return int.from_bytes(self.data[pos : pos + n], self.order)  # type: ignore[arg-type]

    def dataset(self, pos: int, end: int, path: str, *, in_item: bool) -> int:
        """Walk elements from ``pos`` to ``end`` (or, in an undefined-length item, to its delimiter);
        where the walk ended."""
        seen: set[int] = set()
        while pos < end:
            if end - pos < 8:
                raise DeidError("marked de-identified but stray bytes follow its last element; refused")
            group, element = self._u(pos, 2), self._u(pos + 2, 2)
            if (group, element) == _ITEM_END and in_item:
                return pos + 8
            if group == 0xFFFE:
                raise DeidError(
                    "marked de-identified but a delimiter stands where an element should; refused"
                )
            tag = group << 16 | element
            where = f"{path}{keyword_for_tag(tag) or 'an element'}"
            if tag in seen:
                raise DeidError(f"marked de-identified but {where} appears twice; refused")
            seen.add(tag)
            if self.implicit:
                vr, length, pos = _vr(tag).encode(), self._u(pos + 4, 4), pos + 8
            else:
                vr = self.data[pos + 4 : pos + 6]
                if vr in _LONG_VRS:
                    length, pos = self._u(pos + 8, 4), pos + 12
                else:
                    length, pos = self._u(pos + 6, 2), pos + 8
            if vr == b"SQ" or (
                length == 0xFFFFFFFF and vr in (b"UN", b"UNKNOWN") and self._u(pos, 4) == 0xE000FFFE
            ):
                pos = self.items(pos, None if length == 0xFFFFFFFF else pos + length, f"{where}[].")
            elif length == 0xFFFFFFFF:  # encapsulated pixel data: items up to the sequence delimiter
                pos = self.fragments(pos)
            else:
                if pos + length > len(self.data):
                    raise DeidError(
                        f"marked de-identified but {where} runs past the end of the file; refused"
                    )
                value = self.data[pos : pos + length]
                pos += length
                if b"\x1b" in value and vr in (b"LO", b"SH", b"ST", b"LT", b"UT", b"UC", b"PN", b"CS"):
                    # what a reader that ignores the character set sees: the bytes between the escapes
                    view = re.sub(rb"\x1b[\x20-\x2f]*[\x30-\x7e]", b" ", value).decode("latin-1")
                    if not _clean_text(view.replace("^", " ")):
                        raise DeidError(
                            f"marked de-identified but {where} holds, read without its character set, an "
                            "identifier shape; refused"
                        )
        if pos != end:
            raise DeidError("marked de-identified but an element runs past its data set's end; refused")
        return pos

    def items(self, pos: int, end: int | None, path: str) -> int:
        while end is None or pos < end:
            group, element, length = self._u(pos, 2), self._u(pos + 2, 2), self._u(pos + 4, 4)
            pos += 8
            if (group, element) == _SEQ_END and end is None:
                return pos
            if (group, element) != _ITEM:
                raise DeidError(
                    f"marked de-identified but {path[:-3]} holds bytes outside its items; refused"
                )
            if length == 0xFFFFFFFF:
                pos = self.dataset(pos, len(self.data), path, in_item=True)
            else:
                pos = self.dataset(pos, pos + length, path, in_item=False)
        if pos != end:
            raise DeidError(f"marked de-identified but an item of {path[:-3]} runs past its end; refused")
        return pos

    def fragments(self, pos: int) -> int:
        while True:
            group, element, length = self._u(pos, 2), self._u(pos + 2, 2), self._u(pos + 4, 4)
            pos += 8
            if (group, element) == _SEQ_END:
                return pos
            if (group, element) != _ITEM or pos + length > len(self.data):
                raise DeidError("marked de-identified but its encapsulated pixel data is malformed; refused")
            pos += length


def _walk(ds: Dataset, actions: Expected, nested: Expected, path: str, *, structured: bool = False) -> None:
    """``structured``: inside a sequence the profiles clean (C) or replace (D) as a whole (the SR and
    PR content trees): there the engine cleans the free text no profile lists, as it does C text."""
    for key in sorted(ds.keys()):
        raw = ds.get_item(key)  # a private element's bytes and VR as they came, before pydicom reads them
        elem, tag = ds[key], int(key)
        if elem.tag in _MARKING:
            if elem.VR != "SQ" and not all(_clean_text(str(v)) for v in _values(elem)):  # the site's words
                raise DeidError(
                    f"marked de-identified but {path}{elem.keyword} holds an identifier shape; refused"
                )
            continue
        where = f"{path}{elem.keyword or elem.tag}"
        group = elem.tag.group
        if group & 1:
            _private(ds, elem, raw, where)
            continue
        if not (dictionary_has_tag(tag) or repeater_has_tag(tag)):
            # the engine removes an element the data dictionary does not know (it may be PatientName
            # one bit away): a site never releases one
            raise DeidError(f"marked de-identified but {where} is not in the data dictionary; refused")
        if elem.VR == "SQ":
            taken = actions.get(tag, frozenset())
            if elem.value and taken and taken <= _EMPTY_ACTIONS:
                raise DeidError(f"marked de-identified but {where} holds items the profiles remove; refused")
            # as the engine: the items of a sequence every profile that releases it cleans or replaces
            inner = structured or bool(taken - _EMPTY_ACTIONS and taken - _EMPTY_ACTIONS <= {"C", "D"})
            for n, item in enumerate(elem.value or ()):
                _walk(item, nested, nested, f"{where}[{n}].", structured=inner)
            continue
        if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF:  # overlays, curves
            # their text (description, subtype, label, comments...) is free text the profiles clean
            # (a name redacted to "*"); their bit planes were proven free of text at the site
            if elem.VR in _TEXT_VRS | {"CS"} and not all(_clean_text(str(v)) for v in _values(elem)):
                raise DeidError(
                    f"marked de-identified but overlay text {where} holds an identifier shape; refused"
                )
            continue
        values = [v for v in _values(elem) if str(v).strip(" \0")]
        if not values:
            continue  # empty: what Z writes, and what leaks nothing
        vr = elem.VR if elem.VR != "UN" else _vr(tag)
        if not _as_released(tag, vr, values, actions.get(tag), structured):
            if vr == "PN" or tag == _PATIENT_NAME:
                raise DeidError(
                    f"marked de-identified but {where} holds a person name (a pseudonym or REMOVED expected); refused"
                )
            raise DeidError(
                f"marked de-identified but {where} holds a value the profiles do not release; refused"
            )
        if vr in _TEXT_VRS and any(p.search(str(v)) for v in values for p in _SHAPES):
            raise DeidError(f"marked de-identified but {where} holds an identifier shape; refused")


def _private(ds: Dataset, elem: pydicom.DataElement, raw: object, where: str) -> None:
    """What Retain Safe Private keeps, and nothing else: a numeric element on the safe list, and the
    creator that names it (every other private element, text or bytes, is removed at a site). Its value
    is read as its VR says: a decimal string, or whole numbers of that size, as many as the private
    dictionary's multiplicity allows, and no identifier shape in its bytes."""
    group, element = elem.tag.group, elem.tag.element
    safe = _safe_private()
    if 0x0010 <= element <= 0x00FF:
        creator = str(elem.value or "").strip(" \0").upper()
        if any(c == creator and g == group for c, g, _ in safe):
            return
        raise DeidError(f"marked de-identified but private creator {where} is not on the safe list; refused")
    creator_tag = (group << 16) | (element >> 8)
    creator = ""
    if element >= 0x1000 and creator_tag in ds:
        creator = str(ds[creator_tag].value or "").strip(" \0").upper()
    # the engine keeps an element by the VR it came with; only implicit VR (none) asks the dictionary,
    # so an element sent as UN (bytes that may be anything, an item with a name) is never kept
    vr = raw.VR if isinstance(raw, RawDataElement) else elem.VR
    if not vr:
        try:
            vr = private_dictionary_VR(elem.tag, creator)
        except KeyError:
            vr = "UN"
    if (creator, group, element & 0xFF) not in safe or vr not in SAFE_PRIVATE_VRS:
        raise DeidError(
            f"marked de-identified but private element {where} is not a safe numeric one; refused"
        )
    least, most = _private_vm(elem.tag, creator)
    data = raw.value if isinstance(raw, RawDataElement) else None
    if isinstance(data, bytes):
        plausible = _private_value_plausible(data, vr, (least, most))
    else:  # read already (a deferred, long value): as pydicom parsed it, bytes are no numbers
        count = elem.VM
        plausible = not isinstance(elem.value, bytes) and (
            count == 0 or (count >= least and (most is None or count <= most))
        )
    if not plausible:
        raise DeidError(
            f"marked de-identified but private element {where} holds bytes that are not its numbers; refused"
        )


_NOT_A_PSEUDONYM = (
    "marked de-identified but {} is not a pseudonym of an accepted prefix ({}, then 16 base32); refused"
)
_PREFIX_HINT = (
    "send it through a Curata gateway, which writes the site's keyed pseudonym; a platform accepts a "
    "site's own pseudonym_prefix once told: [deid] site_prefixes in its curata.toml"
)


def _check_pseudonyms(ds: Dataset, prefixes: Collection[str]) -> None:
    """PatientID, and PatientName where it is not the dummy, hold a pseudonym under an accepted prefix
    at every depth (none: an input without one; the engine adds none). The shape alone (any prefix
    ending in '-' or '_') took ``MRN88421937-`` and a 16-letter surname for a site's pseudonym."""
    for elem in ds.iterall():
        if elem.tag not in (_PATIENT_ID, _PATIENT_NAME) or elem.VR not in ("LO", "PN"):
            continue  # (another VR: the walk refuses it as not released)
        values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
        for value in values:
            text = str(value if value is not None else "").strip(" \0")
            if not text or (elem.tag == _PATIENT_NAME and text == DUMMY_TEXT):
                continue
            if not is_accepted_pseudonym(text, prefixes):
                raise DeidError(_NOT_A_PSEUDONYM.format(elem.keyword, ", ".join(prefixes)), hint=_PREFIX_HINT)


_DECIMAL = {
    "DS": (re.compile(rb" *[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)? *"), 16),
    "IS": (re.compile(rb" *[+-]?\d+ *"), 12),
}
_BINARY_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "UV": 8, "SV": 8}


def _private_vm(tag: pydicom.tag.BaseTag, creator: str) -> tuple[int, int | None]:
    """The least and most values the private dictionary allows (1, None: not known, or 1-n)."""
    try:
        vm = str(private_dictionary_VM(tag, creator))
    except KeyError:
        return 1, None
    return (int(vm), int(vm)) if vm.isdigit() else (1, None)


def _private_value_plausible(data: bytes, vr: str, vm: tuple[int, int | None]) -> bool:
    """Whether a safe private element's bytes are what its VR holds: decimal strings for DS and IS,
    whole numbers of the VR's size for the binary ones, as many as the dictionary allows; and, read as
    text, none of the identifier shapes (a name or an MRN spelled by the numbers' bytes)."""
    if not data.strip(b" \0"):
        return True
    least, most = vm
    if vr in _DECIMAL:
        pattern, longest = _DECIMAL[vr]
        parts = data.rstrip(b"\0").split(b"\\")
        if not all(len(p) <= longest and pattern.fullmatch(p) for p in parts):
            return False
        count = len(parts)
    else:
        size = _BINARY_SIZE[vr]
        if len(data) % size:
            return False
        count = len(data) // size
    if count < least or (most is not None and count > most):
        return False
    return not _holds_text(data)


_LETTER_RUN = re.compile(rb"[A-Za-z^]{8,}")


def _holds_text(data: bytes) -> bool:
    """Numbers' bytes that read as words: a run of letters, or an identifier shape."""
    if _LETTER_RUN.search(data):
        return True
    text = data.decode("latin-1")
    return any(p.search(text) for p in _KEPT_SHAPES)


def _as_released(
    tag: int, vr: str, values: list[object], actions: frozenset[str] | None, structured: bool = False
) -> bool:
    """Whether non-empty ``values`` are what one of the profiles writes for ``tag``."""
    texts = [str(v).strip(" \0") for v in values]
    if tag == _PATIENT_ID:  # the engine writes the keyed pseudonym at every depth
        return all(is_site_pseudonym(t) for t in texts)
    if tag == _PATIENT_NAME:
        return all(is_site_pseudonym(t) or t == DUMMY_TEXT for t in texts)
    if vr == "PN":  # every profile removes, empties or replaces a person name (unlisted ones too)
        return all(_PN_SPLIT.sub("", t).strip() == DUMMY_TEXT for t in texts)
    if actions is None:  # not in the table
        if structured and vr in FREE_TEXT_VRS:
            # the engine cleans it (Clean Structured Content) or writes the dummy, a fixed point too
            return all(clean_text(t, _NO_IDS, generic=True) == t for t in texts)
        # kept: UIDs remapped, dates shifted, text, URLs and bytes as they came
        return _kept(tag, vr, values, texts)
    for action in actions:
        if action == "K" and _kept(tag, vr, values, texts):
            return True
        if action == "U" or (action in ("C", "D") and vr in ("UI", "SQ")):
            return True
        if action == "C":
            if vr in _TEXT_VRS:
                if all(clean_text(t, _NO_IDS, generic=True) == t for t in texts):
                    return True
            else:
                return True  # dates shifted, coded strings kept but for the patient's own identifiers
        if action == "D" and all(_is_dummy(t, vr) for t in texts):
            return True
    return False


_KEPT_TEXT_VRS = _TEXT_VRS | {"CS", "AE", "UR"}
_ICC_PROFILE = 0x00282000
_ASCII_RUN = re.compile(rb"[\x20-\x7e]{8,}")


def _kept(tag: int, vr: str, values: list[object], texts: list[str]) -> bool:
    """Whether a value the engine keeps as it came is one a site releases: kept text (versions, models,
    serial numbers, code values and meanings, URLs) is no cleaner's fixed point (its digit runs read as
    IDs), so only the shapes that are never anything but an identifier are refused; an ICC profile is
    one (its signature) with its text zeroed, as the engine leaves it; other byte streams (OB, UN) hold
    no such shape in their runs of ASCII. Word data (LUTs, waveforms: OW, OF...) are numbers."""
    if vr in _KEPT_TEXT_VRS:
        shapes = _KEPT_SHAPES if tag in _VERSION_TAGS else _KEPT_SHAPES + _KEPT_DATE_SHAPES
        return not any(p.search(t) for t in texts for p in shapes)
    data = values[0] if len(values) == 1 and isinstance(values[0], bytes | bytearray) else None
    if data is None or tag >> 16 == 0x7FE0:
        return True  # numbers, dates, UIDs; pixel data is the pixel checks'
    if tag == _ICC_PROFILE:
        return _icc_as_released(bytes(data))
    if vr not in ("OB", "UN"):
        return True
    runs = (m.group(0).decode("ascii") for m in _ASCII_RUN.finditer(data))
    return not any(p.search(run) for run in runs for p in _KEPT_SHAPES)


def _icc_as_released(data: bytes) -> bool:
    """An ICC profile (its 'acsp' signature at byte 36) whose text, dates and unknown bytes the engine
    zeroed (``codestream.icc_text_spans``); anything else in ICCProfile is no colour profile."""
    if len(data) < 132 or data[36:40] != b"acsp":
        return False
    return not any(data[a:b].strip(b"\0") for a, b in codestream.icc_text_spans(data))


def _is_dummy(text: str, vr: str) -> bool:
    if vr in _TEXT_VRS:
        return text == DUMMY_TEXT
    if vr in DUMMY_BY_VR:
        return text == str(DUMMY_BY_VR[vr])
    return text in ("0", "0.0", "b'\\x00\\x00'")


def _values(elem: pydicom.DataElement) -> list[object]:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        return [] if not value.strip(b"\0 ") else [value]
    return list(value) if isinstance(value, MultiValue | list) else [value]


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"
