"""Free text: the patient's own identifiers and generic identifier patterns removed, clinical words kept."""

from __future__ import annotations

import bisect
import contextlib
import datetime
import itertools
import operator
import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from curata.collect.deid import calendars
from curata.collect.deid._readings import (
    fold,
    folds,
    legacy_offsets,
    legacy_readings,
    single_byte_readings,
    unfold_span,
)
from curata.collect.deid._readings import other_script_readings as other_script_readings  # for clinical
from curata.collect.deid._scripts import latin_spellings

REDACTED = "*"
_HONORIFICS = {"DR", "MR", "MRS", "MS", "MISS", "PROF", "MD", "PHD", "JR", "SR", "II", "III", "RN", "DDS"}
# English month names and abbreviations, and the Romance and German ones (janvier, März, junho, dez.)
_MONTHS = (
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|janv|févr|fevr|avr|mai|juin|juil|août|aout|déc|"
    r"märz|maerz|okt|dez|ene|abr|ago|set|out|dic|fev|maio|março|marco)[^\W\d_]*\.?"
)
# A capitalised name in any Latin script (Müller, Ólafsdóttir, Łukasiewicz, Nguyễn, O'Brien, Smith-Jones),
# or one written in capitals (SMITH); lower-case particles between its parts (de la Cruz, van der Berg).
# (Titles in capitals are not looked for: MR, DR and MS are modalities and diagnoses.)
_UPPER = "".join(
    chr(c) for c in (*range(0x41, 0x5B), *range(0xC0, 0x250), *range(0x1E00, 0x1F00)) if chr(c).isupper()
)
_NAME_WORD = rf"[{_UPPER}](?:[^\W\d_]|['\u2019\-](?=[^\W\d_]))+"
_PARTICLE = r"(?:d[aeiou]|d[ao]s|del|della|dei|la|le|van|von|der|den|ter|ten|zu|bin|ibn|al|el|y|e)"
_NAME = rf"(?:{_PARTICLE}\s+)*{_NAME_WORD}(?:\s+{_PARTICLE}(?=\s+[{_UPPER}]))*"
_TITLES = (
    r"Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|Nurse|Sister|Herr|Frau|Mme|Mlle|Madame|Monsieur|Sr|Sra|Srta|Dra|Dott"
)
_PN_LETTERS = r"(?:[^\W\d_]|['\-])"
# After a title, a name may be written in lower case (Mr. smith, Dr. nguyen): the first word after it is
# taken as a name unless it is one of the words that follow a title in notes (Dr. on call, Mr. and Mrs.).
_NOT_NAMES = (
    "a|an|and|as|at|by|call|called|for|from|had|has|in|is|not|no|note|notes|of|office|on|or|said|says|"
    "the|to|visit|was|who|will|with|would"
)
_LOWER_NAME_WORD = (
    rf"(?![{_UPPER}])(?!(?:{_NOT_NAMES})(?![^\W\d_]))[^\W\d_](?:[^\W\d_]|['\u2019\-](?=[^\W\d_]))+"
)
# Words naming a person's role, in several languages, with their common abbreviations: between "by" and
# a name they are skipped ("by nurse Philippa Dunsworth"), and before a capitalised name they mark one
# ("radiographer Tamsin Oyelaran"). Any case (NURSE, Nurse, nurse). Left out: abbreviations that are
# also clinical words (PA chest, RT knee, NP, CNS, Rad Onc).
_ROLE_WORDS = (
    "nurse|sister|matron|midwife|radiographer|sonographer|technologist|technician|tech|radiologist|"
    "pathologist|physician|doctor|surgeon|consultant|registrar|resident|fellow|intern|attending|"
    "pharmacist|therapist|physicist|dentist|practitioner|specialist|clinician|anaesthetist|anesthetist|"
    "dietitian|dietician|paramedic|porter|scientist|assistant|student|"
    "rn|rgn|spr|sho|mtra|"
    "schwester|pfleger|pflegerin|arzt|ärztin|oberarzt|oberärztin|assistenzarzt|assistenzärztin|chefarzt|"
    "chefärztin|hebamme|infirmière|infirmier|manipulateur|manipulatrice|médecin|interne|docteur|"
    "radiologue|chirurgien|enfermera|enfermero|enfermeira|enfermeiro|técnico|técnica|médico|médica|"
    "radiólogo|radióloga|cirujano|infermiera|infermiere|tecnico|medico|dottore|dottoressa|radiologo"
)
_ROLE_SUFFIXES = ("ologist", "ographer", "iatrist", "ician")  # oncologist, mammographer, psychiatrist
_ROLES = rf"(?i:(?:{_ROLE_WORDS})|[^\W\d_]+(?:{'|'.join(_ROLE_SUFFIXES)}))(?![^\W\d_])"
# between the words of a name: spaces on one line (a name does not run on to the next line)
_NAME_GAP = r"[^\S\r\n]+"

# Generic identifier shapes, applied to every cleaned descriptor whatever the header says.
GENERIC_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail
    re.compile(r"\b(?:https?://|www\.)\S+", re.I),  # URL
    re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"),  # 2021-03-04
    re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"),  # 04/03/2021, 4.3.21
    re.compile(r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"),  # 20210304
    re.compile(  # 4 March 2021, 4th of March, 2021, 4.Mar.2021, 4 de março de 2021, 4. März 2021
        rf"\b\d{{1,2}}(?:st|nd|rd|th|\.)?(?:\s+(?:of|de))?(?:\s+|[-/.]\s*){_MONTHS},?(?:\s+de)?(?:\s+|[-/.]\s*)"
        rf"\d{{2,4}}\b",
        re.I,
    ),
    re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b", re.I),  # March 4, 2021
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # SSN
    re.compile(  # titles: the name after one, in capitals or not
        rf"\b(?:{_TITLES})\.?\s+(?:(?:{_TITLES})\.?\s+)?(?:{_NAME}|{_LOWER_NAME_WORD})(?:\s+{_NAME}){{0,2}}"
    ),
    re.compile(rf"\b{_PN_LETTERS}+\^(?:{_PN_LETTERS}|[\^ ])*"),  # DICOM person name syntax FAMILY^GIVEN
    # after "by", "patient"...: the name (the keyword's case only is ignored; see _names_after)
    re.compile(
        rf"\b(?P<kw>(?i:patient|pt|name|physician|referred by|signed by|dictated by|reported by|read by|"
        rf"seen by|by))\s*:?\s+(?P<roles>(?:(?:{_ROLES})\.?\s+)*)(?P<name>{_NAME}(?:{_NAME_GAP}{_NAME}){{0,2}})"
    ),
    re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|"
        r"Way|Court|Ct|Place|Pl|Square|Sq|Terrace|Strasse|Straße|Rue)\b\.?",
        re.I,
    ),
    re.compile(rf"\b{_MONTHS}\s+(?:of\s+|de\s+)?(?:18|19|20)\d{{2}}\b", re.I),  # March 2021 (a date's month)
    # 4.III.2021, 4 III 2021 (a four-digit year: 3 x 10 is a size)
    re.compile(r"\b\d{1,2}([-/. ])(?:i|ii|iii|iv|v|vi|vii|viii|ix|x|xi|xii)\1(?:18|19|20)\d{2}\b", re.I),
    re.compile(  # 2021年3月4日, 2021년 3월 4일, ngày 4 tháng 3 năm 2021
        r"\d{4}\s*[年년]\s*\d{1,2}\s*[月월]\s*\d{1,2}\s*[日일]?|\b\d{1,2}\s+tháng\s+\d{1,2}(?:\s+năm)?\s+\d{2,4}\b",
        re.I,
    ),
    re.compile(  # a role word before a name, without "by" (nurse Philippa Dunsworth; see _names_after)
        rf"\b(?P<kw>{_ROLES})(?:\.|\s*:)?\s+(?P<roles>(?:(?:{_ROLES})\.?\s+)*)"
        rf"(?P<name>{_NAME}(?:{_NAME_GAP}{_NAME}){{0,2}})"
    ),
)


# GENERIC_PATTERNS that cannot match without a digit (\d): dates, SSN, street addresses.
_DIGIT_SHAPES = frozenset({2, 3, 4, 5, 6, 7, 11, 12, 13, 14})
_ANY_DIGIT = re.compile(r"\d")

# Literals of which every match of a GENERIC_PATTERNS shape holds one (lower case where the shape
# ignores case): a text holding none of them is left as it stands without running the shape. The
# case-blind ones are trusted on ASCII text only (IGNORECASE also folds a few other letters, such as
# the long s and the Kelvin sign, onto ASCII ones). A substitution writes REDACTED, which is in none
# of them, so it never makes a literal that was not there.
_MONTH_STEMS = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    "avr", "mai", "jui", "aou", "okt", "dez", "ene", "abr", "ago", "set", "out", "dic", "fev",
)  # fmt: skip
_SHAPE_LITERALS: dict[int, tuple[tuple[str, ...], bool]] = {
    0: (("@",), False),
    1: (("http", "www."), True),
    2: (("-", "/", "."), False),
    3: (("-", "/", "."), False),
    5: (_MONTH_STEMS, True),
    6: (_MONTH_STEMS, True),
    7: (("-",), False),
    8: (tuple(_TITLES.split("|")), False),  # every title is a literal of its own
    9: (("^",), False),
    10: (("patient", "pt", "name", "physician", "by"), True),
    12: (_MONTH_STEMS, True),
    15: (tuple(_ROLE_WORDS.split("|")) + _ROLE_SUFFIXES, True),
}


def _may_match(shape: int, text: str) -> bool:
    """False when GENERIC_PATTERNS[shape] cannot match ``text`` (it lacks every literal the shape needs)."""
    need = _SHAPE_LITERALS.get(shape)
    if need is None:
        return True
    literals, caseless = need
    if caseless:
        if not text.isascii():
            return True
        text = text.lower()
    return any(lit in text for lit in literals)


# Shapes that only count when they hold enough digits: phone numbers (>= 7), ID-like tokens (>= 5).
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[\s.\-/]?\(?\d{2,4}\)?){2,4}(?![\w.])")
_TOKEN = re.compile(r"(?<![\w.])[A-Za-z0-9][A-Za-z0-9\-_/]*(?![\w])")
# _TOKEN where the run of token characters from its start holds 5 digits: a token _DROP_TOKEN keeps
# (fewer digits) is never handed to it. The run's later starts hold no more digits than its first, so
# the tokens found, and what is redacted, are _TOKEN's.
_TOKEN_5 = re.compile(r"(?<![\w.])(?=(?:[A-Za-z\-_/]*[0-9]){5})[A-Za-z0-9][A-Za-z0-9\-_/]*(?![\w])")


def _drop_if_digits(minimum: int):  # type: ignore[no-untyped-def]
    def repl(m: re.Match[str]) -> str:
        text = m.group(0)
        return REDACTED if sum(map(str.isdigit, text)) >= minimum else text

    return repl


_DROP_PHONE = _drop_if_digits(7)
_DROP_TOKEN = _drop_if_digits(5)


# ---------------------------------------------------------------- names after "by" and role words
# GENERIC_PATTERNS whose matches are names only where _names_after says so: after "by", "patient"...
# (10) and after a role word (15). The shape finds a keyword, role words, and up to three capitalised
# words; the first of them is no name where clinical text puts a term there:
# - an acronym: capitals after a keyword that is not in capitals (by PET CT, by RECIST, by BI-RADS), as
#   long as no given name follows it after a comma (by SMITH, John); after "patient", "pt" and "name"
#   capitals are a name (Patient SMITH);
# - a word followed by a score, grade, version or year (Gleason 3+4=7, Lugano 2014), not by a time or
#   a date (by Dunsworth 14:30 names someone);
# - a word followed by the noun of a method or a classification (Lugano classification, Seldinger
#   technique, Hounsfield units), or a role word itself (by Radiologist, Consultant Radiologist report);
# - words that are all clinical vocabulary (Oncology, Interventional Radiology, Pathology Department):
#   specialties and methods by their endings (-ology, -graphy, -scopy...), departments, modalities,
#   eponyms of methods and classifications, weekdays and months. One word outside it makes them a
#   name (June Dunsworth).
# Only the name is redacted: the keyword and the role words stay (taken by nurse *).
_NAME_SHAPES = frozenset(i for i, pat in enumerate(GENERIC_PATTERNS) if "kw" in pat.groupindex)
_OWN_NAME_KEYWORDS = frozenset({"patient", "pt", "name"})  # capitals after these are a name
_TERM_ENDINGS = (
    "ology", "ologie", "ología", "ologia", "graphy", "grafie", "grafía", "scopy", "skopie", "metry",
    "iatry", "iatrics", "therapy", "therapie", "ectomy", "otomy", "ostomy", "plasty", "pathy", "chemistry",
    "ography", "ogram", "medicine", "medizin", "imaging",
)  # fmt: skip
_TERM_TEXT = (
    # departments, services, teams
    "department dept clinic clinics service services unit units ward team teams board committee panel "
    "meeting office centre center practice laboratory lab lab. mdt mdm hospital trust "
    "surgery medicine imaging ultrasound sonography nuclear interventional diagnostic emergency "
    "intensive critical care general internal family primary acute outpatient outpatients inpatient "
    "tumour tumor multidisciplinary screening breast vascular neuro paediatrics pediatrics "
    "orthopaedics orthopedics obstetrics gynaecology genetics genomics biopsy cytology contrast "
    "review report protocol quality safety research trial "
    # modalities and examinations (DICOM's Modality terms and their common names)
    "ct mr mri pet pt spect nm us xr cr dx mg rf xa oct ecg ekg eeg emg cxr ir gp ed icu "
    "angiography mammography fluoroscopy tomosynthesis doppler "
    # eponyms of methods and classifications
    "gleason lugano fleischner bosniak hounsfield seldinger breslow fuhrman nottingham bethesda "
    "child-pugh dukes masaoka enneking valsalva kaplan-meier "
    # calendar words
    "monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow "
    "january february march april may june july august september october november december"
)
_TERM_WORDS = frozenset(_TERM_TEXT.split())
# a noun that makes the capitalised word before it a method or a classification (Lugano classification)
_TERM_NOUNS = (
    "classification|criteria|score|scoring|grade|grading|stage|staging|system|scale|index|pattern|sign|"
    "method|technique|protocol|units?|guidelines?|rules?|category|categories|sequence|view|projection|"
    "manoeuvre|maneuver|test|procedure|catheter|needle|approach|nuclear|ultrasound|effect"
)
_AFTER_TERM = re.compile(
    # a score, grade, version or year: not a time (14:30, 14h30, 14.30) nor a date (12/03/2021)
    r"\s*[-:]?\s*v?\d(?!\d?[:h]\d\d)(?!\d?\.\d\d(?!\d))(?!\d{0,3}[/.\-]\d{1,2}[/.\-]\d)"
    rf"|\s+(?:{_TERM_NOUNS})(?![^\W\d_])"
)
_COMMA_GIVEN = re.compile(rf",\s*[{_UPPER}][^\W\d_]*[a-z]")  # SMITH, John
_ROLE_RE = re.compile(rf"{_ROLES}")
_WORD_RE = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*\.?")


