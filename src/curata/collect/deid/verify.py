"""Checks for objects that arrive already de-identified (``--verified-deidentified``).

The PatientIdentityRemoved flag is a claim, not a proof: any tool can set it. An object is accepted
only when it looks like what a Curata site releases. The expectations come from the de-identification
profiles' own actions (Table E.1-1 resolved for the object's SOP class under ``basic``, ``research``
and ``research-strict``), not from a hand list, so they follow the table:

- PatientID holds a keyed pseudonym (``CUR-``, or the site's own prefix ending in '-' or '_', and
  16 base32: :func:`is_site_pseudonym`, a shape, no key needed); PatientName the pseudonym too, or
  the dummy, or nothing;
- an attribute every profile removes (X) or empties (Z) holds no value (birth date, accession number,
  institution, other IDs, physicians...); one they replace with a dummy (D) holds the dummy; a person
  name holds the dummy or nothing;
- free text the profiles clean (C) is a fixed point of the site's generic cleaner (cleaning it again
  changes nothing, as ``POST /clinical/batches`` checks its text columns);
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
from functools import cache

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from curata.collect.deid.engine import DUMMY_BY_VR, DUMMY_TEXT, _refuse_encapsulated_documents, _repeated_tag
from curata.collect.deid.profile import PROFILES, load_profile
from curata.collect.deid.pseudonyms import is_site_pseudonym
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


def check_deidentified(raw: bytes) -> Dataset:
    """The parsed object when it passes; DeidError naming the attribute (never its value) when not."""
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
    if pid and not is_site_pseudonym(pid):  # none: an input without one (the engine adds none)
        raise DeidError(
            "marked de-identified but PatientID is not a Curata pseudonym (the site's prefix, CUR- by "
            "default, and 16 base32); refused",
            hint="send it through a Curata gateway, which writes the site's keyed pseudonym (a "
            "pseudonym_prefix of its own must end in '-' or '_')",
        )
    top, nested = expected_actions(str(ds.get("SOPClassUID", "") or ""))
    _walk(ds, top, nested, "")
    _check_bytes(raw, ds)
    _refuse_encapsulated_documents(ds)
    return ds


def _check_bytes(raw: bytes, ds: Dataset) -> None:
    """The platform stores the bytes as they came: they may hold nothing the data set does not show."""
    if raw[128:132] == b"DICM" and raw[:128].strip(b"\0"):
        raise DeidError("marked de-identified but its preamble holds data (Curata writes zeros); refused")
    repeated = _repeated_tag(raw, ds)
    if repeated is not None:
        raise DeidError(
            f"marked de-identified but {keyword_for_tag(repeated) or 'an element'} appears twice; refused"
        )


def _walk(ds: Dataset, actions: Expected, nested: Expected, path: str) -> None:
    for elem in ds:
        if elem.tag in _MARKING:
            continue
        where = f"{path}{elem.keyword or elem.tag}"
        tag, group = int(elem.tag), elem.tag.group
        if elem.VR == "SQ":
            if elem.value and actions.get(tag, frozenset()) and actions[tag] <= _EMPTY_ACTIONS:
                raise DeidError(f"marked de-identified but {where} holds items the profiles remove; refused")
            for n, item in enumerate(elem.value or ()):
                _walk(item, nested, nested, f"{where}[{n}].")
            continue
        if group & 1:
            if elem.tag.element >= 0x1000 and elem.VR in (_TEXT_VRS | {"PN", "UN"}):
                raise DeidError(f"marked de-identified but private element {where} holds text; refused")
            continue
        if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF:  # overlays, curves
            text = str(elem.value or "").strip(" \0")
            # description, label, comments: free text the profiles clean (a name redacted to "*")
            if (
                elem.tag.element in (0x0022, 0x1500, 0x4000)
                and text
                and (clean_text(text, _NO_IDS, generic=True) != text or any(p.search(text) for p in _SHAPES))
            ):
                raise DeidError(
                    f"marked de-identified but overlay text {where} holds an identifier shape; refused"
                )
            continue
        values = [v for v in _values(elem) if str(v).strip(" \0")]
        if not values:
            continue  # empty: what Z writes, and what leaks nothing
        vr = elem.VR if elem.VR != "UN" else _vr(tag)
        if not _as_released(tag, vr, values, actions.get(tag)):
            if vr == "PN" or tag == _PATIENT_NAME:
                raise DeidError(
                    f"marked de-identified but {where} holds a person name (a pseudonym or REMOVED expected); refused"
                )
            raise DeidError(
                f"marked de-identified but {where} holds a value the profiles do not release; refused"
            )
        if vr in _TEXT_VRS and any(p.search(str(v)) for v in values for p in _SHAPES):
            raise DeidError(f"marked de-identified but {where} holds an identifier shape; refused")


def _as_released(tag: int, vr: str, values: list[object], actions: frozenset[str] | None) -> bool:
    """Whether non-empty ``values`` are what one of the profiles writes for ``tag``."""
    texts = [str(v).strip(" \0") for v in values]
    if tag == _PATIENT_ID:  # the engine writes the keyed pseudonym at every depth
        return all(is_site_pseudonym(t) for t in texts)
    if tag == _PATIENT_NAME:
        return all(is_site_pseudonym(t) or t == DUMMY_TEXT for t in texts)
    if vr == "PN":  # every profile removes, empties or replaces a person name (unlisted ones too)
        return all(_PN_SPLIT.sub("", t).strip() == DUMMY_TEXT for t in texts)
    if actions is None:  # not in the table: kept (UIDs remapped, dates shifted, structured text below)
        return True
    for action in actions:
        if action in ("K", "U") or (action in ("C", "D") and vr in ("UI", "SQ")):
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
