"""Shapes of the code systems clinical exports use: a code that does not fit its system is refused.

A code column is never free text: checking its shape is what keeps a name or a phone number typed
into it from reaching the catalog (the free-text cleaner would also eat real codes: SNOMED codes are
long digit runs).
"""

from __future__ import annotations

import re

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
    pat = SYSTEMS.get(system_name(system) or "", LOCAL)
    return bool(pat.fullmatch(code.strip()))


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
