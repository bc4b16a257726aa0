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
# UCUM's ASCII: µ or μ (µmol/L), ° (°C), Ω. A space may stand for . after a number (mL/min/1.73 m2, mg/24 h,
# log10 copies/mL; not mg L). A titer (1:160) is a unit too. 40 characters at most, and the free-text
# cleaner must leave it. Letters are UCUM's atoms only (``_UNIT_ATOMS``), so a name is no unit.
_SYM = r"(?:[A-Za-zµμΩ°%'_]|\[[A-Za-z0-9_'.%*+\-]{1,16}\])"
_POWER = r"[xX×*]?10(?:[*^]|[eE])[+-]?\d{1,2}"
_COMPONENT = (
    rf"(?=[^./) ])(?:{_POWER}|\d+(?:\.\d+)?(?:{_SYM}+(?:\^?[+-]?\d{{1,2}})?)?"
    rf"|{_SYM}+(?:\^?[+-]?\d{{1,2}})?)?(?:\{{[!-z|~]{{1,24}}\}})?"
)
_SEP = r"(?:[./]|(?<=\d) )"
_TERM = rf"/?{_COMPONENT}(?:{_SEP}{_COMPONENT})*"
_UNIT = rf"/?(?:{_COMPONENT}|\({_TERM}\))(?:{_SEP}(?:{_COMPONENT}|\({_TERM}\)))*"
_TITER = re.compile(r"1:\d{1,6}")
# UCUM's atoms as sites write them (compared case-insensitively: MG/DL, ML/MIN), each with one prefix or
# none, and the clinical counts sites write beside them (copies, cells, IU, mEq, mmHg)
_PREFIXES = ("", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "da", "d", "c", "m", "u", "µ", "μ", "mc", "n",
             "p", "f", "a", "z", "y")  # fmt: skip
_BASE_ATOMS = ("m", "g", "s", "l", "L", "mol", "eq", "osm", "K", "A", "cd", "Hz", "N", "Pa", "J", "W", "C", "V",
               "F", "Ohm", "Ω", "S", "Wb", "T", "H", "lm", "lx", "Bq", "Gy", "Sv", "kat", "U", "IU", "iU",
               "[IU]", "[iU]", "bar", "atm", "cal", "Cel", "t", "B", "Np", "rad", "sr", "Ci", "R", "%")  # fmt: skip
_PLAIN_ATOMS = ("min", "h", "hr", "hrs", "d", "day", "days", "wk", "week", "weeks", "mo", "month", "months",
                "a", "y", "yr", "yrs", "year", "years", "sec", "ms", "°", "°C", "°F", "'", "''", "mmHg",
                "mm[Hg]", "cm[H2O]", "cmH2O", "mmH2O", "[pH]", "pH", "[degF]", "deg", "[in_i]", "in", "ft",
                "[ft_i]", "lb", "lbs", "[lb_av]", "oz", "[oz_av]", "[ppm]", "ppm", "[ppb]", "ppb", "[HPF]",
                "[LPF]", "hpf", "lpf", "[arb'U]", "[drp]", "[CFU]", "CFU", "[PFU]", "log", "ln", "lg", "dB",
                "copies", "copy", "cells", "cell", "wbc", "rbc", "beats", "beat", "bpm", "breaths", "drops",
                "drop", "gtt", "tab", "tabs", "tablet", "tablets", "cap", "caps", "puff", "puffs", "dose",
                "doses", "unit", "units", "ratio", "index", "score", "titer", "titre", "thou", "mill",
                "mcg", "mEq", "mOsm", "[GPL'U]", "[MPL'U]", "[APL'U]", "[BAU]", "[AU]", "[USP'U]")  # fmt: skip
# as written (mL, mA, Gy), or in one case (MG/DL, mmhg): a capitalised word is an atom only as UCUM writes
# it, so a short surname (Ma, Ng, Min, Dag) is none
_UNIT_ATOMS = frozenset([p + a for p in _PREFIXES for a in _BASE_ATOMS] + list(_PLAIN_ATOMS))
_UNIT_ATOMS_FOLDED = frozenset(a.casefold() for a in _UNIT_ATOMS)
_UNIT_TOKEN = re.compile(r"[A-Za-zµμΩ°%']+(?:\[[^\]]*\])?|\[[^\]]*\]")
_ANNOTATION = re.compile(r"\{([^{}]*)\}")
# a name-like word: capitalised, 3 letters or more (Okafor, Eze); Ehrlich and Bethesda are units' names
_NAME_WORD = re.compile(r"(?<![A-Za-z])[A-Z][a-z]{2,}(?![a-z])")
_UNIT_NAMES = frozenset({"Ehrlich", "Bethesda", "Todd", "Svedberg", "Kunkel", "Mclagan", "Knoop"})
UNIT_MAX = 40

