"""Cyrillic and Greek names as Latin-script systems write them: the tables of the common schemes.

ИВАНОВ^ЮЛИЯ is IVANOV^IULIIA in a passport (ICAO 9303), Ivanov^Yuliya in BGN/PCGN, IVANOV^JULIJA in
the scientific system, IVANOV^ULA in ISO 9 with its marks dropped; ЩЕРЕВ is SHTEREV in Bulgarian; ΠΑΠΑΔΟΠΟΥΛΟΣ^ΕΥΑΓΓΕΛΟΣ is
PAPADOPOULOS^EVAGGELOS in a Greek passport (ELOT 743), PAPADOPOULOS^EVANGELOS as it is said, and
PAPADOPOYLOS^EYAGGELOS in ISO 843. Each scheme is a table: a key is one or two lower-case letters
(two-letter keys win), ``#`` before it means at the start of a word only, and a value ``a|b`` is
written ``a`` before a voiced sound and ``b`` before a voiceless one or at the end of the word (Greek
αυ, ευ, ηυ). Only ``text.ascii_spellings`` uses this module.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_Scheme = dict[str, str]

_CYRILLIC: _Scheme = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "з": "z", "и": "i", "к": "k", "л": "l",
    "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "ы": "y",
    "э": "e", "і": "i", "ґ": "g", "ў": "u", "ј": "j", "љ": "lj", "њ": "nj", "џ": "dz", "ђ": "dj",
    "ћ": "c", "ѓ": "g", "ќ": "k", "ѕ": "dz",
}  # fmt: skip

CYRILLIC_SCHEMES: tuple[_Scheme, ...] = (
    # ICAO 9303 (passports: Russia since 2013, Ukraine, Belarus...)
    _CYRILLIC | {
        "ё": "e", "ж": "zh", "й": "i", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "ie",
        "ь": "", "ю": "iu", "я": "ia", "є": "ie", "ї": "i",
    },
    # BGN/PCGN, and the English-speaking habit (Yuliya, Sergey, Yolka)
    _CYRILLIC | {
        "ё": "yo", "ж": "zh", "й": "y", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "",
        "ь": "", "ю": "yu", "я": "ya", "є": "ye", "ї": "yi",
    },
    # ISO 9 without its marks (Ž, Č, Š, Ŝ, Û, Â written Z, C, S, S, U, A)
    _CYRILLIC | {
        "ё": "e", "ж": "z", "й": "j", "х": "h", "ц": "c", "ч": "c", "ш": "s", "щ": "s", "ъ": "", "ь": "",
        "ю": "u", "я": "a", "є": "e", "ї": "i",
    },
    # the scientific system (libraries, German and Slavic texts): Chruščëva, Jurij, Natal'ja
    _CYRILLIC | {
        "ё": "e", "ж": "z", "й": "j", "х": "ch", "ц": "c", "ч": "c", "ш": "s", "щ": "sc", "ъ": "",
        "ь": "'", "ю": "ju", "я": "ja", "є": "je", "ї": "ji",
    },
    # Bulgaria's Streamlined System (2009): Щ as SHT, Ъ as A, Х as H (Shterev, Hristo, Agalov)
    _CYRILLIC | {
        "ж": "zh", "й": "y", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sht", "ъ": "a", "ь": "y",
        "ю": "yu", "я": "ya", "ё": "yo", "є": "ye", "ї": "yi",
    },
    # Ukraine's national system (2010): Г as H, И as Y; Є, Ї, Й, Ю, Я begin a word as Ye, Yi, Y, Yu, Ya
    _CYRILLIC | {
        "г": "h", "и": "y", "ё": "io", "ж": "zh", "й": "i", "#й": "y", "х": "kh", "ц": "ts", "ч": "ch",
        "ш": "sh", "щ": "shch", "ъ": "", "ь": "", "ю": "iu", "#ю": "yu", "я": "ia", "#я": "ya", "є": "ie",
        "#є": "ye", "ї": "i", "#ї": "yi",
    },
)  # fmt: skip

_GREEK: _Scheme = {
    "α": "a", "β": "v", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th", "ι": "i", "κ": "k",
    "λ": "l", "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p", "ρ": "r", "σ": "s", "ς": "s", "τ": "t",
    "υ": "y", "φ": "f", "χ": "ch", "ψ": "ps", "ω": "o", "ου": "ou",
}  # fmt: skip
_GREEK_U = {"αυ": "av|af", "ευ": "ev|ef", "ηυ": "iv|if"}

GREEK_SCHEMES: tuple[_Scheme, ...] = (
    # ELOT 743 as Greek passports write it: MPAKOGIANNIS, EVAGGELOS, EFSTATHIOS
    _GREEK | _GREEK_U,
    # ISO 843 without its marks: letter for letter (EYAGGELOS, MPALTAS)
    _GREEK,
    # as the name is said (ELOT 743's transcription and common use): BAKOGIANNIS, EVANGELOS, HRISTOS,
    # EFTHIMIOS, DOKOS
    _GREEK | _GREEK_U | {
        "χ": "h", "υ": "i", "ει": "i", "οι": "i", "υι": "i", "αι": "e", "γγ": "ng", "γκ": "ng", "#γκ": "g",
        "γξ": "nx", "γχ": "nch", "μπ": "mb", "#μπ": "b", "ντ": "nt", "#ντ": "d",
    },
)  # fmt: skip

_VOICELESS = frozenset("θκξπσςτφχψ")
_DIAERESIS = "\u0308"  # ϊ, ϋ: the letter is said on its own, so it ends no digraph (Αϋπνία)
_APART = "\x01"


def _has_script(value: str) -> tuple[bool, bool]:
    """(holds Cyrillic, holds Greek)."""
    cyrillic = any("\u0400" <= c <= "\u04ff" for c in value)
    greek = any("\u0370" <= c <= "\u03ff" or "\u1f00" <= c <= "\u1fff" for c in value)
    return cyrillic, greek


def _prepared(value: str) -> str:
    """Lower case, Greek accents dropped and a diaeresis kept as a mark that no digraph spans."""
    out = []
    for ch in value.lower():
        if "\u0370" <= ch <= "\u03ff" or "\u1f00" <= ch <= "\u1fff":
            for c in unicodedata.normalize("NFD", ch):
                if c == _DIAERESIS:
                    out.append(_APART)
                elif not unicodedata.combining(c):
                    out.append(c)
        else:
            out.append(ch)  # Cyrillic й and ё are letters of their own in the tables
    return "".join(out)


def _letter(c: str) -> bool:
    return c.isalpha()


def _write(scheme: _Scheme, text: str) -> str:
    out = []
    i, n = 0, len(text)
    while i < n:
        start = i == 0 or not _letter(text[i - 1])
        for size in (2, 1):
            key = text[i : i + size]
            if len(key) < size or (size == 2 and i + 2 < n and text[i + 2] == _APART):
                continue
            value = scheme.get("#" + key) if start else None
            if value is None:
                value = scheme.get(key)
            if value is None:
                continue
            if "|" in value:
                voiced, voiceless = value.split("|")
                after = text[i + size] if i + size < n else ""
                value = voiceless if not after or not _letter(after) or after in _VOICELESS else voiced
            out.append(value)
            i += size
            break
        else:
            if text[i] != _APART:
                out.append(text[i])
            i += 1
    return "".join(out)


@lru_cache(maxsize=8192)
def latin_spellings(value: str) -> tuple[str, ...]:
    """``value`` (a name, an address) with its Cyrillic and Greek letters written in Latin ones, once
    per scheme (distinct spellings only); empty when it holds neither script."""
    cyrillic, greek = _has_script(value)
    schemes = (CYRILLIC_SCHEMES if cyrillic else ()) + (GREEK_SCHEMES if greek else ())
    if not schemes:
        return ()
    text = _prepared(value)
    out: list[str] = []
    for scheme in schemes:
        spelled = _write(scheme, text)
        if spelled not in out:
            out.append(spelled)
    return tuple(out)
