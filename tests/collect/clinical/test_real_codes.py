"""Real clinical values a code, unit or stage column holds are kept, at the site and at the platform
(outside review 13, findings A3 and A4): local lab and specimen codes with no digit (HGB, K+, FFPE,
LUNG-BX), RxNorm codes with no system named, a specimen's code under its mapping's system, UCUM units
with annotations and µ, ICD-10's U codes, TNM with prefixes, suffixes and spaces, and named stages. What a
code column must never carry (a name, an MRN, a phone, a date) is still refused there."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curata.collect.clinical import (
    MANIFEST_TYPE,
    Batch,
    clinical_rows,
    deidentified_batch,
    filed_inputs,
    receive_batches,
)
from curata.collect.clinical._codes import normal_stage, stage_group, valid_code, valid_stage
from curata.collect.dicomweb import multipart_decode, multipart_encode
from curata.collect.ingest import Ingestor
from curata.workspace import Workspace
from tests.collect.clinical._fixtures import fhir_patient, write_ndjson

LAB_CODES = ["HGB", "K+", "NA", "CREA", "WBC", "PLT", "CRP", "TSH", "PSA", "CEA", "ALT", "Hb", "eGFR"]
SPECIMEN_CODES = ["FFPE", "TISSUE", "BLOOD", "FNA", "LUNG-BX", "CYTOLOGY"]
DIGIT_CODES = ["1721560", "122610009", "CA19-9", "LAB-7"]
UNITS = ["mL/min/{1.73_m2}", "µmol/L", "μmol/L", "10*9/L", "x10^9/L", "mm[Hg]", "{beats}/min", "mg/(24.h)"]
ICD10 = ["U07.1", "U09.9", "C50.911", "C4A.9", "S72.001A", "T36.0X1A"]
STAGES = {
    "ypT2N1M0": "ypT2N1M0",
    "pT2 pN1a M0": "pT2N1AM0",
    "pT1c pN0(sn) M0": "pT1CN0(SN)M0",
    "rpT3 N0(i+) M0": "rpT3N0(I+)M0",
    "pT1mi pN0(mol-) cM0": "pT1MIN0(MOL-) cM0",
    "Limited stage": "LIMITED",
    "Extensive stage": "EXTENSIVE",
    "Stage IVB": "IVB",
    "IIIA": "IIIA",
    "pt2 n0 m0": "pT2N0M0",
}
# what a code column must never carry where no system is named (nor a specimen's, which travels without)
NOT_CODES = ["QUILLFEATHER", "Quillfeather", "Response", "MRN88421937", "MRN-4417", "88421937",
             "914-555-0173", "5551234567", "2023-04-15", "20230415", "15/04/2023"]  # fmt: skip
NOT_UNITS = ["914-555-0173", "MRN88421937", "2023-04-15", "mg//L", "mg L"]
NOT_STAGES = ["Okonkwo", "Quillfeather stage", "MRN 88421937"]


def test_real_codes_are_codes_with_no_system_named() -> None:
    for code in LAB_CODES + SPECIMEN_CODES + DIGIT_CODES + ICD10:
        assert valid_code(code, None), code
    for code in ICD10:
        assert valid_code(code, "ICD10"), code
    assert valid_code("K+", "LAB") and valid_code("LUNG-BX", "LOCAL")
    assert valid_code("1721560", "RXNORM")
    for code in NOT_CODES:
        assert not valid_code(code, None), code
    assert valid_code("Response", "LOCAL")  # a site's word codes under their named system


def test_units_and_stages_as_sites_write_them() -> None:
    for unit in [*UNITS, "g/dL", "mmol/L", "%", "/min", "mL/min/1.73m2", "[IU]/L", "kg/m2"]:
        assert valid_code(unit, "UCUM"), unit
    for unit in NOT_UNITS:
        assert not valid_code(unit, "UCUM"), unit
    for stage, normal in STAGES.items():
        assert valid_stage(stage), stage
        assert normal_stage(stage) == normal, stage
        assert valid_stage(normal) and normal_stage(normal) == normal, stage  # as the platform checks it
    assert stage_group(normal_stage("Stage IVB")) == "IV"
    assert stage_group("LIMITED") is None
    for stage in NOT_STAGES:
        assert not valid_stage(stage), stage


COLUMNS = ["mrn", "name", "dob", "sex", "table", "code", "system", "label", "value", "unit", "date", "stage",
           "spec_id", "slide"]  # fmt: skip
MAPPING = """
[csv]
patient_id = "mrn"
local_systems = ["LAB"]  # the site's lab system, which its system column names
[csv.identifiers]
names = ["name"]
birth_date = "dob"
[csv.person]
sex = "sex"
birth_date = "dob"
[[csv.events]]
table = "measurement"
code = "code"
system = "system"
display = "label"
value = "value"
unit = "unit"
date = "date"
[[csv.events]]
table = "condition"
code = "code"
system = "system"
display = "label"
date = "date"
stage = "stage"
[[csv.events]]
table = "specimen"
id = "spec_id"
slide = "slide"
code = "code"
system = "=LOCAL"
date = "date"
"""
MAPS = {"measurement": 0, "condition": 1, "specimen": 2}


def _mapping(table: str) -> str:
    head, *events = MAPPING.split("[[csv.events]]")
    return head + "[[csv.events]]" + events[MAPS[table]]


def _write(folder: Path, table: str, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {
        "mrn": "MRN-30111",
        "name": "Bram Oakhollow",
        "dob": "1950-01-01",
        "sex": "M",
        "date": "2024-02-25",
    }
    with (folder / f"{table}.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, restval="")
        w.writeheader()
        w.writerows([{**base, **r} for r in rows])
    (folder / "clinical-map.toml").write_text(_mapping(table))
    return folder


def _site_rows(ws: Workspace, table: str) -> list[dict[str, Any]]:
    with ws.catalog.session() as s:
        return [r if isinstance(r, dict) else dict(r._mapping) for r in clinical_rows(s, ws.store, table)]


def _to_platform(site: Workspace, root: Path) -> list[str]:
    """Every batch the site filed, as the platform receives it: the statuses."""
    central = Workspace.init(root / "central", site="platform")
    statuses = []
    for item in filed_inputs(site):
        body, ctype = multipart_encode(deidentified_batch(site, item).parts(), MANIFEST_TYPE)
        statuses += [got.status for got in receive_batches(central, multipart_decode(body, ctype))]
    central.catalog.dispose()
    return statuses


LABS = (
    [{"code": c, "system": "", "label": "lab", "value": "4.1", "unit": "mmol/L"} for c in LAB_CODES]
    + [{"code": "K+", "system": "LAB", "label": "Potassium", "value": "4.1", "unit": "mmol/L"}]
    + [{"code": "33914-3", "system": "LOINC", "label": "eGFR", "value": "58", "unit": u} for u in UNITS]
)
DX = [{"code": c, "system": "ICD10", "label": "dx"} for c in ICD10] + [
    {"code": "C34.1", "system": "ICD10", "label": "lung", "stage": s} for s in STAGES
]
SPECIMENS = [
    {"code": c, "spec_id": f"S24-{1000 + i}", "slide": f"S24-{1000 + i}-A1"}
    for i, c in enumerate([*SPECIMEN_CODES, "122610009"])
]


@pytest.mark.parametrize(
    ("table", "omop", "rows"),
    [("measurement", "measurement", LABS), ("condition", "condition_occurrence", DX),
     ("specimen", "specimen", SPECIMENS)],
)  # fmt: skip
def test_a_csv_exports_real_values_are_kept_and_filed_at_the_platform(
    workspace: Workspace, tmp_path: Path, table: str, omop: str, rows: list[dict[str, str]]
) -> None:
    folder = _write(tmp_path / "export", table, rows)
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert not problems, [p.reason for p in problems]
    kept = _site_rows(workspace, omop)
    assert len(kept) == len(rows)
    if table == "specimen":
        assert all(r["slide_id"] for r in kept)  # the slide links are kept with their rows
    if table == "condition":
        assert {r["stage"] for r in kept} == {None, *STAGES.values()}
    assert set(_to_platform(workspace, tmp_path)) == {"filed"}


def test_a_csv_export_still_refuses_names_and_identifiers_as_codes(
    workspace: Workspace, tmp_path: Path
) -> None:
    rows = [{"code": "HGB", "label": "lab", "value": "1", "unit": "g/dL"}]
    rows += [{"code": c, "label": "lab", "value": "1", "unit": "g/dL"} for c in NOT_CODES]
    folder = _write(tmp_path / "export", "measurement", rows)
    Ingestor(workspace, workers=1).ingest_paths([folder])
    assert [r["measurement_source_value"] for r in _site_rows(workspace, "measurement")] == ["HGB"]


def test_a_fhir_exports_real_values_are_kept(workspace: Workspace, tmp_path: Path) -> None:
    """The record path (FHIR): a lab with no system and a UCUM annotation, a specimen under a local
    system, a U code staged in TNM with spaces."""
    subj = {"reference": "Patient/p1"}
    resources = [
        fhir_patient("p1"),
        {"resourceType": "Observation", "id": "o1", "status": "final", "subject": subj,
         "code": {"coding": [{"code": "K+", "display": "Potassium"}]}, "effectiveDateTime": "2024-02-21",
         "valueQuantity": {"value": 58, "unit": "mL/min/{1.73_m2}"}},
        {"resourceType": "Condition", "id": "c1", "subject": subj,
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "U07.1"}]},
         "onsetDateTime": "2024-02-20", "stage": [{"summary": {"text": "pT1c pN0(sn) M0"}}]},
        {"resourceType": "Specimen", "id": "s1", "subject": subj, "identifier": [{"value": "S24-1004"}],
         "type": {"coding": [{"system": "http://lab.example.org/specimen-types", "code": "LUNG-BX"}]},
         "collection": {"collectedDateTime": "2024-02-25"}},
    ]  # fmt: skip
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths(
        [write_ndjson(tmp_path / "x.ndjson", resources)]
    )
    assert not problems, [p.reason for p in problems]
    [obs] = _site_rows(workspace, "measurement")
    assert (obs["measurement_source_value"], obs["unit_source_value"]) == ("K+", "mL/min/{1.73_m2}")
    [cond] = _site_rows(workspace, "condition_occurrence")
    assert (cond["condition_source_value"], cond["stage"]) == ("U07.1", "pT1CN0(SN)M0")
    [spec] = _site_rows(workspace, "specimen")
    assert spec["specimen_source_value"] == "LUNG-BX"
    assert set(_to_platform(workspace, tmp_path)) == {"filed"}


P = "CUR-" + "A" * 16


def _batch(table: str, date_col: str, **cols: object) -> Batch:
    person = pa.table({"pseudonym": [P], "gender_source_value": ["F"], "year_of_birth": pa.array([1960]),
                       "age_capped": [False]})  # fmt: skip
    event: dict[str, object] = {"pseudonym": [P], date_col: pa.array([dt.date(2020, 1, 5)], pa.date32())}
    event.update({k: [v] for k, v in cols.items()})
    name = hashlib.sha256(repr((table, cols)).encode()).hexdigest()
    return Batch(name, "csv", tables={"person": person, table: pa.table(event)})


def _platform(ws: Workspace, batch: Batch) -> str:
    body, ctype = multipart_encode(batch.parts(), MANIFEST_TYPE)
    [got] = receive_batches(ws, multipart_decode(body, ctype))
    return str(got.status)


@pytest.mark.parametrize("code", LAB_CODES + DIGIT_CODES)
def test_the_platform_files_local_codes_with_no_system(workspace: Workspace, code: str) -> None:
    assert (
        _platform(workspace, _batch("measurement", "measurement_date", measurement_source_value=code))
        == "filed"
    )


@pytest.mark.parametrize("code", [*SPECIMEN_CODES, "122610009"])
def test_the_platform_files_specimen_codes(workspace: Workspace, code: str) -> None:
    assert _platform(workspace, _batch("specimen", "specimen_date", specimen_source_value=code)) == "filed"


@pytest.mark.parametrize("unit", UNITS)
def test_the_platform_files_ucum_units(workspace: Workspace, unit: str) -> None:
    batch = _batch("measurement", "measurement_date", measurement_source_value="718-7", source_system="LOINC",
                   unit_source_value=unit)  # fmt: skip
    assert _platform(workspace, batch) == "filed"


@pytest.mark.parametrize("stage", sorted(set(STAGES.values())))
def test_the_platform_files_stages_and_u_codes(workspace: Workspace, stage: str) -> None:
    batch = _batch("condition_occurrence", "condition_start_date", condition_source_value="U07.1",
                   source_system="ICD10", stage=stage, stage_group=stage_group(stage))  # fmt: skip
    assert _platform(workspace, batch) == "filed"


@pytest.mark.parametrize("code", NOT_CODES)
def test_the_platform_still_refuses_names_and_identifiers_as_codes(workspace: Workspace, code: str) -> None:
    assert _platform(workspace, _batch("measurement", "measurement_date", measurement_source_value=code)) == (
        "quarantined"
    )
    assert (
        _platform(workspace, _batch("specimen", "specimen_date", specimen_source_value=code)) == "quarantined"
    )
