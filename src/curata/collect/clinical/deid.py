"""De-identification of clinical values with the site's key: the same pseudonyms and shifts as DICOM.

A patient's key is built exactly as the DICOM engine builds it (``id:<issuer>|<patient id>``), so the
pseudonym of a clinical row equals the one in the patient's images and the date shift is the same
(intervals between a diagnosis and a CT are kept exactly). Free text goes through the DICOM engine's
cleaner; the final gate refuses any output value in which one of the patient's own identifiers survives.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from curata.collect.deid.calendars import other_calendar_forms
from curata.collect.deid.pseudonyms import DEFAULT_PREFIX, Pseudonymizer
from curata.collect.deid.text import (
    REDACTED,
    Identifiers,
    clean_generic_many,
    clean_text,
    find_identifier,
    is_cjk,
    normalise,
    readings,
    redact,
)

AGE_CAP = 89  # ages above this read as 90 (HIPAA Safe Harbor; the DICOM engine caps the same way)


def patient_key(patient_id: str, issuer: str = "") -> str:
    """The key the DICOM engine derives a patient's pseudonym and shift from (``engine._patient``)."""
    return f"id:{issuer.strip()}|{patient_id.strip()}"


@dataclass
class PatientIdentity:
    """What one patient's rows need: the pseudonym, the shift, and the identifiers to clean and gate."""

    pseudonym: str
    shift_days: int
    ids: Identifiers = field(default_factory=Identifiers)
    # ``identifying_numbers(ids)`` and the sizes of the sets it was read from (they only grow)
    _numbers: tuple[tuple[int, int], frozenset[float]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def numbers(self) -> frozenset[float]:
        """The patient's identifiers that a value read as a number can be (``identifying_numbers``),
        made again only when identifiers were added since (a specimen ID learnt from a row)."""
        size = (len(self.ids.words), len(self.ids.dates))
        if self._numbers is None or self._numbers[0] != size:
            self._numbers = (size, identifying_numbers(self.ids))
        return self._numbers[1]

    def is_identifying(self, value: float | None) -> bool:
        """Whether ``value`` (an output number) is one of the patient's own identifiers."""
        return is_identifying_number(value, self.numbers())


_WORD_RE = re.compile(r"\w+")


class OtherPatients:
    """Every patient of one input, for free text that names ANOTHER patient of it ("seen with Tunde
    Bakare", "as MRN-55102"): a row is cleaned of its own patient's identifiers by the matcher and gated
    for them; this finds the others' in it, so they are cleaned too.

    Found in a text: another patient's ID, phone or other value holding digits (5+ characters, with any
    separators: ``MRN 55102`` as ``MRN-55102``), a multi-part value (a full name in either order, an
    address), a single name part of 4+ letters where the text writes it capitalised (``Tunde
    reports``; ``white matter`` is not a patient named White), and a Han or Hangul name or the family
    name of one written as one run with an honorific (``王女士``, ``김 씨``). Shorter parts and dates are
    left to the row's own patient (they collide with ordinary words and other patients' shifted dates)."""

    def __init__(self, identities: Iterable[PatientIdentity]) -> None:
        self.joined: dict[str, str] = {}  # normalised value -> value (IDs, multi-part values)
        self.parts: dict[str, str] = {}  # lower-cased name part -> value
        self.cjk: dict[str, str] = {}  # a Han, kana or Hangul name (part) of 2 characters or more -> value
        self.titled: set[str] = set()  # a one-run name's family name with an honorific (王女士, 김 씨)
        for who in identities:
            self.titled.update(w for w in who.ids.cjk_names if len(w) > 1)
            for w in who.ids.words:
                n = normalise(w)
                id_like = len(n) >= 5 and any(map(str.isdigit, n))
                if id_like or (len(n) >= 6 and len(_WORD_RE.findall(w)) > 1):
                    self.joined[n] = w
                elif w.isalpha() and len(w) >= 2 and all(map(is_cjk, w)):
                    self.cjk[w] = w  # no capitals, and no spaces between words: looked for anywhere
                elif w.isalpha() and len(w) >= 4:
                    self.parts[w.lower()] = w
        self._found: dict[str, Identifiers | None] = {}

    def found_in(self, text: str) -> Identifiers | None:
        """The other patients' identifiers standing in ``text`` (None: none), as written or folded (full
        width, decomposed Hangul, kana: ``readings``)."""
        if text in self._found:
            return self._found[text]
        words: set[str] = set()
        titled: set[str] = set()
        for form in readings(text):
            tokens = _WORD_RE.findall(form)
            for i, tok in enumerate(tokens):
                if tok[:1].isupper() and (hit := self.parts.get(tok.lower())) is not None:
                    words.add(hit)
                for k in (1, 2, 3, 4):
                    if i + k > len(tokens):
                        break
                    hit = self.joined.get(normalise("".join(tokens[i : i + k])))
                    if hit is not None:
                        words.add(hit)
            if self.cjk and not form.isascii():
                words.update(v for k, v in self.cjk.items() if k in form)
            if self.titled and not form.isascii():
                titled.update(t for t in self.titled if t in form)
        got = None
        if words or titled:
            got = Identifiers()
            got.words |= words
            got.cjk_names |= (
                titled  # matched as the patient's own are (before a particle, for kana and Hangul)
            )
        if len(self._found) < 200_000:
            self._found[text] = got
        return got

    def clean(self, text: str | None) -> str | None:
        """``text`` cleaned of the other patients' identifiers it names (see the class)."""
        if not text:
            return text
        ids = self.found_in(text)
        return text if ids is None else clean(text, ids, generic=False)


# Words before a name that make it one (Dr Pottinger, nurse Dunsworth): with them a single name part
# of the site's people is found; without, only a person's name in full is.
_TITLES = frozenset(
    {"dr", "doctor", "prof", "professor", "mr", "mrs", "ms", "miss", "mx", "nurse", "sister", "rn", "np"}
)
_NAME_SPLIT = re.compile(r"[\^,]+|\s+")
_HONORIFIC_PARTS = frozenset({"dr", "mr", "mrs", "ms", "miss", "prof", "md", "phd", "jr", "sr", "rn", "dds"})


# Where a text writes a space otherwise: ``_`` (file names, VCF INFO text) and ``%20`` (URLs), and a
# capital after a small letter (``DrDanjuma``); ``_separated`` gives a view of the same length, so the
# words found in it stand at the same places in the text
_SITE_TOKEN = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _separated(text: str) -> str:
    return text.replace("%20", "   ") if "%20" in text else text


class SiteNames:
    """The site's people other than patients (physicians, operators, practitioners, related persons) and
    its institutions, as every clinical text of the site is cleaned of them (``deid.identities``).

    Found in a text, case aside: a person's name in full (given and family names in either order, as
    written: ``Evander Pottinger``, ``Pottinger Evander``, ``Dunsworth-Yarrow``), one part of it of 3
    letters or more after a title (``Dr Pottinger``, ``nurse Philippa``), and an institution's name
    whole (two words or more). Then every part of 4 letters or more of a person found stands for them
    in the rest of that text. A part alone is not looked for: ``Will`` and ``Ward`` are staff names and
    words of every note (``Will repeat on Ward 5``). Words are cut where files and URLs write a space
    (``Dr_Musa_Danjuma``, ``Dr%20Musa%20Danjuma``) and where a capital follows a small letter in one run
    (``DrDanjuma``, ``MusaDanjuma``): a name so written is found as the spaced one is."""

    def __init__(self, people: Iterable[str] = (), institutions: Iterable[str] = ()) -> None:
        self.people, self.institutions = sorted(set(people)), sorted(set(institutions))
        people, institutions = self.people, self.institutions
        self.whole: dict[str, tuple[str, ...]] = {}  # normalised form -> the parts of the person it is
        self.titled: dict[str, tuple[str, ...]] = {}  # normalised part -> the person's parts
        for value in people:
            parts = tuple(
                p
                for p in _NAME_SPLIT.split(value)
                if p.strip(".") and p.lower().strip(".") not in _HONORIFIC_PARTS
            )
            if not parts:
                continue
            for part in parts:
                if len(normalise(part)) >= 3:
                    self.titled.setdefault(normalise(part), parts)
            if len(parts) >= 2:
                for form in (parts, parts[1:] + parts[:1], tuple(reversed(parts))):
                    key = normalise("".join(form))
                    if len(key) >= 6:
                        self.whole.setdefault(key, parts)
        for value in institutions:
            words = _WORD_RE.findall(value)
            key = normalise("".join(words))
            if len(words) >= 2 and len(key) >= 8:
                self.whole.setdefault(key, ())
        # every beginning of a whole form: a window of tokens grows only while it is one
        self._prefixes = {k[:i] for k in self.whole for i in range(1, len(k) + 1)}
        self._found: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self.whole or self.titled)

    def clean(self, text: str | None) -> str | None:
        """``text`` with the site's names in it redacted (None when nothing else is left)."""
        if not text or not self:
            return text
        if text in self._found:
            return self._found[text]
        view = _separated(text)
        words = [(m.start(), m.end()) for m in _SITE_TOKEN.finditer(view)]
        spans: list[tuple[int, int]] = []
        people: set[str] = set()
        pieces = _camel_pieces(view, words) if _CAMEL.search(view) else words
        for tokens in (words, pieces) if pieces != words else (words,):
            self._find(view, tokens, spans, people)
        if people:
            spans += [
                (a, b) for tokens in (words, pieces) for a, b in tokens if normalise(view[a:b]) in people
            ]
        out: str | None = text
        if spans:
            merged: list[tuple[int, int]] = []
            for a, b in sorted(spans):
                if merged and a <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
                else:
                    merged.append((a, b))
            out = _kept(redact(text, merged))
        if len(self._found) < 200_000:
            self._found[text] = out
        return out

    def _find(
        self, view: str, tokens: list[tuple[int, int]], spans: list[tuple[int, int]], people: set[str]
    ) -> None:
        """The site's names among ``tokens`` (spans of ``view``): added to ``spans``, and the parts of
        the people found to ``people``."""
        norms = [normalise(view[a:b]) for a, b in tokens]
        for i, first in enumerate(norms):
            acc = ""
            for j in range(i, len(norms)):
                acc += norms[j]
                if acc not in self._prefixes:
                    break
                parts = self.whole.get(acc)
                if parts is not None:
                    spans.append((tokens[i][0], tokens[j][1]))
                    people.update(normalise(p) for p in parts if len(normalise(p)) >= 4)
            if first in _TITLES and i + 1 < len(norms) and norms[i + 1] in self.titled:
                spans.append(tokens[i + 1])
                people.update(normalise(p) for p in self.titled[norms[i + 1]] if len(normalise(p)) >= 4)

    def in_word(self, word: str) -> bool:
        """Whether ``word`` (a key a file declares: ``MusaDanjuma``, ``Dr_Danjuma``, ``drdanjuma``) holds
        one of the site's names: as text is cleaned of them, or squeezed into one word (a person's name
        in full or an institution's anywhere in it; a title and a part of a name as the whole word)."""
        if not self or not word:
            return False
        if self.clean(word) != word:
            return True
        norm = normalise(_separated(word))
        if any(k in norm for k in self.whole if len(k) >= 6):
            return True
        return any(norm.startswith(t) and norm[len(t) :] in self.titled for t in _TITLES)


