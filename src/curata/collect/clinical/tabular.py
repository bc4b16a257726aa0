"""CSV and Excel exports, mapped by the site's TOML and de-identified column by column.

A million-row export holds a few thousand patients and far fewer distinct values than cells, so the work
is done once per distinct value (or per distinct patient and value) and spread back to the rows with
numpy: every column is read as text with pyarrow (pandas for Excel, and for CSV pyarrow refuses),
dictionary-encoded into codes and unique values; patient IDs become pseudonyms once per patient, dates
are parsed once per distinct text and shifted by a per-row array of the patients' shifts, free text is
cleaned once per distinct value (and once per patient for a value that may hold one of their own
identifiers), codes, stages and units are checked once per distinct value. A refused row keeps the
first reason in the order the row-by-row reader gave (birth date, then each event's date, end date,
code, stage, unit, and the final gate), with its line number.
"""

from __future__ import annotations

import csv as _csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from curata.collect.clinical._codes import (
    code_refusal,
    kept_system,
    normal_stage,
    stage_group,
    system_name,
    unknown_system,
    valid_code,
    valid_stage,
)
from curata.collect.clinical._quotes import quote_error
from curata.collect.clinical._records import (
    SPECIMEN_CODE,
    ClinicalBatch,
    PersonFacts,
    RecordBuilder,
    as_utf8,
    no_cycle_collection,
    parse_date,
)
from curata.collect.clinical.deid import (
    AGE_CAP,
    ClinicalDeidentifier,
    KnownIdentities,
    OtherPatients,
    PatientIdentity,
    SiteNames,
    clean,
    clean_generic,
    survivors,
)
from curata.collect.clinical.mapping import Ref, TableMap
from curata.collect.deid.pseudonyms import DEFAULT_PREFIX
from curata.collect.deid.text import Identifiers, MatchKeys
from curata.errors import ConfigError, InputError

_NO_IDS = Identifiers()
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
CSV_SUFFIXES = (".csv", ".tsv")
_NAT = np.datetime64("NaT", "s")
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]


class Column:
    """One column as per-row codes into a list of distinct values (None allowed among them)."""

    __slots__ = ("codes", "uniques")

    def __init__(self, codes: IntArray, uniques: list[Any]) -> None:
        self.codes = codes
        self.uniques = uniques

    @classmethod
    def constant(cls, n: int, value: Any) -> Column:
        return cls(np.zeros(n, dtype=np.int64), [value])

    def values(self) -> ObjArray:
        """The per-row values (an object array)."""
        u = np.empty(len(self.uniques), dtype=object)
        u[:] = self.uniques
        return u[self.codes] if len(u) else np.full(len(self.codes), None, dtype=object)

    def map(self, fn: Callable[[Any], Any]) -> Column:
        return Column(self.codes, [fn(v) for v in self.uniques])

    def flags(self, fn: Callable[[Any], bool]) -> BoolArray:
        """Per-row booleans of ``fn`` evaluated once per distinct value."""
        u = np.fromiter((bool(fn(v)) for v in self.uniques), dtype=bool, count=len(self.uniques))
        return u[self.codes] if len(u) else np.zeros(len(self.codes), dtype=bool)


def _encode_series(s: pd.Series) -> Column:
    codes, uniques = pd.factorize(s, use_na_sentinel=False)
    return Column(np.asarray(codes, dtype=np.int64), [None if pd.isna(v) else str(v) for v in uniques])


@dataclass
class TableRows:
    """One export as read: how many rows, the mapped columns, each row's line in the file (None: row i
    stands on line i + 2, under the header) and the lines refused as unreadable, with their reason."""

    n: int
    cols: dict[str, Column]
    lines: IntArray | None = None
    refused: list[tuple[int, str]] = field(default_factory=list)


