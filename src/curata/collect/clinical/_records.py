"""Building OMOP rows from one input: validate, shift, clean, gate. Shared by the CSV and FHIR readers."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import math
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from curata.collect.clinical._codes import (
    code_refusal,
    kept_system,
    normal_stage,
    stage_group,
    system_name,
    valid_code,
    valid_stage,
)
from curata.collect.clinical.deid import (
    AGE_CAP,
    ClinicalDeidentifier,
    OtherPatients,
    PatientIdentity,
    cap_age,
    clean,
    shift,
    survivors,
)
from curata.collect.deid.text import Identifiers, MatchKeys, legacy_readings, other_script_readings
from curata.errors import InputError

_NO_IDS = Identifiers()
# a specimen's code is checked against the system its mapping names, like any code; it then travels
# without it (OMOP's specimen and the wire keep none), so it must also have a shape that needs none
# (``_codes._unsystematic_code``: FFPE, LUNG-BX, a SNOMED CT identifier), as the platform checks it
SPECIMEN_CODE = "code: a specimen's code is stored without its system, and this one is no code without it"


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while an input is de-identified and filed: that work allocates
    hundreds of thousands of small objects that live until it ends and hold no cycles, and each automatic
    collection walks them (and every module's objects) again: 10% of a million-row export's time.
    Restored on the way out; nested uses leave it to the outermost."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class RowError(Exception):
    """One row (or resource) is refused; the message names the field, never the value."""


@dataclass
class PersonFacts:
    pseudonym: str
    sex: str | None = None
    year_of_birth: int | None = None
    birth: dt.date | None = None  # shifted; used for the age cap, never stored whole
    age_capped: bool = False


@dataclass
class ClinicalBatch:
    """The de-identified rows of one input, ready for the catalog, and what was refused."""

    kind: str
    input_digest: str
    persons: dict[str, PersonFacts] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (line or row number, reason)
    rows: int = 0
    # patient ID -> identity, in memory only: lets a VCF of the same run be cleaned of the names it holds
    identities: dict[str, Any] = field(default_factory=dict, repr=False)
    # the site's people (staff, related persons) and institutions the input names, in memory only: sealed
    # on site (deid.identities) so that every other input of the site is cleaned of them
    people: set[str] = field(default_factory=set, repr=False)
    institutions: set[str] = field(default_factory=set, repr=False)
    # more rows as column frames ({column: numpy array}, one per OMOP table), from the column-wise reader
    frames: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def output_bytes(self) -> bytes:
        """The de-identified content as JSON lines (what the store keeps and the byte gate scans)."""
        out = []
        for p in self.persons.values():
            out.append(
                {
                    "table": "person",
                    "pseudonym": p.pseudonym,
                    "sex": p.sex,
                    "year_of_birth": p.year_of_birth,
                    "age_capped": p.age_capped,
                }
            )
        for table, rows in self.events.items():
            for r in rows:
                out.append({"table": table, **{k: v for k, v in r.items() if v is not None}})
        data = "\n".join(json.dumps(o, default=str, ensure_ascii=False, sort_keys=True) for o in out).encode()
        if not self.frames:
            return data
        import pyarrow as pa
        import pyarrow.csv as pacsv

        parts = [data]
        for table, frame in self.frames.items():  # one CSV section per table: written by pyarrow, in C
            sink = pa.BufferOutputStream()
            pacsv.write_csv(pa.table(frame), sink)
            parts.append(f"\n#table={table}\n".encode() + sink.getvalue().to_pybytes())
        return b"".join(parts)


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def as_utf8(raw: bytes) -> bytes:
    """A text export (CSV, FHIR JSON) as UTF-8 (``raw`` itself when it is UTF-8): UTF-16 by its byte-order mark; else
    each line that is not UTF-8 read as Windows-1252 (Latin-1 for the bytes it leaves undefined), as the
    hospital systems that write them do. Read as UTF-8 with replacement characters, MÜLLER's ü and
    Gonçalves' ç became U+FFFD: accented text lost its letters, and names were matched in pieces."""
    if raw.startswith(_UTF16_BOMS):
        return raw.decode("utf-16", errors="replace").encode("utf-8")
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        pass
    lines = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            _refuse_other_scripts(line, n)
            try:
                line = line.decode("cp1252").encode("utf-8")
            except UnicodeDecodeError:
                line = line.decode("latin-1").encode("utf-8")
        lines.append(line)
    return b"\n".join(lines)