def _camel_pieces(view: str, words: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``words`` cut where a capital follows a small letter (``DrDanjuma``: ``Dr``, ``Danjuma``)."""
    out: list[tuple[int, int]] = []
    for a, b in words:
        cuts = [c for c in (m.start() for m in _CAMEL.finditer(view, a, b)) if a < c < b]
        for x, y in zip([a, *cuts], [*cuts, b], strict=True):
            out.append((x, y))
    return out


class KnownIdentities(Protocol):
    """What the site knows (``deid.identities.SiteIdentities``): a patient's identifiers by patient ID."""

    def get(self, patient_id: str) -> Identifiers | None: ...


class ClinicalDeidentifier:
    """Keyed pseudonyms, shifts, text cleaning and the gate for clinical and genomic inputs of one site."""

    def __init__(
        self,
        key: bytes,
        *,
        issuer: str = "",
        known: KnownIdentities | None = None,
        site: SiteNames | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        # ``prefix``: the site's ``pseudonym_prefix`` (its DICOM profile's), so that a patient's
        # clinical rows, variants and slides carry the pseudonym of its images
        self.pseudo = Pseudonymizer(key, prefix=prefix)
        self.issuer = issuer
        self._patients: dict[str, PatientIdentity] = {}
        # what the site knows of its patients from its other inputs (their images, other tables), and
        # its people and institutions: every text is cleaned of them too
        self.known = known
        self.people: set[str] = set()  # the site's people and institutions this input names
        self.institutions: set[str] = set()
        self._base_site = site if site is not None else SiteNames()
        self._site: SiteNames | None = self._base_site

    @property
    def site(self) -> SiteNames:
        """The site's people and institutions (``site``), and those this input names, to clean away."""
        if self._site is None:
            base = self._base_site
            self._site = SiteNames([*base.people, *self.people], [*base.institutions, *self.institutions])
        return self._site

    def patient(self, patient_id: str) -> PatientIdentity:
        pid = patient_id.strip()
        found = self._patients.get(pid)
        if found is None:
            key = patient_key(pid, self.issuer)
            found = PatientIdentity(self.pseudo.patient(key), self.pseudo.date_shift(key))
            found.ids.add_word(pid, min_len=2)
            other = self.known.get(pid) if self.known is not None else None
            if other is not None:
                found.ids.update(other)
            self._patients[pid] = found
        return found

    def learn_site(self, people: Iterable[str] = (), institutions: Iterable[str] = ()) -> None:
        """Names of the site's people and institutions this input names: its texts are cleaned of them."""
        people = {p.strip() for p in people if p.strip()} - self.people
        institutions = {i.strip() for i in institutions if i.strip()} - self.institutions
        if people or institutions:
            self.people |= people
            self.institutions |= institutions
            self._site = None

    def source_id(self, kind: str, value: str) -> str:
        """A keyed pseudonym for a specimen, slide or sample identifier (same input, same output)."""
        return f"{kind.upper()}-" + self.pseudo.patient(f"{kind}:{value.strip()}").removeprefix(
            self.pseudo.prefix
        )


ID_DIGITS = 6  # an identifier read as a number has this many digits or more (a year, a ward, 70 kg do not)
_DIGITS = re.compile(r"[0-9]+")
_LETTER = re.compile(r"[^\W\d_]")


def identifying_numbers(ids: Identifiers) -> frozenset[float]:
    """The patient's identifiers as the numbers a value column holds when a system reads them as one:
    an ID, MRN or phone of digits (``MRN-4417702``: 4417702; ``+1 555-867-5309``: 15558675309, and
    5558675309 and 8675309 without the leading groups, as local systems write a phone), any run of 6
    digits or more in another identifier, and the birth date as the numbers people write it (19610203,
    3021961, 2031961, 610203: year, day or month first, four- or two-digit year; and in other calendars,
    25040203, 13391114, 1961034, 0500203: ``deid.calendars``). Only numbers of 6
    digits or more (``ID_DIGITS``, leading zeros dropped): a measurement of 70 or 5.5 is never taken
    for an identifier. The text cleaner finds these values in text; a number never reaches it."""
    out: set[int] = set()

    def add(digits: str) -> None:
        bare = digits.lstrip("0")
        if len(bare) >= ID_DIGITS:
            out.add(int(bare))

    for word in ids.words:
        groups = _DIGITS.findall(word)
        for run in groups:
            add(run)
        if groups and not _LETTER.search(word):  # digits and separators alone: a phone, an ID, a date
            for k in range(len(groups) - 1):
                add("".join(groups[k:]))
    for da in ids.dates:
        if len(da) == 8 and da.isdigit():
            y, m, d = da[:4], da[4:6], da[6:]
            for form in (y + m + d, d + m + y, m + d + y, y[2:] + m + d, d + m + y[2:], m + d + y[2:]):
                add(form)
            try:  # and in other calendars, digits alone: 25040203 (Thai), 13391114, 1961034, 0500203
                day = dt.date(int(y), int(m), int(d))
            except ValueError:
                continue
            for form in other_calendar_forms(day):
                if form.isdigit():
                    add(form)
    return frozenset(out)


def is_identifying_number(value: float | None, numbers: frozenset[float]) -> bool:
    """Whether ``value`` is one of ``numbers`` (its sign dropped: -4417702 is the MRN too)."""
    if value is None or not numbers or isinstance(value, bool):
        return False
    try:
        f = abs(float(value))
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f in numbers


def shift(day: dt.date | dt.datetime | None, days: int) -> dt.date | dt.datetime | None:
    return None if day is None else day + dt.timedelta(days=days)


def cap_age(years: float | None) -> float | None:
    if years is None:
        return None
    return float(AGE_CAP + 1) if years > AGE_CAP else years


def clean(value: str | None, ids: Identifiers, *, generic: bool = True) -> str | None:
    """The DICOM engine's free-text cleaner; a value left as nothing but redaction marks becomes None."""
    if value is None:
        return None
    return _kept(clean_text(value, ids, generic=generic))


def _kept(out: str) -> str | None:
    out = out.strip()
    return None if not out.replace(REDACTED, "").strip(" ,;.-") else out


def clean_generic(values: list[str]) -> list[str | None]:
    """``clean(v, Identifiers())`` (generic shapes only) for many values at once."""
    return [_kept(v) for v in clean_generic_many(values)]


def survivors(value: str, ids: Identifiers) -> bool:
    """The gate: True when one of the patient's own identifiers stands in ``value``."""
    return bool(value) and clean_text(value, ids, generic=False) != value


def byte_gate(data: bytes, ids: Identifiers) -> str | None:
    """Scan raw output bytes for the patient's identifiers with the DICOM gate's rules: long values as
    substrings with separators removed (``MRN-77123`` is found as ``mrn 77123`` and ``MRN77123``), short
    ones, dates and UIDs where they stand alone. The kind found, else None."""
    return find_identifier(data, ids.gate_needles())
