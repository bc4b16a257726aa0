"""Filing a de-identified clinical batch: the blob first, then persons, events and periods in one commit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from curata.collect.clinical import _index
from curata.collect.clinical._records import ClinicalBatch
from curata.collect.clinical.models import (
    clinical_id_counter,
    clinical_index,
    clinical_source,
    clinical_table,
    observation_period,
    person,
)

_DATE_COLUMNS = {
    "condition_occurrence": "condition_start_date",
    "procedure_occurrence": "procedure_date",
    "drug_exposure": "drug_exposure_start_date",
    "measurement": "measurement_date",
    "observation": "observation_date",
    "specimen": "specimen_date",
}


def person_ids(session: Session, site_id: int, pseudonyms: Iterable[str]) -> dict[str, int]:
    """pseudonym -> person_id of the site's persons among ``pseudonyms`` (the DBAPI cursor of the session's
    connection, as insert_frame writes: thousands of bound values cost SQLAlchemy more than the query)."""
    wanted = sorted(set(pseudonyms))
    found: dict[str, int] = {}
    if not wanted:
        return found
    session.flush()
    conn = session.connection()
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        if conn.dialect.name == "sqlite":
            for i in range(0, len(wanted), 2000):
                chunk = wanted[i : i + 2000]
                cur.execute(
                    f'SELECT pseudonym, person_id FROM "{person.name}" WHERE site_id = ? AND pseudonym IN '
                    f"({', '.join('?' * len(chunk))})",
                    [site_id, *chunk],
                )
                found.update({p: int(pid) for p, pid in cur.fetchall()})
        else:
            cur.execute(
                f'SELECT pseudonym, person_id FROM "{person.name}" WHERE site_id = %s AND pseudonym = ANY(%s)',
                (site_id, wanted),
            )
            found.update({p: int(pid) for p, pid in cur.fetchall()})
    finally:
        cur.close()
    return found


def ensure_persons(
    session: Session,
    site_id: int,
    batch: ClinicalBatch,
    digest: str | None,
    created: set[str] | None = None,
) -> dict[str, int]:
    """pseudonym -> person_id for the batch's persons, filing the new ones; ``created`` (when given)
    receives the pseudonyms filed now."""
    ids = person_ids(session, site_id, batch.persons)
    new = [p for key, p in batch.persons.items() if key not in ids]
    if created is not None:
        created.update(key for key in batch.persons if key not in ids)
    if new:
        import numpy as np

        def column(values: list[Any]) -> Any:
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out

        names = column([p.pseudonym for p in new])
        frame = {
            "pseudonym": names,
            "person_source_value": names,
            "gender_source_value": column([p.sex for p in new]),
            "year_of_birth": column([p.year_of_birth for p in new]),
            "age_capped": column([bool(p.age_capped) for p in new]),
        }
        insert_frame(session, person, frame, {"site_id": site_id, "source_digest": digest})
    # facts a later input adds to a known person (never overwriting one already filed), in one executemany
    known = [(ids[key], p) for key, p in batch.persons.items() if key in ids]
    updates = [
        {"pid": pid, "sex": p.sex, "yob": p.year_of_birth, "capped": bool(p.age_capped)}
        for pid, p in known
        if p.sex or p.year_of_birth is not None
    ]
    if updates:
        session.execute(
            sa.update(person)
            .where(person.c.person_id == sa.bindparam("pid"))
            .values(
                gender_source_value=sa.func.coalesce(person.c.gender_source_value, sa.bindparam("sex")),
                year_of_birth=sa.func.coalesce(person.c.year_of_birth, sa.bindparam("yob")),
                age_capped=sa.or_(person.c.age_capped, sa.bindparam("capped")),
            ),
            updates,
        )
    if not new:
        return ids
    return {**ids, **person_ids(session, site_id, (key for key in batch.persons if key not in ids))}


def _spans(name: str, table: Any, person: Any, spans: dict[int, list[Any]]) -> None:
    """Widen ``spans`` (person_id -> [first, last] day) by the table's dated events (start dates, as
    OMOP periods count); ``person``: each row's person_id."""
    import pandas as pd
    import pyarrow as pa

    col = _DATE_COLUMNS.get(name)
    if col is None or col not in table.column_names or not table.num_rows:
        return
    days = table.column(col).combine_chunks().cast(pa.date32()).cast(pa.int32())
    valid = days.is_valid().to_numpy(zero_copy_only=False)
    values = days.fill_null(0).to_numpy(zero_copy_only=False)
    got = pd.Series(values[valid]).groupby(person[valid]).agg(["min", "max"])
    # days since the epoch as dates, all at once (datetime64[D] converts to datetime.date)
    lows = got["min"].to_numpy().astype("datetime64[D]").tolist()
    highs = got["max"].to_numpy().astype("datetime64[D]").tolist()
    for pid, lo_day, hi_day in zip(got.index.tolist(), lows, highs, strict=True):
        s = spans.get(pid)
        if s is None:
            spans[pid] = [lo_day, hi_day]
        else:
            s[0], s[1] = min(s[0], lo_day), max(s[1], hi_day)