def _vocabulary(word: str) -> bool:
    """Whether ``word`` is a clinical or calendar word, a role word or a function word (no name)."""
    low = word.lower().rstrip(".")
    return (
        low in _TERM_WORDS
        or low.endswith(_TERM_ENDINGS)
        or _ROLE_RE.fullmatch(low) is not None
        or re.fullmatch(_NOT_NAMES, low) is not None
    )


def _acronym(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _name_span(m: re.Match[str], text: str) -> tuple[int, int] | None:
    """Where the name of a match of a _NAME_SHAPES shape stands; None where it names no one."""
    keyword = m.group("kw")
    in_capitals = keyword.isupper()
    acronyms_end = keyword.lower() not in _OWN_NAME_KEYWORDS and not in_capitals
    words = list(_WORD_RE.finditer(m.group("name")))
    base = m.start("name")
    first = words[0]
    after_first = base + first.end()
    if _ROLE_RE.fullmatch(first.group().rstrip(".")):
        return None  # by Radiologist: the role alone
    if _AFTER_TERM.match(text, after_first):
        return None
    if acronyms_end and _acronym(first.group()) and not _COMMA_GIVEN.match(text, after_first):
        return None
    kept = [first]
    for w in words[1:]:  # an acronym after a name is no part of it (by Philippa Dunsworth MRI)
        if acronyms_end and _acronym(w.group()):
            break
        kept.append(w)
    if all(_vocabulary(w.group()) for w in kept):
        return None
    return base + kept[0].start(), base + kept[-1].end()


def _names_after(pat: re.Pattern[str], text: str) -> str:
    """``pat.sub(REDACTED, text)`` for the _NAME_SHAPES, the name alone redacted and only where the
    words found name someone (``_name_span``); a match that names no one is looked past by one
    character, so a name later in it is still found."""
    out: list[str] = []
    last = pos = 0
    while (m := pat.search(text, pos)) is not None:
        span = _name_span(m, text)
        if span is None:
            pos = m.start() + 1
            continue
        out.append(text[last : span[0]])
        out.append(REDACTED)
        last = pos = span[1]
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------- matching identifiers
# Separators people and systems put between the parts of a value (SUZUKI^KENJI, SUZUKI KENJI,
# Suzuki, Kenji, SUZUKI_KENJI...). Matching drops them from both sides, so SUZUKIKENJI matches too.
SEPARATORS = " \t\r\n^,.-_'/\\=\0;:()\"+"
_SEP_BYTES = SEPARATORS.encode("ascii")
# Invisible format characters (Unicode Cf: the soft hyphen, zero-width space, joiners and non-joiners,
# bidirectional marks, the BOM, tags) that word processors, web pages and EHR exports leave inside
# words: no reader sees them, so "Q<U+200B>WORTLE" reads as QWORTLE. Matching drops them like the
# separators, in the text and in the values alike (a Persian name with or without its ZWNJ).
# (the ranges of category Cf in the BMP and the tag block, Unicode 14; a test holds them to unicodedata)
_FORMAT_RANGES = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)  # fmt: skip
FORMAT_CHARS = "".join(chr(c) for a, b in _FORMAT_RANGES for c in range(a, b + 1))
_SEP_SET = frozenset(SEPARATORS + FORMAT_CHARS)
_LOWER_BYTES = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")  # bytes.lower's
# A value whose normalised form has at least this many characters is matched as a substring
# anywhere (inside other words too: SUZUKISUZUKI). Shorter values could occur by chance inside
# ordinary words, so they are matched only as whole words. CJK/Hangul values of 2+ characters are
# distinctive enough for substring matching; a single CJK/Hangul family name (王, 李, 张, 김) is matched
# as a substring of decoded text (CJK text has no spaces), never in raw bytes.
MIN_SUBSTRING = 4
# an ID of digits this long is found where it begins a longer number too (the byte gate, find_bounded):
# shorter ones meet the numbers of a header by chance (ID 1127 in the time 112749)
LONG_NUMBER = 6
_HYPHENS = re.compile("[-\u2010\u2011]+")  # hyphen-minus, hyphen, non-breaking hyphen
_NAME_PARTS = re.compile(r"[\^\s,]+")  # between the parts of a person name
_WORD_PARTS = re.compile(r"[\^,;\n\r]+")  # between the parts of an address or another value
_POSTAL_CODE = re.compile(r"^\d[\w-]*\s+|\s+\d[\w-]*$")  # a leading or trailing code (70000 Quận Đống Đa)
_DIGITS = frozenset("0123456789")
_DIGITS_DOT = frozenset("0123456789.")
_DATE_SEPS = ("", "-", "/", ".", "_", " ", ":")  # ":" as TIFF and EXIF write dates (1948:06:14)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # kana
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0x1100 <= o <= 0x11FF  # Hangul jamo
        or 0x3130 <= o <= 0x318F
        or 0xAC00 <= o <= 0xD7AF  # Hangul syllables
        or 0x20000 <= o <= 0x2FFFF
    )


# Greek's final sigma: lower() writes ς or σ by what follows the Σ (ΛΟΣ^ΓΙΩΡΓΟΣ gives λοσ^γιωργος, a
# separator such as ^ being case-ignorable), and people write ς at a word's end: compared as σ.
_FINAL_SIGMA = "\u03c2"
_SEP_TABLE = str.maketrans({**dict.fromkeys(SEPARATORS + FORMAT_CHARS), _FINAL_SIGMA: "\u03c3"})


def normalise(text: str) -> str:
    """Lower case, separators dropped: the form values are compared in."""
    return text.lower().translate(_SEP_TABLE)


def normalise_bytes(data: bytes) -> bytes:
    return data.lower().translate(None, _SEP_BYTES)


def _kind(norm: str) -> str:
    """sub (substring), word (whole word), num (digits, not inside a longer number)."""
    if not norm:
        return ""
    if norm.isdigit():
        return "num"
    if len(norm) >= MIN_SUBSTRING or (not norm.isascii() and sum(is_cjk(c) for c in norm) >= 2):
        return "sub"
    return "word"


_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_ROMAN_MONTHS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii")
# The month in German, French, Spanish, Portuguese and Italian (15. März 1970, 15 mars 1970, 15 de
# marzo de 1970), with the ASCII spellings of their accented letters, and their abbreviations
_OTHER_MONTH_NAMES = (
    ("januar", "janvier", "enero", "janeiro", "gennaio", "jan.", "janv.", "ene."),
    ("februar", "février", "fevrier", "febrero", "fevereiro", "febbraio", "feb.", "févr.", "fevr.", "fev."),
    ("märz", "maerz", "marz", "mars", "marzo", "março", "marco", "mär.", "mrz."),
    ("april", "avril", "abril", "aprile", "avr.", "abr."),
    ("mai", "mayo", "maio", "maggio"),
    ("juni", "juin", "junio", "junho", "giugno"),
    ("juli", "juillet", "julio", "julho", "luglio", "juil."),
    ("august", "août", "aout", "agosto", "ago."),
    ("september", "septembre", "septiembre", "setiembre", "setembro", "settembre", "set."),
    ("oktober", "octobre", "octubre", "outubro", "ottobre", "okt.", "out."),
    ("november", "novembre", "noviembre", "novembro"),
    ("dezember", "décembre", "decembre", "diciembre", "dezembro", "dicembre", "dez.", "déc.", "dic."),
)
_ORDINAL = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


def _gregorian_forms(da: str) -> list[str]:
    """A YYYYMMDD date as the ways people write it in free text, lower case: Y-M-D, D-M-Y and M-D-Y with
    six separators; the day and month without their zero (14/6/1948, 1948-6-14); a two-digit year
    (6/14/48, 14.06.48); the month by name, abbreviated or in Roman numerals (14 June 1948, June 14th,
    1948, 14-JUN-1948, 14.VI.1948); 1948年6月14日 (or 14号) and 1948년 6월 14일 (or with none or _ between).
    Written forms that are not the date's digits are the ones a normalised comparison cannot find."""
    if len(da) != 8 or not da.isdigit():
        return [da]
    y, m, d = da[:4], da[4:6], da[6:]
    forms = set()
    for sep in _DATE_SEPS:
        forms |= {sep.join((y, m, d)), sep.join((d, m, y)), sep.join((m, d, y))}
    month, day = int(m), int(d)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return sorted(forms)
    days = {d, str(day)}
    months = {m, str(month)}
    for sep in ("-", "/", ".", "_"):
        for dd in days:
            for mm in months:
                forms |= {sep.join((y, mm, dd)), sep.join((dd, mm, y)), sep.join((mm, dd, y))}
                forms |= {sep.join((dd, mm, y[2:])), sep.join((mm, dd, y[2:]))}
    # a two-digit year first (70-03-15). Not six digits alone (700315, 150370, 031570): those are
    # times too (113008 is 11:30:08 and 30 Nov 2008), and refused 2 of the bench's 960 files
    y2 = y[2:]
    for sep in ("-", "/", ".", "_", " "):
        forms |= {sep.join((y2, mm, dd)) for dd in days for mm in months}
    name = _MONTH_NAMES[month - 1]
    names = {name, name[:3], name[:3] + ".", *(("sept", "sept.") if month == 9 else ())}
    spoken = {*days, f"{day}{_ORDINAL.get(day, 'th')}"}
    for mon in names:
        for dd in spoken:
            for year in (y, y2):  # 15 March 1970, 15MAR70, Mar-15-70
                forms |= {f"{dd}{sep}{mon}{sep}{year}" for sep in (" ", "-", "/", ".", "_", "")}
                forms |= {
                    f"{mon} {dd} {year}",
                    f"{mon} {dd}, {year}",
                    f"{mon}-{dd}-{year}",
                    f"{mon}_{dd}_{year}",
                }
            forms |= {f"{dd} {mon}, {y}", f"{dd} of {mon} {y}", f"{dd} of {mon}, {y}", f"{dd}. {mon} {y}"}
            forms |= {f"{y}-{mon}-{dd}", f"{y} {mon} {dd}", f"{y}_{mon}_{dd}"}
            forms |= {f"{mon} {dd} '{y2}", f"{mon} {dd}, '{y2}", f"{dd} {mon} '{y2}"}  # March 15 '70
    for mon in _OTHER_MONTH_NAMES[month - 1]:
        for dd in days:
            forms |= {f"{dd}{sep}{mon}{sep}{y}" for sep in (" ", "-", "/", ".", "")}
            forms |= {f"{dd}. {mon} {y}", f"{dd} de {mon} de {y}", f"{dd} {mon}, {y}", f"{mon} {dd}, {y}"}
    # Chinese and Japanese (号 or 號 for the day, as Chinese speech writes it; 元月 for January; no
    # word after the day, 2004年1月19, as Chinese notes write it; the year last, 3月15日、1970年, as
    # translated from English), Korean
    cjk_months = (*months, "元") if month == 1 else months
    for dd in days:
        for mm in cjk_months:
            forms |= {f"{y}年{mm}月{dd}日", f"{y}年{mm}月{dd}号", f"{y}年{mm}月{dd}號", f"{y}年{mm}月{dd}"}
            forms |= {f"{mm}月{dd}日{sep}{y}年" for sep in ("", "、", ",", ", ")}
        for mm in months:
            forms |= {f"{y}년{sep}{mm}월{sep}{dd}일" for sep in ("", " ", "_")}
    roman = _ROMAN_MONTHS[month - 1]
    for dd in days:
        forms |= {f"{dd}{sep}{roman}{sep}{y}" for sep in (" ", "-", "/", ".", "_")}
    return sorted(forms)


def _date_forms(da: str) -> list[str]:
    """Every written form of a YYYYMMDD date: ``_gregorian_forms`` and its forms in other calendars
    (``calendars.py``)."""
    day = _calendar_day(da)
    if day is None:
        return _gregorian_forms(da)
    return sorted({*_gregorian_forms(da), *calendars.other_calendar_forms(day)})


def _calendar_day(da: str) -> datetime.date | None:
    if len(da) != 8 or not da.isdigit():
        return None
    try:
        return datetime.date(int(da[:4]), int(da[4:6]), int(da[6:]))
    except ValueError:  # 31 February: no other calendar has it either
        return None


# Letters that do not decompose into a base letter and marks, as they are written in ASCII.
_FOLD = str.maketrans({
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "ħ": "h", "Ħ": "H",
})  # fmt: skip
# German and Scandinavian transliteration: Müller is written Mueller, Ødegård Oedegaard.
_TRANSLITERATE = str.maketrans({
    "ä": "ae", "Ä": "AE", "ö": "oe", "Ö": "OE", "ü": "ue", "Ü": "UE", "å": "aa", "Å": "AA", "ø": "oe", "Ø": "OE",
})  # fmt: skip


# Letters with two ASCII spellings (ø as o or oe, å as a or aa) are mixed within one name as often as
# not (Ødegård as Odegaard or Oedegard): up to this many of them are combined freely, beyond it the
# two uniform spellings stand for the rest (2 ** 4 spellings at most).
_MIXED_LETTERS = 4


def _subsets(at: list[int], *, whole: bool) -> Iterator[set[int]]:
    """Every non-empty subset of the positions ``at`` (the whole set too when ``whole``)."""
    for picks in itertools.product((False, True), repeat=len(at)):
        if any(picks) and (whole or not all(picks)):
            yield {i for i, pick in zip(at, picks, strict=True) if pick}