def _latin_letters(word: str) -> bool:
    """Every character beyond ASCII a Latin letter (what a Windows-1252 word of a name or note holds)."""
    return all(c.isascii() or (c.isalpha() and unicodedata.name(c, "").startswith("LATIN")) for c in word)


def _refuse_other_scripts(line: bytes, n: int) -> None:
    """A line that is not UTF-8 and reads as text of another script in its code page (Cyrillic in
    cp1251, Japanese in Shift-JIS...) cannot be read as Windows-1252: a name written so would be
    stored as mojibake that the cleaner never recognises (Чернова as ×åðíîâà). The export is refused
    with the line and the code pages it may be in; saved as UTF-8, it is read."""
    # words beyond ASCII that do not read as Latin letters in Windows-1252 (×åðíîâà, ŽR“c‘¾˜Y): Ölçü,
    # Müller and Gonçalves do, however else they could read
    cells = [
        c
        for c in line.replace(b";", b" ").replace(b",", b" ").split()
        if not c.isascii() and not _latin_letters(c.decode("cp1252", "replace"))
    ]
    codecs = sorted(
        {codec for cell in cells for codec, _ in legacy_readings(cell)}
        | {"a single-byte code page of another script" for cell in cells if other_script_readings(cell)}
    )
    if codecs:
        raise InputError(
            f"line {n} is not UTF-8 and may be text in {', '.join(codecs)}, not Windows-1252",
            hint="save the export as UTF-8 and ingest it again",
        )


_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M")


def parse_date(text: str, fmt: str | None = None) -> dt.date | dt.datetime:
    text = text.strip()
    if fmt:
        return dt.datetime.strptime(text, fmt)
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for f in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, f)
        except ValueError:
            continue
    if len(text) == 7 and text[4] == "-":  # FHIR partial date YYYY-MM
        return dt.datetime.strptime(text + "-01", "%Y-%m-%d")
    if len(text) == 4 and text.isdigit():
        return dt.datetime(int(text), 1, 1)
    raise ValueError("not a date")


