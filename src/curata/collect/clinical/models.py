"""OMOP CDM v5.4-aligned clinical tables, generated from OHDSI's field list, plus Curata's linkage columns.

Only pseudonymous, de-identified values are ever stored here: ``person.pseudonym`` is the same keyed
pseudonym as the patient's images (``patient.pseudonym``), every date is shifted by that patient's own
shift, and ``*_source_id`` values are keyed pseudonyms too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from curata.catalog.models import Base
from curata.collect.clinical._omop import TABLES, curata_columns, omop_columns


def _table(name: str) -> sa.Table:
    args: list[object] = [*omop_columns(name), *curata_columns(name)]
    if name == "person":
        args.append(sa.UniqueConstraint("site_id", "pseudonym", name="uq_person_site_pseudonym"))
    return sa.Table(name, Base.metadata, *args)  # type: ignore[call-overload,arg-type]


OMOP: dict[str, sa.Table] = {name: _table(name) for name in TABLES}
person = OMOP["person"]
observation_period = OMOP["observation_period"]
condition_occurrence = OMOP["condition_occurrence"]
drug_exposure = OMOP["drug_exposure"]
procedure_occurrence = OMOP["procedure_occurrence"]
measurement = OMOP["measurement"]
observation = OMOP["observation"]
specimen = OMOP["specimen"]

clinical_source = sa.Table(
    "clinical_source",
    Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
    sa.Column("input_digest", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # csv, excel, fhir, vcf
    sa.Column("output_digest", sa.String(64), nullable=True),  # de-identified copy in the store
    sa.Column("rows", sa.Integer(), nullable=False, default=0),
    sa.Column("quarantined", sa.Integer(), nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), default=lambda: datetime.now(UTC)),
    sa.UniqueConstraint("site_id", "input_digest", name="uq_clinical_source_input"),
)

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The whole de-identified tables of one input: one Parquet blob per (input, table) in the store. Row i of
# the blob has the id ``first_id + i`` (allocated from ``clinical_id_counter``, so ids never repeat).
clinical_table = sa.Table(
    "clinical_table",
    Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
    sa.Column("source_digest", sa.String(64), nullable=False),  # the input (sha256)
    sa.Column("table_name", sa.String(32), nullable=False),  # an OMOP table, or genomic_variant
    sa.Column("blob_digest", sa.String(64), nullable=False),  # the Parquet file in the store
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("first_id", sa.BigInteger(), nullable=False),
    sa.UniqueConstraint("site_id", "source_digest", "table_name", name="uq_clinical_table_source"),
)

# What cohort queries test, per (patient, input, table): the row count and a JSON document of the distinct
# values of the indexed columns (``curata.collect.clinical._index.INDEXED``).
clinical_index = sa.Table(
    "clinical_index",
    Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("person_id", _BIGINT, sa.ForeignKey("person.person_id"), nullable=False, index=True),
    sa.Column("source_digest", sa.String(64), nullable=False),
    sa.Column("table_name", sa.String(32), nullable=False),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),  # {"column": [distinct values]}
)

# The next free row id per table (OMOP ids stay unique across inputs and the rows of older catalogs).
clinical_id_counter = sa.Table(
    "clinical_id_counter",
    Base.metadata,
    sa.Column("table_name", sa.String(32), primary_key=True),
    sa.Column("next_id", sa.BigInteger(), nullable=False),
)

__all__ = [
    "OMOP",
    "clinical_id_counter",
    "clinical_index",
    "clinical_source",
    "clinical_table",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "observation",
    "observation_period",
    "person",
    "procedure_occurrence",
    "specimen",
]