def _mixed(value: str) -> list[str]:
    """``value`` with each subset of its two-way letters transliterated (the empty and the full
    subsets are the uniform spellings, made apart); none for fewer than two or many such letters."""
    at = [i for i, ch in enumerate(value) if ord(ch) in _TRANSLITERATE]
    if not 2 <= len(at) <= _MIXED_LETTERS:
        return []
    return [
        "".join(ch.translate(_TRANSLITERATE) if i in chosen else ch for i, ch in enumerate(value))
        for chosen in _subsets(at, whole=False)
    ]


@lru_cache(maxsize=8192)
def ascii_spellings(value: str) -> tuple[str, ...]:
    """``value`` as systems without its letters write it: marks dropped (MÜLLER as MULLER, Nguyễn as
    Nguyen, Łukasiewicz as Lukasiewicz) and transliterated (MUELLER; Ødegård as Oedegaard, Odegaard
    or Oedegard: see ``_mixed``; Cyrillic and Greek by the schemes of ``_scripts``: ИВАНОВ as IVANOV,
    ΓΙΩΡΓΟΣ as GIORGOS); CJK and Hangul stay as they are. Empty when ``value`` is ASCII already."""
    if value.isascii():
        return ()
    out = []
    for text in (value, value.translate(_TRANSLITERATE), *_mixed(value), *latin_spellings(value)):
        folded = []
        for ch in text.translate(_FOLD):
            if ch.isascii() or is_cjk(ch):
                folded.append(ch)
            else:
                folded.append(
                    "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
                )
        spelled = "".join(folded)
        if spelled != value and spelled not in out:
            out.append(spelled)
    return tuple(out)


def _folded(value: str) -> tuple[str, ...]:
    """``value`` with kana in one script and width, marks and tatweel dropped (``_readings.fold``); its
    CJK numerals as digits only where no ideograph or kana is left (an ID, 四四一七七〇二 or MRN四四一七七〇二):
    a name is no number (加藤^一二三 would give the name part 123, found in any text's 123)."""
    if not folds(value):
        return ()
    folded = fold(value)[0]
    if any(map(is_cjk, folded)):
        folded = fold(value, False)[0]
    return (folded,) if folded != value else ()


_DIGRAPH = re.compile(r"ae|oe|ue|aa", re.IGNORECASE)  # a transliterated ä, ö, ü, å (or ø as oe)


def _spelled_otherwise(value: str) -> tuple[str, ...]:
    """A name as other systems write it: ``ascii_spellings`` of a name with letters beyond ASCII, and
    for one in ASCII that holds a transliteration (SCHAEFER, ODEGAARD), the same with marks dropped
    instead (SCHAFER, ODEGARD; each such pair or some of them). A part is only shortened to at least
    ``MIN_SUBSTRING`` letters: HAAS does not become the word HAS."""
    if not value.isascii():
        return (*ascii_spellings(value), *_folded(value))
    out: list[str] = []
    for part in _NAME_PARTS.split(value):
        at = [m.start() for m in _DIGRAPH.finditer(part)]
        if not at or len(at) > _MIXED_LETTERS or len(part) - len(at) < MIN_SUBSTRING:
            continue
        for chosen in _subsets(at, whole=True):  # each chosen pair loses its second letter
            short = "".join(ch for i, ch in enumerate(part) if i - 1 not in chosen)
            spelled = value.replace(part, short)
            if spelled not in out:
                out.append(spelled)
    return tuple(out)


# A patient's name and IDs recur in every file of their series: what each value adds to the
# identifiers depends on the value alone, so it is worked out once per value for the process.
@lru_cache(maxsize=8192)
def _strong_forms(value: str) -> frozenset[str]:
    """The normalised forms ``Identifiers.add_strong`` adds for ``value``."""
    out: set[str] = set()
    for spelled in _spelled_otherwise(value):
        out |= _strong_forms(spelled)
    for group in value.split("="):
        parts = [p for p in _NAME_PARTS.split(group) if p and p.upper().strip(".") not in _HONORIFICS]
        halves = [h for p in parts for h in _HYPHENS.split(p) if len(h) >= 2 and h != p]
        for form in (*parts, *halves, "".join(parts), "".join(reversed(parts))):
            norm = normalise(form)
            if norm:
                out.add(norm)
    return frozenset(out)


_ID_NUMBER = 6  # digits: shorter runs of an ID (a year, a ward) are not the ID


_PHONE_DIGITS = 7  # a subscriber's number: the shortest part of a phone that is still identifying


def _phone_numbers(value: str) -> tuple[str, ...]:
    """A phone number (digits in groups, no letters) as a note writes it on its own: without its
    leading groups (``+1 (555) 867-5309``: 5558675309, 8675309), as long as 7 digits are left; and an
    international number with the trunk prefix a national one writes instead of the country code
    (``+61 2 9876 5432``: 0298765432, (02) 9876 5432). A national number written with its country code
    elsewhere (``0412 345 678`` as ``+61 412 345 678``) is not linked: that needs the site's country."""
    if any(c.isalpha() for c in value):
        return ()
    groups = _DIGIT_GROUP.findall(value)
    if len(groups) < 2:
        return ()
    out = []
    for k in range(1, len(groups)):
        rest = "".join(groups[k:])
        if len(rest) >= _PHONE_DIGITS:
            out.append(rest)
    if value.lstrip().startswith("+") and len(out) and not out[0].startswith("0"):
        out.append("0" + out[0])  # the first group is the country code
    national = "".join(groups).lstrip("0")
    if groups[0].startswith("0") and len(national) >= _PHONE_DIGITS:
        out.append(national)  # 0412 345 678 without its trunk prefix: 412345678
    return tuple(out)


def _six_digit_forms(value: str) -> tuple[str, ...]:
    """A strong date (the birth date) written with a two-digit year and no separator: 700315, 150370,
    031570. Matched as whole numbers, like an ID's digits. Only the patient's own dates: the study's
    dates have no such forms, since 113008 is a time (11:30:08) as much as 30 Nov 2008, and kept times
    would be refused. A time equal to one of these forms is refused (a safe false refusal); it cannot
    happen for a birth year whose last two digits are 60 or more (no hour, minute or second reads so)."""
    if len(value) != 8 or not value.isdigit():
        return ()
    y, m, d = value[2:4], value[4:6], value[6:]
    if not ("01" <= m <= "12" and "01" <= d <= "31"):
        return ()
    return (y + m + d, d + m + y, m + d + y)


def _id_numbers(value: str) -> tuple[str, ...]:
    """The number of an ID written with letters (MRN-4471923, JP5550193377, KR-700193): systems and notes
    write it without its prefix (4471923). One token only (an address's postal code is not taken), its
    runs of 6 digits or more, each matched as a number (not inside a longer one)."""
    if any(c.isspace() for c in value) or not any(c.isalpha() for c in value):
        return ()
    runs = [run for run in _DIGIT_GROUP.findall(value) if len(run) >= _ID_NUMBER]
    # and its digits joined where they are grouped (S24-99871: 2499871, as a system without letters writes it)
    joined = "".join(ch for ch in value if ch.isdigit())
    if len(joined) >= _ID_NUMBER and joined not in runs and re.fullmatch(r"[^\W\d_]*[\d\-./]+", value):
        runs.append(joined)
    return tuple(runs)