class RecordBuilder:
    """Turns mapped values into de-identified OMOP rows for one input."""

    def __init__(
        self,
        deid: ClinicalDeidentifier,
        batch: ClinicalBatch,
        date_format: str | None = None,
        local_systems: frozenset[str] = frozenset(),
    ) -> None:
        self.deid = deid
        self.batch = batch
        self.date_format = date_format
        self.local_systems = local_systems  # the mapping's own code systems (``kept_system``)
        self._date_cache: dict[str, dt.date | dt.datetime] = {}
        self._shifted: dict[tuple[str, int], tuple[dt.date | None, dt.datetime | None]] = {}
        self._seq = 0
        self._generic: dict[str, str | None] = {}  # value -> generic-cleaned value (no patient needed)
        self._maybe: dict[str, bool] = {}
        self._code_ok: dict[tuple[str, str | None], bool] = {}
        # The keys of every identifier of the input (set by the reader once all are known): a value in
        # which ``MatchKeys`` finds none cannot hold a patient's own identifier in any form the cleaner
        # reads, so only the others get the per-patient cleaning and gate. None: every value is checked.
        self.keys: MatchKeys | None = None
        self.others: OtherPatients | None = None

    def know_identifiers(self, identities: Any) -> None:
        """Build the pre-filter from every patient identity of the input."""
        identities = list(identities)
        self.keys = MatchKeys(who.ids for who in identities)
        self._maybe.clear()
        self.others = OtherPatients(identities)

    def _maybe_identifying(self, value: str) -> bool:
        if self.keys is None:
            return True
        got = self._maybe.get(value)
        if got is None:
            got = self.keys.may_match(value)
            if len(self._maybe) < 200_000:
                self._maybe[value] = got
        return got

    def survives(self, value: str, who: PatientIdentity) -> bool:
        """The gate for one output value (pre-filtered by tokens, then exact)."""
        return self._maybe_identifying(value) and survivors(value, who.ids)

    # -- values ------------------------------------------------------------------------------------
    def date(
        self, text: str | None, name: str, who: PatientIdentity
    ) -> tuple[dt.date | None, dt.datetime | None]:
        if text is None or not str(text).strip():
            return None, None
        text = str(text)
        hit = self._shifted.get((text, who.shift_days))
        if hit is not None:
            return hit
        parsed = self._date_cache.get(text)
        if parsed is None:
            try:
                parsed = parse_date(text, self.date_format)
            except (ValueError, OverflowError):
                raise RowError(f"{name}: not a date") from None
            if len(self._date_cache) < 100_000:
                self._date_cache[text] = parsed
        moved = shift(parsed, who.shift_days)
        assert moved is not None
        if isinstance(moved, dt.datetime):
            naive = moved.replace(tzinfo=None)
            has_time = bool(naive.hour or naive.minute or naive.second)
            out: tuple[dt.date | None, dt.datetime | None] = (naive.date(), (naive if has_time else None))
        else:
            out = (moved, None)
        if len(self._shifted) < 500_000:
            self._shifted[(text, who.shift_days)] = out
        return out

    def text(
        self, value: Any, who: PatientIdentity, *, generic: bool = True, limit: int | None = None
    ) -> str | None:
        if value is None:
            return None
        s = str(value).strip()
        if not s:
            return None
        if not generic:
            out = clean(s, who.ids, generic=False)
        else:
            # generic shapes first (cached per value: displays repeat), then the patient's own words
            if s in self._generic:
                out = self._generic[s]
            else:
                out = clean(s, _NO_IDS, generic=True)
                if len(self._generic) < 200_000:
                    self._generic[s] = out
            if out is not None and self._maybe_identifying(out):
                out = clean(out, who.ids, generic=False)
        if out is not None and self.others is not None and self._maybe_identifying(out):
            out = self.others.clean(out)  # another patient of the input named in this one's text
        out = self.deid.site.clean(out)  # the site's people and institutions (deid.identities)
        if out is not None and limit is not None:
            out = out[:limit]
        return out

    def code(self, code: Any, system: str | None, name: str, where: str = "Coding.system") -> str | None:
        if code is None or not str(code).strip():
            return None
        c = str(code).strip()
        ok = self._code_ok.get((c, system))
        if ok is None:
            ok = self._code_ok[(c, system)] = valid_code(c, system)
        if not ok:
            raise RowError(code_refusal(name, system_name(system), where))
        return c

    @staticmethod
    def number(value: Any, name: str) -> float | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            f = (
                float(str(value).strip().replace(",", "."))
                if not isinstance(value, int | float)
                else float(value)
            )
        except ValueError:
            return None
        return f if math.isfinite(f) else None

    # -- rows --------------------------------------------------------------------------------------
    def person(
        self, who: PatientIdentity, *, sex: str | None = None, birth: str | None = None
    ) -> PersonFacts:
        facts = self.batch.persons.get(who.pseudonym)
        if facts is None:
            facts = self.batch.persons[who.pseudonym] = PersonFacts(who.pseudonym)
        if sex and not facts.sex:
            s = sex.strip().upper()[:1]
            facts.sex = {"M": "M", "F": "F", "O": "O", "U": None}.get(s)
        if birth and facts.birth is None:
            day, _ = self.date(birth, "birth_date", who)
            if day is not None:
                facts.birth = day
                facts.year_of_birth = day.year
        return facts

    def note_age(self, who: PatientIdentity, age: float | None, on: dt.date | None) -> float | None:
        """Record an age (capped); with an event date it bounds the year of birth when none is known."""
        if age is None:
            return None
        facts = self.person(who)
        capped = cap_age(age)
        if capped != age:
            facts.age_capped = True
        if on is not None and facts.year_of_birth is None:
            facts.year_of_birth = on.year - int(capped or 0)
        return capped

    def cap_birth(self, who: PatientIdentity, on: dt.date | None) -> None:
        facts = self.batch.persons.get(who.pseudonym)
        if facts is None or facts.year_of_birth is None or on is None:
            return
        if on.year - facts.year_of_birth > AGE_CAP:
            facts.year_of_birth = on.year - (AGE_CAP + 1)
            facts.birth = None
            facts.age_capped = True

    def _key(self, table: str, line: int, extra: str = "") -> str:
        """Unique per input, row and output row; stable across re-runs of the same input (<= 64 chars)."""
        self._seq += 1
        return f"{self.batch.input_digest[:40]}:{line}:{self._seq}"

    def event(
        self,
        table: str,
        who: PatientIdentity,
        line: int,
        *,
        date: str | None,
        end_date: str | None = None,
        code: Any = None,
        system: str | None = None,
        display: Any = None,
        value: Any = None,
        unit: Any = None,
        stage: Any = None,
        note: Any = None,
        source_id: Any = None,
        slide: Any = None,
        anatomic_site: Any = None,
    ) -> dict[str, Any]:
        """One OMOP row (raises RowError naming the field, never the value)."""
        start, start_dt = self.date(date, "date", who)
        if start is None:
            raise RowError("date: missing (OMOP events are dated)")
        end, end_dt = self.date(end_date, "end_date", who)
        self.cap_birth(who, start)
        # a Coding's system is kept where it is a known one or one the mapping declares; another is the
        # export's text: stored nowhere, and the code is checked as one with no system named
        sysname = kept_system(system, self.local_systems)
        c = self.code(code, sysname, "code")
        if table == "specimen" and c is not None and not valid_code(c, None):
            raise RowError(SPECIMEN_CODE)
        disp = self.text(display, who, limit=None)
        row: dict[str, Any] = {"pseudonym": who.pseudonym, "record_key": self._key(table, line)}
        if table == "condition_occurrence":
            st = None
            if stage is not None and str(stage).strip():
                if not valid_stage(str(stage)):
                    raise RowError("stage: not a stage (0, I-IV with A-C, or TNM)")
                st = normal_stage(str(stage))
            row.update(
                condition_start_date=start,
                condition_start_datetime=start_dt,
                condition_end_date=end,
                condition_end_datetime=end_dt,
                condition_source_value=c,
                stage=st,
                stage_group=stage_group(st) if st else None,
            )
        elif table == "procedure_occurrence":
            row.update(
                procedure_date=start,
                procedure_datetime=start_dt,
                procedure_end_date=end,
                procedure_end_datetime=end_dt,
                procedure_source_value=c,
            )
        elif table == "drug_exposure":
            row.update(
                drug_exposure_start_date=start,
                drug_exposure_start_datetime=start_dt,
                drug_exposure_end_date=end or start,
                drug_exposure_end_datetime=end_dt,
                drug_source_value=c,
            )
        elif table in ("measurement", "observation"):
            num = self.number(value, "value")
            # the patient's MRN, phone or birth date read as a number: removed, as the cleaner removes
            # it from text (its text form is not kept either: 4417702.0 is no form the cleaner reads)
            hidden = who.is_identifying(num)
            if hidden:
                num = None
            vtext = None if num is not None or hidden else self.text(value, who, limit=50)
            u = None
            if unit is not None and str(unit).strip():
                u = str(unit).strip()
                if not valid_code(u, "UCUM"):
                    raise RowError("unit: not a unit")
            if table == "measurement":
                row.update(
                    measurement_date=start,
                    measurement_datetime=start_dt,
                    measurement_source_value=c,
                    value_as_number=num,
                    value_source_value=vtext,
                    unit_source_value=u,
                )
            else:
                row.update(
                    observation_date=start,
                    observation_datetime=start_dt,
                    observation_source_value=c,
                    value_as_number=num,
                    value_as_string=vtext,
                    unit_source_value=u,
                )
        elif table == "specimen":
            sid = (
                None
                if source_id is None or not str(source_id).strip()
                else self.deid.source_id("spec", str(source_id))
            )
            sl = None if slide is None or not str(slide).strip() else self.deid.source_id("slide", str(slide))
            for ident in (source_id, slide):
                if ident is not None and str(ident).strip():
                    who.ids.add_word(str(ident).strip(), min_len=4)
                    if self.keys is not None:
                        self.keys.add(who.ids)
                        self._maybe.clear()
            row.update(
                specimen_date=start,
                specimen_datetime=start_dt,
                specimen_source_id=sid,
                specimen_source_value=c,
                slide_id=sl,
                anatomic_site_source_value=self.text(anatomic_site, who, limit=50),
            )
        else:
            raise RowError(f"unknown table {table}")
        if table != "specimen":
            row["source_display"] = disp
            row["source_system"] = sysname
        nt = self.text(note, who)
        if nt is not None:
            if table in ("observation",) and row.get("value_as_string") is None:
                row["value_as_string"] = nt[:60]
            row["note"] = nt
        # the gate: none of the patient's own identifiers may stand in any text of the row, nor be any
        # of its numbers
        for k, v in row.items():
            if isinstance(v, str) and k not in ("pseudonym", "record_key") and self.survives(v, who):
                raise RowError(f"final gate: an identifying value survived in {k}")
            if isinstance(v, float) and who.is_identifying(v):
                raise RowError(f"final gate: an identifying number survived in {k}")
        self.batch.events.setdefault(table, []).append(row)
        return row