def update_periods(
    session: Session, site_id: int, spans: dict[int, list[Any]], new: Iterable[int] = ()
) -> None:
    """One observation period per person: from the first to the last dated event Curata holds (the
    periods already filed widened by the new events). ``new``: persons filed in this transaction, who
    have no period yet (none is looked up or deleted for them)."""
    fresh = set(new)
    pids = sorted(p for p in spans if p not in fresh)
    for i in range(0, len(pids), 500):
        chunk = pids[i : i + 500]
        for pid, lo, hi in session.execute(
            sa.select(
                observation_period.c.person_id,
                observation_period.c.observation_period_start_date,
                observation_period.c.observation_period_end_date,
            ).where(observation_period.c.person_id.in_(chunk))
        ):
            s = spans[int(pid)]
            s[0], s[1] = min(s[0], lo), max(s[1], hi)
        session.execute(sa.delete(observation_period).where(observation_period.c.person_id.in_(chunk)))
    if spans:
        import numpy as np

        pids = list(spans)
        frame = {
            "person_id": np.array(pids, dtype=np.int64),
            "observation_period_start_date": np.array([spans[p][0] for p in pids], dtype="datetime64[D]"),
            "observation_period_end_date": np.array([spans[p][1] for p in pids], dtype="datetime64[D]"),
            "record_key": np.array(
                [hashlib.sha256(f"period|{site_id}|{pid}".encode()).hexdigest() for pid in pids], dtype=object
            ),
        }
        # 32817: EHR (OMOP type concept)
        insert_frame(
            session, observation_period, frame, {"site_id": site_id, "period_type_concept_id": 32817}
        )


def cap_ages(session: Session, person_ids: Iterable[int]) -> int:
    """Cap each person's year of birth against their last event of ANY input (the observation period):
    a FHIR export files Patient and Condition as two inputs, so neither input alone shows an age above
    89 (HIPAA Safe Harbor). A year of birth more than 90 years before the last event becomes that year
    less 90, marked ``age_capped``. Returns the persons capped."""
    from curata.collect.clinical.deid import AGE_CAP

    pids = sorted({int(p) for p in person_ids})
    updates = []
    for i in range(0, len(pids), 500):
        stmt = (
            sa.select(
                person.c.person_id, person.c.year_of_birth, observation_period.c.observation_period_end_date
            )
            .join(observation_period, observation_period.c.person_id == person.c.person_id)
            .where(person.c.person_id.in_(pids[i : i + 500]), person.c.year_of_birth.is_not(None))
        )
        for pid, born, last in session.execute(stmt):
            if last is not None and last.year - int(born) > AGE_CAP + 1:
                updates.append({"pid": int(pid), "yob": last.year - (AGE_CAP + 1)})
    if updates:
        session.execute(
            sa.update(person)
            .where(person.c.person_id == sa.bindparam("pid"))
            .values(year_of_birth=sa.bindparam("yob"), age_capped=True),
            updates,
        )
    return len(updates)


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