@lru_cache(maxsize=8192)
def _name_forms(value: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(words, short names, CJK names) that ``Identifiers.add_name`` adds for ``value``."""
    words: set[str] = set()
    short_names: set[str] = set()
    cjk_names: set[str] = set()
    for spelled in _spelled_otherwise(value):  # the same name as an ASCII-only system writes it
        w, s, c = _name_forms(spelled)
        words |= w
        short_names |= s
        cjk_names |= c
    for group in value.split("="):
        parts = []
        for part in _NAME_PARTS.split(group):
            part = part.strip(".")
            # a title (DR, MRS, JR...) is never a name part, wherever the sender put it (SMITH^DR)
            if not part or part.upper() in _HONORIFICS:
                continue
            parts.append(part)
            # a double-barrelled name (OKONKWO-BELLO, Smith-Jones): each half is used on its own too
            halves = [h for h in _HYPHENS.split(part) if h]
            for piece in (part, *(halves if len(halves) > 1 else ())):
                if len(piece) >= 3 or (len(piece) == 2 and any(is_cjk(c) for c in piece)):
                    words.add(piece)
                elif len(piece) == 2 and piece.isalpha():
                    short_names.add(piece)
                elif len(piece) == 1 and is_cjk(piece):
                    cjk_names.add(piece)
        if len(parts) >= 2:
            for joined in ("".join(parts), "".join(reversed(parts)), " ".join(parts)):
                if len(normalise(joined)) >= 3:
                    words.add(joined)
        elif len(parts) == 1:
            words.update(_given_names(parts[0]))
            cjk_names.update(_titled_family_names(parts[0]))
    return frozenset(words), frozenset(short_names), frozenset(cjk_names)


def _given_names(run: str) -> tuple[str, ...]:
    """The given name of a Han or Hangul name written as one run, without a separator between family and
    given name (王秀英, 김민준): notes call a patient by it alone (秀英, 민준 환자). Three characters are
    a one-character family name and a two-character given name; four, two and two (남궁민수, 鈴木健二)
    (each half counts). The family name alone is left to the separated forms: one character is too
    common a piece of text (이, 王) to be taken for a name here."""
    if len(run) not in (3, 4) or not all(_han_or_hangul(c) for c in run):
        return ()
    return (run[1:],) if len(run) == 3 else (run[:2], run[2:])


# What follows a family name where notes name a person by it: Chinese (王女士, 陈医生), Japanese (林さん,
# 佐藤様) and Korean (김 씨, 이 선생님, written with a space or without). Left out: 某 (于某日 is "on a
# certain day"), and Korean 군, 양 and 환자, which begin or make ordinary words after a family-name
# syllable (한 군데, 이 환자: "this patient").
_HAN_TITLES = (
    "先生", "女士", "小姐", "太太", "夫人", "阿姨", "老师", "老師", "师傅", "師傅", "大爷", "大爺", "大妈", "大媽",
    "奶奶", "爷爷", "爺爺", "伯伯", "婆婆", "医生", "醫生", "大夫", "护士", "護士", "主任", "教授", "同志", "氏",
    "さん", "さま", "様", "殿", "君", "くん", "ちゃん",
)  # fmt: skip
_HANGUL_TITLES = ("씨", "님", "선생님", "여사", "여사님")


def _titled_family_names(run: str) -> tuple[str, ...]:
    """The family name of a Han or Hangul name written as one run (王秀英, 张伟, 김민준, 佐藤葵) with each
    honorific after it (王女士, 张医生, 김 씨, 佐藤さん): one character alone is too common a piece of text
    to be taken for the name (``_given_names``), but not before an honorific. The family name is the
    first character, and for a Han run of three the first two as well (佐藤 of 佐藤葵, 欧阳 of 欧阳修);
    a run of four holds a two-character family name, matched alone already."""
    if len(run) not in (2, 3) or not all(_han_or_hangul(c) for c in run):
        return ()
    if "\uac00" <= run[0] <= "\ud7af":
        return tuple(f"{run[0]}{gap}{title}" for title in _HANGUL_TITLES for gap in ("", " "))
    families = (run[0],) if len(run) == 2 else (run[0], run[:2])
    return tuple(family + title for family in families for title in _HAN_TITLES)


# The kinds of street written after the street's name (Adeola Odeku St, Old Kent Road, Hauptstraße is one
# word): notes name the street without them too.
# The kinds of street, each with the ways it is written: a note writes Quokkaburra St for the header's
# 17 Quokkaburra Street, and Hauptstr. for Hauptstraße (``_street_spellings``).
_STREET_SPELLINGS = (
    ("st", "st.", "street"), ("rd", "rd.", "road"), ("ave", "ave.", "av", "av.", "avenue"),
    ("blvd", "blvd.", "boulevard"), ("ln", "ln.", "lane"), ("dr", "dr.", "drive"), ("way",),
    ("ct", "ct.", "court"), ("pl", "pl.", "place"), ("sq", "sq.", "square"), ("ter", "ter.", "terrace"),
    ("cres", "cres.", "crescent"), ("close", "cl."), ("hwy", "hwy.", "highway"),
    ("pkwy", "pkwy.", "parkway"), ("str", "str.", "strasse", "straße"), ("weg",), ("gasse",),
    ("allee",), ("platz", "pl."),
)  # fmt: skip
_STREET_KINDS = frozenset(k.rstrip(".") for kinds in _STREET_SPELLINGS for k in kinds)
_KIND_SPELLINGS = {k.rstrip("."): kinds for kinds in _STREET_SPELLINGS for k in kinds}
# German streets are one word ending in their kind (Hauptstraße, Hauptstr., Hauptstrasse)
_COMPOUND_STREET = re.compile(r"^(\w{3,}?)(straße|strasse|str\.?)$", re.IGNORECASE)


def _street_spellings(name: list[str], kind: str) -> list[str]:
    """A street's name with each way of writing its kind (``Quokkaburra St``, ``Quokkaburra Street``)."""
    return [" ".join((*name, spelled)) for spelled in _KIND_SPELLINGS.get(kind.lower().rstrip("."), (kind,))]


# The characters that end a place in a CJK address (province, city, district, town, street, lane:
# 省 市 区 路 街 弄, 都 道 府 県 郡 町 村, 시 도 군 구 동 로 길), and a house number with the characters
# written in it (88号, 3丁目1番1号, 100弄5号, 2-8-1, 101동 202호).
_PLACE_ENDS = frozenset("省市区區县縣镇鎮乡鄉村路街道巷弄里都府県郡町시도군구읍면동리로길")
_HOUSE_NUMBER = re.compile(
    r"[0-9\uff10-\uff19][0-9\uff10-\uff19\-\uff0d\u2010\u2212号號番地丁目条條弄巷之栋棟楼樓室층동호]*"
)


def _place_units(word: str) -> list[str]:
    """A word of an address cut into its places where it is a CJK run (北京市朝阳区建国路88号: 北京市,
    朝阳区, 建国路, 88号); any other word as it is. A place ends at one of ``_PLACE_ENDS`` that is not its
    first character nor followed by another (京都府, 建国街道 stay whole); a house number stands alone."""
    if word.isascii() or not any(is_cjk(c) for c in word):
        return [word]
    units: list[str] = []
    at = 0
    for m in _HOUSE_NUMBER.finditer(word):
        units += _places(word[at : m.start()])
        units.append(m.group())
        at = m.end()
    units += _places(word[at:])
    return units


def _places(text: str) -> list[str]:
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch in _PLACE_ENDS and i > start and (i + 1 == len(text) or text[i + 1] not in _PLACE_ENDS):
            out.append(text[start : i + 1])
            start = i + 1
    if start < len(text):
        out.append(text[start:])
    return out


def _kana_or_hangul(ch: str) -> bool:
    """Kana or a Hangul syllable: letters that would go on the word an honorific ends."""
    return "\u3040" <= ch <= "\u30ff" or "\uac00" <= ch <= "\ud7af"


def _han_or_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xAC00 <= o <= 0xD7AF or 0x20000 <= o <= 0x2FFFF


class Identifiers:
    """The identifying values found in one input: what free text must lose and what the gate looks for."""

    def __init__(self) -> None:
        self.words: set[str] = set()  # name parts, IDs, phones, address parts, institutions, staff
        # Two-letter name parts (Đỗ, Lê, Ng, Wu, Li: common family names where Curata is used). Always
        # removed from free text as stand-alone words; in the raw-byte gate only where their bytes are
        # not a plausible header value (ASCII pairs such as "LO" are also VR codes).
        self.short_names: set[str] = set()
        # single CJK/Hangul characters that are a name part, and a one-run name's family name with an
        # honorific after it (王女士, 김 씨): matched in decoded text only, never in raw bytes
        self.cjk_names: set[str] = set()
        self.dates: set[str] = set()  # YYYYMMDD
        self.uids: set[str] = set()  # original UIDs that were remapped
        self.raw: set[bytes] = set()  # identifying values as the input's own bytes (undecodable text)
        self.strong: set[str] = set()  # normalised forms of the patient's own name parts and IDs
        self._matcher: Matcher | None = None
        self._strong_matcher: Matcher | None = None

    def _changed(self) -> None:
        self._matcher = self._strong_matcher = None

    def add_strong(self, value: str) -> None:
        """A value naming the patient (name, ID, accession): its parts and run-together forms, and the
        number of an ID written with letters (4417702 for MRN4417702, as ``add_word`` takes it: systems
        and notes write it without its prefix)."""
        for folded in _folded(value):  # an ID in other digits (٤٤١٧٧٠٢) is 4417702 elsewhere
            self.add_strong(folded)
        self.strong.update(_strong_forms(value))
        self.words.update(_id_numbers(value.strip()))
        self.words.update(_six_digit_forms(value.strip()))
        bare = value.strip().lstrip("0")
        if value.strip().isdigit() and len(bare) >= _ID_NUMBER and bare != value.strip():
            self.words.add(bare)  # 0004471923 as a system that reads it as a number writes it

        self._changed()

    def add_value(self, value: str) -> None:
        """A value that names the patient as a whole (an ID in another element, a serial): as written
        and, where ``_readings.fold`` changes it, as folded (digits of any script as ASCII)."""
        for form in (value, *_folded(value)):
            if len(form) >= 3:
                self.words.add(form)
        self._changed()

    def add_name(self, value: str) -> None:
        """A PN value: the whole name, each part (family, given, middle...), and the parts run together
        in both orders (SUZUKIKENJI, KENJISUZUKI)."""
        words, short_names, cjk_names = _name_forms(value)
        self.words.update(words)
        self.short_names.update(short_names)
        self.cjk_names.update(cjk_names)

        self._changed()

    def add_word(self, value: str, *, min_len: int = 3) -> None:
        """An ID, a phone number, an institution: the whole value, and for addresses, its parts."""
        value = value.strip()
        # an address or institution as ASCII-only systems write it, or in the other kana
        for spelled in (*ascii_spellings(value), *_folded(value)):
            self.add_word(spelled, min_len=min_len)
        if len(value) >= min_len:
            self.words.add(value)
            self.words.update(_id_numbers(value))
            self.words.update(_phone_numbers(value))
            for part in _WORD_PARTS.split(value):
                part = part.strip()
                if len(part) >= 5 and part != value:
                    self.words.add(part)
                # "70000 Quận Đống Đa": the district is written without its postal code elsewhere
                bare = _POSTAL_CODE.sub("", part).strip()
                if len(bare) >= 5 and bare != part:
                    self.words.add(bare)
        self._changed()

    def add_address(self, value: str) -> None:
        """An address (``add_word``), and the street as notes name it: each part's last words without
        the house number or the kind of street before them (``36 Phố Hàng Bạc``: ``Hàng Bạc``;
        ``서울특별시 강남구 일원로 81``: ``일원로 81``), or without the kind after them (``12 Adeola Odeku
        St``: ``Adeola Odeku``), two words or more, long enough to be matched anywhere (4 letters, or 2
        CJK). A Chinese, Japanese or Korean address written as one run, without spaces
        (``北京市朝阳区建国路88号``, ``東京都新宿区西新宿2-8-1``), counts as if written with a space after
        each place (``_place_units``): ``建国路88号``, ``朝阳区建国路``, ``西新宿2-8-1``."""
        self.add_word(value)
        for part in _WORD_PARTS.split(value):
            words = [unit for word in part.split() for unit in _place_units(word)]
            if len(words) > len(part.split()):  # a CJK address written as one run, as if written spaced
                self.add_word(" ".join(words))
            tails = [words[k:] for k in range(1, len(words) - 1)]
            if len(words) >= 3 and words[-1].lower().rstrip(".") in _STREET_KINDS:
                street = words[:-1][1:] if words[0][:1].isdigit() else words[:-1]
                tails += [street[k:] for k in range(len(street) - 1)]
            spellings: list[str] = []
            for i, word in enumerate(words[1:], 1):  # a street's name before its kind, as written
                if word.lower().rstrip(".") in _STREET_KINDS:  # (Unit 4/88 Kookaburra Road Dubbo)
                    start = max((j + 1 for j in range(i) if words[j][:1].isdigit()), default=0)
                    if start < i:
                        spellings += _street_spellings(words[start:i], word)
            for word in words:  # Hauptstraße 5: Hauptstr., Hauptstrasse
                compound = _COMPOUND_STREET.match(word)
                if compound:
                    spellings += [compound[1] + kind for kind in ("straße", "strasse", "str.", "str")]
            for tail in (*map(" ".join, tails), *spellings):
                if _kind(normalise(tail)) == "sub":
                    self.add_word(tail)

    def update(self, other: Identifiers) -> None:
        """Every identifying value of ``other`` too (the same patient, seen in another input)."""
        self.words |= other.words
        self.short_names |= other.short_names
        self.cjk_names |= other.cjk_names
        self.dates |= other.dates
        self.uids |= other.uids
        self.raw |= other.raw
        self.strong |= other.strong
        self._changed()

    def add_raw(self, data: bytes) -> None:
        """The input's own bytes of an identifying value (text that did not decode cleanly)."""
        data = data.strip(b" \0")
        if len(normalise_bytes(data)) >= MIN_SUBSTRING:
            self.raw.add(data)
            self._changed()

    def add_date(self, value: str) -> None:
        value = value.strip()[:8]
        if len(value) == 8 and value.isdigit():
            self.dates.add(value)
            self._changed()

    def add_birth_date(self, value: str) -> None:
        """The patient's birth date (YYYYMMDD): a date, and its six-digit forms (700315, 150370,
        031570) as whole numbers, as ``add_strong`` takes DICOM's PatientBirthDate."""
        self.add_date(value)
        six = _six_digit_forms(value.strip()[:8])
        if six:
            self.words.update(six)
            self._changed()

    def add_uid(self, value: str) -> None:
        if len(value) >= 8:  # shorter "UIDs" are malformed values, not identifiers worth a byte scan
            self.uids.add(value)

    def matcher(self, *, strong: bool = False) -> Matcher:
        """Everything (``strong``: only the patient's own name, IDs and dates), compiled."""
        if strong:
            if self._strong_matcher is None:
                self._strong_matcher = Matcher(self, only=frozenset(self.strong))
            return self._strong_matcher
        if self._matcher is None:
            self._matcher = Matcher(self)
        return self._matcher

    def found_in(self, low: str) -> list[str]:
        """Compatibility: the identifiers (lower case) that occur in ``low``."""
        return [low[a:b] for a, b in self.matcher().spans(low)]

    def gate_needles(self, encodings: Iterable[str] = ()) -> GateNeedles:
        """What ``find_identifier`` looks for: (bytes, kind) of the byte gate (``Matcher.byte_needles``),
        the dates' written forms apart (looked for only where their keys are)."""
        matcher = self.matcher()
        return GateNeedles(matcher.byte_needles(tuple(encodings), dates=False), matcher.date_needles())


class DateSet(tuple["DateNeedles", ...]):
    """An identity's dates (``DateNeedles``), and the ASCII era marks among their keys (an era's
    years 1 to 9: b"h", b"heisei"), the only marks the byte scans look for (none where empty)."""

    marks: tuple[bytes, ...]

    def __new__(cls, dates: Iterable[DateNeedles]) -> DateSet:
        made = super().__new__(cls, dates)
        made.marks = tuple(sorted({k for date in made for k in date.byte_keys if not k.isdigit()}))
        return made


class GateNeedles(list[tuple[bytes, str]]):
    """(bytes, kind) needles of values and UIDs, longest first, and ``dates`` (``DateNeedles``) apart:
    true when either holds something."""

    def __init__(self, needles: Iterable[tuple[bytes, str]], dates: tuple[DateNeedles, ...] = ()) -> None:
        super().__init__(needles)
        self.dates = dates if isinstance(dates, DateSet) else DateSet(dates)

    def __bool__(self) -> bool:
        return len(self) > 0 or bool(self.dates)


# (substrings, (word, where it counts: _word_mode), (a run of digits, its numbers (number, digits only)))
# of a Matcher
_Needles = tuple[
    tuple[str, ...], tuple[tuple[str, int], ...], tuple[tuple[str, tuple[tuple[str, bool], ...]], ...]
]
_DIGIT_RUN_STR = re.compile(r"[0-9]+")


_NOT_DIGIT_RUN_STR = re.compile(r"[^0-9]+")


@lru_cache(maxsize=65536)
def _num_part(num: str) -> str:
    """A part of a number's written form that every occurrence holds: its longest run of digits."""
    runs = _DIGIT_RUN_STR.findall(num)
    return max(runs, key=len) if runs else num


def _name_part(form: str) -> str:
    """``_num_part`` of a date's form with its month by name in Arabic script: its longest run of other
    characters where that is longer (the month's name, ` مارس - `: thousands of a date's forms hold its
    year, a few its month's name and separators)."""
    part = _num_part(form)
    words = _NOT_DIGIT_RUN_STR.findall(form)
    word = max(words, key=len) if words else ""
    return word if len(word) > len(part) else part


def _lowered(text: str) -> str:
    """``text`` in lower case, position for position (what ``Matcher.spans`` looks in)."""
    low = text.lower()
    if len(low) != len(text):
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    if _FINAL_SIGMA in low:  # same length: positions stay
        low = low.replace(_FINAL_SIGMA, "\u03c3")
    return low


class Matcher:
    """One input's identifiers compiled for matching, in text (cleaning, decoded gate) and in bytes
    (the raw gate). Both use the same rules, so whatever the gate would refuse, cleaning removes."""

    def __init__(
        self,
        ids: Identifiers,
        exempt: frozenset[str] = frozenset(),
        demote: frozenset[str] = frozenset(),
        only: frozenset[str] | None = None,
    ) -> None:
        self.ids = ids
        self.exempt = exempt
        # the same identifiers recur file after file (a patient's series): compiled once, cached
        subs, words, nums = _compile(
            frozenset(ids.words | ids.short_names),
            frozenset(ids.raw),
            exempt,
            demote,
            only,
        )
        self.subs: set[str] = set(subs)  # normalised, matched anywhere in normalised text
        self.words: set[str] = set(words)  # lower case, whole words
        self.nums: set[str] = set(nums)  # digits (and their separators), not inside a longer number
        self.cjk: set[str] = set(ids.cjk_names)
        # a date's ~50 written forms are prepared once per date (see _date_needles), never merged
        # into the needles of each file: the dates of a patient's files differ from file to file
        self.dates: tuple[str, ...] = tuple(sorted(ids.dates))
        self._frozen = (subs, words, nums, frozenset(ids.cjk_names))  # the cached compilation's own
        self._byte_cache: dict[tuple[str, ...], list[tuple[bytes, str]]] = {}
        self._compiled: _Needles | None = None
        self._date_set: DateSet | None = None

    def _needles(self) -> _Needles:
        """The needles as plain strings, prepared on first use. Matching is by ``str.find`` with
        boundary checks, never a regex: the needles differ for every patient, and compiling an
        alternation of them cost more than all the matching (a regex word character is ``str.isalnum``)."""
        if self._compiled is None:
            self._compiled = _prepared(*self._frozen)
        return self._compiled

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where identifiers occur in ``text`` (original positions), overlaps merged. Every occurrence
        of every needle counts, overlapping ones included."""
        if not text:
            return []
        found: list[tuple[int, int]] = []
        subs, words, nums = self._needles()
        low = _lowered(text)
        if subs:
            index = [i for i, ch in enumerate(low) if ch not in _SEP_SET]
            norm = "".join(low[i] for i in index)
            for sub in subs:
                pos = norm.find(sub)
                while pos >= 0:
                    found.append((index[pos], index[pos + len(sub) - 1] + 1))
                    pos = norm.find(sub, pos + 1)
        size = len(low)
        for word, mode in words:
            n = len(word)
            pos = low.find(word)
            while pos >= 0:
                end = pos + n
                if mode == _ANYWHERE or (
                    (mode == _BEFORE_PARTICLE or pos == 0 or not low[pos - 1].isalnum())
                    and (
                        end == size
                        or not low[end].isalnum()
                        or (
                            mode != _WHOLE and (low[end] in _PARTICLE_STARTS or not _kana_or_hangul(low[end]))
                        )
                    )
                ):
                    found.append((pos, end))
                pos = low.find(word, pos + 1)
        if (nums or self.dates) and _ANY_DIGIT.search(low):  # every number and written date holds a digit
            _find_nums(low, nums, found)
            if self.dates:
                keys = digit_keys(key_runs_str(low))
                arabic = arabic_letters(low)
                ascii = low.isascii()
                for da in self.dates:
                    date = _date_needles(da)
                    if not keys.isdisjoint(date.keys):
                        for groups in date.text_for(keys, arabic=arabic, ascii=ascii):
                            _find_nums(low, groups, found, dates=True)
        if not found:
            return []
        found.sort()
        merged = [found[0]]
        for a, b in found[1:]:
            if a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def probe_groups(self, encodings: tuple[str, ...]) -> tuple[ProbeGroups, ProbeGroups]:
        """This identity's byte needles as ``by_part`` groups: the substrings, and the rest with the
        ASCII words (not the file's UIDs), worked out once per identity from the gate's groups."""
        subs, words, nums, _ = self._frozen
        return _probe_groups(subs, words, nums, frozenset(self.ids.raw), encodings)

    def byte_needles(self, encodings: tuple[str, ...] = (), *, dates: bool = True) -> list[tuple[bytes, str]]:
        """(lower-cased bytes, kind) for the raw-output scan, in every encoding a value can take,
        longest first.

        kind ``sub`` is matched in the output with separators dropped (normalised bytes); ``word``
        must stand alone, ``date``/``num`` must not sit inside a longer number, ``uid`` inside a
        longer UID. Single CJK characters are left to the decoded-text scan. ``dates=False`` leaves
        out the written forms of the dates, which ``date_needles`` gives per date.
        """
        if not dates:
            return self._value_byte_needles(encodings)
        key = (*encodings, "\0dates")
        if key not in self._byte_cache:
            out = dict(self._value_byte_needles(encodings))
            for da in self.dates:
                for needle in _date_needles(da).every_data():
                    out.setdefault(needle, "date")
            self._byte_cache[key] = [(n, out[n]) for n in sorted(out, key=len, reverse=True)]
        return self._byte_cache[key]

    def gate_plan(self, encodings: tuple[str, ...] = ()) -> GatePlan:
        """``byte_needles(dates=False)`` arranged for scanning: the values' needles grouped by a part each
        of a group holds (``needle_part``; worked out once per identity), and this input's UIDs."""
        subs, words, nums, _ = self._frozen
        sub_groups, plain_groups = _gate_groups(subs, words, nums, frozenset(self.ids.raw), encodings)
        uids = tuple(sorted({u.encode("ascii", "ignore") for u in self.ids.uids}, key=len, reverse=True))
        numbers = tuple(n for _, pairs in plain_groups for n, kind in pairs if kind == "num" and _long_id(n))
        return GatePlan(sub_groups, plain_groups, uids, numbers)

    def date_needles(self) -> DateSet:
        """Each of the input's dates with its written forms, as text and as bytes (see DateNeedles)."""
        if self._date_set is None:
            self._date_set = DateSet(map(_date_needles, self.dates))
        return self._date_set

    def _value_byte_needles(self, encodings: tuple[str, ...]) -> list[tuple[bytes, str]]:
        if encodings in self._byte_cache:
            return self._byte_cache[encodings]
        subs, words, nums, _ = self._frozen
        key = (subs, words, nums, frozenset(self.ids.raw), encodings)
        values = _value_needles(*key)
        uids = dict.fromkeys(u.encode("ascii", "ignore") for u in self.ids.uids)
        if any(u in values for u in uids):  # a UID that is also a value's needle: counted as a UID
            out = dict(values)
            out.update(dict.fromkeys(uids, "uid"))
            result = [(needle, out[needle]) for needle in sorted(out, key=len, reverse=True)]
        else:  # longest first; equal lengths keep their order: the values' (sorted once), then the UIDs
            ordered, lengths = _sorted_value_needles(*key)
            result, done = [], 0
            for u in sorted(uids, key=len, reverse=True):
                at = bisect.bisect_right(lengths, -len(u))
                result.extend(ordered[done:at])
                result.append((u, "uid"))
                done = at
            result.extend(ordered[done:])
        self._byte_cache[encodings] = result
        return result


@lru_cache(maxsize=4096)
def _prepared(
    subs: frozenset[str], words: frozenset[str], nums: frozenset[str], cjk: frozenset[str]
) -> _Needles:
    """``Matcher._needles`` of these compiled identifiers (a patient's recur file after file, and a
    date's many written forms made this cost more than the matching itself)."""
    subs_t = tuple(sorted(subs, key=len, reverse=True))
    words_t = tuple((w, _word_mode(w, w in cjk)) for w in sorted(words | cjk, key=len, reverse=True))
    return subs_t, words_t, _num_groups(nums)


_WHOLE, _ANYWHERE, _BEFORE_PARTICLE, _WORD_BEFORE_PARTICLE = 0, 1, 2, 3
# The first letters of the particles written straight after a name with its honorific (林さんの, 林さんは,
# 김 씨가, 김 씨는, 김 씨에게): another letter there makes another word (午前サンプル read in hiragana as
# 午前さんぷる holds 前さん; 이 씨앗 holds 이 씨), which is no name.
_PARTICLE_STARTS = frozenset("のはがをにへともやでかよまねなたら達가는은의에께와과도를을로랑이한만들")
_KANA_TITLES = tuple(t for t in _HAN_TITLES if all("\u3040" <= c <= "\u30ff" for c in t))


def _word_mode(word: str, cjk_name: bool) -> int:
    """Where a word needle counts: a single CJK character and a Han name with a Han honorific anywhere
    (CJK text has no spaces: 王先生复查); a Han name with a kana honorific before a particle or a
    letter that is not kana (林さんの, not 午前サンプル); a Hangul one where a word starts and before a
    particle or the word's end (김 씨가, not 이 씨앗); any other as a whole word."""
    if len(word) == 1 and is_cjk(word):
        return _ANYWHERE
    if not cjk_name:
        return _WHOLE
    if "\uac00" <= word[0] <= "\ud7af":
        return _WORD_BEFORE_PARTICLE
    return _BEFORE_PARTICLE if word.endswith(_KANA_TITLES) else _ANYWHERE


@lru_cache(maxsize=4096)
def _compile(
    words: frozenset[str],
    raws: frozenset[bytes],
    exempt: frozenset[str],
    demote: frozenset[str],
    only: frozenset[str] | None,
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(subs, words, nums) of a Matcher, its dates apart: see its docstring."""
    subs: set[str] = set()
    whole: set[str] = set()
    nums: set[str] = set()
    for w in words:
        norm, kind, low = _word_kind(w)
        if norm in exempt or (only is not None and norm not in only):
            continue
        if kind == "sub" and w in demote:
            kind = "word"
        if kind == "sub":
            subs.add(norm)
        elif kind == "word":
            whole.add(low)
        elif kind == "num":
            nums.add(low)
            if norm != w.strip():
                nums.add(norm)
            nums.update(_num_spellings(low))
    for raw in raws:
        for codec in ("utf-8", "latin-1"):
            text = raw.decode(codec, "replace")
            norm = normalise(text)
            if len(norm) >= MIN_SUBSTRING and norm not in exempt:
                subs.add(norm)
    return frozenset(subs), frozenset(whole), frozenset(nums)


_NumGroups = tuple[tuple[str, tuple[tuple[str, bool], ...]], ...]  # (part, ((number, digits only), ...))
_DIGIT_GROUP = re.compile(r"[0-9]+")
_NUM_SEPARATORS = (" ", "-", ".", "/")  # between the groups of a phone number or an ID, as people write them


def _num_spellings(num: str) -> frozenset[str]:
    """A number of digit groups (a phone, an ID: ``+81 90 3344 5566``) as others write it: its groups
    with another separator between them (``81-90-3344-5566``, ``81.90.3344.5566``); with 6 digits or more
    (shorter groups of digits are dates and times)."""
    groups = _DIGIT_GROUP.findall(num)
    if len(groups) < 2 or sum(map(len, groups)) < 6:
        return frozenset()
    return frozenset(sep.join(groups) for sep in _NUM_SEPARATORS)


def _num_groups(nums: Iterable[str], *, by_name: bool = False) -> _NumGroups:
    """Numbers longest first, grouped by a part each of a group holds (``_num_part``; ``by_name``:
    ``_name_part``)."""
    groups: dict[str, list[tuple[str, bool]]] = {}
    part = _name_part if by_name else _num_part
    for n in sorted(nums, key=len, reverse=True):
        groups.setdefault(part(n), []).append((n, n.isdigit()))
    return tuple((part, tuple(group)) for part, group in groups.items())


def _form_groups(forms: Iterable[str], parts: tuple[str, ...]) -> _NumGroups:
    """``_num_groups`` of one date's written forms, each grouped by the first of ``parts`` (longest
    first: the digits of its year and its compact forms, or its calendar's keys) that it holds, else by
    its longest run of digits. Any substring of a form is a part every occurrence of it holds, and a
    date's hundreds of forms are new for every date: the regular expression ``_num_part`` runs for
    each, and its cache churned through them, was most of a new date's cost."""
    groups: dict[str, list[tuple[str, bool]]] = {}
    for n in sorted(forms, key=len, reverse=True):
        for part in parts:
            if part in n:
                break
        else:
            runs = _DIGIT_RUN_STR.findall(n)
            part = max(runs, key=len) if runs else n
        groups.setdefault(part, []).append((n, n.isdigit()))
    return tuple((part, tuple(group)) for part, group in groups.items())


def _find_nums(low: str, groups: _NumGroups, found: list[tuple[int, int]], *, dates: bool = False) -> None:
    """Adds to ``found`` the spans of ``low`` where a number of ``groups`` stands on its own: not
    after a digit or a dot, and not running on into a longer number. A date (``dates``) written in
    eight digits alone may run on into a time, as a DT value does (19480614093000), as in the byte gate;
    digits alone of another length (1948166, the ordinal date) may not. A date's form that ends in a
    word (1970年3月15日, 15 مارس 1970م) is over where it ends: a time or an age may follow it at once
    (2004年1月19日10時30分, 1970年3月15日34歳)."""
    size = len(low)
    for part, group in groups:
        if part not in low:  # the many written forms of a date share a run of digits (its year), or a name
            continue
        for num, digits_only in group:
            n = len(num)
            closed = dates and num[-1] not in _DIGITS
            pos = low.find(num)
            while pos >= 0:
                end = pos + n
                if (pos == 0 or low[pos - 1] not in _DIGITS_DOT) and (
                    end == size
                    or closed
                    or (dates and digits_only and n == _COMPACT)
                    or (low[end] not in _DIGITS and (digits_only or not _runs_on(low, end)))
                ):
                    found.append((pos, end))
                pos = low.find(num, pos + 1)


# a calendar's forms: (its name, its keys, the ASCII ones as bytes, [its forms, then what
# ``DateNeedles._family`` made of them at _TEXT, _DATA, _TEXT_ASCII and _DATA_GROUPS] once made)
_TEXT, _DATA, _TEXT_ASCII, _DATA_GROUPS = 1, 2, 3, 4
# a date's ASCII forms as bytes by the key each holds (None: no key of digits, an era's year 1 to 9)
_ByteGroups = tuple[tuple[bytes | None, tuple[bytes, ...]], ...]
_Family = tuple[str, frozenset[str], frozenset[bytes], list[Any]]


class DateNeedles:
    """One date's written forms (``_date_forms``), prepared once per date, and only as far as needed.

    ``keys``: runs of digits of which every standing occurrence of a form puts one among the keys of
    the text or bytes it is in (``digit_keys``). A form with a separator, a month name or a CJK
    character holds the year (1948, or 48) as a whole run of digits; a form of digits alone
    (19480614, 14061948) begins a run, which may go on into a time. Where the keys do not meet, no form is
    there, and none is looked for: the forms are grouped for text (``text``) or encoded (``data``) on
    first use. ``tests/collect/deid/test_date_needles.py`` holds every form of many dates to this.
    """

    __slots__ = (
        "_base",
        "_byte_base",
        "_data",
        "_data_groups",
        "_day",
        "_families",
        "_forms",
        "_parts",
        "_script",
        "_text",
        "_text_ascii",
        "byte_keys",
        "da",
        "keys",
    )

    def __init__(self, da: str) -> None:
        self.da = da
        if len(da) == 8 and da.isdigit():
            y, m, d = da[:4], da[4:6], da[6:]
            # the year, and the forms of digits alone (_date_forms joins these three without a separator)
            base = {y, y[2:], y + m + d, d + m + y, m + d + y}
        else:
            base = {da}
        self._base = frozenset(base)
        self._parts = tuple(sorted(base, key=len, reverse=True))  # what its forms are grouped by
        self._byte_base = frozenset(k.encode("ascii") for k in base)
        # each other calendar's forms apart, with its own keys (a met key costs only its calendar's forms)
        self._day = _calendar_day(da)
        families = calendars.family_keys(self._day) if self._day is not None else ()
        script = calendars.ARABIC_SCRIPT
        self._families: tuple[_Family, ...] = tuple(
            (name, keys, _ascii_keys(keys), []) for name, keys in families if keys and name != script
        )
        # the month by name in Arabic script (15 مارس 1970, ۲۴ اسفند ۱۳۴۸): text holding an Arabic letter
        # alone, so its keys (years of the other calendars, and their last two digits) are no byte keys
        self._script: tuple[_Family, ...] = tuple(
            (name, keys, frozenset(), []) for name, keys in families if keys and name == script
        )
        self.keys = self._base.union(*(f[1] for f in self._families), *(f[1] for f in self._script))
        # an era's kanji and reading key its forms in text alone
        self.byte_keys = self._byte_base.union(*(f[2] for f in self._families))
        self._forms: list[str] | None = None  # written out only where the keys meet
        self._text: _NumGroups | None = None
        self._text_ascii: _NumGroups | None = None
        self._data: tuple[bytes, ...] | None = None
        self._data_groups: _ByteGroups | None = None

    @property
    def forms(self) -> list[str]:
        """Every form, in every calendar."""
        return _date_forms(self.da)

    @property
    def text(self) -> _NumGroups:
        """The Gregorian forms as text, grouped for ``Matcher.spans``."""
        if self._text is None:
            self._text = _form_groups(self._gregorian(), self._parts)
        return self._text

    @property
    def data(self) -> tuple[bytes, ...]:
        """The ASCII Gregorian forms as bytes (kind "date"), longest first. The CJK and Korean forms are
        left to the decoded text: in no encoding are their digits next to each other (their ASCII digits
        alone, 1948614 for 1948年6月14日, were taken for the start of 19486140 and other dates)."""
        if self._data is None:
            self._data = _ascii_longest_first(self._gregorian())
        return self._data

    @property
    def text_ascii(self) -> _NumGroups:
        """``text`` of the ASCII forms alone: what ASCII text may hold (the CJK and Korean forms are no
        use there, and each stood in its year's group, tried wherever the year is)."""
        if self._text_ascii is None:
            self._text_ascii = _ascii_groups(self.text)
        return self._text_ascii

    def _gregorian(self) -> list[str]:
        if self._forms is None:
            self._forms = _gregorian_forms(self.da)
        return self._forms

    def _family(self, family: _Family, which: int) -> Any:
        """One calendar's forms as text groups (``_TEXT``), ASCII bytes (``_DATA``) or the ASCII forms'
        text groups (``_TEXT_ASCII``), each made on first use (the byte scans want the bytes alone)."""
        made = family[3]
        if not made:
            assert self._day is not None
            made += [sorted(calendars.family_forms(self._day, family[0])), None, None, None, None]
        if made[which] is None:
            if which == _DATA:
                made[which] = _ascii_longest_first(made[0])
            elif which == _DATA_GROUPS:
                made[which] = _byte_groups(self._family(family, _DATA), family[2])
            elif which == _TEXT_ASCII:
                made[which] = _ascii_groups(self._family(family, _TEXT))
            elif family[0] == calendars.ARABIC_SCRIPT:
                made[which] = _num_groups(made[0], by_name=True)
            else:
                made[which] = _form_groups(made[0], tuple(sorted(family[1], key=len, reverse=True)))
        return made[which]

    def every_data(self) -> tuple[bytes, ...]:
        """The ASCII forms of every calendar as bytes, longest first (a plain needle list)."""
        every = [*self.data, *(b for family in self._families for b in self._family(family, _DATA))]
        return tuple(sorted(every, key=len, reverse=True))

    def text_for(
        self, keys: set[str] | frozenset[str], *, arabic: bool = False, ascii: bool = False
    ) -> Iterator[_NumGroups]:
        """The forms' text groups of each calendar whose keys are among ``keys`` (a text's
        ``digit_keys``), the Gregorian first; the month names in Arabic script where the text holds an
        Arabic letter (``arabic``, ``arabic_letters``); the ASCII forms alone for ASCII text (``ascii``)."""
        if not keys.isdisjoint(self._base):
            yield self.text_ascii if ascii else self.text
        for family in self._families:
            if not keys.isdisjoint(family[1]):
                yield self._family(family, _TEXT_ASCII if ascii else _TEXT)
        if arabic:
            for family in self._script:
                if not keys.isdisjoint(family[1]):
                    yield self._family(family, _TEXT)

    def data_for(self, keys: set[bytes] | frozenset[bytes]) -> Iterator[bytes]:
        """The ASCII forms as bytes of each calendar whose keys are among ``keys`` (``text_for``): of those,
        the forms whose own key is there (``_byte_groups``)."""
        if not keys.isdisjoint(self._byte_base):
            if self._data_groups is None:
                self._data_groups = _byte_groups(self.data, self._byte_base)
            for key, forms in self._data_groups:
                if key is None or key in keys:
                    yield from forms
        for family in self._families:
            if not keys.isdisjoint(family[2]):
                for key, forms in self._family(family, _DATA_GROUPS):
                    if key is None or key in keys:
                        yield from forms


def _byte_groups(forms: tuple[bytes, ...], keys: frozenset[bytes]) -> _ByteGroups:
    """``forms`` (longest first) grouped by the longest of ``keys`` that one of their runs of digits is,
    or begins with 8 digits of; None for a form with no such run (an era's mark keys it), in order.

    A standing occurrence of a form (``find_bounded``: no digit or dot before it, no number running on
    after it but a compact date's) has each of its runs whole among the haystack's runs, and a longer
    run's first 8 digits too (``digit_keys``): where a form's key is not among the keys, the form is
    not there. The byte scans then try a few dozen forms where a value holds the date's year, not the
    hundreds of every form of every calendar whose key the value holds."""
    groups: dict[bytes | None, list[bytes]] = {}
    for form in forms:
        key = None
        for run in form.translate(_NOT_DIGIT).split():
            for k in (run, run[:_COMPACT]):
                if len(k) > 1 and k in keys and (key is None or len(k) > len(key)):
                    key = k
        groups.setdefault(key, []).append(form)
    return tuple((key, tuple(group)) for key, group in groups.items())


def _ascii_groups(groups: _NumGroups) -> _NumGroups:
    """``groups`` with their forms beyond ASCII left out (what ASCII text may hold), in their order."""
    out = []
    for part, group in groups:
        kept = tuple(g for g in group if g[0].isascii())
        if kept:
            out.append((part, kept))
    return tuple(out)


def _ascii_keys(keys: Iterable[str]) -> frozenset[bytes]:
    return frozenset(k.encode("ascii") for k in keys if k.isascii())


def _ascii_longest_first(forms: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(sorted((f.encode("ascii") for f in forms if f.isascii()), key=len, reverse=True))


# A form of digits alone is 8 digits long (year, month and day with their zeros, in some order).
_COMPACT = 8
_date_needles = lru_cache(maxsize=8192)(DateNeedles)


_K = TypeVar("_K", str, bytes)
# runs of two digits or more: every key of a date is (a two-digit year is the shortest)
_DIGIT_RUNS_STR = re.compile(r"[0-9]{2,}")
KEY_RUNS = re.compile(rb"[0-9]{2,}")
# and, where a digit stands alone, the marks of a Japanese era, which key its years 1 to 9 (H2.3.5,
# 平成2年3月5日: ``calendars.ERA_MARKS``; the ASCII forms' alone in bytes, as the byte needles are ASCII)
ERA_MARKS_BYTES = re.compile(rb"[mtshr](?=[ .]?[0-9])|meiji|taisho|showa|heisei|reiwa")
_OTHER_ERA_MARKS = re.compile(r"[明大昭平令]|[mtshr](?=[ .]?元)|めいじ|たいしょう|しょうわ|へいせい|れいわ")
_ERA_CHARS = frozenset("明大昭平令元めたしへれ")  # a character each of those holds
_ERA_WORDS = (b"meiji", b"taisho", b"showa", b"heisei", b"reiwa")
_ERA_INITIALS = (b"m", b"t", b"s", b"h", b"r")
_LONE_DIGIT = re.compile(r"(?<![0-9])[0-9](?![0-9])")
_NOT_DIGIT = bytes(b if 0x30 <= b <= 0x39 else 0x20 for b in range(256))  # any other byte: a space
# a digit as 0, and a dot as a space: an initial before " 0" in the shape stood before a digit with a
# space or a dot between (H 2.3.5, H.2.3.5)
_DIGITS_AS_0 = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 if b == 0x2E else b for b in range(256))


def _ascii_era_marks(low: bytes, wanted: tuple[bytes, ...] = _ERA_INITIALS + _ERA_WORDS) -> list[bytes]:
    """The matches of ``ERA_MARKS_BYTES`` among ``wanted`` in lower-cased ``low`` (each initial that
    stands before a digit, or a space or a dot and a digit, each romaji name), found by ``bytes.find``: a regular
    expression tried at every byte of a large binary span cost a fifth of a small file's time; the
    byte scans look for the marks of the eras of the identity's dates alone."""
    shape = low.translate(_DIGITS_AS_0)
    return [
        m
        for m in wanted
        if (shape.find(m + b"0") >= 0 or shape.find(m + b" 0") >= 0 if len(m) == 1 else low.find(m) >= 0)
    ]


_ARABIC_LETTER = re.compile("[\u0621-\u064a\u0671-\u06d3]")


def arabic_letters(text: str) -> bool:
    """Whether ``text`` holds a letter of the Arabic script (Arabic, Persian, Urdu): where the month
    names in Arabic script are looked for (``DateNeedles.text_for``)."""
    return not text.isascii() and _ARABIC_LETTER.search(text) is not None


def key_runs_str(low: str) -> list[str]:
    """``key_runs`` for text (lower case): the runs of two digits or more, then, where a digit stands
    alone, the era marks it holds (an initial before a digit, a romaji name, a kanji, a reading)."""
    runs = _DIGIT_RUNS_STR.findall(low)
    # 元 (an era's year 1) holds no digit: H元-02-02 has no lone digit, but its era's marks key it
    if _LONE_DIGIT.search(low) is not None or (not low.isascii() and "元" in low):
        runs += [m.decode("ascii") for m in _ascii_era_marks(low.encode("utf-8"))]
        if not low.isascii() and not _ERA_CHARS.isdisjoint(low):
            runs += _OTHER_ERA_MARKS.findall(low)
    return runs


def key_runs(data: bytes, *, marks: tuple[bytes, ...] | None = None) -> list[bytes]:
    """``KEY_RUNS.findall(data)``: the runs of two digits or more, in order, then, where a digit stands
    alone, the era marks the ASCII forms hold (``_ascii_era_marks``). Every byte but a digit made a
    space, then split: four times faster than the regular expression, which walked every byte of
    every span the gate scans (the date search was a tenth of a small file's engine time). ``marks``:
    the ASCII marks the dates looked for are keyed by (``DateSet.marks``), every mark where None."""
    runs = data.translate(_NOT_DIGIT).split()
    out = [run for run in runs if len(run) > 1]
    if marks != () and len(out) < len(runs):
        out += _ascii_era_marks(data) if marks is None else _ascii_era_marks(data, marks)
    return out


def digit_keys(runs: list[_K]) -> set[_K]:
    """The runs of digits of a text (``findall`` of a digit run), and the first 8 digits of the longer
    ones: what ``DateNeedles.keys`` are compared with."""
    keys = set(runs)
    keys.update(run[:_COMPACT] for run in runs if len(run) > _COMPACT)
    return keys


# Identifying values recur from file to file (a patient's series, a hospital's name): what each
# value compiles to is remembered, per value, for the life of the process.
@lru_cache(maxsize=8192)
def _word_kind(w: str) -> tuple[str, str, str]:
    norm = normalise(w)
    return norm, _kind(norm), w.lower().replace(_FINAL_SIGMA, "\u03c3").strip()


ProbeGroups = tuple[tuple[int, bytes, tuple[bytes, ...]], ...]  # see by_part


def by_part(groups: Iterable[tuple[bytes, Iterable[bytes]]]) -> ProbeGroups:
    """Needles grouped by a part each of a group holds (``needle_part``), as (length of the group's
    shortest needle, part, needles), shortest first: a value is looked at once per part, and a short
    value stops at the first group longer than itself."""
    out = []
    for part, group in groups:
        needles = tuple(group)
        out.append((min(map(len, needles)), part, needles))
    out.sort(key=lambda g: g[0])
    return tuple(out)


def group_by_part(needles: Iterable[bytes]) -> ProbeGroups:
    """``by_part`` of needles not grouped yet."""
    groups: dict[bytes, list[bytes]] = {}
    for n in needles:
        groups.setdefault(needle_part(n), []).append(n)
    return by_part(groups.items())


@lru_cache(maxsize=1024)
def _probe_groups(
    subs: frozenset[str],
    words: frozenset[str],
    nums: frozenset[str],
    raws: frozenset[bytes],
    encodings: tuple[str, ...],
) -> tuple[ProbeGroups, ProbeGroups]:
    sub_groups, plain_groups = _gate_groups(subs, words, nums, raws, encodings)
    plain: dict[bytes, list[bytes]] = {part: [n for n, _ in pairs] for part, pairs in plain_groups}
    for w in words:
        if w.isascii() and w:
            n = w.encode()
            group = plain.setdefault(needle_part(n), [])
            if n not in group:
                group.append(n)
    return by_part(sub_groups), by_part(plain.items())


class GatePlan(NamedTuple):
    """A Matcher's byte needles as the gate scans them (``Matcher.gate_plan``): ``subs`` (matched in
    the squeezed bytes) and ``plain`` ((needle, kind) that must stand on their own) grouped by a part
    every needle of the group holds, and ``uids``. Its dates are ``Matcher.date_needles``."""

    subs: tuple[tuple[bytes, tuple[bytes, ...]], ...]
    plain: tuple[tuple[bytes, tuple[tuple[bytes, str], ...]], ...]
    uids: tuple[bytes, ...]
    numbers: tuple[bytes, ...] = ()  # IDs of digits alone, looked for with their digits grouped too


@lru_cache(maxsize=1024)
def _gate_groups(
    subs: frozenset[str],
    words: frozenset[str],
    nums: frozenset[str],
    raws: frozenset[bytes],
    encodings: tuple[str, ...],
) -> tuple[
    tuple[tuple[bytes, tuple[bytes, ...]], ...], tuple[tuple[bytes, tuple[tuple[bytes, str], ...]], ...]
]:
    """``GatePlan.subs`` and ``GatePlan.plain`` of an identity: the needles of ``_value_needles``, each
    once, with the kind it has there, composed from each value's own (``_pieces``, cached per value:
    a patient's values recur in files whose other values differ)."""
    sub_groups: dict[bytes, list[bytes]] = {}
    plain_groups: dict[bytes, list[tuple[bytes, str]]] = {}
    seen: set[bytes] = set()
    for text in sorted(subs):
        for part, needle in _pieces(text, "sub", encodings):
            if needle not in seen:
                seen.add(needle)
                sub_groups.setdefault(part, []).append(needle)
    for raw in sorted(raws):
        needle = normalise_bytes(raw)
        if needle and needle not in seen:
            seen.add(needle)
            sub_groups.setdefault(needle_part(needle), []).append(needle)
    for kind, texts in (("word", words), ("num", nums)):
        for text in sorted(texts):
            for part, needle in _pieces(text, kind, encodings):
                if needle not in seen:
                    seen.add(needle)
                    plain_groups.setdefault(part, []).append((needle, kind))
    return (
        tuple((part, tuple(group)) for part, group in sub_groups.items()),
        tuple((part, tuple(group)) for part, group in plain_groups.items()),
    )


@lru_cache(maxsize=16384)
def _pieces(text: str, kind: str, encodings: tuple[str, ...]) -> tuple[tuple[bytes, bytes], ...]:
    """(``needle_part``, needle) of one value's byte needles, as ``_value_needles`` makes them."""
    if kind == "sub":
        needles: tuple[bytes, ...] = _sub_needles(text, encodings)
    elif kind == "word":
        needles = _word_needles(text, encodings)
    else:
        data = _ascii_bytes(text)
        needles = (data,) if data else ()
    return tuple((needle_part(n), n) for n in needles)


@lru_cache(maxsize=1024)
def _sorted_value_needles(
    subs: frozenset[str],
    words: frozenset[str],
    nums: frozenset[str],
    raws: frozenset[bytes],
    encodings: tuple[str, ...],
) -> tuple[tuple[tuple[bytes, str], ...], tuple[int, ...]]:
    """``_value_needles`` longest first (equal lengths in their order), sorted once per identity, and
    their lengths negated (where a UID goes, by bisection)."""
    values = _value_needles(subs, words, nums, raws, encodings)
    keys = sorted(values, key=len, reverse=True)
    return tuple(zip(keys, map(values.__getitem__, keys), strict=True)), tuple(
        map(operator.neg, map(len, keys))
    )


@lru_cache(maxsize=1024)
def _value_needles(
    subs: frozenset[str],
    words: frozenset[str],
    nums: frozenset[str],
    raws: frozenset[bytes],
    encodings: tuple[str, ...],
) -> dict[bytes, str]:
    """The byte needles of a Matcher's values (not its UIDs, which differ in every file), in the
    order they are found: substrings, raw bytes, whole words, numbers."""
    out: dict[bytes, str] = {}
    for text in sorted(subs):
        for data in _sub_needles(text, encodings):
            if data not in out:
                out[data] = "sub"
    for raw in sorted(raws):
        data = normalise_bytes(raw)
        if data and data not in out:
            out[data] = "sub"
    for text in sorted(words):
        for data in _word_needles(text, encodings):
            if data not in out:
                out[data] = "word"
    for data in map(_ascii_bytes, sorted(nums)):
        if data and data not in out:
            out[data] = "num"
    return out


@lru_cache(maxsize=65536)
def _ascii_bytes(text: str) -> bytes:
    return text.encode("ascii", "ignore")


def _codecs(encodings: tuple[str, ...]) -> tuple[list[str], bool]:
    codecs = ["utf-8", "latin-1", "cp1252", "utf-16-le", "utf-16-be", *encodings]
    return codecs, all(_ascii_compatible(c) for c in codecs[5:])


# Text written in another character set than the one the file declares (a report pasted from a
# Windows, DOS or Unix system, a Big5 or EUC-JP one): a value beyond ASCII is also looked for in the
# bytes of the code pages that sites write its script in, whatever the file declares. ISO 2022 forms
# without their escapes are left out: their bytes are ASCII letters and punctuation (山田 is ;3ED),
# which occur by chance (``other_readings`` reads text holding escapes as ISO 2022 instead).
_SCRIPT_CODECS = {
    "LATIN": ("cp1250", "iso8859_2", "cp1254", "iso8859_9", "cp1257", "iso8859_13", "cp1258",
              "iso8859_16", "cp850", "cp852"),
    "CYRILLIC": ("cp1251", "koi8_r", "koi8_u", "cp866", "cp855", "mac_cyrillic", "iso8859_5"),
    "GREEK": ("cp1253", "iso8859_7", "mac_greek", "cp869"),
    "ARABIC": ("cp1256", "iso8859_6", "cp864"),
    "HEBREW": ("cp1255", "iso8859_8", "cp862"),
    "THAI": ("cp874",),
    "CJK": ("euc_jp", "shift_jis", "cp932", "big5", "big5hkscs", "gbk", "gb18030", "euc_kr", "johab"),
}  # fmt: skip
_CJK_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "HALFWIDTH", "FULLWIDTH"})


@lru_cache(maxsize=8192)
def _beyond_ascii_codecs(encodings: tuple[str, ...], scripts: frozenset[str]) -> tuple[str, ...]:
    """The codecs a value beyond ASCII is encoded in for the byte gate: ``_codecs``, and the code
    pages of its scripts (``_SCRIPT_CODECS``)."""
    codecs = _codecs(encodings)[0]
    other = [c for script in sorted(scripts) for c in _SCRIPT_CODECS.get(script, ())]
    return (*codecs, *dict.fromkeys(c for c in other if c not in codecs))


def _scripts(text: str) -> frozenset[str]:
    """The scripts of the letters of ``text`` beyond ASCII (CJK for Han, kana and Hangul)."""
    out = set()
    for ch in text:
        if not ch.isascii() and ch.isalpha():
            script = unicodedata.name(ch, "?").split(" ", 1)[0]
            out.add("CJK" if script in _CJK_SCRIPTS else script)
    return frozenset(out)


def _case_variants(text: str, capitalised: str) -> set[str]:
    """``text`` as it, in capitals and ``capitalised``, each also with a Greek σ written ς (as at a
    word's end): the case forms a value's bytes may take (bytes.lower() folds ASCII only)."""
    out = {text, text.upper(), capitalised}
    return out | {v.replace("\u03c3", _FINAL_SIGMA) for v in out if "\u03c3" in v}


@lru_cache(maxsize=8192)
def _sub_needles(text: str, encodings: tuple[str, ...]) -> tuple[bytes, ...]:
    """A normalised value as normalised bytes in every encoding it can take."""
    codecs, ascii_same = _codecs(encodings)
    if ascii_same and text.isascii():
        # every variant in every codec normalises to the same bytes: case folds, and the NULs of
        # UTF-16 are separators
        norm = normalise_bytes(text.encode("ascii"))
        return (norm,) if len(norm) >= 3 else ()
    out: list[bytes] = []
    codecs = list(_beyond_ascii_codecs(encodings, _scripts(text)))
    for variant in _case_variants(text, text.capitalize()):  # bytes.lower() folds ASCII only
        for codec in codecs:
            try:
                enc = variant.encode(codec)
            except (UnicodeEncodeError, LookupError):
                continue
            norm = normalise_bytes(_strip_escapes(enc))
            if len(norm) >= 3 and norm not in out:
                out.append(norm)
    return tuple(out)


@lru_cache(maxsize=8192)
def _word_needles(text: str, encodings: tuple[str, ...]) -> tuple[bytes, ...]:
    """A whole-word value as lower-cased bytes in every encoding it can take."""
    codecs, ascii_same = _codecs(encodings)
    out: list[bytes] = []
    if ascii_same and text.isascii():
        # the variants differ only in case, which .lower() folds; the 8-bit codecs agree
        for enc in (
            text.encode("ascii").lower(),
            text.encode("utf-16-le").lower(),
            text.encode("utf-16-be").lower(),
        ):
            if len(enc) >= 3 and enc not in out:
                out.append(enc)
        return tuple(out)
    if not text.isascii():
        codecs = list(_beyond_ascii_codecs(encodings, _scripts(text)))
    for variant in _case_variants(text, text.title()):
        for codec in codecs:
            try:
                enc = _strip_escapes(variant.encode(codec)).lower()
            except (UnicodeEncodeError, LookupError):
                continue
            # two ASCII letters (LO, CT...) are VR codes and common words in binary headers
            if (len(enc) >= 3 or not enc.isascii()) and enc not in out:
                out.append(enc)
    return tuple(out)


# Python codecs of DICOM character sets that write ASCII text as ASCII bytes (ISO 2022 ones too:
# ASCII is their initial set). UTF-16 is handled on its own.
_ASCII_CODECS = frozenset(
    {"ascii", "us_ascii", "iso8859", "iso8859_1", "latin_1", "latin1", "cp1252", "utf_8", "utf8",
     "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7", "iso8859_8",
     "iso8859_9", "iso8859_11", "iso8859_15", "iso_ir_126", "iso_ir_127", "iso_ir_138", "iso_ir_144",
     "iso_ir_148", "iso_ir_166", "iso_ir_58", "tis_620", "shift_jis", "iso2022_jp", "iso2022_jp_2", "euc_kr",
     "iso2022_kr", "gb18030", "gbk", "gb2312", "big5", "cp874"}
)  # fmt: skip


_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DIGIT_DOT = frozenset(b"0123456789.")
_DIGIT = frozenset(b"0123456789")


_DIGIT_RUN = re.compile(rb"[0-9]{4,}")


@lru_cache(maxsize=65536)
def needle_part(needle: bytes) -> bytes:
    """A part of ``needle`` that every occurrence of it contains (its longest run of four or more
    digits, else its first four bytes): where the part is absent, so is the needle."""
    runs = _DIGIT_RUN.findall(needle)
    return max(runs, key=len) if runs else needle[:4]


def _runs_on(hay: bytes | str, end: int) -> bool:
    """Whether a number continues at ``end`` of ``hay`` (a digit, or a dot then a digit)."""
    if end >= len(hay):
        return False
    after = hay[end : end + 2] if isinstance(hay, str) else hay[end : end + 2].decode("latin-1")
    return after[0].isdigit() or (after[0] == "." and len(after) > 1 and after[1].isdigit())


# Digits grouped by a dash or spaces (447-1923, 447 19 23), or by thousands (4.417.702, 4,417,702,
# 4'417'702): an ID of digits as people and software versions write it. A dot or a comma counts only
# before a group of exactly three digits: otherwise it joins the parts of a decimal number (447.1923);
# a slash or a backslash never does (dates, multiple values).
_DIGIT_GAP = rb"(?:-| {1,2}|[.,'](?=[0-9]{3}(?![0-9])))"
_GROUPS = re.compile(rb"[0-9]+(?:" + _DIGIT_GAP + rb"[0-9]+)+")
_GAP = re.compile(_DIGIT_GAP)


def _long_id(needle: bytes) -> bool:
    return needle.isdigit() and len(needle) >= _ID_NUMBER


def find_grouped_number(hay: bytes, numbers: Iterable[bytes]) -> bool:
    """Whether one of ``numbers`` (IDs of digits alone, 6 digits or more) is in ``hay`` written as
    two or more consecutive groups of digits (447-1923, 447 19 23 or 4.417.702 for 4471923; in
    ``GT450 4,417,702`` too). A group is a whole run of digits, so the ID stands on its own; a run
    after a dot (a UID's or a decimal's) is not looked at. The ID written whole is the ``num``
    needles' (``find_bounded``)."""
    wanted = set(numbers)
    if not wanted:
        return False
    # first what the groups need (C speed): the ID's digits together once the marks between groups
    # are dropped; the groups themselves are looked for only then (a regex over every byte of
    # every span the gate reads cost more than the rest of the engine)
    squeezed = hay.translate(None, b"-., '")
    if not any(squeezed.find(n) >= 0 for n in wanted):
        return False
    longest = max(map(len, wanted))
    for m in _GROUPS.finditer(hay):
        if m.start() and hay[m.start() - 1] == 0x2E:
            continue
        groups = _GAP.split(m.group())
        for i in range(len(groups) - 1):
            joined = groups[i]
            for group in groups[i + 1 :]:
                joined += group
                if len(joined) > longest:
                    break
                if joined in wanted:
                    return True
    return False


def find_bounded(hay: bytes, needle: bytes, kind: str, start: int, end: int) -> int:
    """First occurrence of ``needle`` in ``hay[start:end]`` that stands on its own (not inside a longer
    word, number or UID); -1 if none."""
    pos = hay.find(needle, start, end)
    n = len(needle)
    while pos >= 0:
        before = hay[pos - 1] if pos > 0 else None
        after = hay[pos + n] if pos + n < len(hay) else None
        if kind == "uid":
            ok = (
                before not in _DIGIT_DOT
                and after not in _DIGIT
                and not (after == 0x2E and pos + n + 1 < len(hay) and hay[pos + n + 1] in _DIGIT)
            )
        elif kind == "num":  # an ID of digits, not inside a longer number: 1024 is not found in
            # 10240, nor in a time 102400 (a digits-only ID is found before a dot: "ID 1024."). An ID
            # of LONG_NUMBER digits or more may run on, as a date may: 447192301 holds MRN 4471923
            # (an accession made of it), where a coincidence is unlikely
            ok = before not in _DIGIT_DOT and (
                (needle.isdigit() and n >= LONG_NUMBER)
                or (after not in _DIGIT and (needle.isdigit() or not _runs_on(hay, pos + n)))
            )
        elif kind == "date":  # a date may run on into a time (DT); after digits or a dot it is part of a UID
            # a written form (6/14/48, 1.2.84) must not run on into a longer number or UID either, nor
            # may digits alone of another length (1997120, day 120 of 1997, is not in 19971205)
            ok = before not in _DIGIT_DOT and (
                (needle.isdigit() and n == _COMPACT) or not _runs_on(hay, pos + n)
            )
        else:
            ok = before not in _ALNUM and after not in _ALNUM
        if ok:
            return pos
        pos = hay.find(needle, pos + 1, end)
    return -1


def find_identifier(data: bytes, needles: list[tuple[bytes, str]]) -> str | None:
    """The kind of the first identifier of ``needles`` (``Identifiers.gate_needles``, or a plain list
    such as ``Matcher.byte_needles``) found in ``data``: long
    values as substrings of the lower-cased bytes with every separator removed (so ``MRN-77123``,
    ``mrn 77123`` and ``MRN77123`` all match), short ones, dates and UIDs only where they stand alone.
    The same rules as the DICOM engine's byte gate; None when none is found."""
    low: bytes | None = None
    squeezed: bytes | None = None
    for needle, kind in needles:
        if kind == "sub":
            if squeezed is None:  # lower-cased and squeezed in one pass over the bytes
                squeezed = data.translate(_LOWER_BYTES, _SEP_BYTES)
            if needle in squeezed:
                return kind
        else:
            if low is None:
                low = data.lower()
            if find_bounded(low, needle, kind, 0, len(low)) >= 0:
                return kind
    numbers = [n for n, kind in needles if kind == "num" and _long_id(n)]
    if numbers and find_grouped_number(data, numbers):
        return "num"
    dates = getattr(needles, "dates", ())
    if dates:
        low = data.lower() if low is None else low
        if find_date(low, dates, 0, len(low)) >= 0:
            return "date"
        if _text_date(data, dates):
            return "date"
    other = folded_bytes(data)  # an ID or a date in other digits, with RLM marks or full-width signs
    return find_identifier(other, needles) if other is not None else None


def _text_date(data: bytes, dates: Iterable[DateNeedles]) -> bool:
    """Whether ``data`` (UTF-8 text beyond ASCII) holds one of ``dates`` in a form of text alone, read
    folded as the decoded gate reads it: CJK and Korean (1970年3月15日, 一九七〇年三月十五日, 昭和45年3月15日,
    1970년 3월 15일), an era's, the month by name in Arabic script (15 مارس 1970, ۲۴ اسفند ۱۳۴۸). The
    byte needles are ASCII (``DateNeedles.data``): these are the forms they do not hold."""
    if data.isascii():
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    low = _lowered(fold(text)[0])
    keys = digit_keys(key_runs_str(low))
    arabic = arabic_letters(text)
    found: list[tuple[int, int]] = []
    for date in dates:
        if not keys.isdisjoint(date.keys):
            for groups in date.text_for(keys, arabic=arabic):
                _find_nums(low, groups, found, dates=True)
                if found:
                    return True
    return False


def folded_bytes(data: bytes) -> bytes | None:
    """``data`` (UTF-8 text) as ``_readings.fold`` reads it (the digits of every script as ASCII ones:
    ٤٤١٧٧٠٢, ۱۳۳۹, ๒๕๐๔; full-width signs as ASCII; invisible marks dropped: ١٥‏/٣‏/١٩٧٠), as UTF-8;
    None where that changes nothing, or the bytes are not UTF-8."""
    if data.isascii():
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return fold(text)[0].encode("utf-8") if folds(text) else None


def find_date(low: bytes, dates: Iterable[DateNeedles], start: int, end: int) -> int:
    """First standing occurrence in ``low[start:end]`` (lower-cased bytes) of a written form of one of
    ``dates``, looked for only where the date's keys are (``DateNeedles``); -1 if none."""
    if not isinstance(dates, DateSet):
        dates = DateSet(dates)
    keys = digit_keys(key_runs(low, marks=dates.marks))
    for date in dates:
        if not keys.isdisjoint(date.byte_keys):
            for needle in date.data_for(keys):
                if low.find(needle) >= 0:
                    pos = find_bounded(low, needle, "date", start, end)
                    if pos >= 0:
                        return pos
    return -1


def _ascii_compatible(codec: str) -> bool:
    return codec.lower().replace("-", "_") in _ASCII_CODECS


def _strip_escapes(data: bytes) -> bytes:
    """ISO 2022 bytes without the escape sequences at either end (the text around them may differ)."""
    if data.find(b"\x1b") < 0:
        return data
    return re.sub(rb"^(?:\x1b[\x20-\x2f]*[\x40-\x7e])+|(?:\x1b[\x20-\x2f]*[\x40-\x7e])+$", b"", data)


# A word as free text holds it: letters and digits, and U+FFFD, which a decoder writes for a byte it
# could not read (MÜLLER's Latin-1 bytes read as UTF-8 are M\ufffdLLER): it stands for a letter.
_HAY_WORD = re.compile(r"[\w\ufffd]+")


def other_readings(data: bytes) -> list[str]:
    """The plausible readings of non-ASCII text bytes besides the declared one, for text written in
    another character set than the data set declares: as UTF-8 where the bytes are valid UTF-8 (in a
    file declared Latin-1), otherwise as Latin-1 and as Windows-1252 (MÜLLER's Latin-1 bytes in a
    file declared UTF-8), in the single-byte code pages of other scripts where each word reads as one
    script (``_readings.single_byte_readings``: ВОРОБЬЁВА from cp1251 bytes), and text holding ISO 2022
    escapes as ISO 2022 (JIS and KS X 1001). Valid UTF-8 is not also read as Latin-1: that reading is mojibake, whose
    bytes C3 85 (Å) and C3 A0 (à) end in a space character (NEL, NBSP) and split a name into
    fragments such as RD, short names the byte gate then found by chance in waveform data."""
    if data.find(b"\x1b") >= 0:  # ISO 2022 escapes in a file that may not declare them
        return [data.decode(codec, "replace") for codec in ("iso2022_jp_2", "iso2022_kr")]
    try:
        return [data.decode("utf-8")]
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    for codec in ("latin-1", "cp1252"):
        with contextlib.suppress(UnicodeDecodeError):
            text = data.decode(codec)
            if text not in out:
                out.append(text)
    out += [text for _, text in legacy_readings(data) if text not in out]  # an undeclared CJK name
    # a Cyrillic, Greek, Arabic, Hebrew... name from a system writing its own code page
    out += [text for text in single_byte_readings(data) if text not in out]
    return out


def identity_spans(matcher: Matcher, text: str) -> list[tuple[int, int]]:
    """``matcher.spans(text)``, and the words of ``text`` that name an identifier in another way:
    one whose ASCII spellings (``ascii_spellings``: marks dropped, transliterated, Cyrillic and Greek
    in Latin letters) the matcher finds, as when the header holds NGUYEN or SCHAEFER and a report
    Nguyễn or Schäfer, or Иванов and Παπαδόπουλος; and one in which U+FFFD stands for letters of the
    identifier (M\ufffdLLER for MÜLLER, MULLER or MUELLER). Only such words are added, whole."""
    spans = matcher.spans(text)
    if text.isascii():
        return spans
    extra = [
        (m.start(), m.end())
        for m in _HAY_WORD.finditer(text)
        if not m.group().isascii() and _names_otherwise(matcher, m.group())
    ]
    extra += _read_otherwise(matcher, text)
    if not extra:
        return spans
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans + extra):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def readings(text: str) -> tuple[str, ...]:
    """``text`` as written and, where it differs, folded (``_readings.fold``: full width, decomposed
    Hangul and kana composed, marks some writers add dropped): the forms readers look for names in."""
    return (text, fold(text)[0]) if folds(text) else (text,)


