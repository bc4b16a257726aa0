"""Shapes of the code systems clinical exports use: a code that does not fit its system is refused.

A code column is never free text: checking its shape is what keeps a name or a phone number typed
into it from reaching the catalog (the free-text cleaner would also eat real codes: SNOMED codes are
long digit runs).
"""

from __future__ import annotations

import re

from curata.collect.deid.text import Identifiers, clean_text

# A unit: UCUM's grammar (a term of components joined by . and /, a leading / allowed), each component a
# unit symbol with an exponent (m2, s-1; m^2 as sites write it), a number (1.73, 24), a power of ten (10*3,
# 10^9, x10E9), an {annotation} ({1.73_m2}, {beats}) or a (term), with the letters sites write beside
# UCUM's ASCII: µ or μ (µmol/L), ° (°C), Ω. 40 characters at most, and the free-text cleaner must leave it.
_SYM = r"(?:[A-Za-zµμΩ°%'_]|\[[A-Za-z0-9_'.%*+\-]{1,16}\])"
_COMPONENT = (
    rf"(?=[^./)])(?:[xX×*]?10(?:[*^]|[eE])[+-]?\d{{1,2}}|\d+(?:\.\d+)?(?:{_SYM}+(?:\^?[+-]?\d{{1,2}})?)?"
    rf"|{_SYM}+(?:\^?[+-]?\d{{1,2}})?)?(?:\{{[!-z|~]{{1,24}}\}})?"
)
_TERM = rf"/?{_COMPONENT}(?:[./]{_COMPONENT})*"
_UNIT = rf"/?(?:{_COMPONENT}|\({_TERM}\))(?:[./](?:{_COMPONENT}|\({_TERM}\)))*"
UNIT_MAX = 40

SYSTEMS: dict[str, re.Pattern[str]] = {
    # WHO ICD-10 (U07.1 is COVID-19) and ICD-10-CM (C50.911, C4A.9, S72.001A, T36.0X1A), dot or none
    "ICD10": re.compile(r"[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?"),
    "ICD-O-3": re.compile(r"(?:C\d{2}(?:\.\d)?|\d{4}/\d)"),
    "LOINC": re.compile(r"\d{1,7}-\d"),
    "SNOMED": re.compile(r"\d{6,18}"),
    "ATC": re.compile(r"[A-Z](?:\d\d(?:[A-Z](?:[A-Z](?:\d\d)?)?)?)?"),
    "RXNORM": re.compile(r"\d{1,8}"),
    "UCUM": re.compile(_UNIT),  # and no identifier's shape (``valid_code``)
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
LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_:/+]{0,39}")
# A code no system is named for (``_unsystematic_code``), and every specimen's code (OMOP's specimen keeps
# no system, so the platform reads it as one; the site checks it against its mapping's system as well):
# - one of a shape no identifier has: ICD-10, ICD-O-3, LOINC;
# - digits only: up to 7 (an RxNorm RXCUI is below ten million: 1721560; a short local number) or a SNOMED
#   CT identifier (``snomed_id``: its partition and check digit), and never 8 digits that read as a date
#   (20230415, 15042023). An 8-digit or longer run that is none of these is an MRN's shape (88421937);
# - a local lab or specimen code of letters, digits and + - _ . / (HGB, K+, LUNG-BX, CA19-9, LAB-7):
#   - without a digit: 10 characters at most, no run of more than 8 letters, and in upper case unless
#     it has 4 letters or fewer (Hb, pH, eGFR). A longer or lower-case word reads as a word or a name
#     (QUILLFEATHER, Response, Quillfeather): such codes need their system named in the mapping
#     (``system = "=LOCAL"``), under which any local code's token is kept;
#   - with a digit: 40 characters at most, and no ID label (MRN, SSN...) before its number;
#   and in either case one the free-text cleaner leaves as it is (MRN88421937, a phone, a date, a run of
#   five digits or more are an identifier's shape).
# Letter-only shapes cannot tell a short surname from a mnemonic (SMITH reads as HGB does): the site's
# gate refuses the patient's own names and identifiers and the site's people in every code column.
_UNNAMED_SHAPES = (SYSTEMS["ICD10"], SYSTEMS["ICD-O-3"], re.compile(r"\d{1,6}-\d"))
_SHORT_NUMBER = re.compile(r"\d{1,7}")
_WORD_CODE = re.compile(r"[A-Za-z][A-Za-z+\-_./]{0,9}")
_LETTER_RUN = re.compile(r"[A-Za-z]{9,}")
_ID_LABEL = re.compile(
    r"(?i)(?:MRN|SSN|NHS|NHI|PID|MPI|EMPI|URN|DOB|TEL|PHONE|CSN|FIN|NPI|ID|PATID|ACCT|ACCN)[-_./:#]?\d"
)
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
# A stage: a stage group (0, 0a, 0is, I-IV or 1-4 with A-C and a digit, after "Stage" or not), a named stage
# (limited or extensive, as small-cell lung cancer's; SEER's localized, regional, distant) or TNM: T, N and M,
# each with its prefixes (c, p, y, r, a, m and their combinations: yp, rp, yc), T's and N's subcategories
# (T1a1, T1mi, N1mi) and their parenthesised suffixes (T(m), N0(sn), N0(i+), N0(mol-), N1(f), M0(i+)), with
# or without spaces between them (pT2 pN1a M0, ypT2N1M0, pT1c pN0(sn) M0).
STAGE_GROUP = re.compile(r"(?:stage\s*)?(?:0(?:a|is)?|I{1,3}|IV|[1-4])(?:[A-C][0-9]?)?", re.I)
NAMED_STAGES = {"LIMITED": "LIMITED", "EXTENSIVE": "EXTENSIVE", "LOCALIZED": "LOCALIZED",
                "LOCALISED": "LOCALIZED", "REGIONAL": "REGIONAL", "DISTANT": "DISTANT"}  # fmt: skip
