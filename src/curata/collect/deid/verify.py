"""Checks for objects that arrive already de-identified (``--verified-deidentified``).

The PatientIdentityRemoved flag is a claim, not a proof: any tool can set it. Here the object must
also pass the engine's own checks: no person name that is not a pseudonym or a dummy, no patient
identity attribute (address, telephone, other names and IDs, birth name...) with a value, no
identifier shapes (``FAMILY^GIVEN``, titles with names, e-mail, telephone, SSN, dates of birth
written out) in any text element at any depth, no burned-in annotation flagged YES, and no
overlay, curve or private element holding readable text.
"""

from __future__ import annotations

import io
import re
import warnings

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from curata.collect.deid.text import GENERIC_PATTERNS
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
# Placeholder words: a name made only of these (ANON^TEST, ANONYMOUS PATIENT) is a dummy.
_DUMMY_WORDS = {"REMOVED", "ANONYMOUS", "ANONYMIZED", "ANON", "UNKNOWN", "DEIDENTIFIED", "NONE", "NAME",
                "TEST", "PATIENT", "PHANTOM", "SUBJECT", "DUMMY"}  # fmt: skip
# A pseudonym: a short prefix then a code with digits (CUR-3f9a0c12, ANON12345, PAT_0007, 4711).
_PSEUDONYM = re.compile(r"(?=.*\d)[A-Za-z]{0,10}[-_ ]?[A-Za-z0-9_-]{3,}")
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
# The generic shapes that never belong in released text: e-mail, SSN, a title with a name, and a
# DICOM person name (FAMILY^GIVEN) written into text. (Dates and "by <word>" are ordinary there.)
_SHAPES = [GENERIC_PATTERNS[i] for i in (0, 7, 8, 9)]
_MARKING = {0x00120063, 0x00120064}


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
    patient_id = str(ds.get("PatientID", "") or "").strip()
    for keyword in IDENTITY_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, "") and (not hasattr(value, "__len__") or len(value)):
            raise DeidError(f"marked de-identified but {keyword} holds a value; refused")
    _walk(ds, patient_id, "")
    return ds


def _walk(ds: Dataset, patient_id: str, path: str) -> None:
    for elem in ds:
        if elem.tag in _MARKING:
            continue
        where = f"{path}{elem.keyword or elem.tag}"
        group = elem.tag.group
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value or ()):
                _walk(item, patient_id, f"{where}[{n}].")
            continue
        if group & 1 and elem.tag.element >= 0x1000 and elem.VR in (_TEXT_VRS | {"PN", "UN"}):
            raise DeidError(f"marked de-identified but private element {where} holds text; refused")
        overlay_text = 0x6000 <= group <= 0x60FF and elem.tag.element in (0x0022, 0x1500, 0x4000)
        if overlay_text and str(elem.value or "").strip():
            raise DeidError(f"marked de-identified but overlay text {where} is present; refused")
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        if elem.VR == "PN":
            for v in values:
                text = str(v or "").strip()
                bare = text.replace("^", " ").replace("=", " ").strip()
                if (
                    set(bare.upper().split()) <= _DUMMY_WORDS
                    or text == patient_id
                    or _PSEUDONYM.fullmatch(bare)
                ):
                    continue
                raise DeidError(f"marked de-identified but {where} holds a person name; refused")
        elif elem.VR in _TEXT_VRS:
            for v in values:
                text = str(v or "")
                if any(p.search(text) for p in _SHAPES):
                    raise DeidError(f"marked de-identified but {where} holds an identifier shape; refused")