class MatchKeys:
    """A pre-filter for the identifiers of many patients: ``may_match(text)`` is False only where none
    of them can be found in ``text`` by ``identity_spans`` (so ``clean_text`` and the gate can skip it).

    Sound by construction, not by likeness: each needle of each ``Matcher`` (substrings, whole words,
    numbers, single CJK names) is found in the text's lower case with separators dropped, so the first
    four characters of the needle (separators dropped too) stand there as a run; a date is looked for
    only where its ``DateNeedles.keys`` meet the text's digit runs, as ``Matcher.spans`` does. The
    text is looked at in every form ``identity_spans`` reads: as written, folded (``_readings.fold``:
    full width, decomposed Hangul, kana), and each non-ASCII word's ASCII spellings; text holding
    U+FFFD, or Latin-1 text where a CJK name could be read from its bytes, is always a candidate."""

    _KEY = 4

    def __init__(self, identities: Iterable[Identifiers] = ()) -> None:
        self.keys: set[str] = set()
        self.date_keys: set[str] = set()
        self.always = False
        self.cjk = False
        self._lengths: tuple[int, ...] = ()
        for ids in identities:
            self.add(ids)

    def add(self, ids: Identifiers) -> None:
        """Every needle of ``ids`` too."""
        keys, cjk = _needle_keys(ids.matcher()._frozen, self._KEY)
        self.keys |= keys
        self.always = self.always or "" in keys
        self.cjk = self.cjk or cjk
        for da in ids.dates:
            self.date_keys |= _date_needles(da).keys
        self._lengths = tuple(sorted(set(self._lengths).union(map(len, keys)) - {0}))

    def _hit(self, text: str) -> bool:
        low = _lowered(text)
        if self.date_keys and not self.date_keys.isdisjoint(digit_keys(key_runs_str(low))):
            return True
        norm = low.translate(_DROP_SEPS)
        keys = self.keys
        return any(norm[i : i + n] in keys for n in self._lengths for i in range(len(norm) - n + 1))

    def may_match(self, text: str) -> bool:
        if not text:
            return False
        if self.always or self._hit(text):
            return True
        if text.isascii():
            return False
        if "\ufffd" in text:
            return True
        if self.cjk and max(text) <= "\xff":  # a CJK name's legacy bytes read as Latin-1
            for m in _LATIN1_TOKEN.finditer(text):
                for _codec, reading in legacy_readings(m.group().encode("latin-1"), 1):
                    if self._hit(reading):
                        return True
        if folds(text) and self._hit(fold(text)[0]):
            return True
        return any(
            self._hit(spelled)
            for m in _HAY_WORD.finditer(text)
            if not m.group().isascii()
            for spelled in ascii_spellings(m.group())
        )