SYSTEMS: dict[str, re.Pattern[str]] = {
    # WHO ICD-10 (U07.1 is COVID-19) and ICD-10-CM (C50.911, C4A.9, S72.001A, T36.0X1A), dot or none
    "ICD10": re.compile(r"[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?"),
    "ICD-O-3": re.compile(r"(?:C\d{2}(?:\.\d)?|\d{4}/\d)"),
    "LOINC": re.compile(r"(?:L[PA])?\d{1,7}-\d"),  # and its parts, answers
    "SNOMED": re.compile(r"\d{6,18}"),  # and a partition, check digit (``snomed_id``)
    "ATC": re.compile(r"[A-Z](?:\d\d(?:[A-Z](?:[A-Z](?:\d\d)?)?)?)?"),
    "RXNORM": re.compile(r"\d{1,7}"),  # below ten million: no 8-digit date
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
    "SNOMED CT": "SNOMED",
    "SNOMED_CT": "SNOMED",
    "SCT": "SNOMED",
    "RX-NORM": "RXNORM",
    "ICD-O": "ICD-O-3",
    "CPT-4": "CPT",
    "CPT4": "CPT",
    "HTTP://WWW.AMA-ASSN.ORG/GO/CPT": "CPT",
    "HTTP://WWW.GENENAMES.ORG": "HGNC",
    "HTTP://WWW.GENENAMES.ORG/GENEGROUP": "HGNC",
    # HL7's OIDs of the same systems (bare or urn:oid:, as CDA and v2 exports write them)
    "2.16.840.1.113883.6.96": "SNOMED",
    "2.16.840.1.113883.6.1": "LOINC",
    "2.16.840.1.113883.6.3": "ICD10",
    "2.16.840.1.113883.6.90": "ICD10",
    "2.16.840.1.113883.6.88": "RXNORM",
    "2.16.840.1.113883.6.8": "UCUM",
    "2.16.840.1.113883.6.73": "ATC",
    "2.16.840.1.113883.6.12": "CPT",
    "2.16.840.1.113883.6.43.1": "ICD-O-3",
    "2.16.840.1.113883.6.281": "HGNC",
    # HL7 v2 table 0396 and UMLS source abbreviations, and other spellings sites export (review 17)
    "LN": "LOINC",
    "LNC": "LOINC",
    "I10": "ICD10",
    "I10C": "ICD10",
    "ICD10-CM": "ICD10",
    "ICD 10": "ICD10",
    "ICD 10 CM": "ICD10",
    "SNOMEDCT_US": "SNOMED",
    "SNOMED CT-US": "SNOMED",
    "SNOMED-CT-US": "SNOMED",
    "HTTP://WWW.GENENAMES.ORG/GENEID": "HGNC",
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
_UNNAMED_SHAPES = (SYSTEMS["ICD10"], SYSTEMS["ICD-O-3"], re.compile(r"(?:L[PA])?\d{1,6}-\d"))
_SHORT_NUMBER = re.compile(r"\d{1,7}")
_WORD_CODE = re.compile(r"[A-Za-z][A-Za-z+\-_./]{0,9}")
_LETTER_RUN = re.compile(r"[A-Za-z]{9,}")
_ID_PREFIXES = frozenset(
    [
        "MRN",
        "SSN",
        "NHS",
        "NHI",
        "PID",
        "MPI",
        "EMPI",
        "URN",
        "DOB",
        "TEL",
        "PHONE",
        "CSN",
        "FIN",
        "NPI",
        "ID",
        "PATID",
        "ACCT",
        "ACCN",
        "MR",
        "UR",
        "HN",
        "PT",
        "PAT",
        "HOSP",
        "ACC",
        "CHI",
        "ENC",
        "VIS",
        "VISIT",
        "EPI",
        "CASE",
    ]
)
_ID_LABEL = re.compile(
    r"(?i)(?<![A-Za-z])(?:MRN|SSN|NHS|NHI|PID|MPI|EMPI|URN|DOB|TEL|PHONE|CSN|FIN|NPI|ID|PATID|ACCT|ACCN)"
    r"[-_./:#]?\d"
)
_PREFIXED_NUMBER = re.compile(r"([A-Z]{2,4})[-_]?\d{5,7}")
_NAME_TOKEN = re.compile(r"[A-Z][a-z]{2,}")
# a specimen's type as sites write it, with no system (OMOP's specimen keeps none): case and spaces aside
SPECIMEN_TYPES = frozenset(
    " ".join(w.split()).casefold()
    for w in (
        "serum", "plasma", "blood", "whole blood", "peripheral blood", "cord blood", "venous blood",
        "arterial blood", "capillary blood", "dried blood spot", "buffy coat", "bone marrow",
        "bone marrow aspirate", "bone marrow biopsy", "tissue", "fresh tissue", "frozen tissue", "tumor",
        "tumour", "tumor tissue", "tumour tissue", "normal tissue", "biopsy", "core biopsy", "resection",
        "urine", "stool", "feces", "faeces", "saliva", "sputum", "swab", "nasal swab", "nasopharyngeal swab",
        "throat swab", "buccal swab", "csf", "cerebrospinal fluid", "pleural fluid", "ascites",
        "ascitic fluid", "peritoneal fluid", "synovial fluid", "pericardial fluid", "amniotic fluid",
        "bronchoalveolar lavage", "bal", "cells", "cell pellet", "cytology", "fine needle aspirate",
        "aspirate", "lymph node", "skin", "hair", "nail", "semen", "breast milk", "bile", "dna", "rna",
        "cfdna", "ctdna", "ffpe", "ffpe block", "paraffin block", "slide", "frozen section", "smear",
    )
)  # fmt: skip
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
# A local system's name, URL or OID as the mapping declares it (``system = "=LOCAL"``, ``local_systems``):
# one token of this shape (``local_system_ok``). A system read from a cell is kept only where it is a known
# one or one the mapping declares (``kept_system``): a cell is the export's text, and a bare word (another
# patient's surname) has no shape that tells it from a local system's name.
SYSTEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_:/#]{0,63}")
_OID = re.compile(r"(?:URN:OID:)?[0-2](?:\.(?:0|[1-9]\d{0,9})){3,}")
_SCHEME = re.compile(r"^(?:HTTPS?://|URN:)", re.I)
_LONG_DIGITS = re.compile(r"\d{5,}")
# A stage: a stage group (0, 0a, 0is, I-IV or 1-4 with A-C and a digit, after "Stage" or not), a named stage
# (limited or extensive, as small-cell lung cancer's; SEER's localized, regional, distant) or TNM: T, N and M,
# each with its prefixes (c, p, y, r, a, m and their combinations: yp, rp, yc), T's and N's subcategories
# (T1a1, T1mi, N1mi) and their parenthesised suffixes (T(m), N0(sn), N0(i+), N0(mol-), N1(f), M0(i+)), with
# or without spaces between them (pT2 pN1a M0, ypT2N1M0, pT1c pN0(sn) M0).
STAGE_GROUP = re.compile(r"(?:stage\s*)?(?:0(?:a|is)?|I{1,3}|IV|[1-4])(?:-?[A-C][0-9]?)?", re.I)
NAMED_STAGES = {"LIMITED": "LIMITED", "EXTENSIVE": "EXTENSIVE", "LOCALIZED": "LOCALIZED",
                "LOCALISED": "LOCALIZED", "REGIONAL": "REGIONAL", "DISTANT": "DISTANT", "CIS": "CIS",
                "IN SITU": "CIS", "CARCINOMA IN SITU": "CIS"}  # fmt: skip
NAMED_STAGE = re.compile(
    r"(?:stage\s*)?(limited|extensive|locali[sz]ed|regional|distant|cis|(?:carcinoma\s+)?in\s+situ)"
    r"(?:[\s\-]*(?:stage|disease)){0,2}",
    re.I,
)
# A stage of a named staging system, kept as "SYSTEM GROUP" (FIGO IIIC, DUKES C, ANN ARBOR IIB, R-ISS III):
# FIGO (gynaecological), Dukes (colorectal), Ann Arbor and Lugano (lymphoma), Binet and Rai (CLL), ISS and
# R-ISS (myeloma), BCLC (liver), Child-Pugh, Gleason (3+4=7) and ISUP grade groups.
_ROMAN4 = r"(?:IV|I{1,3})"
STAGING_SYSTEMS: dict[str, tuple[str, str]] = {
    "FIGO": (r"figo", rf"(?:0|{_ROMAN4}[A-C]?[1-3]?)"),
    "DUKES": (r"dukes'?", r"(?:[A-D][12]?)"),
    "ANN ARBOR": (r"ann[\s\-]*arbor", rf"(?:{_ROMAN4}[ABESX]{{0,3}})"),
    "LUGANO": (r"lugano", rf"(?:{_ROMAN4}[ABESX]{{0,3}})"),
    "BINET": (r"binet", r"(?:[A-C])"),
    "RAI": (r"rai", rf"(?:0|{_ROMAN4}|[1-4])"),
    "R-ISS": (r"r[\s\-]*iss", r"(?:III|II|I|[1-3])"),
    "ISS": (r"iss", r"(?:III|II|I|[1-3])"),
    "BCLC": (r"bclc", r"(?:0|[A-D])"),
    "CHILD-PUGH": (r"child[\s\-]*pugh", r"(?:[A-C]|[5-9]|1[0-5])"),
    "GLEASON": (r"gleason(?:\s*score)?", r"(?:[1-5]\+[1-5](?:=(?:[2-9]|10))?|[2-9]|10)"),
    "ISUP": (r"(?:isup(?:\s*grade(?:\s*group)?)?|grade\s*group|gg)", r"(?:[1-5])"),
}
SYSTEM_STAGE = re.compile(
    r"(?:stage\s*)?(?:"
    + "|".join(rf"(?P<s{i}>{name})[\s:\-]*(?:stage\s*)?(?P<g{i}>{g})" for i, (name, g) in enumerate(
        STAGING_SYSTEMS.values()))
    + r")",
    re.I,
)  # fmt: skip
_PREFIX = r"[cpyram]{0,3}"
# TNM, then a node count ((2/14): nodes involved of those examined) and, in parentheses, its stage group
# (T1 N1 M0 (Stage IIB)) or a complete response (ypT0 ypN0 (pCR))
TNM = re.compile(
    rf"(?P<tp>{_PREFIX})T(?P<t>(?:is|a|x|[0-4])(?:[a-d][1-3]?)?(?:mi)?(?:\((?:m|\d{{1,2}})\))?)"
    rf"(?:\s*(?P<np>{_PREFIX})N(?P<n>(?:x|[0-3])[a-c]?(?:mi)?(?:\((?:sn|i[+\-]|mol[+\-]|f)\)){{0,2}}"
    rf"(?:\s*\(\d{{1,2}}/\d{{1,3}}\))?))?"
    rf"(?:\s*(?P<mp>{_PREFIX})M(?P<m>(?:x|[01])[a-d]?(?:\((?:i\+|cy\+?|[01])\))?))?"
    rf"(?:\s*\((?:(?P<pcr>pCR)|(?P<grp>{STAGE_GROUP.pattern}))\))?",
    re.I,
)
STAGE_MAX = 32  # condition_occurrence.stage


def system_name(system: str | None) -> str | None:
    """A system as the catalog names it: a known one's name (``SYSTEMS``) for its name, URL or OID
    (``ALIASES``: ``SNOMED CT``, ``http://loinc.org``, ``2.16.840.1.113883.6.96``), another upper-cased."""
    if not system or not system.strip():
        return None
    s = " ".join(system.split()).upper()
    key = s.removeprefix("URN:OID:").rstrip("/").replace("HTTPS://", "HTTP://", 1)
    edition = key.removeprefix("HTTP://SNOMED.INFO/SCT/")
    if edition != key and edition.isdigit():  # a SNOMED CT edition's URI (/731000124108: the US one)
        return "SNOMED"
    return ALIASES.get(key, ALIASES.get(s, s))


def local_system_ok(name: str) -> bool:
    """Whether ``name`` (upper case, as ``system_name`` gives it) may name a local code system: one token
    (``SYSTEM``), an OID, or a name or URL with no identifier's shape in it (no ID label before a number,
    no run of 5 digits or more, nothing the free-text cleaner takes: a phone, a date, an e-mail). The
    mapping's declarations are checked with it, and the platform checks a pushed ``source_system`` so."""
    if not SYSTEM.fullmatch(name) or name != name.upper() or system_name(name) in SYSTEMS:
        return False
    if _OID.fullmatch(name):
        return True
    if _ID_LABEL.search(name) or _LONG_DIGITS.search(name):
        return False
    # a URL's host and path are read part by part: the cleaner takes a whole URL for an identifier
    parts = re.split(r"[/#:]+", _SCHEME.sub("", name))
    return all(clean_text(p, _NO_IDS) == p for p in parts if p)


def accepted_system(value: str) -> bool:
    """A ``source_system`` the platform accepts: a known system as the catalog names it, or a local one."""
    return value in SYSTEMS or local_system_ok(value)


def code_refusal(field: str, system: str | None, where: str) -> str:
    """Why a code is refused, naming its system only where it is a known one (``SYSTEMS``): another
    system is the export's own text (a cell, a FHIR Coding's system), which may be anything, a
    patient's name or record number included. ``system``: as ``system_name`` gives it; ``where``: where
    the system came from (``column coding_system``), so that the site can find it."""
    if not system:
        return f"{field}: not a valid local code"
    if system in SYSTEMS:
        return f"{field}: not a valid {system} code"
    return f"{field}: not a valid code of an unknown code system ({where})"


def unknown_system(field: str, where: str) -> str:
    """Why a row whose code system is none the catalog keeps is refused: its place, never its value."""
    return (
        f"{field}: an unknown code system ({where}): neither a known one nor a local one the mapping "
        "declares (local_systems)"
    )


def kept_system(system: str | None, declared: frozenset[str] | set[str] = frozenset()) -> str | None:
    """What the catalog keeps of a code system: a known one's name (``system_name``), or a local one the
    mapping declares (``declared``: its names as ``system_name`` gives them), else None: another value is
    the export's text and is stored nowhere (a tabular row is refused, a FHIR code travels without it)."""
    name = system_name(system)
    if name is None or name in SYSTEMS:
        return name
    return name if name in declared and local_system_ok(name) else None


def valid_code(code: str, system: str | None) -> bool:
    # a system that cannot name a local one (text where the system goes) is none: the code is checked as
    # one with no system named
    name = system_name(system)
    if name is not None and name not in SYSTEMS and not local_system_ok(name):
        name = None
    c = code.strip()
    if name is None:
        return _unsystematic_code(c)
    if name == "UCUM":
        return valid_unit(c)
    if name == "SNOMED":
        return snomed_id(c)
    if name in SYSTEMS:
        return bool(SYSTEMS[name].fullmatch(c))
    # a local system's code: its token, and no identifier's shape, as where no system is named
    if c.isascii() and c.isdigit():
        return _digit_code(c)
    return bool(LOCAL.fullmatch(c)) and _identifier_free(c)


def valid_unit(unit: str) -> bool:
    """A unit as sites write it (``_UNIT``): UCUM's grammar, its atoms, short unit-like annotations."""
    u = unit.strip()
    if not u or len(u) > UNIT_MAX or clean_text(u, _NO_IDS) != u:
        return False
    if _TITER.fullmatch(u):
        return True
    if not SYSTEMS["UCUM"].fullmatch(u):
        return False
    for note in _ANNOTATION.findall(u):
        if not _unit_annotation(note):
            return False
    bare = re.sub(_POWER, " ", _ANNOTATION.sub(" ", u))
    return all(_unit_atom(t) for t in _UNIT_TOKEN.findall(bare))


def _unit_atom(token: str) -> bool:
    if token in _UNIT_ATOMS:
        return True
    letters = "".join(ch for ch in token if ch.isalpha())
    return (letters.isupper() or letters.islower()) and token.casefold() in _UNIT_ATOMS_FOLDED


def _unit_annotation(note: str) -> bool:
    """An annotation ({1.73_m2}, {cells}, {RBC}, {Ehrlich'U}): short, no name-like word (Dr_Okafor)."""
    if not note or len(note) > 24 or clean_text(note, _NO_IDS) != note:
        return False
    return all(w in _UNIT_NAMES for w in _NAME_WORD.findall(note))


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
        return _digit_code(code)
    if " ".join(code.split()).casefold() in SPECIMEN_TYPES:
        return True
    if not LOCAL.fullmatch(code):
        return False
    if not _DIGIT.search(code):
        if not _WORD_CODE.fullmatch(code) or _LETTER_RUN.search(code):
            return False
        letters = sum(ch.isalpha() for ch in code)
        if letters > 4 and not code.isupper():
            return False
    return _identifier_free(code)


def _digit_code(code: str) -> bool:
    """Digits only: up to 7 (RxNorm's shape; the site's gate refuses its patient's own identifiers, the
    platform cannot tell a 7-digit MRN of a site from an RXCUI) or a SNOMED CT identifier, not a date."""
    return bool(_SHORT_NUMBER.fullmatch(code)) or (snomed_id(code) and not _date_digits(code))


def _identifier_free(code: str) -> bool:
    """No identifier's shape in a local code's token: no ID label before a number (MRN88421937), no
    letter-only run of 9 or more (a word, a surname), no two capitalised words (Chioma_Eze), and one the
    free-text cleaner leaves as it is (a phone, a date, 5 digits or more), but for a lab's own prefix of
    2 to 4 capitals (no ID label) before 5 to 7 digits (LAB12345, LAB-1234567)."""
    if _ID_LABEL.search(code) or _LETTER_RUN.search(code) or len(_NAME_TOKEN.findall(code)) >= 2:
        return False
    prefixed = _PREFIXED_NUMBER.fullmatch(code)
    if prefixed:
        return prefixed.group(1).upper() not in _ID_PREFIXES
    return clean_text(code, _NO_IDS) == code


def valid_stage(value: str) -> bool:
    v = value.strip()
    if not (
        STAGE_GROUP.fullmatch(v) or NAMED_STAGE.fullmatch(v) or TNM.fullmatch(v) or SYSTEM_STAGE.fullmatch(v)
    ):
        return False
    return len(normal_stage(v)) <= STAGE_MAX


def normal_stage(value: str) -> str:
    """``Stage IIIA`` -> ``IIIA``; ``pt2 n0 m0`` -> ``pT2N0M0``; ``pT2 pN1a M0`` -> ``pT2N1AM0`` (a prefix
    of N or M is kept where it is not T's, after a space: ``pT2 cN0M0``); ``Limited stage`` -> ``LIMITED``."""
    v = value.strip()
    named = NAMED_STAGE.fullmatch(v)
    if named:
        return NAMED_STAGES[" ".join(named.group(1).upper().split())]
    system = SYSTEM_STAGE.fullmatch(v)
    if system:
        i = next(j for j in range(len(STAGING_SYSTEMS)) if system[f"s{j}"] is not None)
        return f"{list(STAGING_SYSTEMS)[i]} {system[f'g{i}'].upper()}"
    tnm = TNM.fullmatch(v)
    if tnm:
        tp = tnm["tp"].lower()
        out = f"{tp}T{tnm['t'].upper()}"
        for part in ("n", "m"):
            body, prefix = tnm[part], (tnm[f"{part}p"] or "").lower()
            if body is not None:
                body = body.replace(" ", "").upper()
                out += (f" {prefix}" if prefix and prefix != tp else "") + part.upper() + body
        if tnm["pcr"]:
            out += " (pCR)"
        elif tnm["grp"]:
            out += f" ({_normal_group(tnm['grp'])})"
        return out
    return _normal_group(v)


def _normal_group(value: str) -> str:
    return re.sub(r"(?i)^stage\s*", "", value).replace(" ", "").replace("-", "").upper()


_ROMAN = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV"}


def stage_group(stage: str) -> str | None:
    """The overall stage group of a normalised stage (``IIIA`` -> ``III``, ``2B`` -> ``II``); None for TNM."""
    grp = re.search(r" \(([^()]*)\)$", stage)  # TNM with its group: T1N1M0 (IIB)
    m = re.fullmatch(r"(0|IV|I{1,3}|[0-4])(?:[A-C]\d?|IS)?", grp.group(1) if grp else stage)
    return _ROMAN.get(m.group(1), m.group(1)) if m else None
