"""The per-site mapping (TOML) that tells Curata what each column of a clinical export holds.

```toml
[csv]
patient_id = "mrn"                # the column holding the ID the images carry as PatientID
issuer = ""                       # IssuerOfPatientID in the images, when they carry one
date_format = "%d/%m/%Y"          # optional; ISO 8601 dates are read without it
local_systems = ["LABSYS"]        # optional; the site's own code systems a system column may name

[csv.identifiers]                 # removed; their values feed the free-text cleaner and the gate
names = ["patient_name"]
birth_date = "dob"
addresses = ["street", "city"]
phones = ["phone"]
ids = ["national_id"]

[csv.person]
sex = "sex"
birth_date = "dob"                # becomes a (shifted) year of birth, ages above 89 capped
age = "age_at_diagnosis"          # years, capped at 90

[[csv.events]]
table = "condition"               # condition, measurement, observation, procedure, drug, specimen
code = "icd10"
system = "=ICD10"                 # "=..." is a literal value rather than a column name
display = "diagnosis"
date = "diagnosis_date"
stage = "stage"
note = "notes"                    # free text, cleaned like DICOM descriptions
```

Columns the mapping does not name are dropped (never stored); identifier columns are dropped too.

A code system read from a column is kept only where it is a known one (SNOMED CT, LOINC, ICD-10, RxNorm,
UCUM, ATC..., by name, URL or OID) or a local one the mapping declares: a literal ``system = "=LOCAL"`` or
``local_systems`` (``[csv]``, ``[fhir]``). Another cell is the export's text: its row is refused (CSV) or
its code travels without it (FHIR). A declared name must have no identifier's shape
(``_codes.local_system_ok``), as the platform checks it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curata.collect.clinical._codes import SYSTEMS, local_system_ok, system_name
from curata.errors import ConfigError, sanitize

EVENT_TABLES = {
    "condition": "condition_occurrence",
    "measurement": "measurement",
    "observation": "observation",
    "procedure": "procedure_occurrence",
    "drug": "drug_exposure",
    "specimen": "specimen",
}
EVENT_KEYS = {
    "table",
    "code",
    "system",
    "display",
    "date",
    "end_date",
    "value",
    "unit",
    "stage",
    "note",
    "id",
    "site",
    "slide",
}
MAP_NAMES = ("clinical-map.toml", "clinical_map.toml")


@dataclass(frozen=True)
class Ref:
    """A column name, or a literal value written ``=value`` in the mapping."""

    column: str | None = None
    literal: str | None = None

    @classmethod
    def parse(cls, text: Any, where: str) -> Ref:
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{where}: expected a column name or '=value', found {text!r}")
        return cls(literal=text[1:]) if text.startswith("=") else cls(column=text)


@dataclass(frozen=True)
class EventMap:
    table: str  # OMOP table name
    refs: dict[str, Ref]


@dataclass(frozen=True)
class TableMap:
    """How one tabular export (CSV or Excel) maps onto the OMOP tables."""

    patient_id: str
    issuer: str = ""
    date_format: str | None = None
    delimiter: str | None = None
    sheet: str | int = 0
    names: tuple[str, ...] = ()
    birth_date: str | None = None
    addresses: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    sex: str | None = None
    age: str | None = None
    events: tuple[EventMap, ...] = ()
    local_systems: frozenset[str] = frozenset()  # as ``system_name`` gives them, literals' included

    def used_columns(self) -> set[str]:
        cols = {self.patient_id, *self.names, *self.addresses, *self.phones, *self.ids}
        cols |= {c for c in (self.birth_date, self.sex, self.age) if c}
        for ev in self.events:
            cols |= {r.column for r in ev.refs.values() if r.column}
        return cols


@dataclass(frozen=True)
class FhirMap:
    patient_id_system: str | None = None  # Patient.identifier.system holding the image PatientID
    issuer: str = ""
    local_systems: frozenset[str] = frozenset()  # the site's own code systems, as ``system_name`` gives them


@dataclass(frozen=True)
class VcfMap:
    samples: dict[str, str] = field(default_factory=dict)  # sample name -> patient ID (default: same)
    issuer: str = ""


@dataclass(frozen=True)
class SiteMapping:
    table: TableMap | None = None
    fhir: FhirMap = field(default_factory=FhirMap)
    vcf: VcfMap = field(default_factory=VcfMap)
    path: str = ""


def _list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected a column name or a list of them")


def _local_system(value: Any, where: str) -> str | None:
    """A code system the mapping names: a known one's name, or a local one's (``local_system_ok``); the
    error does not quote it (a mapping is the site's, but its errors become quarantine reasons)."""
    name = system_name(value) if isinstance(value, str) else None
    if name is None or (name not in SYSTEMS and not local_system_ok(name)):
        raise ConfigError(
            f"{where}: not a code system's name (one token of letters, digits and . - _ : / #, with no "
            "identifier's shape: no record number, phone or date)"
        )
    return None if name in SYSTEMS else name


def _local_systems(value: Any, where: str) -> frozenset[str]:
    names = _list(value, where)
    return frozenset(n for i, v in enumerate(names, start=1) if (n := _local_system(v, f"{where} #{i}")))


def _table_map(data: dict[str, Any], where: str) -> TableMap:
    if not isinstance(data.get("patient_id"), str):
        raise ConfigError(f"{where}: patient_id (the column with the patient's ID) is required")
    idents = data.get("identifiers", {}) or {}
    person = data.get("person", {}) or {}
    events = []
    declared = set(_local_systems(data.get("local_systems"), f"{where}.local_systems"))
    for i, ev in enumerate(data.get("events", []) or []):
        here = f"{where}.events #{i + 1}"  # the [[csv.events]] table's place, counted from 1
        table = ev.get("table")
        if table not in EVENT_TABLES:
            raise ConfigError(f"{here}: table must be one of {', '.join(EVENT_TABLES)}, found {table!r}")
        unknown = set(ev) - EVENT_KEYS
        if unknown:
            raise ConfigError(
                f"{here}: unknown keys {', '.join(sorted(unknown))}",
                hint=f"known: {', '.join(sorted(EVENT_KEYS))}",
            )
        refs = {k: Ref.parse(v, f"{here}.{k}") for k, v in ev.items() if k != "table"}
        if "date" not in refs:
            raise ConfigError(f"{here}: a date column is required (OMOP events are dated)")
        system = refs.get("system")
        if system is not None and system.literal is not None:
            literal = _local_system(system.literal, f"{here}.system")
            if literal:
                declared.add(literal)
        events.append(EventMap(EVENT_TABLES[table], refs))
    sheet = data.get("sheet", 0)
    return TableMap(
        patient_id=data["patient_id"],
        issuer=str(data.get("issuer", "") or ""),
        date_format=data.get("date_format"),
        delimiter=data.get("delimiter"),
        sheet=sheet if isinstance(sheet, int | str) else 0,
        names=_list(idents.get("names"), f"{where}.identifiers.names"),
        birth_date=idents.get("birth_date") or person.get("birth_date"),
        addresses=_list(idents.get("addresses"), f"{where}.identifiers.addresses"),
        phones=_list(idents.get("phones"), f"{where}.identifiers.phones"),
        ids=_list(idents.get("ids"), f"{where}.identifiers.ids"),
        sex=person.get("sex"),
        age=person.get("age"),
        events=tuple(events),
        local_systems=frozenset(declared),
    )


def parse_mapping(data: dict[str, Any], path: str = "") -> SiteMapping:
    table = _table_map(data["csv"], "csv") if "csv" in data else None
    fhir = data.get("fhir", {}) or {}
    vcf = data.get("vcf", {}) or {}
    samples = vcf.get("samples", {}) or {}
    if not isinstance(samples, dict):
        raise ConfigError("vcf.samples: expected a table of sample name = patient ID")
    return SiteMapping(
        table=table,
        fhir=FhirMap(
            fhir.get("patient_id_system"),
            str(fhir.get("issuer", "") or ""),
            _local_systems(fhir.get("local_systems"), "fhir.local_systems"),
        ),
        vcf=VcfMap({str(k): str(v) for k, v in samples.items()}, str(vcf.get("issuer", "") or "")),
        path=path,
    )


def load_mapping(path: Path, role: str = "the clinical mapping") -> SiteMapping:
    """The mapping in ``path``. Its errors name it by ``role`` (where it stands for the export it maps:
    ``find_mapping``), never by its path: folder names often hold a patient's name or record number,
    and the error becomes the reason an export is quarantined with. They keep what fixes the file: the
    TOML error's line and column, the key that is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {role}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {role}: not UTF-8 text (byte {exc.start + 1})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read {role}: {sanitize(str(exc))}") from None
    try:
        return parse_mapping(data, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{role} is not usable: {sanitize(exc.message)}", hint=exc.hint) from None
    except (AttributeError, TypeError, ValueError) as exc:  # a key of the wrong TOML type
        raise ConfigError(f"{role} is not usable: a key has the wrong type ({type(exc).__name__})") from None


def find_mapping(data_file: Path, explicit: Path | None = None) -> SiteMapping:
    """The mapping named explicitly, else ``clinical-map.toml`` in the file's folder or a folder above.
    Its errors name it by where it stands from the file, never by its path."""
    if explicit is not None:
        return load_mapping(explicit, "the clinical mapping named in the configuration")
    for up, folder in enumerate([data_file.parent, *data_file.parent.parents]):
        for name in MAP_NAMES:
            if (folder / name).is_file():
                return load_mapping(folder / name, mapping_role(name, up))
    return SiteMapping()


def mapping_role(name: str, up: int) -> str:
    """The words for a mapping file ``name`` found ``up`` folders above an export (0: beside it)."""
    where = "beside the export" if up == 0 else f"{up} folder{'s' if up > 1 else ''} above the export"
    return f"the clinical mapping {name} {where}"
