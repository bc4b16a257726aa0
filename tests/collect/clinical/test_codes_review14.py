"""Outside review 14 (B5, A4-A6): what a code, unit or stage column takes, at the site and the platform.

B5: under a named local system a phone, an MRN or a name is no code; a named SNOMED code is a real SCTID;
RxNorm has at most 7 digits; a unit's letters are UCUM's atoms and its annotations hold no name.
A4-A6: units with spaces after a number and titers, specimen types and LOINC parts with no system, lab
codes with a prefix before 5-7 digits, and named staging systems, node counts, (pCR) and CIS are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from curata.collect.clinical._codes import normal_stage, stage_group, valid_code, valid_stage
from curata.collect.ingest import Ingestor
from curata.workspace import Workspace
from tests.collect.clinical.test_real_codes import _batch, _platform, _site_rows, _to_platform, _write

LEAKS = [("0803-555-1234", "LAB"), ("MRN88421937", "LAB"), ("Chioma_Eze", "LAB"), ("Eze-Chioma", "LOCAL"),
         ("MRN-4417", "LAB"), ("QUILLFEATHERS", "LAB"), ("88421937", "SNOMED"), ("20230612", "SNOMED"),
         ("19870304", "RXNORM"), ("88421937", "RXNORM"), ("ID-1234567", None), ("MRN12345", None),
         ("LAB12345678", None), ("Chioma_Eze", None)]  # fmt: skip
KEPT = [("K+", "LAB"), ("LUNG-BX", "LOCAL"), ("Response", "LOCAL"), ("LAB12345", "LAB"), ("122610009", "LOCAL"),
        ("254637007", "SNOMED"), ("122610009", "SNOMED"), ("1721560", "RXNORM"), ("197361", "RXNORM")]  # fmt: skip
NOT_UNITS = ["Okafor", "mmol{Dr_Okafor}", "[Okafor]", "Adaeze", "Ma", "Ng", "{Okafor}/L", "mg/L{Chioma}"]
UNITS = ["mL/min/1.73 m2", "log10 copies/mL", "mg/24 h", "1:160", "{cells}", "{copies}/mL", "{titer}",
         "{RBC}/[HPF]", "MG/DL", "ng/mL", "x10E9/L", "10^3/uL", "cells/uL", "mmHg", "U/L", "mEq/L", "°C",
         "mIU/L", "mcg/mL", "{Ehrlich'U}/dL"]  # fmt: skip
SPECIMENS = ["Serum", "Plasma", "Blood", "Tissue", "Whole blood", "BONE MARROW", "whole  blood", "LAB12345",
             "LAB-1234567", "LP12345-6"]  # fmt: skip
STAGES = {
    "FIGO IIIC": "FIGO IIIC", "Dukes C": "DUKES C", "Ann Arbor IIB": "ANN ARBOR IIB", "Binet B": "BINET B",
    "Rai 0": "RAI 0", "ISS II": "ISS II", "R-ISS III": "R-ISS III", "Lugano IIE": "LUGANO IIE",
    "BCLC A": "BCLC A", "Child-Pugh B": "CHILD-PUGH B", "Gleason 3+4=7": "GLEASON 3+4=7", "ISUP 2": "ISUP 2",
    "Stage III-B": "IIIB", "pT3 pN1b (2/14) M0": "pT3N1B(2/14)M0", "T1 N1 M0 (Stage IIB)": "T1N1M0 (IIB)",
    "ypT0 ypN0 (pCR)": "ypT0N0 (pCR)", "CIS": "CIS", "Tis": "TIS",
}  # fmt: skip
NOT_STAGES = ["FIGO Okafor", "Dukes E", "Rai V", "T1 (Okafor)", "Okonkwo stage", "pT3 pN1b (Eze) M0"]


def test_named_local_snomed_and_rxnorm_codes_refuse_identifiers() -> None:
    for code, system in LEAKS:
        assert not valid_code(code, system), (code, system)
    for code, system in KEPT:
        assert valid_code(code, system), (code, system)


def test_units_are_ucum_atoms_with_clean_annotations() -> None:
    for unit in UNITS:
        assert valid_code(unit, "UCUM"), unit
    for unit in [*NOT_UNITS, "mg L", "MRN88421937"]:
        assert not valid_code(unit, "UCUM"), unit


def test_specimen_types_loinc_parts_and_prefixed_lab_codes_with_no_system() -> None:
    for code in SPECIMENS:
        assert valid_code(code, None), code


def test_named_staging_systems_and_tnm_forms() -> None:
    for stage, normal in STAGES.items():
        assert valid_stage(stage), stage
        assert normal_stage(stage) == normal, stage
        assert valid_stage(normal) and normal_stage(normal) == normal, stage  # as the platform reads it
    assert stage_group("T1N1M0 (IIB)") == "II" and stage_group("IIIB") == "III"
    assert stage_group("FIGO IIIC") is None
    for stage in NOT_STAGES:
        assert not valid_stage(stage), stage


@pytest.mark.parametrize(("code", "system"), LEAKS[:9])
def test_the_platform_refuses_identifiers_under_named_systems(
    workspace: Workspace, code: str, system: str
) -> None:
    batch = _batch("measurement", "measurement_date", measurement_source_value=code, source_system=system)
    assert _platform(workspace, batch) == "quarantined"


@pytest.mark.parametrize("unit", NOT_UNITS)
def test_the_platform_refuses_names_as_units(workspace: Workspace, unit: str) -> None:
    batch = _batch("measurement", "measurement_date", measurement_source_value="718-7", source_system="LOINC",
                   unit_source_value=unit)  # fmt: skip
    assert _platform(workspace, batch) == "quarantined"


@pytest.mark.parametrize("unit", UNITS[:4])
def test_the_platform_files_units_with_spaces_and_titers(workspace: Workspace, unit: str) -> None:
    batch = _batch("measurement", "measurement_date", measurement_source_value="718-7", source_system="LOINC",
                   unit_source_value=unit)  # fmt: skip
    assert _platform(workspace, batch) == "filed"


@pytest.mark.parametrize("code", SPECIMENS)
def test_the_platform_files_specimen_types(workspace: Workspace, code: str) -> None:
    assert _platform(workspace, _batch("specimen", "specimen_date", specimen_source_value=code)) == "filed"


@pytest.mark.parametrize("stage", sorted(set(STAGES.values())))
def test_the_platform_files_named_stages(workspace: Workspace, stage: str) -> None:
    batch = _batch("condition_occurrence", "condition_start_date", condition_source_value="U07.1",
                   source_system="ICD10", stage=stage, stage_group=stage_group(stage))  # fmt: skip
    assert _platform(workspace, batch) == "filed"


SITE_LABS = [{"code": "33914-3", "system": "LOINC", "label": "lab", "value": "58", "unit": u} for u in UNITS] + [
    {"code": "C34.1", "system": "ICD10", "label": "dx", "stage": s} for s in STAGES
]  # fmt: skip


def test_a_csv_export_keeps_real_units_and_stages_and_files_them(
    workspace: Workspace, tmp_path: Path
) -> None:
    labs = [r for r in SITE_LABS if "unit" in r]
    dx = [r for r in SITE_LABS if "stage" in r]
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths(
        [_write(tmp_path / "labs", "measurement", labs), _write(tmp_path / "dx", "condition", dx)]
    )
    assert not problems, [p.reason for p in problems]
    assert {r["unit_source_value"] for r in _site_rows(workspace, "measurement")} == set(UNITS)
    assert {r["stage"] for r in _site_rows(workspace, "condition_occurrence")} == set(STAGES.values())
    assert set(_to_platform(workspace, tmp_path)) == {"filed"}


def test_a_csv_export_refuses_identifiers_under_a_named_local_system_and_names_as_units(
    workspace: Workspace, tmp_path: Path
) -> None:
    rows = [{"code": "K+", "system": "LAB", "label": "lab", "value": "1", "unit": "mmol/L"}]
    rows += [
        {"code": c, "system": "LAB", "label": "lab", "value": "1", "unit": "mmol/L"} for c, s in LEAKS[:6]
    ]
    rows += [{"code": "K+", "system": "LAB", "label": "lab", "value": "1", "unit": u} for u in NOT_UNITS]
    Ingestor(workspace, workers=1).ingest_paths([_write(tmp_path / "export", "measurement", rows)])
    kept = _site_rows(workspace, "measurement")
    assert [(r["measurement_source_value"], r["unit_source_value"]) for r in kept] == [("K+", "mmol/L")]
