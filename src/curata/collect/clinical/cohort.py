"""Cohort tests over the clinical index (``select.query``'s clinical.* and genomic.* fields).

A field's test held for a patient when one of their rows passed it; the index keeps, per patient, input and
table, the distinct values of the tested columns, and a row passes a test on one column exactly when its
value does, so "a row passes" is "a distinct value passes". The value lists are JSON in the catalog and
are read element by element in SQL: ``json_each`` on SQLite, ``json_array_elements_text`` on PostgreSQL
(numbers cast back to double precision, the type of the columns they came from).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from curata.collect.clinical._index import INDEXED

_ALIAS = "curata_v"


class AnyValue(ColumnElement[bool]):
    """True when one value of the JSON list ``doc[column]`` passes ``predicate`` (a function of the
    value as a SQL expression)."""

    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, doc: Any, column: str, predicate: Callable[[Any], Any], numeric: bool) -> None:
        if not column.replace("_", "").isalnum():
            raise ValueError(f"not a column name: {column!r}")
        self.doc = doc
        self.column = column
        self.predicate = predicate
        self.numeric = numeric


@compiles(AnyValue)
def _sqlite(el: AnyValue, compiler: Any, **kw: Any) -> str:
    value = sa.literal_column(f"{_ALIAS}.value", type_=sa.Float() if el.numeric else sa.Text())
    doc = compiler.process(el.doc, **kw)
    cond = compiler.process(el.predicate(value), **kw)
    return f"EXISTS (SELECT 1 FROM json_each({doc}, '$.{el.column}') AS {_ALIAS} WHERE {cond})"


@compiles(AnyValue, "postgresql")
def _postgresql(el: AnyValue, compiler: Any, **kw: Any) -> str:
    text = sa.literal_column(f"{_ALIAS}.value", type_=sa.Text())
    value = sa.cast(text, sa.Float()) if el.numeric else text
    doc = compiler.process(el.doc, **kw)
    cond = compiler.process(el.predicate(value), **kw)
    return (
        f"EXISTS (SELECT 1 FROM json_array_elements_text(CAST({doc} AS JSON) -> '{el.column}') "
        f"AS {_ALIAS}(value) WHERE {cond})"
    )


class IndexedColumn:
    """One indexed column of a table, as a cohort field names it."""

    def __init__(self, table: str, column: str) -> None:
        text, nums = INDEXED[table]
        if column not in text and column not in nums:
            raise ValueError(f"{table}.{column} is not in the clinical index")
        self.table = table
        self.column = column
        self.numeric = column in nums

    def any(self, predicate: Callable[[Any], Any]) -> ColumnElement[bool]:
        """One of the patient's distinct values passes ``predicate`` (inside ``patient_rows``)."""
        from curata.collect.clinical.models import clinical_index

        return AnyValue(clinical_index.c.value, self.column, predicate, self.numeric)


def patient_rows(table: str, condition: Any, pseudonym: Any, site_id: Any) -> ColumnElement[bool]:
    """EXISTS an index entry of ``table`` for the patient (``pseudonym`` at ``site_id``, columns of the
    enclosing query) for which ``condition`` holds: the patient has rows there that pass it."""
    from curata.collect.clinical.models import clinical_index, person

    ix = clinical_index
    return sa.exists(
        sa.select(1)
        .select_from(ix.join(person, ix.c.person_id == person.c.person_id))
        .where(
            person.c.pseudonym == pseudonym,
            person.c.site_id == site_id,
            ix.c.table_name == table,
            condition,
        )
    )


__all__ = ["AnyValue", "IndexedColumn", "patient_rows"]
