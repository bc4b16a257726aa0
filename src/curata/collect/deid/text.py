"""Free text: the patient's own identifiers and generic identifier patterns removed, clinical words kept."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "*"
_HONORIFICS = {"DR", "MR", "MRS", "MS", "MISS", "PROF", "MD", "PHD", "JR", "SR", "II", "III", "RN", "DDS"}
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_NAME = r"[A-Z][a-zA-Z'\-]+"

# Generic identifier shapes, applied to every cleaned descriptor whatever the header says.
GENERIC_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail
    re.compile(r"\b(?:https?://|www\.)\S+", re.I),  # URL
    re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"),  # 2021-03-04
    re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"),  # 04/03/2021, 4.3.21
    re.compile(r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"),  # 20210304
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{2,4}}\b", re.I),  # 4 March 2021
    re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b", re.I),  # March 4, 2021
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # SSN
    re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|Nurse|Sister)\.?\s+{_NAME}(?:\s+{_NAME})?"),  # titles
    re.compile(r"\b[A-Za-z'\-]+\^[A-Za-z'\-^ ]*"),  # DICOM person name syntax FAMILY^GIVEN
    re.compile(
        rf"\b(?:patient|pt|name|physician|referred by|signed by|dictated by|reported by|read by|"
        rf"seen by|by)\s*:?\s+{_NAME}(?:\s+{_NAME})?",
        re.I,
    ),
    re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|"
        r"Way|Court|Ct|Place|Pl|Square|Sq|Terrace|Strasse|Straße|Rue)\b\.?",
        re.I,
    ),
)


# Shapes that only count when they hold enough digits: phone numbers (>= 7), ID-like tokens (>= 5).
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[\s.\-/]?\(?\d{2,4}\)?){2,4}(?![\w.])")
_TOKEN = re.compile(r"(?<![\w.])[A-Za-z0-9][A-Za-z0-9\-_/]*(?![\w])")


def _drop_if_digits(minimum: int):  # type: ignore[no-untyped-def]
    def repl(m: re.Match[str]) -> str:
        text = m.group(0)
        return REDACTED if sum(ch.isdigit() for ch in text) >= minimum else text

    return repl


_DROP_PHONE = _drop_if_digits(7)
_DROP_TOKEN = _drop_if_digits(5)


def _date_forms(da: str) -> list[str]:
    """A YYYYMMDD date as the ways people write it in free text."""
    if len(da) != 8 or not da.isdigit():
        return [da]
    y, m, d = da[:4], da[4:6], da[6:]
    forms = {
        da,
        f"{y}-{m}-{d}",
        f"{y}/{m}/{d}",
        f"{y}.{m}.{d}",
        f"{d}/{m}/{y}",
        f"{m}/{d}/{y}",
        f"{d}.{m}.{y}",
        f"{d}-{m}-{y}",
        f"{m}-{d}-{y}",
    }
    return sorted(forms)


class Identifiers:
    """The identifying values found in one input: what free text must lose and what the gate looks for."""

    def __init__(self) -> None:
        self.words: set[str] = set()  # name parts, IDs, phones, address parts, institutions, staff
        # Two-letter name parts (Đỗ, Lê, Ng, Wu, Li: common family names where Curata is used). Always
        # removed from free text as stand-alone words; in the raw-byte gate only where their bytes are
        # not a plausible header value (ASCII pairs such as "LO" are also VR codes).
        self.short_names: set[str] = set()
        self.dates: set[str] = set()  # YYYYMMDD
        self.uids: set[str] = set()  # original UIDs that were remapped
        self._lower: list[str] | None = None

    def add_name(self, value: str) -> None:
        """A PN value: the whole name and each part of it (family, given, middle...)."""
        for group in value.split("="):
            whole = " ".join(p for p in group.replace("^", " ").split())
            if len(whole) >= 3:
                self.words.add(whole)
            for part in re.split(r"[\^\s,]+", group):
                part = part.strip(".")
                if part.upper() in _HONORIFICS:
                    continue
                if len(part) >= 3:
                    self.words.add(part)
                elif len(part) == 2 and part.isalpha():
                    self.short_names.add(part)
        self._lower = None

    def add_word(self, value: str, *, min_len: int = 3) -> None:
        """An ID, a phone number, an institution: the whole value, and for addresses, its parts."""
        value = value.strip()
        if len(value) >= min_len:
            self.words.add(value)
            for part in re.split(r"[\^,;\n\r]+", value):
                part = part.strip()
                if len(part) >= 5 and part != value:
                    self.words.add(part)
                # "70000 Quận Đống Đa": the district is written without its postal code elsewhere
                bare = re.sub(r"^\d[\w-]*\s+|\s+\d[\w-]*$", "", part).strip()
                if len(bare) >= 5 and bare != part:
                    self.words.add(bare)
        self._lower = None

    def add_date(self, value: str) -> None:
        value = value.strip()[:8]
        if len(value) == 8 and value.isdigit():
            self.dates.add(value)
            self._lower = None

    def add_uid(self, value: str) -> None:
        if len(value) >= 8:  # shorter "UIDs" are malformed values, not identifiers worth a byte scan
            self.uids.add(value)

    def found_in(self, low: str) -> list[str]:
        """The identifiers (lower case, longest first) that occur in the lower-cased ``low``."""
        if self._lower is None:
            self._lower = sorted(
                {w.lower() for w in self.words | self.short_names}
                | {f.lower() for d in self.dates for f in _date_forms(d)},
                key=len,
                reverse=True,
            )
        return [w for w in self._lower if w in low]

    def gate_needles(self, encodings: Iterable[str] = ()) -> list[tuple[bytes, str]]:
        """(lower-cased bytes, kind) for the raw-output scan: every value in every encoding it can take.

        kind is ``word`` (must stand alone), ``date`` (may run on into a time) or ``uid``.
        """
        codecs = ["utf-8", "latin-1", "utf-16-le", *encodings]
        out: dict[bytes, str] = {}
        for kind, texts in (("word", self.words), ("date", {f for d in self.dates for f in _date_forms(d)})):
            for t in texts:
                for variant in {t, t.upper(), t.lower(), t.title()}:  # bytes.lower() folds ASCII only
                    for codec in codecs:
                        try:
                            out.setdefault(variant.encode(codec).lower(), kind)
                        except (UnicodeEncodeError, LookupError):
                            continue
        for t in self.short_names:
            for variant in {t, t.upper(), t.lower(), t.title()}:
                for codec in codecs:
                    try:
                        raw = variant.encode(codec).lower()
                    except (UnicodeEncodeError, LookupError):
                        continue
                    if len(raw) >= 3 and not raw.isascii():
                        out.setdefault(raw, "word")
        for u in self.uids:
            out[u.encode("ascii", "ignore")] = "uid"
        return sorted(out.items(), key=lambda item: -len(item[0]))


def _redact_words(value: str, low: str, found: list[str]) -> str:
    """Replace each stand-alone occurrence of the ``found`` words (case-insensitive) with REDACTED."""
    if len(low) != len(value):  # case mapping changed the length: let the regex engine handle it
        body = "|".join(re.escape(w) for w in found)
        return re.sub(rf"(?<![A-Za-z0-9])(?:{body})(?![A-Za-z0-9])", REDACTED, value, flags=re.I)
    spans: list[tuple[int, int]] = []
    for w in found:
        pos = low.find(w)
        while pos >= 0:
            end = pos + len(w)
            alone = (pos == 0 or not low[pos - 1].isalnum()) and (end == len(low) or not low[end].isalnum())
            if alone and not any(a < end and pos < b for a, b in spans):
                spans.append((pos, end))
            pos = low.find(w, pos + 1)
    if not spans:
        return value
    out, last = [], 0
    for a, b in sorted(spans):
        out.append(value[last:a])
        out.append(REDACTED)
        last = b
    out.append(value[last:])
    return "".join(out)


def clean_text(value: str, ids: Identifiers, *, generic: bool = True) -> str:
    """Remove the patient's own identifiers (always) and generic identifier shapes (when ``generic``)."""
    if not value:
        return value
    low = value.lower()
    found = ids.found_in(low)
    if found:
        value = _redact_words(value, low, found)
    if generic:
        for pat in GENERIC_PATTERNS:
            value = pat.sub(REDACTED, value)
        value = _PHONE.sub(_DROP_PHONE, value)
        value = _TOKEN.sub(_DROP_TOKEN, value)
    return value
