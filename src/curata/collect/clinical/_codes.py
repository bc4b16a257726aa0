"""Shapes of the code systems clinical exports use: a code that does not fit its system is refused.

A code column is never free text: checking its shape is what keeps a name or a phone number typed
into it from reaching the catalog (the free-text cleaner would also eat real codes: SNOMED codes are
long digit runs).
"""

from __future__ import annotations

import re

from curata.collect.deid.text import Identifiers, clean_text

SYSTEMS: dict[str, re.Pattern[str]] = {
    "ICD10": re.compile(r"[A-TV-Z][0-9][0-9AB](?:\.?[0-9A-TV-Z]{1,4})?"),
    "ICD-O-3": re.compile(r"(?:C\d{2}(?:\.\d)?|\d{4}/\d)"),
    "LOINC": re.compile(r"\d{1,7}-\d"),
    "SNOMED": re.compile(r"\d{6,18}"),
    "ATC": re.compile(r"[A-Z](?:\d\d(?:[A-Z](?:[A-Z](?:\d\d)?)?)?)?"),
    "RXNORM": re.compile(r"\d{1,8}"),
    "UCUM": re.compile(r"[A-Za-z0-9%/.\[\]{}*^()'\-]{1,20}"),
    "CPT": re.compile(r"\d{4}[0-9A-Z]"),
    "HGNC": re.compile(r"[A-Z][A-Z0-9\-]{0,15}"),
}
ALIASES = {
    "ICD-10": "ICD10",
    "ICD10CM": "ICD10",
    "ICD-10-CM": "ICD10",
    "HTTP://HL7.ORG/FHIR/SID/ICD-10": "ICD10",
    "HTTP://HL7.ORG/FHIR/SID/ICD-10-CM": "ICD10",
    "HTTP://LOINC.ORG": "LOINC",
    "SNOMEDCT": "SNOMED",
    "SNOMED-CT": "SNOMED",
    "HTTP://SNOMED.INFO/SCT": "SNOMED",
    "HTTP://WWW.WHOCC.NO/ATC": "ATC",
    "HTTP://WWW.NLM.NIH.GOV/RESEARCH/UMLS/RXNORM": "RXNORM",
    "HTTP://UNITSOFMEASURE.ORG": "UCUM",
    "HTTP://TERMINOLOGY.HL7.ORG/CODESYSTEM/ICD-O-3": "ICD-O-3",
    "ICDO3": "ICD-O-3",
}
# Any other system: a short token without spaces (a local code), checked by the gate as well.
LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_:/]{0,39}")
# A code no system is named for: one of a known system's shape that no identifier has (ICD-10, ICD-O-3,
# LOINC: SNOMED's and RxNorm's digit runs are an MRN's shape, ATC's and HGNC's a word's), or a local
# code's token that holds a digit (a bare word is no code: it may be a name, QUILLFEATHER) and that the
# free-text cleaner leaves as it is (MRN88421937, a phone, a date or a run of five digits or more is an
# identifier's shape). A site whose local codes are words names their system in its mapping
# (``system = "=LOCAL"``): under a named system the code has that system's shape.
_UNNAMED_SHAPES = (SYSTEMS["ICD10"], SYSTEMS["ICD-O-3"], re.compile(r"\d{1,6}-\d"))
# A SNOMED CT identifier's last three digits: its partition (concept, description, relationship; core or
# extension) and a Verhoeff check digit. A digit run that is not one (an MRN, most of them) is no SNOMED code
# where no system is named: a specimen's code travels without its system.
_SNOMED_PARTITIONS = frozenset({"00", "01", "02", "10", "11", "12"})
_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def snomed_id(code: str) -> bool:
    """Whether ``code`` is a SNOMED CT identifier: 6 to 18 digits, a partition and a Verhoeff check digit."""
    if not SYSTEMS["SNOMED"].fullmatch(code) or code[-3:-1] not in _SNOMED_PARTITIONS:
        return False
    c = 0
    for i, digit in enumerate(reversed(code)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(digit)]]
    return c == 0


_DIGIT = re.compile(r"\d")
_NO_IDS = Identifiers()
# A system kept beside its codes that is none of the above: a local system's name, URL or OID, one token.
# Text where the system goes (an MRN, a phone, a sentence) is not kept: no cleaner reads a URL right
# (the free-text cleaner takes URLs and OIDs for identifier shapes), so the shape is the check.
SYSTEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_:/#]{0,63}")
STAGE = re.compile(
    r"(?:stage\s*)?(?:0|I{1,3}|IV|[1-4])(?:[A-C][0-9]?)?"
    r"|[cpyr]?T(?:[0-4]|is|x)[a-d]?(?:\s*N[0-3x][a-c]?)?(?:\s*M[01x][a-c]?)?",
    re.I,
)


def system_name(system: str | None) -> str | None:
    if not system:
        return None
    s = system.strip().upper()
    return ALIASES.get(s, s)


def kept_system(system: str | None) -> str | None:
    """What the catalog keeps of a code system: a known one's name, another's as written (upper case) when
    it has a system's shape (``SYSTEM``), else None (the codes are checked as local codes either way)."""
    name = system_name(system)
    if name is None or name in SYSTEMS:
        return name
    return name if SYSTEM.fullmatch(name) else None


def valid_code(code: str, system: str | None) -> bool:
    # a system the catalog does not keep (text where the system goes) is none: the code travels without it
    name = kept_system(system)
    c = code.strip()
    if name is None:
        return _unsystematic_code(c)
    return bool(SYSTEMS.get(name, LOCAL).fullmatch(c))


def _unsystematic_code(code: str) -> bool:
    """A code with no system named (see ``_UNNAMED_SHAPES``)."""
    if any(p.fullmatch(code) for p in _UNNAMED_SHAPES) or snomed_id(code):
        return True
    if not LOCAL.fullmatch(code) or not _DIGIT.search(code):
        return False
    return clean_text(code, _NO_IDS) == code


def valid_stage(value: str) -> bool:
    return bool(STAGE.fullmatch(value.strip()))


def normal_stage(value: str) -> str:
    """``Stage IIIA`` -> ``IIIA``; ``pt2 n0 m0`` -> ``pT2N0M0``."""
    v = re.sub(r"(?i)^stage\s*", "", value.strip()).replace(" ", "")
    if len(v) > 1 and v[0] in "cpyrCPYR" and v[1] in "Tt":
        return v[0].lower() + v[1:].upper()
    return v.upper()


_ROMAN = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV"}


def stage_group(stage: str) -> str | None:
    """The overall stage group of a normalised stage (``IIIA`` -> ``III``, ``2B`` -> ``II``); None for TNM."""
    m = re.fullmatch(r"(0|IV|I{1,3}|[0-4])[A-C]?\d?", stage)
    return _ROMAN.get(m.group(1), m.group(1)) if m else None
