"""The clinical tables as Parquet (the whole rows, in the store) and their per-patient index (in SQL).

Writing one catalog row per OMOP row or variant costs more than reading the export, so the full tables of
each input are kept as one Parquet blob per table, and the catalog holds, per (patient, input, table), one
``clinical_index`` row: how many rows the patient has there and a JSON document of the DISTINCT values of
the columns cohort queries test (``{"stage": ["IIIA"], "value_as_number": [11.2, 12.5]}``). A cohort test
of a field ("a row of the patient whose value passes") is then "a distinct value of the patient passes",
evaluated element by element in SQL (``json_each`` on SQLite, ``json_array_elements_text`` on PostgreSQL),
so every operator keeps the meaning it had over the rows: catalog rows scale with patients, not rows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa

# The columns cohort queries test, per table (``select.query``'s clinical.* and genomic.* fields): text
# values and numbers. A query field over a column outside this list is refused by a test of the index.
INDEXED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "condition_occurrence": (("source_display", "condition_source_value", "stage", "stage_group"), ()),
    "measurement": (("source_display", "measurement_source_value"), ("value_as_number",)),
    "observation": (("source_display", "observation_source_value"), ()),
    "procedure_occurrence": (("source_display", "procedure_source_value"), ()),
    "drug_exposure": (("source_display", "drug_source_value"), ()),
    "specimen": (("specimen_source_value", "anatomic_site_source_value"), ()),
    "genomic_variant": (
        ("gene", "consequence", "hgvs_c", "hgvs_p", "zygosity", "chrom"),
        ("allele_frequency", "population_af", "pos"),
    ),
}
EVENT_TABLES = tuple(t for t in INDEXED if t != "genomic_variant")
# Catalog columns a Parquet file does not hold (they are the catalog's: ids, the site, the input).
CATALOG_COLUMNS = ("person_id", "site_id", "source_digest", "file_id")
_KEY_PREFIX = b"curata_record_key_prefix"  # Parquet metadata: what every record key of the file starts with


def sql_table(name: str) -> sa.Table:
    from curata.collect.clinical.models import OMOP
    from curata.collect.genomics.models import genomic_variant

    return genomic_variant if name == "genomic_variant" else OMOP[name]


def id_column(name: str) -> str:
    """The primary key of a table (``condition_occurrence_id``; ``id`` for the variants)."""
    return next(c.name for c in sql_table(name).columns if c.primary_key)


def arrow_type(col: sa.Column[Any]) -> Any:
    """The Arrow type a catalog column is stored (and travels, exchange.py) as."""
    import pyarrow as pa

    t = col.type
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.Integer):
        return pa.int64()
    if isinstance(t, sa.Float):
        return pa.float64()
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us")
    if isinstance(t, sa.Date):
        return pa.date32()
    return pa.string()


def arrow_schema(name: str) -> Any:
    """The Parquet schema of a table: its catalog columns but the ids, the site and the input, plus the
    patient's pseudonym (the same in every workspace: the file does not depend on catalog ids)."""
    import pyarrow as pa

    t = sql_table(name)
    pk = id_column(name)
    fields = [pa.field("pseudonym", pa.string())]
    fields += [
        pa.field(c.name, arrow_type(c)) for c in t.columns if c.name != pk and c.name not in CATALOG_COLUMNS
    ]
    return pa.schema(fields)


