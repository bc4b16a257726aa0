"""CSV and Excel exports, read with pandas, mapped by the site's TOML, de-identified row by row."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from curata.collect.clinical._records import ClinicalBatch, RecordBuilder, RowError
from curata.collect.clinical.deid import ClinicalDeidentifier
from curata.collect.clinical.mapping import TableMap
from curata.errors import ConfigError, InputError

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
CSV_SUFFIXES = (".csv", ".tsv")


def read_table(raw: bytes, name: str, mapping: TableMap) -> pd.DataFrame:
    """Every cell as text (empty cells as ""), so nothing is reinterpreted before de-identification."""
    suffix = Path(name.split("!")[-1]).suffix.lower()
    try:
        if suffix in EXCEL_SUFFIXES:
            df = pd.read_excel(io.BytesIO(raw), sheet_name=mapping.sheet, dtype=str, keep_default_na=False)
        else:
            sep = mapping.delimiter or ("\t" if suffix == ".tsv" else ",")
            df = pd.read_csv(
                io.BytesIO(raw),
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding_errors="replace",
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        # pandas quotes offending lines in some messages: keep only its first words, never cell values
        raise InputError(f"not a readable table ({type(exc).__name__})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = sorted(c for c in mapping.used_columns() if c not in df.columns)
    if missing:
        raise InputError(
            f"columns named in the mapping are missing: {', '.join(missing)}",
            hint="check the column names in clinical-map.toml against the export's header",
        )
    return df


def _get(rec: dict[str, Any], ref: Any) -> Any:
    if ref is None:
        return None
    if ref.literal is not None:
        return ref.literal
    v = rec.get(ref.column)
    return v if v != "" else None


def deidentify_table(
    raw: bytes, name: str, digest: str, mapping: TableMap | None, key: bytes, kind: str
) -> ClinicalBatch:
    """All rows of one export as de-identified OMOP rows; refused rows listed with their number."""
    if mapping is None:
        raise ConfigError(
            "no [csv] mapping for this clinical export",
            hint="put a clinical-map.toml beside the export (see curata.collect.clinical.mapping)",
        )
    df = read_table(raw, name, mapping)
    deid = ClinicalDeidentifier(key, issuer=mapping.issuer)
    batch = ClinicalBatch(kind=kind, input_digest=digest)
    builder = RecordBuilder(deid, batch, mapping.date_format)
    id_cols = {
        "names": mapping.names,
        "addresses": mapping.addresses,
        "phones": mapping.phones,
        "ids": mapping.ids,
    }
    used = sorted(mapping.used_columns())
    columns = {c: df[c].tolist() for c in used}  # plain lists: much faster than per-row frame access
    del df

    def rows() -> Iterator[dict[str, Any]]:  # one small dict at a time: a million rows stay columns
        for vals in zip(*(columns[c] for c in used), strict=True):
            yield dict(zip(used, vals, strict=True))

    records = rows()
    sex_ref, birth_ref, age_ref = _col(mapping.sex), _col(mapping.birth_date), _col(mapping.age)
    # first pass: every identifier of every patient, so a name in row 1 is also cleaned from row 900
    whos = []
    seen: set[tuple[str, str, str]] = set()  # (patient, kind, value) already known: rows repeat them
    from curata.collect.clinical._records import parse_date

    for rec in records:
        pid = (rec.get(mapping.patient_id) or "").strip()
        if not pid:
            whos.append(None)
            continue
        who = deid.patient(pid)
        for kind, cols in (
            ("name", id_cols["names"]),
            ("word", (*id_cols["addresses"], *id_cols["phones"], *id_cols["ids"])),
        ):
            for col in cols:
                v = rec.get(col)
                if v and (pid, kind, v) not in seen:
                    seen.add((pid, kind, v))
                    (who.ids.add_name if kind == "name" else who.ids.add_word)(str(v))
        b = rec.get(mapping.birth_date) if mapping.birth_date else None
        if b and (pid, "birth", b) not in seen:
            seen.add((pid, "birth", b))
            try:
                who.ids.add_date(parse_date(str(b).strip(), mapping.date_format).strftime("%Y%m%d"))
            except ValueError:
                who.ids.add_word(str(b).strip())
        whos.append(who)
    builder.know_identifiers(deid._patients.values())
    for i, (rec, who) in enumerate(zip(rows(), whos, strict=True)):
        line = i + 2  # the header is line 1
        batch.rows += 1
        if who is None:
            batch.quarantined.append((line, f"{mapping.patient_id}: no patient ID"))
            continue
        mark = {t: len(v) for t, v in batch.events.items()}
        try:
            builder.person(who, sex=_get(rec, sex_ref), birth=_get(rec, birth_ref))
            first_date = None
            for ev in mapping.events:
                r = ev.refs
                row = builder.event(
                    ev.table,
                    who,
                    line,
                    date=_get(rec, r.get("date")),
                    end_date=_get(rec, r.get("end_date")),
                    code=_get(rec, r.get("code")),
                    system=_get(rec, r.get("system")),
                    display=_get(rec, r.get("display")),
                    value=_get(rec, r.get("value")),
                    unit=_get(rec, r.get("unit")),
                    stage=_get(rec, r.get("stage")),
                    note=_get(rec, r.get("note")),
                    source_id=_get(rec, r.get("id")),
                    slide=_get(rec, r.get("slide")),
                    anatomic_site=_get(rec, r.get("site")),
                )
                if mapping.age and first_date is None:
                    first_date = next((v for k, v in row.items() if k.endswith("_date") and v), None)
            if mapping.age:
                builder.note_age(who, builder.number(_get(rec, age_ref), "age"), first_date)
        except RowError as exc:
            for t, n in mark.items():  # a refused row leaves nothing behind
                del batch.events[t][n:]
            for t in set(batch.events) - set(mark):
                batch.events[t].clear()
            batch.quarantined.append((line, str(exc)))
    batch.identities = dict(deid._patients)
    return batch


def _col(name: str | None) -> Any:
    from curata.collect.clinical.mapping import Ref

    return Ref(column=name) if name else None
