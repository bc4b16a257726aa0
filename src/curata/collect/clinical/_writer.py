"""Filing a de-identified clinical batch: the blob first, then persons, events and periods in one commit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from curata.collect.clinical._records import ClinicalBatch
from curata.collect.clinical.models import OMOP, clinical_source, observation_period, person

_DATE_COLUMNS = {
    "condition_occurrence": "condition_start_date",
    "procedure_occurrence": "procedure_date",
    "drug_exposure": "drug_exposure_start_date",
    "measurement": "measurement_date",
    "observation": "observation_date",
    "specimen": "specimen_date",
}


def _fit(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """Only the table's columns; text cut to the CDM's varchar length (PostgreSQL enforces it)."""
    out = {}
    for k, v in row.items():
        col = table.c.get(k)
        if col is None:
            continue
        length = getattr(col.type, "length", None)
        if isinstance(v, str) and length:
            v = v[:length]
        out[k] = v
    return out


def person_ids(session: Session, site_id: int, pseudonyms: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(pseudonyms))
    found: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        rows = session.execute(
            sa.select(person.c.pseudonym, person.c.person_id).where(
                person.c.site_id == site_id, person.c.pseudonym.in_(chunk)
            )
        )
        found.update({p: int(pid) for p, pid in rows})
    return found


def ensure_persons(
    session: Session, site_id: int, batch: ClinicalBatch, digest: str | None
) -> dict[str, int]:
    ids = person_ids(session, site_id, batch.persons)
    new = [
        {
            "site_id": site_id,
            "pseudonym": p.pseudonym,
            "person_source_value": p.pseudonym,
            "gender_source_value": p.sex,
            "year_of_birth": p.year_of_birth,
            "age_capped": p.age_capped,
            "gender_concept_id": 0,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
            "source_digest": digest,
        }
        for key, p in batch.persons.items()
        if key not in ids
    ]
    if new:
        session.execute(sa.insert(person), new)
    for key, p in batch.persons.items():
        if key in ids and (p.sex or p.year_of_birth is not None):
            values: dict[str, Any] = {}
            if p.sex:
                values["gender_source_value"] = sa.func.coalesce(person.c.gender_source_value, p.sex)
            if p.year_of_birth is not None:
                values["year_of_birth"] = sa.func.coalesce(person.c.year_of_birth, p.year_of_birth)
            if p.age_capped:
                values["age_capped"] = True
            session.execute(sa.update(person).where(person.c.person_id == ids[key]).values(**values))
    return person_ids(session, site_id, batch.persons) if new else ids


def refresh_periods(session: Session, site_id: int, pids: Iterable[int]) -> None:
    """One observation period per person: from the first to the last dated event Curata holds."""
    pids = sorted(set(pids))
    for i in range(0, len(pids), 500):
        chunk = pids[i : i + 500]
        spans: dict[int, list[Any]] = {}
        for table, col in _DATE_COLUMNS.items():
            t = OMOP[table]
            rows = session.execute(
                sa.select(t.c.person_id, sa.func.min(t.c[col]), sa.func.max(t.c[col]))
                .where(t.c.person_id.in_(chunk))
                .group_by(t.c.person_id)
            )
            for pid, lo, hi in rows:
                s = spans.setdefault(int(pid), [lo, hi])
                s[0], s[1] = min(s[0], lo), max(s[1], hi)
        session.execute(sa.delete(observation_period).where(observation_period.c.person_id.in_(chunk)))
        if spans:
            session.execute(
                sa.insert(observation_period),
                [
                    {
                        "person_id": pid,
                        "observation_period_start_date": lo,
                        "observation_period_end_date": hi,
                        "period_type_concept_id": 32817,  # EHR (OMOP type concept)
                        "site_id": site_id,
                        "record_key": hashlib.sha256(f"period|{site_id}|{pid}".encode()).hexdigest(),
                    }
                    for pid, (lo, hi) in spans.items()
                ],
            )


def _column_values(col: sa.Column[Any], values: Any, sqlite: bool) -> list[Any]:
    """One frame column as DBAPI values: None for missing, dates as SQLAlchemy stores them on SQLite."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        nat = np.isnat(arr)
        if nat.all():  # the common case of a *_datetime column: dates without a time of day
            return [None] * len(arr)
        if sqlite:
            unit = "D" if isinstance(col.type, sa.Date) and not isinstance(col.type, sa.DateTime) else "s"
            text: Any = np.datetime_as_string(arr.astype(f"datetime64[{unit}]"), unit=unit)  # type: ignore[call-overload]
            out = text.astype(object)
            out[nat] = None
            if unit == "s":
                return [None if v is None else v.replace("T", " ") + ".000000" for v in out.tolist()]
            return list(out)
        out = arr.astype(
            "datetime64[D]" if not isinstance(col.type, sa.DateTime) else "datetime64[us]"
        ).astype(object)
        return list(out)  # NaT became None
    if arr.dtype.kind == "f":
        obj = arr.astype(object)
        obj[np.isnan(arr)] = None
        return list(obj)
    length = getattr(col.type, "length", None)
    values = arr.tolist()
    if length and arr.dtype == object:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            longest = pc.max(pc.utf8_length(pa.array(values, type=pa.string()))).as_py() or 0
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            longest = length + 1
        if longest > length:
            return [v[:length] if isinstance(v, str) and len(v) > length else v for v in values]
        return list(values)
    return list(values)