NAMED_STAGE = re.compile(
    r"(?:stage\s*)?(limited|extensive|locali[sz]ed|regional|distant)(?:[\s\-]*(?:stage|disease)){0,2}", re.I
)
_PREFIX = r"[cpyram]{0,3}"
TNM = re.compile(
    rf"(?P<tp>{_PREFIX})T(?P<t>(?:is|a|x|[0-4])(?:[a-d][1-3]?)?(?:mi)?(?:\((?:m|\d{{1,2}})\))?)"
    rf"(?:\s*(?P<np>{_PREFIX})N(?P<n>(?:x|[0-3])[a-c]?(?:mi)?(?:\((?:sn|i[+\-]|mol[+\-]|f)\)){{0,2}}))?"
    rf"(?:\s*(?P<mp>{_PREFIX})M(?P<m>(?:x|[01])[a-d]?(?:\((?:i\+|cy\+?|[01])\))?))?",
    re.I,
)
STAGE_MAX = 32  # condition_occurrence.stage


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
    if name == "UCUM":
        return len(c) <= UNIT_MAX and bool(SYSTEMS["UCUM"].fullmatch(c)) and clean_text(c, _NO_IDS) == c
    return bool(SYSTEMS.get(name, LOCAL).fullmatch(c))


def _date_digits(code: str) -> bool:
    """Whether 8 digits read as a date of 1900-2099: YYYYMMDD, DDMMYYYY or MMDDYYYY."""
    if len(code) != 8 or not code.isdigit():
        return False
    for y, m, d in (
        (code[:4], code[4:6], code[6:]),
        (code[4:], code[2:4], code[:2]),
        (code[4:], code[:2], code[2:4]),
    ):
        if 1900 <= int(y) <= 2099 and 1 <= int(m) <= 12 and 1 <= int(d) <= 31:
            return True
    return False


def _unsystematic_code(code: str) -> bool:
    """A code with no system named, or a specimen's (see ``_UNNAMED_SHAPES``)."""
    if any(p.fullmatch(code) for p in _UNNAMED_SHAPES):
        return True
    if code.isascii() and code.isdigit():
        return bool(_SHORT_NUMBER.fullmatch(code)) or (snomed_id(code) and not _date_digits(code))
    if not LOCAL.fullmatch(code) or _ID_LABEL.match(code):
        return False
    if not _DIGIT.search(code):
        if not _WORD_CODE.fullmatch(code) or _LETTER_RUN.search(code):
            return False
        letters = sum(ch.isalpha() for ch in code)
        if letters > 4 and not code.isupper():
            return False
    return clean_text(code, _NO_IDS) == code


def valid_stage(value: str) -> bool:
    v = value.strip()
    if not (STAGE_GROUP.fullmatch(v) or NAMED_STAGE.fullmatch(v) or TNM.fullmatch(v)):
        return False
    return len(normal_stage(v)) <= STAGE_MAX


def normal_stage(value: str) -> str:
    """``Stage IIIA`` -> ``IIIA``; ``pt2 n0 m0`` -> ``pT2N0M0``; ``pT2 pN1a M0`` -> ``pT2N1AM0`` (a prefix
    of N or M is kept where it is not T's, after a space: ``pT2 cN0M0``); ``Limited stage`` -> ``LIMITED``."""
    v = value.strip()
    named = NAMED_STAGE.fullmatch(v)
    if named:
        return NAMED_STAGES[named.group(1).upper()]
    tnm = TNM.fullmatch(v)
    if tnm:
        tp = tnm["tp"].lower()
        out = f"{tp}T{tnm['t'].upper()}"
        for part in ("n", "m"):
            body, prefix = tnm[part], (tnm[f"{part}p"] or "").lower()
            if body is not None:
                out += (f" {prefix}" if prefix and prefix != tp else "") + part.upper() + body.upper()
        return out
    return re.sub(r"(?i)^stage\s*", "", v).replace(" ", "").upper()


_ROMAN = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV"}


def stage_group(stage: str) -> str | None:
    """The overall stage group of a normalised stage (``IIIA`` -> ``III``, ``2B`` -> ``II``); None for TNM."""
    m = re.fullmatch(r"(0|IV|I{1,3}|[0-4])(?:[A-C]\d?|IS)?", stage)
    return _ROMAN.get(m.group(1), m.group(1)) if m else None