def _arrow_column(values: Any, typ: Any, length: int | None) -> Any:
    """One column as Arrow of the schema's type; text may stay dictionary-encoded (Parquet writes it as it
    stands; readers cast to the schema)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        arr = np.asarray(values)
        if arr.dtype.kind == "M" and pa.types.is_date32(typ):
            arr = arr.astype("datetime64[D]")
        values = pa.array(arr, from_pandas=True) if arr.dtype != object else pa.array(arr, type=typ)
    if isinstance(values.type, pa.DictionaryType) and pa.types.is_string(typ):
        values = _used_only(values)
        if values.type.value_type != typ:
            values = values.cast(typ)
    elif values.type != typ:
        values = values.cast(typ)
    if length and pa.types.is_string(typ) and len(values):
        plain = values.dictionary if isinstance(values.type, pa.DictionaryType) else values
        longest = pc.max(pc.utf8_length(plain)).as_py() or 0
        if longest > length:  # the CDM's varchar length (PostgreSQL enforced it on the old rows)
            values = pc.utf8_slice_codeunits(values.cast(typ), 0, length)
    return values


def _used_only(values: Any) -> Any:
    """A dictionary array without the dictionary values no row uses: a value of a refused row (or one
    that cleaning replaced) may hold an identifier and must never reach the file."""
    import pyarrow as pa

    size = len(values.dictionary)
    if not size:
        return values
    indices = values.indices
    if indices.null_count:
        valid = indices.is_valid().to_numpy(zero_copy_only=False)
        idx = indices.fill_null(0).to_numpy(zero_copy_only=False)
        used = np.bincount(idx[valid], minlength=size).astype(bool)
    else:  # the common case: the indices as they stand, no copy
        valid = np.ones(len(indices), dtype=bool)
        idx = indices.to_numpy(zero_copy_only=False)
        used = np.bincount(idx, minlength=size).astype(bool)
    if used.all():
        return values
    idx = idx.astype(np.int64)
    keep = np.flatnonzero(used)
    remap = np.full(len(values.dictionary), -1, dtype=np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    indices = pa.array(remap[idx], mask=~valid)
    return pa.DictionaryArray.from_arrays(indices, values.dictionary.take(pa.array(keep)))


def to_arrow(name: str, frame: Mapping[str, Any], n: int, source_digest: str | None = None) -> Any:
    """A column frame ({column: numpy or Arrow array}) as an Arrow table of ``arrow_schema(name)``;
    columns the frame lacks are null (concept ids 0, as the catalog's default). A frame may give its record
    keys without the input's prefix (``record_key_suffix``): the prefix is then kept in the metadata."""
    import pyarrow as pa

    schema = arrow_schema(name)
    t = sql_table(name)
    arrays = []
    meta: dict[bytes, bytes] = {}
    zeros: list[Any] = []  # one array of n zeros, shared by the concept ids the frame lacks (immutable)
    if "record_key_suffix" in frame:
        if not source_digest:
            raise ValueError("record keys without their prefix need the input's digest")
        frame = {**frame, "record_key": frame["record_key_suffix"]}
        meta[_KEY_PREFIX] = f"{source_digest[:40]}:".encode()
    for f in schema:
        if f.name in frame:
            col = t.c.get(f.name)
            got = _arrow_column(frame[f.name], f.type, getattr(getattr(col, "type", None), "length", None))
            if f.name.endswith("_concept_id") and got.null_count:
                got = got.fill_null(0)  # the catalog's default: 0, "no matching concept"
            arrays.append(got)
        elif f.name.endswith("_concept_id"):
            if not zeros:
                zeros.append(pa.array(np.zeros(n, dtype=np.int64)))
            arrays.append(zeros[0])
        else:
            arrays.append(pa.nulls(n, f.type))
    table = pa.Table.from_arrays(arrays, names=schema.names)
    return table.replace_schema_metadata(meta) if meta else table


def rows_frame(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Row dicts (the FHIR reader's) as a column frame of the table's Parquet schema."""
    import pyarrow as pa

    schema = arrow_schema(name)
    return {f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema}


def parquet_bytes(table: Any, source_digest: str | None = None) -> bytes:
    """Uncompressed pages: every text value stands in the blob as written (dictionary or plain), so a
    byte scan of the store (the demo's leak check, the planted-identifier tests) reads it. Record keys
    all start with the input's digest: that prefix is kept once, in the file's metadata."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    has_prefix = _KEY_PREFIX in (table.schema.metadata or {})
    if source_digest and not has_prefix and "record_key" in table.column_names and table.num_rows:
        prefix = f"{source_digest[:40]}:"
        keys = table.column("record_key")
        if pc.all(pc.starts_with(keys, prefix)).as_py():
            i = table.column_names.index("record_key")
            table = table.set_column(i, "record_key", pc.utf8_slice_codeunits(keys, len(prefix)))
            meta = dict(table.schema.metadata or {})
            meta[_KEY_PREFIX] = prefix.encode()
            table = table.replace_schema_metadata(meta)
    # columns with nothing in them (no value, or concept ids all 0) are left out: readers put them back
    empty = [
        c
        for c in table.column_names
        if c != "pseudonym"
        and (
            table.column(c).null_count == table.num_rows
            or (c.endswith("_concept_id") and _all_zero(table.column(c)))
        )
    ]
    if empty and table.num_rows:
        table = table.drop_columns(empty)
    buf = pa.BufferOutputStream()
    unique = {"record_key", "hgvs_c", "pos"}  # one value per row: a dictionary would only be given up
    pq.write_table(
        table,
        buf,
        compression="NONE",
        use_dictionary=[c for c in table.column_names if c not in unique],
        write_statistics=False,
    )
    return bytes(buf.getvalue())


def _all_zero(column: Any) -> bool:
    import pyarrow.compute as pc

    bounds = pc.min_max(column).as_py()  # nulls skipped, as pc.any skips them
    return bounds["min"] == 0 and bounds["max"] == 0


def plain(table: Any, name: str | None = None) -> Any:
    """A table of ours with whole record keys and the schema's plain types (no dictionaries)."""
    import pyarrow.compute as pc

    prefix = (table.schema.metadata or {}).get(_KEY_PREFIX)
    if prefix:
        i = table.column_names.index("record_key")
        keys = pc.binary_join_element_wise(prefix.decode(), table.column(i), "")
        table = table.set_column(i, "record_key", keys)
    if name is None:
        return table.replace_schema_metadata(None).cast(pa_schema_plain(table.schema))
    import pyarrow as pa

    schema = arrow_schema(name)
    for f in schema:  # the columns a file left out (nothing in them)
        if f.name not in table.column_names:
            n = table.num_rows
            fill = (
                pa.array(np.zeros(n, dtype=np.int64))
                if f.name.endswith("_concept_id")
                else pa.nulls(n, f.type)
            )
            table = table.append_column(f.name, fill)
    return table.replace_schema_metadata(None).select(schema.names).cast(schema)


def pa_schema_plain(schema: Any) -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(f.name, f.type.value_type if isinstance(f.type, pa.DictionaryType) else f.type)
            for f in schema
        ]
    )


def read_parquet(data: bytes, name: str) -> Any:
    import pyarrow.parquet as pq

    return plain(pq.read_table(io.BytesIO(data)), name)


# -- the per-patient index -----------------------------------------------------------------------------


_NEEDS_ESCAPE = r'["\\\x00-\x1f\x7f]'


def _json_values(values: Any, numeric: bool) -> Any:
    """Each distinct value (an Arrow array: float64, or text) as a JSON literal (Arrow text): numbers in
    their shortest round-trip form (the double they came from, exactly), text quoted (escaped by
    ``json`` where it must be)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(values.type):  # whole numbers below 10**9: their digits (_codes)
        return pc.cast(values, pa.string())
    if numeric:
        text = pc.cast(values, pa.string())
        if len(values) and not pc.all(pc.equal(pc.cast(text, pa.float64()), values)).as_py():
            # never guess a number's text
            return pa.array([repr(float(v)) for v in values.to_pylist()], pa.string())
        return text
    if len(values) and _may_need_escape(values):
        return pa.array([json.dumps(v, ensure_ascii=False) for v in values.to_pylist()], pa.string())
    return pc.binary_join_element_wise('"', values, '"', "")


def _may_need_escape(values: Any) -> bool:
    """Whether a text array may hold a character JSON escapes (a quote, a backslash, a control
    character): numpy over its bytes, a regular expression only over an array whose bytes have one."""
    import pyarrow.compute as pc

    offsets, data = values.buffers()[1:3]
    if data is None:
        return False
    first, last = np.frombuffer(offsets, dtype=np.int32)[[values.offset, values.offset + len(values)]]
    raw = np.frombuffer(data, dtype=np.uint8)[first:last]
    if not ((raw < 0x20) | (raw == 0x22) | (raw == 0x5C) | (raw == 0x7F)).any():
        return False
    return bool(pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py())


def _distinct_lists(person: np.ndarray, n_people: int, codes: np.ndarray, encoded: Any) -> Any:
    """Per person (0..n_people-1) the JSON list of the distinct codes it has (``codes`` < 0: none);
    ``encoded``: the JSON literal of each code (Arrow text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = codes >= 0
    width = max(len(encoded), 1)
    if n_people == 1:  # one patient: the codes any row has
        uniq = np.flatnonzero(np.bincount(codes[ok], minlength=width)) if ok.any() else np.zeros(0, np.int64)
        who, what = np.zeros(len(uniq), dtype=np.int64), uniq
    else:
        key = person[ok].astype(np.int64) * width + codes[ok]
        if n_people * width <= 4_000_000:
            uniq = np.flatnonzero(np.bincount(key, minlength=n_people * width))
        else:
            uniq = np.unique(key)
        who, what = uniq // width, uniq % width
    offsets = np.searchsorted(who, np.arange(n_people + 1)).astype(np.int32)
    every = n_people == 1 and len(what) == len(encoded)  # the one patient has every value
    values = encoded if every else encoded.take(pa.array(what))
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")


def _codes(arr: Any, numeric: bool) -> tuple[np.ndarray, Any]:
    """Per-row codes into the distinct non-null values (-1 for null / NaN) and those values (Arrow)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if numeric and pa.types.is_integer(arr.type) and not arr.null_count and len(arr):
        ints = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)
        if int(np.abs(ints).max()) < 10**9:  # a double's shortest text is then its digits: no float
            codes, uniques = pd.factorize(ints)
            return np.asarray(codes, dtype=np.int64), pa.array(np.asarray(uniques, dtype=np.int64))
    if numeric:
        vals = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=float)

        codes, uniques = pd.factorize(vals, use_na_sentinel=True)
        uniques = np.asarray(uniques, dtype=float)
        finite = np.isfinite(uniques)  # JSON has no infinities
        if not finite.all():
            remap = np.where(finite, np.cumsum(finite) - 1, -1)
            codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
            uniques = uniques[finite]
        return np.asarray(codes, dtype=np.int64), pa.array(uniques, pa.float64())
    enc = arr.dictionary_encode() if not isinstance(arr.type, pa.DictionaryType) else arr
    codes = pc.fill_null(enc.indices.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)
    dictionary = enc.dictionary
    if dictionary.type != pa.string():
        dictionary = dictionary.cast(pa.string())
    return np.asarray(codes, dtype=np.int64), dictionary


def _people(person_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(person_ids, return_inverse=True)``, hashing the rows instead of sorting them: a million
    rows hold a few thousand people, and only those are sorted."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(person_ids, dtype=np.int64))
    uniques = np.asarray(uniques, dtype=np.int64)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return uniques[order], rank[np.asarray(codes, dtype=np.int64)]


def index_frame(name: str, table: Any, person_ids: np.ndarray, source_digest: str) -> dict[str, Any]:
    """The ``clinical_index`` rows (a column frame) of one Parquet table: per patient, its row count and
    the JSON document of its distinct indexed values. ``person_ids``: the catalog id of each row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    people, person = _people(person_ids)
    n_people = len(people)
    text, nums = INDEXED[name]
    parts: list[Any] = []
    for cols, numeric in ((text, False), (nums, True)):
        for c in cols:
            if c not in table.column_names:
                continue
            codes, uniques = _codes(table.column(c).combine_chunks(), numeric)
            lists = _distinct_lists(person, n_people, codes, _json_values(uniques, numeric))
            parts.append(pc.binary_join_element_wise(f'"{c}":', lists, ""))
    if parts:
        body = pc.binary_join_element_wise(*parts, ",")
        docs = pc.binary_join_element_wise("{", body, "}", "")
    else:
        docs = pa.array(["{}"] * n_people)
    return {
        "person_id": people.astype(np.int64),
        "source_digest": np.full(n_people, source_digest, dtype=object),
        "table_name": np.full(n_people, name, dtype=object),
        "rows": np.bincount(person, minlength=n_people).astype(np.int64),
        "value": docs.to_numpy(zero_copy_only=False),
    }


def merge_index_frames(frames: Iterable[dict[str, Any]]) -> dict[str, Any]:
    frames = [f for f in frames if len(f["person_id"])]
    if not frames:
        return {}
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def backfill_index(conn: sa.Connection) -> int:
    """Index the rows an older catalog keeps in SQL (one row per OMOP row or variant) and start the id
    counters after their ids: what the migration to the Parquet tables runs. Returns the entries written."""
    import pyarrow as pa

    from curata.collect.clinical.models import clinical_id_counter, clinical_index
    from curata.collect.genomics.models import genomic_file

    written = 0
    for name in INDEXED:
        t = sql_table(name)
        pk = id_column(name)
        top = conn.execute(sa.select(sa.func.max(t.c[pk]))).scalar() or 0
        conn.execute(sa.insert(clinical_id_counter).values(table_name=name, next_id=int(top) + 1))
        text, nums = INDEXED[name]
        source = genomic_file.c.input_digest if name == "genomic_variant" else t.c.source_digest
        stmt = sa.select(t.c.person_id, source.label("source"), *(t.c[c] for c in (*text, *nums)))
        if name == "genomic_variant":
            stmt = stmt.join(genomic_file, genomic_file.c.id == t.c.file_id)
        rows = conn.execute(stmt).all()
        by_source: dict[str, list[Any]] = {}
        for r in rows:
            by_source.setdefault(r.source or "", []).append(r)
        for digest, got in by_source.items():
            cols = {c: [getattr(r, c) for r in got] for c in (*text, *nums)}
            arrays = {c: pa.array(v, pa.float64() if c in nums else pa.string()) for c, v in cols.items()}
            table = pa.table(arrays)
            frame = index_frame(name, table, np.array([r.person_id for r in got], dtype=np.int64), digest)
            entries = [dict(zip(frame, vals, strict=True)) for vals in zip(*frame.values(), strict=True)]
            for e in entries:
                e["person_id"], e["rows"] = int(e["person_id"]), int(e["rows"])
            conn.execute(sa.insert(clinical_index), entries)
            written += len(entries)
    return written


__all__ = [
    "CATALOG_COLUMNS",
    "EVENT_TABLES",
    "INDEXED",
    "arrow_schema",
    "backfill_index",
    "id_column",
    "index_frame",
    "parquet_bytes",
    "read_parquet",
    "rows_frame",
    "sql_table",
    "to_arrow",
]