def insert_frame(session: Session, table: sa.Table, frame: dict[str, Any], consts: dict[str, Any]) -> int:
    """Bulk insert of a column frame: one executemany on SQLite, COPY on PostgreSQL (same transaction)."""
    n = len(next(iter(frame.values()))) if frame else 0
    if not n:
        return 0
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    names = [c for c in frame if c in table.c and c not in consts]
    extra = {
        c.name: 0
        for c in table.c
        if c.name.endswith("_concept_id") and c.name not in frame and c.name not in consts
    }
    columns = [_column_values(table.c[c], frame[c], sqlite) for c in names]
    fixed = {**consts, **extra}
    names += list(fixed)
    columns += [[v] * n for v in fixed.values()]
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        if sqlite:
            sql = f'INSERT INTO "{table.name}" ({", ".join(chr(34) + c + chr(34) for c in names)}) VALUES ({", ".join("?" * len(names))})'
            for i in range(0, n, 50_000):
                cur.executemany(sql, list(zip(*(c[i : i + 50_000] for c in columns), strict=True)))
        else:
            cols = ", ".join(f'"{c}"' for c in names)
            with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
    finally:
        cur.close()
    return n


def file_batch(session: Session, site_id: int, batch: ClinicalBatch, output_digest: str | None) -> int:
    """Insert everything of one batch (the caller commits); returns the rows written."""
    from curata.collect.clinical._records import PersonFacts

    for frame in batch.frames.values():
        for p in set(frame["pseudonym"].tolist()):
            if p not in batch.persons:
                batch.persons[p] = PersonFacts(p)
    for rows in batch.events.values():
        for r in rows:
            if r["pseudonym"] not in batch.persons:
                batch.persons[r["pseudonym"]] = PersonFacts(r["pseudonym"])
    ids = ensure_persons(session, site_id, batch, batch.input_digest)
    written = 0
    for table, rows in batch.events.items():
        t = OMOP[table]
        payload = []
        for r in rows:
            d = _fit(t, r)
            d["person_id"] = ids[r["pseudonym"]]
            d["site_id"] = site_id
            d["source_digest"] = batch.input_digest
            payload.append(d)
        keys = set().union(*payload) if payload else set()
        for d in payload:  # executemany needs the same keys in every row
            for k in keys - d.keys():
                d[k] = None
        for i in range(0, len(payload), 5000):
            session.execute(sa.insert(t), payload[i : i + 5000])
        written += len(payload)
    for table, frame in batch.frames.items():
        if not len(frame["pseudonym"]):
            continue
        import numpy as np

        names, inverse = np.unique(frame["pseudonym"], return_inverse=True)
        frame = {**frame, "person_id": np.array([ids[p] for p in names], dtype=np.int64)[inverse]}
        written += insert_frame(
            session, OMOP[table], frame, {"site_id": site_id, "source_digest": batch.input_digest}
        )
    refresh_periods(session, site_id, ids.values())
    session.execute(
        sa.insert(clinical_source).values(
            site_id=site_id,
            input_digest=batch.input_digest,
            kind=batch.kind,
            output_digest=output_digest,
            rows=batch.rows,
            quarantined=len(batch.quarantined),
        )
    )
    return written


def known_inputs(session: Session, site_id: int) -> set[str]:
    from curata.collect.genomics.models import genomic_file

    got = set(
        session.scalars(sa.select(clinical_source.c.input_digest).where(clinical_source.c.site_id == site_id))
    )
    got |= set(
        session.scalars(sa.select(genomic_file.c.input_digest).where(genomic_file.c.site_id == site_id))
    )
    return got