def read_table(
    raw: bytes, name: str, mapping: TableMap
) -> tuple[pd.DataFrame, IntArray | None, list[tuple[int, str]]]:
    """Every cell as text (empty cells as ""), so nothing is reinterpreted before de-identification; a
    CSV with rows of another width than its header is read row by row (``_rows_by_line``)."""
    suffix = Path(name.split("!")[-1]).suffix.lower()
    lines: IntArray | None = None
    refused: list[tuple[int, str]] = []
    sep = mapping.delimiter or ("\t" if suffix == ".tsv" else ",")
    try:
        if suffix in EXCEL_SUFFIXES:
            df = _read_spreadsheet(raw, suffix, mapping)
        else:
            try:
                df = pd.read_csv(
                    io.BytesIO(raw),
                    sep=sep,
                    dtype=str,
                    keep_default_na=False,
                    na_filter=False,
                    encoding_errors="replace",
                )
            except pd.errors.ParserError:
                df, lines, refused = _rows_by_line(raw, sep)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError, _csv.Error) as exc:
        # pandas quotes offending lines in some messages: keep only its first words, never cell values
        raise InputError(f"not a readable table ({type(exc).__name__})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    _check_columns(list(df.columns), mapping)
    return df, lines, refused


def _read_spreadsheet(raw: bytes, suffix: str, mapping: TableMap) -> pd.DataFrame:
    """An Excel workbook's sheet, every cell as text. A damaged workbook fails in its zip, XML or
    compression layer with errors of every kind (BadZipFile, KeyError, zlib.error, XML syntax...):
    each is this input's refusal, named by its type alone (their messages may quote its content)."""
    try:
        return pd.read_excel(io.BytesIO(raw), sheet_name=mapping.sheet, dtype=str, keep_default_na=False)
    except ImportError:
        if suffix == ".xls":
            raise InputError(
                "an old Excel workbook (.xls, Excel 97 to 2003): not read here",
                hint="save it as .xlsx or CSV from Excel or LibreOffice",
            ) from None
        raise
    except InputError:
        raise
    except Exception as exc:  # the input's failure, whatever layer found it
        raise InputError(f"not a readable spreadsheet ({type(exc).__name__})") from None


def _rows_by_line(raw: bytes, sep: str) -> tuple[pd.DataFrame, IntArray, list[tuple[int, str]]]:
    """A CSV pandas refuses whole for one row of another width (an unquoted comma in a note, a line cut
    short): the rows as wide as the header, with the line each starts on, and the others refused by
    line, their width named (never a value). Its quoting has been checked (``_quotes``): no quote is left open."""
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = _csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    header = next(reader, None)
    if header is None:
        raise InputError("not a readable table (no header)")
    rows: list[list[str]] = []
    lines: list[int] = []
    refused: list[tuple[int, str]] = []
    start = reader.line_num + 1
    for record in reader:
        if record and len(record) == len(header):
            rows.append(record)
            lines.append(start)
        elif record:
            refused.append((start, f"{len(record)} fields where the header has {len(header)}"))
        start = reader.line_num + 1
    return pd.DataFrame(rows, columns=header, dtype=str), np.array(lines, dtype=np.int64), refused


def _check_columns(columns: Sequence[str], mapping: TableMap) -> None:
    missing = sorted(c for c in mapping.used_columns() if c not in columns)
    if missing:
        raise InputError(
            f"columns named in the mapping are missing: {', '.join(missing)}",
            hint="check the column names in clinical-map.toml against the export's header",
        )


def _read_arrow(raw: bytes, sep: str, mapping: TableMap) -> tuple[int, dict[str, Column]] | None:
    """The mapped columns of a UTF-8 CSV read by pyarrow, dictionary-encoded; None: let pandas try."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if raw.startswith(b"\xef\xbb\xbf") or not raw:
        return None
    first = raw[: 1 << 20].split(b"\n", 1)[0].rstrip(b"\r")
    try:
        names = next(_csv.reader([first.decode("utf-8")], delimiter=sep))
    except (UnicodeDecodeError, StopIteration, _csv.Error):
        return None
    stripped = [n.strip() for n in names]
    if len(set(names)) != len(names) or len(set(stripped)) != len(stripped):
        return None
    _check_columns(stripped, mapping)
    used = mapping.used_columns()
    by_name = {s: n for s, n in zip(stripped, names, strict=True) if s in used}
    try:
        # text columns, one thread (the ratio to the bare read is judged in CPU seconds), straight from
        # the input's buffer; then each column's distinct values, which the work is done on, in one pass
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(raw)),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                include_columns=list(by_name.values()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    cols: dict[str, Column] = {}
    for s, n in by_name.items():
        # a chunked column is encoded against one memo (a value keeps the index it first got): the last
        # chunk's dictionary holds every value
        chunks = table.column(n).dictionary_encode().chunks
        if not chunks:
            cols[s] = Column(np.zeros(0, dtype=np.int64), [])
            continue
        codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks], dtype=np.int64)
        cols[s] = Column(codes, chunks[-1].dictionary.to_pylist())
    return table.num_rows, cols


def read_columns(raw: bytes, name: str, mapping: TableMap) -> TableRows:
    """The rows of one export; only the columns the mapping names are kept."""
    suffix = Path(name.split("!")[-1]).suffix.lower()
    if suffix not in EXCEL_SUFFIXES:
        sep = mapping.delimiter or ("\t" if suffix == ".tsv" else ",")
        # a quote left open would take the lines after it into one cell (read silently by every reader)
        broken = (
            quote_error(as_utf8(raw) if raw.startswith(_UTF16_BOMS) else raw, sep) if len(sep) == 1 else None
        )
        if broken is not None:
            raise InputError(broken, hint="close or remove the double quote on that line and export again")
        got = _read_arrow(raw, sep, mapping)
        if got is None and (utf8 := as_utf8(raw)) is not raw:
            raw = utf8
            got = _read_arrow(raw, sep, mapping)
        if got is not None:
            return TableRows(*got)
    df, lines, refused = read_table(raw if suffix in EXCEL_SUFFIXES else as_utf8(raw), name, mapping)
    cols = {c: _encode_series(df[c]) for c in sorted(mapping.used_columns())}
    return TableRows(len(df), cols, lines, refused)


def _pairs(pid: IntArray, col: Column, mask: BoolArray) -> list[tuple[int, Any]]:
    """The distinct (patient, value) pairs among the masked rows."""
    rows = np.nonzero(mask)[0]
    if not len(rows):
        return []
    width = max(len(col.uniques), 1)
    uniq = np.sort(pd.unique(pid[rows] * width + col.codes[rows]))
    return [(int(k // width), col.uniques[int(k % width)]) for k in uniq.tolist()]


class _Table:
    """The state of one export while its columns are de-identified."""

    def __init__(self, n: int, cols: dict[str, Column], mapping: TableMap, deid: ClinicalDeidentifier):
        self.n = n
        self.cols = cols
        self.mapping = mapping
        self.deid = deid
        self.reason: ObjArray = np.full(n, None, dtype=object)
        self.refused: BoolArray = np.zeros(n, dtype=bool)
        self.patients: list[PatientIdentity] = []
        self.pid: IntArray = np.full(n, -1, dtype=np.int64)
        self.shift: IntArray = np.zeros(n, dtype=np.int64)
        self._shift_days: npt.NDArray[np.timedelta64] | None = None  # ``shift`` as days, made once
        self.builder: RecordBuilder | None = None
        self._parsed: dict[str, tuple[Any, bool] | None] = {}
        self._keys: dict[int, MatchKeys] = {}
        # clean / gate results per (identifier set, value): patients none of whose identifiers may stand
        # in a value share one empty set (``ids_for``) and get the same answer, computed once
        self._cleaned: dict[tuple[int, str, int | None], str | None] = {}
        self._gated: dict[tuple[int, str], bool] = {}
        self.others: OtherPatients | None = None  # built once every patient of the export is known
        self._numbers: npt.NDArray[np.float64] | None = None  # every patient's ``numbers()``, made once

    def ids_for(self, p: int, text: str) -> Identifiers:
        """Patient ``p``'s identifiers when one of them may stand in ``text`` (``MatchKeys``: in any form
        the cleaner reads), else none: the same cleaning and gate as with all of them, without running
        every patient's matcher over every value."""
        ids = self.patients[p].ids
        keys = self._keys.get(p)
        if keys is None:
            keys = self._keys[p] = MatchKeys((ids,))
        return ids if keys.may_match(text) else _NO_IDS

    def clean_for(self, p: int, text: str, limit: int | None) -> str | None:
        """``text`` cleaned of patient ``p``'s own identifiers (and cut to ``limit``)."""
        ids = self.ids_for(p, text)
        key = (id(ids), text, limit)
        if key not in self._cleaned:
            out = clean(text, ids, generic=False)
            if self.others is None:  # the builder's, made when every patient of the export was known
                built = self.builder.others if self.builder is not None else None
                self.others = built or OtherPatients(self.patients)
            # another patient of the export named in this one's text
            self._cleaned[key] = _cut(self.others.clean(out), limit)
        return self._cleaned[key]

    def survives_for(self, p: int, text: str) -> bool:
        """The gate: one of patient ``p``'s own identifiers stands in ``text``."""
        ids = self.ids_for(p, text)
        key = (id(ids), text)
        got = self._gated.get(key)
        if got is None:
            got = self._gated[key] = survivors(text, ids)
        return got

    # -- helpers -----------------------------------------------------------------------------------
    def refuse(self, mask: BoolArray, why: str) -> None:
        new = mask & ~self.refused
        if new.any():
            self.reason[new] = why
            self.refused |= new

    def ref(self, ref: Ref | None) -> Column | None:
        """A mapped value: a column (empty cells as None) or a literal; None when the mapping has none."""
        if ref is None:
            return None
        if ref.literal is not None:
            return Column.constant(self.n, ref.literal)
        assert ref.column is not None
        col = self.cols[ref.column]
        return Column(col.codes, [None if v == "" else v for v in col.uniques])

    def parse(self, text: str) -> tuple[Any, bool] | None:
        """(naive datetime, has a time of day) of a date text, memoised; None when it is not a date."""
        if text in self._parsed:
            return self._parsed[text]
        try:
            d = parse_date(text, self.mapping.date_format)
            if isinstance(d, dt.datetime):
                d = d.replace(tzinfo=None)
                out: tuple[Any, bool] | None = (d, bool(d.hour or d.minute or d.second))
            else:
                out = (dt.datetime(d.year, d.month, d.day), False)
        except (ValueError, OverflowError):
            out = None
        self._parsed[text] = out
        return out

    def dates(self, col: Column | None, name: str) -> tuple[npt.NDArray[np.datetime64], BoolArray, BoolArray]:
        """Shifted per-row datetimes (NaT when empty), whether each has a time, whether each is present;
        rows whose text is not a date are refused naming ``name``."""
        if col is None:
            return np.full(self.n, _NAT), np.zeros(self.n, dtype=bool), np.zeros(self.n, dtype=bool)
        base = np.full(len(col.uniques), _NAT)
        timed = np.zeros(len(col.uniques), dtype=bool)
        present = np.zeros(len(col.uniques), dtype=bool)
        bad = np.zeros(len(col.uniques), dtype=bool)
        for i, v in enumerate(col.uniques):
            if v is None or not str(v).strip():
                continue
            present[i] = True
            got = self.parse(str(v).strip())
            if got is None or not 1 <= got[0].year <= 9999:
                bad[i] = True
                continue
            base[i] = np.datetime64(got[0], "s")
            timed[i] = got[1]
        if bad.any():
            self.refuse(bad[col.codes] & self.alive(), f"{name}: not a date")
        if self._shift_days is None:
            self._shift_days = self.shift.astype("timedelta64[D]")
        moved = base[col.codes] + self._shift_days
        valid = present & ~bad
        ok = valid[col.codes]
        if self._may_leave_calendar(base[valid]):  # rare: only then the shifted years are computed per row
            years = moved.astype("datetime64[Y]").astype(np.int64) + 1970
            out_of_range = ok & ((years < 1) | (years > 9999))
            self.refuse(out_of_range & self.alive(), f"{name}: not a date")
            ok &= ~out_of_range
        moved[~ok] = _NAT
        return moved, timed[col.codes] & ok, ok

    def _may_leave_calendar(self, days: npt.NDArray[np.datetime64]) -> bool:
        """Whether a shift of this export can move one of ``days`` out of the years 1-9999: the earliest
        date by the most negative shift, the latest by the least (shifting keeps the order)."""
        if not len(days) or not len(self.shift):
            return False
        lo = days.min() + np.timedelta64(int(self.shift.min()), "D")
        hi = days.max() + np.timedelta64(int(self.shift.max()), "D")
        years = np.array([lo, hi]).astype("datetime64[Y]").astype(np.int64) + 1970
        return bool(years[0] < 1 or years[1] > 9999)

    def alive(self) -> BoolArray:
        return (self.pid >= 0) & ~self.refused

    def text(self, col: Column | None, *, limit: int | None = None) -> Column:
        """Free text through the DICOM cleaner: generic shapes once per value, the patient's own
        identifiers once per (patient, value) for values that share a token with any identifier."""
        if col is None:
            return Column.constant(self.n, None)
        b = self.builder
        assert b is not None

        texts = ["" if v is None else str(v).strip() for v in col.uniques]
        cleaned = iter(clean_generic([s for s in texts if s]))  # generic shapes, all values at once

        site = self.deid.site

        def generic(s: str) -> str | None:
            out = next(cleaned) if s else None
            out = site.clean(out)  # the site's people and institutions, whoever's row it is
            return (
                out[:limit]
                if out is not None and limit is not None and not b._maybe_identifying(out)
                else out
            )

        gen = Column(col.codes, [generic(s) for s in texts])
        maybe = gen.flags(lambda g: g is not None and b._maybe_identifying(g))
        return self._per_patient(gen, maybe, lambda p, g: self.clean_for(p, g, limit))

    def _per_patient(self, col: Column, mask: BoolArray, fn: Callable[[int, Any], Any]) -> Column:
        """``col`` with the masked rows replaced by ``fn(patient, value)`` (computed per distinct pair)."""
        mask = mask & (self.pid >= 0)
        if not mask.any():
            return col
        rows = np.nonzero(mask)[0]
        width = max(len(col.uniques), 1)
        # the distinct pairs by hashing, not sorting: the rows come in any order
        inverse, uniq = pd.factorize(self.pid[rows] * width + col.codes[rows])
        extra = [fn(int(k // width), col.uniques[int(k % width)]) for k in uniq.tolist()]
        codes = col.codes.copy()
        codes[rows] = len(col.uniques) + inverse
        return Column(codes, [*col.uniques, *extra])

    def identifying(self, number: npt.NDArray[np.float64]) -> BoolArray:
        """The rows whose ``number`` is one of their own patient's identifiers read as a number (the
        MRN, a phone, the birth date: ``identifying_numbers``). Any patient's numbers first, in C: rows
        with none of them (nearly all) are never looked at one by one."""
        out = np.zeros(self.n, dtype=bool)
        if self._numbers is None:  # every identifier is learnt before the events are read
            self._numbers = np.array([n for who in self.patients for n in who.numbers()], dtype=float)
        if not len(self._numbers):
            return out
        with np.errstate(invalid="ignore"):
            maybe = (self.pid >= 0) & np.isin(np.abs(number), self._numbers)
        for r in np.nonzero(maybe)[0].tolist():
            out[r] = self.patients[int(self.pid[r])].is_identifying(float(number[r]))
        return out

    def gate_numbers(self, number: npt.NDArray[np.float64], field: str) -> None:
        """Refuse the rows whose number in ``field`` is one of their patient's own identifiers."""
        self.refuse(
            self.identifying(number) & self.alive(), f"final gate: an identifying number survived in {field}"
        )

    def gate(self, col: Column, field: str) -> None:
        """Refuse the rows where one of their patient's own identifiers stands in ``col``."""
        b = self.builder
        assert b is not None
        maybe = col.flags(lambda v: isinstance(v, str) and bool(v) and b._maybe_identifying(v))
        mask = maybe & self.alive()
        if not mask.any():
            return
        hit = self._per_patient(col, mask, self.survives_for)
        rows = np.nonzero(mask)[0]
        survived = np.array([u is True for u in hit.uniques], dtype=bool)  # per distinct (patient, value)
        found = survived[hit.codes[rows]]
        bad = np.zeros(self.n, dtype=bool)
        bad[rows[found]] = True
        self.refuse(bad, f"final gate: an identifying value survived in {field}")


def _cut(value: str | None, limit: int | None) -> str | None:
    return value[:limit] if value is not None and limit is not None else value


def _number(v: Any) -> float:
    f = RecordBuilder.number(v, "value")
    return np.nan if f is None else f


def deidentify_table(
    raw: bytes,
    name: str,
    digest: str,
    mapping: TableMap | None,
    key: bytes,
    kind: str,
    *,
    known: KnownIdentities | None = None,
    site: SiteNames | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> ClinicalBatch:
    """All rows of one export as de-identified OMOP rows (column frames); refused rows with their number.
    ``known``: what the site knows of its patients from other inputs; ``site``: its people and
    institutions (``deid.identities``): every text is cleaned of them too. ``prefix``: the site's
    ``pseudonym_prefix`` (its images' pseudonyms)."""
    if mapping is None:
        raise ConfigError(
            "no [csv] mapping for this clinical export",
            hint="put a clinical-map.toml beside the export (see curata.collect.clinical.mapping)",
        )
    with no_cycle_collection():
        deid = ClinicalDeidentifier(key, issuer=mapping.issuer, known=known, site=site, prefix=prefix)
        return _deidentify_table(raw, name, digest, mapping, deid, kind)


def declares_identities(mapping: TableMap | None) -> bool:
    """Whether a table's mapping names identity columns (names, addresses, phones, IDs, birth date)."""
    return mapping is not None and bool(
        mapping.names or mapping.addresses or mapping.phones or mapping.ids or mapping.birth_date
    )


def table_identities(
    raw: bytes, name: str, mapping: TableMap, key: bytes, *, prefix: str = DEFAULT_PREFIX
) -> dict[str, Identifiers]:
    """The identifiers a table's identity columns give each patient (patient ID -> identifiers), read
    before any input of the run is cleaned: another table's notes, a FHIR note or a VCF header of the
    same patient are cleaned of them whatever the order the inputs come in."""
    with no_cycle_collection():
        read = read_columns(raw, name, mapping)
        deid = ClinicalDeidentifier(key, issuer=mapping.issuer, prefix=prefix)
        _learn(_Table(read.n, read.cols, mapping, deid), mapping)
        return {pid: who.ids for pid, who in deid._patients.items()}


def _learn(t: _Table, mapping: TableMap) -> None:
    """The export's patients (one vault derivation per distinct ID), then every identifier of every
    patient, so a name in row 1 is also cleaned from row 900."""
    cols, n = t.cols, t.n
    pcol = cols[mapping.patient_id]
    index: dict[str, int] = {}
    per_unique = np.full(len(pcol.uniques), -1, dtype=np.int64)
    for i, v in enumerate(pcol.uniques):
        s = (v or "").strip()
        if not s:
            continue
        who = t.deid.patient(s)
        if who.pseudonym not in index:
            index[who.pseudonym] = len(t.patients)
            t.patients.append(who)
        per_unique[i] = index[who.pseudonym]
    t.pid = per_unique[pcol.codes] if len(per_unique) else np.full(n, -1, dtype=np.int64)
    t.refuse(t.pid < 0, f"{mapping.patient_id}: no patient ID")
    shifts = np.array([w.shift_days for w in t.patients] or [0], dtype=np.int64)
    t.shift = np.where(t.pid >= 0, shifts[np.maximum(t.pid, 0)], 0)
    has_pid = t.pid >= 0

    def learn(col_name: str, add: Callable[[PatientIdentity, str], None]) -> None:
        col = cols[col_name]
        for p, v in _pairs(t.pid, col, has_pid & col.flags(bool)):
            add(t.patients[p], str(v))

    for c in mapping.names:
        learn(c, lambda w, v: w.ids.add_name(v))
    for c in mapping.addresses:
        learn(c, lambda w, v: w.ids.add_address(v))
    for c in (*mapping.phones, *mapping.ids):
        learn(c, lambda w, v: w.ids.add_word(v))
    if mapping.birth_date:

        def add_birth(w: PatientIdentity, v: str) -> None:
            got = t.parse(v.strip()) if v.strip() else None
            if got is not None:
                w.ids.add_birth_date(got[0].strftime("%Y%m%d"))
            else:
                w.ids.add_word(v.strip())

        learn(mapping.birth_date, add_birth)
    for ev in mapping.events:  # specimen and slide IDs are identifiers of their patient too
        for k in ("id", "slide"):
            r = ev.refs.get(k)
            if ev.table == "specimen" and r is not None and r.column:
                learn(r.column, lambda w, v: w.ids.add_word(v.strip(), min_len=4))


def _deidentify_table(
    raw: bytes, name: str, digest: str, mapping: TableMap, deid: ClinicalDeidentifier, kind: str
) -> ClinicalBatch:
    read = read_columns(raw, name, mapping)
    n, cols = read.n, read.cols
    batch = ClinicalBatch(kind=kind, input_digest=digest)
    batch.rows = n + len(read.refused)
    t = _Table(n, cols, mapping, deid)
    _learn(t, mapping)
    has_pid = t.pid >= 0
    builder = RecordBuilder(deid, batch, mapping.date_format)
    builder.know_identifiers(t.patients)
    t.builder = builder

    # person facts (sex, shifted birth): the first value per patient, as the row reader kept it
    facts = [PersonFacts(w.pseudonym) for w in t.patients]
    if mapping.sex:
        sex = t.ref(Ref(column=mapping.sex))
        assert sex is not None
        norm = sex.map(lambda v: {"M": "M", "F": "F", "O": "O"}.get(v.strip().upper()[:1]) if v else None)
        for p, v in _first_per_patient(t.pid, norm).items():
            facts[p].sex = v
    if mapping.birth_date:
        births, _, present = t.dates(t.ref(Ref(column=mapping.birth_date)), "birth_date")
        rows = np.nonzero(present & has_pid)[0]
        if len(rows):
            pats, first = np.unique(t.pid[rows], return_index=True)
            for p, r in zip(pats.tolist(), rows[first].tolist(), strict=True):
                day = births[r].astype("datetime64[D]").item()
                facts[p].birth, facts[p].year_of_birth = day, day.year

    # events, column by column, in the mapping's order
    frames: list[tuple[str, dict[str, Any], BoolArray]] = []
    first_start: npt.NDArray[np.datetime64] | None = None
    for ei, ev in enumerate(mapping.events):
        frames.append((ev.table, *_event(t, ev.table, ev.refs, ei)))
        if first_start is None:
            first_start = frames[-1][1]["__start"]

    ok = has_pid & ~t.refused
    # ages: capped at 90; a year of birth from the first age and date when no birth date is known
    # each patient's last event date first, then its year (a later date never has an earlier year)
    never = np.iinfo(np.int64).min
    latest = np.full(max(len(t.patients), 1), never, dtype=np.int64)
    for _table, data, _present in frames:
        start = data["__start"]
        has = has_pid & ~np.isnat(start)
        np.maximum.at(latest, t.pid[has], start[has].view(np.int64))
    max_year = np.full(len(latest), -(10**6), dtype=np.int64)
    seen = latest != never
    max_year[seen] = latest[seen].view("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    if mapping.age and first_start is not None:
        ages = t.ref(Ref(column=mapping.age))
        assert ages is not None
        num = ages.map(_number)
        vals = np.asarray(num.values(), dtype=float)
        with_age = ok & ~np.isnan(vals)
        for p in np.unique(t.pid[with_age & (vals > AGE_CAP)]).tolist():
            facts[p].age_capped = True
        rows = np.nonzero(with_age & ~np.isnat(first_start))[0]
        if len(rows):
            pats, first = np.unique(t.pid[rows], return_index=True)
            for p, r in zip(pats.tolist(), rows[first].tolist(), strict=True):
                if facts[p].year_of_birth is None:
                    year = int(first_start[r].astype("datetime64[Y]").astype(np.int64)) + 1970
                    facts[p].year_of_birth = year - int(AGE_CAP + 1 if vals[r] > AGE_CAP else vals[r])
    for p, f in enumerate(facts):
        if f.year_of_birth is not None and max_year[p] - f.year_of_birth > AGE_CAP:
            f.year_of_birth = int(max_year[p]) - (AGE_CAP + 1)
            f.birth = None
            f.age_capped = True
    batch.persons = {f.pseudonym: f for f in facts}

    # the rows that passed, as one frame per OMOP table
    pseudonyms = Column(np.maximum(t.pid, 0), [w.pseudonym for w in t.patients] or [""])
    line = np.arange(2, n + 2) if read.lines is None else read.lines  # the header is line 1
    by_table: dict[str, list[dict[str, Any]]] = {}
    kept: IntArray | None = None if ok.all() else np.nonzero(ok)[0]  # None: every row, no copies
    padded = _padded_lines(line if kept is None else line[kept])
    for ei, (table, data, _present) in enumerate(frames):
        out: dict[str, Any] = {
            "pseudonym": _take(pseudonyms, kept),
            "record_key_suffix": _record_keys(padded, ei),
        }
        for k, v in data.items():
            if not k.startswith("__"):
                out[k] = _take(v, kept) if isinstance(v, Column) else (v if kept is None else v[kept])
        by_table.setdefault(table, []).append(out)
    batch.frames = {tb: _concat(fs) for tb, fs in by_table.items()}
    refused = np.nonzero(t.refused)[0]
    batch.quarantined = sorted([*((int(line[i]), str(t.reason[i])) for i in refused), *read.refused])
    batch.identities = dict(deid._patients)
    return batch


def _take(col: Column, rows: IntArray | None) -> Any:
    """The rows' values (None: every row) of a text column as an Arrow dictionary array (its distinct
    values, deduplicated, and the rows' codes): built in C, and written to Parquet as it stands."""
    import pyarrow as pa

    if not all(v is None or isinstance(v, str) for v in col.uniques):
        values = col.values()
        return values if rows is None else values[rows]
    # only the values of these rows: a refused row's value, or one a patient's cleaning replaced, may
    # hold an identifier and must not ride along in the dictionary
    codes = col.codes if rows is None else col.codes[rows]
    used = np.zeros(len(col.uniques), dtype=bool)
    used[codes] = True
    seen: dict[str, int] = {}
    remap = np.full(len(col.uniques), -1, dtype=np.int32)
    nulls = False
    for i in np.flatnonzero(used).tolist():
        v = col.uniques[i]
        if v is None:
            nulls = True
        else:
            remap[i] = seen.setdefault(v, len(seen))
    idx = remap[codes] if len(remap) else np.full(len(codes), -1, dtype=np.int32)
    indices = pa.array(idx, mask=idx < 0) if nulls or not len(remap) else pa.array(idx)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(seen), pa.string()))


def _concat(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Column frames of one table (two events may fill the same table) as one; missing columns None."""
    if len(frames) == 1:
        return frames[0]
    import pyarrow as pa

    names = list(dict.fromkeys(k for f in frames for k in f))
    out: dict[str, Any] = {}
    for k in names:
        parts: list[Any] = [
            f[k] if k in f else np.full(len(f["pseudonym"]), None, dtype=object) for f in frames
        ]
        if all(isinstance(p, pa.Array) for p in parts):  # Arrow strings stay Arrow strings
            out[k] = pa.concat_arrays([p.cast(pa.string()) for p in parts])
            continue
        parts = [p.to_numpy(zero_copy_only=False) if isinstance(p, pa.Array) else p for p in parts]
        kinds = {p.dtype.kind for p in parts}
        out[k] = np.concatenate(parts if len(kinds) == 1 else [p.astype(object) for p in parts])
    return out


def _padded_lines(lines: IntArray) -> Any:
    """Line numbers zero-padded: record keys ascend in row order, so a unique index is appended to. As
    bytes, one row of 10 ASCII digits per line (numpy), where every line number has at most 10 digits."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(lines) and int(lines.min()) >= 0 and int(lines.max()) < 10**10:
        digits = np.empty((len(lines), 10), dtype=np.uint8)
        rest = lines.astype(np.int64)
        for i in range(9, -1, -1):
            rest, digit = np.divmod(rest, 10)
            digits[:, i] = digit + ord("0")
        return digits
    return pc.utf8_lpad(pa.array(lines).cast(pa.string()), 10, "0")


def _record_keys(padded: Any, event: int) -> Any:
    """Unique per input, row and event; stable across re-runs of the same input: ``<line>:<event>`` after
    the input's ``<digest[:40]>:`` (added by the writer, once per file)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tail = np.frombuffer(f":{event}".encode(), dtype=np.uint8)
    if isinstance(padded, np.ndarray) and (len(padded) + 1) * (padded.shape[1] + len(tail)) < 2**31:
        # fixed width: each row's digits, then ":<event>", in one string buffer
        width = padded.shape[1] + len(tail)
        data = np.empty((len(padded), width), dtype=np.uint8)
        data[:, : padded.shape[1]] = padded
        data[:, padded.shape[1] :] = tail
        offsets = np.arange(0, (len(padded) + 1) * width, width, dtype=np.int32)
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        return pa.Array.from_buffers(pa.string(), len(padded), buffers)
    if isinstance(padded, np.ndarray):
        padded = pa.array(padded.view(f"S{padded.shape[1]}").ravel()).cast(pa.string())
    return pc.binary_join_element_wise(padded, pa.scalar(str(event)), ":")


def _first_per_patient(pid: IntArray, col: Column) -> dict[int, Any]:
    """The first non-None value of ``col`` per patient, in row order."""
    has = (pid >= 0) & col.flags(lambda v: v is not None)
    rows = np.nonzero(has)[0]
    if not len(rows):
        return {}
    pats, first = np.unique(pid[rows], return_index=True)
    return {int(p): col.uniques[int(col.codes[r])] for p, r in zip(pats, rows[first], strict=True)}


def _dates_out(moved: npt.NDArray[np.datetime64], timed: BoolArray) -> tuple[Any, Any]:
    day = moved.astype("datetime64[D]")
    stamp = np.where(timed, moved, _NAT)
    return day, stamp


def _event(t: _Table, table: str, refs: dict[str, Ref], ei: int) -> tuple[dict[str, Any], BoolArray]:
    """One mapped event's output columns for every row (refusals recorded on ``t``)."""
    start, start_timed, present = t.dates(t.ref(refs.get("date")), "date")
    t.refuse(~present & t.alive(), "date: missing (OMOP events are dated)")
    end, end_timed, end_present = t.dates(t.ref(refs.get("end_date")), "end_date")
    system = t.ref(refs.get("system")) or Column.constant(t.n, None)
    # what the catalog keeps of the system: a known one's name or a local one the mapping declares; a
    # cell that is neither (another patient's MRN, a name) is stored nowhere and its row refused
    kept = system.map(lambda v: kept_system(v, t.mapping.local_systems))
    where = _system_source(refs.get("system"))
    unknown = system.flags(lambda v: system_name(v) is not None) & ~kept.flags(lambda v: v is not None)
    t.refuse(unknown & t.alive(), unknown_system("code", where))
    code_col = t.ref(refs.get("code")) or Column.constant(t.n, None)
    code = _code(t, code_col, kept, where)
    if table == "specimen":
        t.refuse(code.flags(lambda c: c is not None and not valid_code(c, None)) & t.alive(), SPECIMEN_CODE)
    data: dict[str, Any] = {"__start": start}
    s_day, s_stamp = _dates_out(start, start_timed)
    e_day, e_stamp = _dates_out(end, end_timed)
    strings: dict[str, Column] = {"code": code}
    if table == "condition_occurrence":
        stage_in = t.ref(refs.get("stage")) or Column.constant(t.n, None)
        valid = stage_in.map(lambda v: None if v is None or not str(v).strip() else valid_stage(str(v)))
        t.refuse(
            valid.flags(lambda x: x is False) & t.alive(), "stage: not a stage (0, I-IV with A-C, or TNM)"
        )
        st = stage_in.map(
            lambda v: (
                normal_stage(str(v)) if v is not None and str(v).strip() and valid_stage(str(v)) else None
            )
        )
        strings["stage"] = st
        data.update(
            condition_start_date=s_day,
            condition_start_datetime=s_stamp,
            condition_end_date=e_day,
            condition_end_datetime=e_stamp,
            condition_source_value=code,
            stage=st,
            stage_group=st.map(lambda s: stage_group(s) if s else None),
        )
    elif table == "procedure_occurrence":
        data.update(
            procedure_date=s_day,
            procedure_datetime=s_stamp,
            procedure_end_date=e_day,
            procedure_end_datetime=e_stamp,
            procedure_source_value=code,
        )
    elif table == "drug_exposure":
        data.update(
            drug_exposure_start_date=s_day,
            drug_exposure_start_datetime=s_stamp,
            drug_exposure_end_date=np.where(end_present, e_day, s_day),
            drug_exposure_end_datetime=e_stamp,
            drug_source_value=code,
        )
    elif table in ("measurement", "observation"):
        value = t.ref(refs.get("value")) or Column.constant(t.n, None)
        num = value.map(_number)
        numeric = num.flags(lambda f: not np.isnan(f))
        vtext = t.text(value.map(lambda v: v if np.isnan(_number(v)) else None), limit=50)
        unit = (t.ref(refs.get("unit")) or Column.constant(t.n, None)).map(
            lambda u: None if u is None or not str(u).strip() else str(u).strip()
        )
        t.refuse(
            unit.flags(lambda u: u is not None and not valid_code(u, "UCUM")) & t.alive(), "unit: not a unit"
        )
        strings.update(vtext=vtext, unit=unit)
        number = np.asarray(num.values(), dtype=float)
        number[~numeric] = np.nan
        # the patient's MRN, phone or birth date read as a number: removed (the row is kept), as the
        # cleaner removes it from text; its text is not kept either (a number's is None)
        number[t.identifying(number)] = np.nan
        if table == "measurement":
            data.update(
                measurement_date=s_day,
                measurement_datetime=s_stamp,
                measurement_source_value=code,
                value_as_number=number,
                value_source_value=vtext,
                unit_source_value=unit,
            )
        else:
            data.update(
                observation_date=s_day,
                observation_datetime=s_stamp,
                observation_source_value=code,
                value_as_number=number,
                value_as_string=vtext,
                unit_source_value=unit,
            )
    elif table == "specimen":
        sid = (t.ref(refs.get("id")) or Column.constant(t.n, None)).map(
            lambda v: None if v is None or not str(v).strip() else t.deid.source_id("spec", str(v))
        )
        slide = (t.ref(refs.get("slide")) or Column.constant(t.n, None)).map(
            lambda v: None if v is None or not str(v).strip() else t.deid.source_id("slide", str(v))
        )
        site = t.text(t.ref(refs.get("site")), limit=50)
        strings.update(specimen_source_id=sid, slide_id=slide, anatomic_site=site)
        data.update(
            specimen_date=s_day,
            specimen_datetime=s_stamp,
            specimen_source_id=sid,
            specimen_source_value=code,
            slide_id=slide,
            anatomic_site_source_value=site,
        )
    else:  # pragma: no cover - the mapping refuses other tables
        raise ConfigError(f"unknown table {table}")
    if table != "specimen":
        disp = t.text(t.ref(refs.get("display")))
        src_sys = kept
        data.update(source_display=disp, source_system=src_sys)
        strings.update(source_display=disp, source_system=src_sys)
    note = t.text(t.ref(refs.get("note")))
    if note.flags(lambda v: v is not None).any():
        data["note"] = note
        strings["note"] = note
        if table == "observation":
            # value_as_string falls back to the note (60 characters) when the value is a number
            vs, nt = data["value_as_string"].values(), note.values()
            filled = [v if v is not None else (x[:60] if x else None) for v, x in zip(vs, nt, strict=True)]
            data["value_as_string"] = _encode_series(pd.Series(filled, dtype=object))
    for k, col in strings.items():
        t.gate(col, k)
    for k, v in data.items():  # and none of them may be one of the row's numbers
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            t.gate_numbers(v, k)
    return data, present


def _system_source(ref: Ref | None) -> str:
    """Where an event's code system comes from, in a reason's words: its column, or the mapping."""
    return f"column {ref.column}" if ref is not None and ref.column else "given in the mapping"


def _code(t: _Table, code: Column, sysname: Column, where: str) -> Column:
    """Codes checked against their system once per distinct (code, system); invalid rows refused (their
    reason names a known system, never a cell's: ``code_refusal``)."""
    if len(sysname.uniques) == 1:
        system = sysname.uniques[0]
        valid = code.flags(lambda c: c is None or not str(c).strip() or valid_code(str(c).strip(), system))
        t.refuse(~valid & t.alive(), code_refusal("code", system_name(system), where))
        return code.map(lambda c: None if c is None or not str(c).strip() else str(c).strip())
    values, systems = code.values(), sysname.values()
    out = np.empty(t.n, dtype=object)
    for s in set(systems.tolist()):
        bad = np.zeros(t.n, dtype=bool)
        for i in np.nonzero(systems == s)[0]:
            c = values[i]
            if c is not None and str(c).strip():
                if valid_code(str(c).strip(), s):
                    out[i] = str(c).strip()
                else:
                    bad[i] = True
        t.refuse(bad & t.alive(), code_refusal("code", system_name(s), where))
    return _encode_series(pd.Series(out, dtype=object))
