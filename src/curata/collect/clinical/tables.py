"""Reading the clinical and genomic tables back: the rows of each input's Parquet files (and the rows older
catalogs keep in SQL), with the catalog's ids, as the release, the linkage report and the tests see them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from curata.collect.clinical import _index


def _sql_rows(session: Session, table: sa.Table, person_ids: list[int] | None) -> list[dict[str, Any]]:
    col = table.c.person_id
    if person_ids is None:
        return [dict(r._mapping) for r in session.execute(sa.select(table))]
    out: list[dict[str, Any]] = []
    for i in range(0, len(person_ids), 500):
        chunk = person_ids[i : i + 500]
        out += [dict(r._mapping) for r in session.execute(sa.select(table).where(col.in_(chunk)))]
    return out


def _stored(session: Session, name: str, person_ids: list[int] | None) -> list[Any]:
    """The ``clinical_table`` rows of ``name`` holding rows of these persons (all of them: None)."""
    from curata.collect.clinical.models import clinical_index, clinical_table, person

    t, ix = clinical_table, clinical_index
    if person_ids is None:
        return list(session.execute(sa.select(t).where(t.c.table_name == name)))
    found: dict[int, Any] = {}
    for i in range(0, len(person_ids), 500):
        chunk = person_ids[i : i + 500]
        stmt = (
            sa.select(t)
            .distinct()
            .join(ix, sa.and_(ix.c.source_digest == t.c.source_digest, ix.c.table_name == t.c.table_name))
            .join(person, sa.and_(person.c.person_id == ix.c.person_id, person.c.site_id == t.c.site_id))
            .where(t.c.table_name == name, ix.c.person_id.in_(chunk))
        )
        found.update({int(r.id): r for r in session.execute(stmt)})
    return list(found.values())


def clinical_rows(
    session: Session, store: Any, name: str, person_ids: Iterable[int] | None = None
) -> list[dict[str, Any]]:
    """Every row of one clinical table (an OMOP table or ``genomic_variant``) as a dict of its catalog
    columns, for the given persons (all: None), ordered by person and id."""
    from curata.collect.clinical.models import person

    table = _index.sql_table(name)
    pids = None if person_ids is None else sorted({int(p) for p in person_ids})
    rows = _sql_rows(session, table, pids)  # catalogs older than the Parquet tables keep them in SQL
    if name in _index.INDEXED and (pids is None or pids):
        stored = _stored(session, name, pids)
        if stored:
            pk = _index.id_column(name)
            wanted: dict[int, dict[str, int]] = defaultdict(dict)  # site -> pseudonym -> person_id
            stmt = sa.select(person.c.site_id, person.c.pseudonym, person.c.person_id)
            sites = {int(r.site_id) for r in stored}
            if pids is not None:
                for i in range(0, len(pids), 500):
                    q = stmt.where(person.c.person_id.in_(pids[i : i + 500]))
                    for site, pseudo, pid in session.execute(q):
                        wanted[int(site)][pseudo] = int(pid)
            else:
                for site, pseudo, pid in session.execute(stmt.where(person.c.site_id.in_(sites))):
                    wanted[int(site)][pseudo] = int(pid)
            files = _file_ids(session, stored) if name == "genomic_variant" else {}
            columns = [c.name for c in table.columns]
            for st in stored:
                rows += _blob_rows(store, name, st, wanted[int(st.site_id)], pk, columns, files)
    key = _index.id_column(name) if name in _index.INDEXED else None
    rows.sort(key=lambda r: (r["person_id"], r[key] if key else 0))
    return rows


def _file_ids(session: Session, stored: list[Any]) -> dict[tuple[int, str], int]:
    from curata.collect.genomics.models import genomic_file

    digests = sorted({r.source_digest for r in stored})
    out: dict[tuple[int, str], int] = {}
    for i in range(0, len(digests), 500):
        q = sa.select(genomic_file.c.site_id, genomic_file.c.input_digest, genomic_file.c.id).where(
            genomic_file.c.input_digest.in_(digests[i : i + 500])
        )
        out.update({(int(s), d): int(fid) for s, d, fid in session.execute(q)})
    return out


def _blob_rows(
    store: Any,
    name: str,
    st: Any,
    wanted: dict[str, int],
    pk: str,
    columns: list[str],
    files: dict[tuple[int, str], int],
) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _index.read_parquet(store.get_bytes(st.blob_digest), name)
    ids = pa.array(range(int(st.first_id), int(st.first_id) + table.num_rows), pa.int64())
    table = table.append_column(pk, ids)
    keep = pc.is_in(table.column("pseudonym"), value_set=pa.array(list(wanted), pa.string()))
    table = table.filter(keep)
    out = []
    const = {"site_id": int(st.site_id), "source_digest": st.source_digest}
    if name == "genomic_variant":
        const = {"file_id": files.get((int(st.site_id), st.source_digest))}
    for r in table.to_pylist():
        r["person_id"] = wanted[r.pop("pseudonym")]
        r.update(const)
        out.append({c: r.get(c) for c in columns})
    return out


def index_counts(
    session: Session, person_ids: Iterable[int] | None = None
) -> list[tuple[int, str, str, int]]:
    """(person_id, table, input digest, rows) of the clinical index: who has rows where, and how many."""
    from curata.collect.clinical.models import clinical_index as ix

    stmt = sa.select(ix.c.person_id, ix.c.table_name, ix.c.source_digest, ix.c.rows)
    if person_ids is None:
        return [(int(p), t, d, int(n)) for p, t, d, n in session.execute(stmt)]
    pids = sorted(set(person_ids))
    out: list[tuple[int, str, str, int]] = []
    for i in range(0, len(pids), 500):
        q = stmt.where(ix.c.person_id.in_(pids[i : i + 500]))
        out += [(int(p), t, d, int(n)) for p, t, d, n in session.execute(q)]
    return out


__all__ = ["clinical_rows", "index_counts"]