_DROP_SEPS = str.maketrans(dict.fromkeys(SEPARATORS + FORMAT_CHARS))  # as Matcher.spans drops them


@lru_cache(maxsize=8192)
def _needle_keys(frozen: tuple[frozenset[str], ...], width: int) -> tuple[frozenset[str], bool]:
    """(the first ``width`` characters of each needle, separators dropped; whether one is CJK)."""
    needles = list(itertools.chain(*frozen))
    keys = frozenset(n.translate(_DROP_SEPS)[:width] for n in needles)
    return keys, any(is_cjk(c) for n in needles if not n.isascii() for c in n)


_LATIN1_TOKEN = re.compile(r"[^\x00-\x20]*[\x80-\xff][^\x00-\x20]*")  # no multibyte character holds these


def _read_otherwise(matcher: Matcher, text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that name an identifier once folded (``_readings.fold``: ヤマダ for やまだ, ﾔﾏﾀﾞ,
    مُحَمَّد for محمد), or, in text read as Latin-1, whose bytes are Shift-JIS, Big5, GBK or EUC-KR text
    naming one (``_readings.legacy_readings``: a CJK name sent without its character set)."""
    out: list[tuple[int, int]] = []
    if folds(text):
        folded, at = fold(text)
        out += [unfold_span(text, at, a, b) for a, b in matcher.spans(folded)]
    if max(text) <= "\xff" and _has_cjk(matcher._frozen):
        for m in _LATIN1_TOKEN.finditer(text):
            for codec, reading in legacy_readings(m.group().encode("latin-1"), 1):
                offsets = legacy_offsets(codec, reading)
                out += [(m.start() + offsets[a], m.start() + offsets[b]) for a, b in matcher.spans(reading)]
    return out


@lru_cache(maxsize=1024)
def _has_cjk(frozen: tuple[frozenset[str], ...]) -> bool:
    return any(is_cjk(c) for values in frozen for v in values for c in v)


def _names_otherwise(matcher: Matcher, word: str) -> bool:
    """Whether a word with letters beyond ASCII names one of the matcher's identifiers as it would be
    written in ASCII, or with some of its letters unread (U+FFFD)."""
    if "\ufffd" in word and _replaced_names(matcher, word.lower()):
        return True
    return any(matcher.spans(spelled) for spelled in ascii_spellings(word))


def _replaced_names(matcher: Matcher, word: str) -> bool:
    """Whether ``word`` (lower case, holding U+FFFD) is one of the matcher's words or run-together
    forms with letters unread: each run of U+FFFD one or two letters (a character of two bytes read
    as two), the letters it kept more than those it lost."""
    kept = sum(c != "\ufffd" for c in word)
    if kept < 2 or kept <= word.count("\ufffd"):
        return False
    pieces = re.split("\ufffd+", word)
    runs = [len(r) for r in re.findall("\ufffd+", word)]
    pattern = re.compile(
        "".join(
            re.escape(p) + (f".{{1,{2 * runs[i]}}}" if i < len(runs) else "") for i, p in enumerate(pieces)
        )
    )
    return any(
        pattern.fullmatch(w)
        for w in (*matcher.words, *matcher.subs)
        if abs(len(w) - len(word)) <= 2 * len(runs) + 2
    )


def redact(value: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for a, b in spans:
        out.append(value[last:a])
        out.append(REDACTED)
        last = b
    out.append(value[last:])
    return "".join(out)


def clean_text(value: str, ids: Identifiers, *, generic: bool = True) -> str:
    """Remove the patient's own identifiers (always) and generic identifier shapes (when ``generic``)."""
    if not value:
        return value
    spans = identity_spans(ids.matcher(), value)
    if spans:
        value = redact(value, spans)
    if generic:
        value = _generic_cached(value) if len(value) <= _GENERIC_CACHED_LEN else _clean_generic(value)
    return value


def _clean_generic(text: str) -> str:
    """The generic identifier shapes removed from ``text`` (one value, or many joined by _BATCH_SEP)."""
    # most shapes need a digit (dates, SSN, street numbers, phones, ID tokens); substitutions only
    # remove characters, so text without one keeps having none and those are skipped
    digits = _ANY_DIGIT.search(text) is not None
    for i, pat in enumerate(GENERIC_PATTERNS):
        if (digits or i not in _DIGIT_SHAPES) and _may_match(i, text):
            text = _names_after(pat, text) if i in _NAME_SHAPES else pat.sub(REDACTED, text)
    if digits:
        text = _PHONE.sub(_DROP_PHONE, text)
        text = _TOKEN_5.sub(_DROP_TOKEN, text)
    return text


# Descriptors recur file after file (a series' description, a protocol name): the shapes, the cost
# of cleaning them, depend on the text alone, so short texts are cleaned once per process.
_GENERIC_CACHED_LEN = 256
_generic_cached = lru_cache(maxsize=4096)(_clean_generic)


# Between values cleaned together: no generic shape can match across it (a newline ends \S+, and no
# shape continues over a NUL), and each value meets it as it meets the start or end of text (\b and the
# look-arounds see a non-word character).
_BATCH_SEP = "\n\x00\n"


def clean_generic_many(values: list[str]) -> list[str]:
    """``clean_text(v, Identifiers(), generic=True)`` for every value, each shape run once over them all
    (the patterns are the cost; many short values cost as much as one long text)."""
    if len(values) < 8 or any("\x00" in v for v in values):
        empty = Identifiers()
        return [clean_text(v, empty, generic=True) for v in values]
    out = _clean_generic(_BATCH_SEP.join(values)).split(_BATCH_SEP)
    if len(out) != len(values):  # cannot happen with the shapes above; never guess
        empty = Identifiers()
        return [clean_text(v, empty, generic=True) for v in values]
    return out
