"""The OMOP CDM v5.4 field list (``_standard/``) turned into SQLAlchemy columns: data, not hand-typed code."""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

FIELD_LIST = Path(__file__).parent / "_standard" / "OMOP_CDMv5.4_Field_Level.csv"
TABLES = (
    "person",
    "observation_period",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "specimen",
)
OMOP_TABLES = TABLES
_VARCHAR = re.compile(r"varchar\((\d+|MAX)\)", re.I)


@dataclass(frozen=True)
class OmopField:
    table: str
    name: str
    required: bool
    datatype: str
    primary_key: bool
    fk_table: str | None

    @property
    def length(self) -> int | None:
        """The varchar length (None for MAX and non-text fields): values are cut to it on insert."""
        m = _VARCHAR.fullmatch(self.datatype.strip())
        return int(m.group(1)) if m and m.group(1).isdigit() else None

    def sa_type(self) -> sa.types.TypeEngine:  # type: ignore[type-arg]
        dt = self.datatype.strip().lower()
        if dt == "integer":
            if self.primary_key or self.name == "person_id":
                # 64-bit ids on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY
                return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
            return sa.Integer()
        if dt == "float":
            return sa.Float()
        if dt == "date":
            return sa.Date()
        if dt == "datetime":
            return sa.DateTime()
        m = _VARCHAR.fullmatch(dt)
        if m:
            return sa.Text() if m.group(1).upper() == "MAX" else sa.String(int(m.group(1)))
        raise ValueError(f"unknown OMOP datatype {self.datatype!r} for {self.table}.{self.name}")


@functools.cache
def omop_fields() -> dict[str, list[OmopField]]:
    """{table: [fields in CDM order]} for the tables Curata fills."""
    out: dict[str, list[OmopField]] = {t: [] for t in TABLES}
    with FIELD_LIST.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            table = row["cdmTableName"].strip().lower()
            if table not in out:
                continue
            fk = row["fkTableName"].strip()
            out[table].append(
                OmopField(
                    table=table,
                    name=row["cdmFieldName"].strip().strip('"').lower(),
                    required=row["isRequired"].strip().upper() == "TRUE",
                    datatype=row["cdmDatatype"],
                    primary_key=row["isPrimaryKey"].strip().upper() == "TRUE",
                    fk_table=None if fk in ("", "NA") else fk.lower(),
                )
            )
    return out


def omop_columns(table: str) -> list[sa.Column]:  # type: ignore[type-arg]
    """Fresh Column objects for ``table`` (for the model and, separately, for the migration).

    Required fields are NOT NULL except concept ids and year_of_birth: Curata records source codes and leaves the mapping
    to OMOP standard concepts to the vocabulary step (0 = "no matching concept", as the CDM says).
    person_id is a real foreign key to person; other CDM foreign keys point to tables Curata does
    not fill (concept, provider, visit...) and are plain integers.
    """
    cols: list[sa.Column] = []  # type: ignore[type-arg]
    for f in omop_fields()[table]:
        args: list[object] = []
        if f.name == "person_id" and table != "person":
            args.append(sa.ForeignKey("person.person_id"))
        # a person known only from a VCF (or a bare event export) has no year of birth yet
        nullable = not f.required or f.name.endswith("_concept_id") or f.name == "year_of_birth"
        kwargs: dict[str, object] = {"nullable": nullable and not f.primary_key}
        if f.primary_key:
            kwargs["primary_key"] = True
            kwargs["autoincrement"] = True
        if f.name.endswith("_concept_id"):
            kwargs["default"] = 0
        if f.name == "person_id" and table != "person":
            kwargs["index"] = True
        cols.append(sa.Column(f.name, f.sa_type(), *args, **kwargs))  # type: ignore[arg-type]
    return cols


def curata_columns(table: str) -> list[sa.Column]:  # type: ignore[type-arg]
    """Curata's own columns beside the CDM's (OMOP allows extra columns; they carry the linkage).

    Every row names its site, the input it came from (sha256) and a stable record key (idempotent
    re-runs); person carries the patient pseudonym shared with the images; events carry the display
    text of their code (the CDM keeps names only in the vocabulary tables).
    """
    cols: list[sa.Column] = [  # type: ignore[type-arg]
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("site.id"), nullable=False, index=True),
        sa.Column("source_digest", sa.String(64), nullable=True, index=True),
    ]
    if table == "person":
        cols.append(sa.Column("pseudonym", sa.String(64), nullable=False, index=True))
        cols.append(sa.Column("age_capped", sa.Boolean(), nullable=False, default=False))
    else:
        cols.append(sa.Column("record_key", sa.String(64), nullable=False, unique=True))
        cols.append(sa.Column("note", sa.Text(), nullable=True))  # free text, cleaned
    if table in (
        "condition_occurrence",
        "procedure_occurrence",
        "drug_exposure",
        "measurement",
        "observation",
    ):
        cols.append(sa.Column("source_display", sa.Text(), nullable=True))
        cols.append(sa.Column("source_system", sa.String(64), nullable=True))
    if table == "condition_occurrence":
        cols.append(sa.Column("stage", sa.String(32), nullable=True, index=True))
        cols.append(sa.Column("stage_group", sa.String(8), nullable=True, index=True))  # IIIA -> III
    if table == "specimen":
        cols.append(sa.Column("slide_id", sa.String(64), nullable=True, index=True))
    return cols