def allocate_ids(session: Session, table: str, n: int) -> int:
    """The first of ``n`` new row ids of ``table`` (the counter row is locked until the commit, so two
    filers never get the same ids)."""
    c = clinical_id_counter
    done = session.execute(
        sa.update(c).where(c.c.table_name == table).values(next_id=c.c.next_id + n)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        session.execute(sa.insert(c).values(table_name=table, next_id=1 + n))
    return int(session.scalar(sa.select(c.c.next_id).where(c.c.table_name == table)) or 0) - n


def file_tables(
    session: Session, site_id: int, source_digest: str, tables: dict[str, Any], blobs: dict[str, str],
    ids: dict[str, int], spans: dict[int, list[Any]] | None = None,
) -> int:  # fmt: skip
    """The catalog side of an input's Parquet tables: one ``clinical_table`` row per table (with its ids)
    and the per-patient index. ``ids``: pseudonym -> person_id; ``spans``, when given, is widened by the
    tables' dated events (see ``_spans``). Returns the rows filed."""
    import numpy as np
    import pyarrow as pa

    written = 0
    frames = []
    for name, table in tables.items():
        n = table.num_rows
        if not n:
            continue
        session.execute(
            sa.insert(clinical_table).values(
                site_id=site_id,
                source_digest=source_digest,
                table_name=name,
                blob_digest=blobs[name],
                rows=n,
                first_id=allocate_ids(session, name, n),
            )
        )
        col = table.column("pseudonym").combine_chunks()
        enc = col if isinstance(col.type, pa.DictionaryType) else col.dictionary_encode()
        lookup = np.array([ids[p] for p in enc.dictionary.to_pylist()], dtype=np.int64)
        person = lookup[enc.indices.to_numpy(zero_copy_only=False)]
        frames.append(_index.index_frame(name, table, person, source_digest))
        if spans is not None:
            _spans(name, table, person, spans)
        written += n
    merged = _index.merge_index_frames(frames)
    if merged:
        insert_frame(session, clinical_index, merged, {})
    return written


def batch_tables(batch: ClinicalBatch) -> dict[str, Any]:
    """The batch's rows as one Arrow table per OMOP table (column frames and row dicts together)."""
    import pyarrow as pa

    out: dict[str, Any] = {}
    for name in (*batch.frames, *(t for t in batch.events if t not in batch.frames)):
        parts = []
        frame = batch.frames.get(name)
        if frame is not None and len(frame["pseudonym"]):
            parts.append(_index.to_arrow(name, frame, len(frame["pseudonym"]), batch.input_digest))
        rows = batch.events.get(name)
        if rows:
            parts.append(_index.to_arrow(name, _index.rows_frame(name, rows), len(rows)))
        if len(parts) > 1:  # the FHIR rows' keys are whole: the prefix goes, the columns are decoded
            parts = [_index.plain(p) for p in parts]
            out[name] = pa.concat_tables(parts)
        elif parts:
            out[name] = parts[0]
    return out


def file_batch(
    session: Session,
    site_id: int,
    batch: ClinicalBatch,
    output_digest: str | None,
    tables: dict[str, Any] | None = None,
    blobs: dict[str, str] | None = None,
) -> int:
    """File one batch (the caller commits): persons, their periods, the tables' catalog rows and index,
    and the input. ``tables`` / ``blobs``: the batch's Arrow tables and their stored Parquet digests."""
    from curata.collect.clinical._records import PersonFacts

    tables = batch_tables(batch) if tables is None else tables
    for table in tables.values():
        for p in table.column("pseudonym").unique().to_pylist():
            if p not in batch.persons:
                batch.persons[p] = PersonFacts(p)
    created: set[str] = set()
    ids = ensure_persons(session, site_id, batch, batch.input_digest, created)
    written = 0
    if tables:
        if blobs is None:
            raise ValueError("file_batch: the Parquet digests of the tables are needed")
        spans: dict[int, list[Any]] = {}
        written = file_tables(session, site_id, batch.input_digest, tables, blobs, ids, spans)
        update_periods(session, site_id, spans, new=(ids[p] for p in created))
    cap_ages(session, ids.values())
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


def known_inputs(session: Session, site_id: int, digest: str | None = None) -> set[str]:
    """The inputs (sha256) this site has filed, clinical and genomic (only ``digest``, when given)."""
    from curata.collect.genomics.models import genomic_file

    q1 = sa.select(clinical_source.c.input_digest).where(clinical_source.c.site_id == site_id)
    q2 = sa.select(genomic_file.c.input_digest).where(genomic_file.c.site_id == site_id)
    if digest is not None:
        q1 = q1.where(clinical_source.c.input_digest == digest)
        q2 = q2.where(genomic_file.c.input_digest == digest)
    return set(session.scalars(q1)) | set(session.scalars(q2))
