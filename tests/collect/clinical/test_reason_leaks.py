"""Quarantine reasons of clinical inputs name no patient: not a folder or file name, not a cell's value,
not a FHIR field's value. They still say what is wrong: the mapping's TOML position or key, the line,
the column the mapping names.

The patient's name, MRN, birth date and phone are planted in folder names, file names, every kind of
cell and FHIR fields that fail validation; the reasons are read where they are kept and shown: the
catalog (``quarantine_item.reason``), the quarantine's ``.json`` and the console (``curata ingest``,
``curata gateway watch``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from curata.catalog import QuarantineItem
from curata.cli import app
from tests.collect.clinical._fixtures import fhir_resources, write_ndjson

NAME, GIVEN, MRN, DOB, PHONE = "Thistlewood", "Marigold", "MRN88421937", "1961-04-23", "555-867-5309"
PLANT = f"{NAME} {GIVEN} {MRN} {DOB} {PHONE}"
# every form of them a reason could carry (a redactor turns long numbers into '#', not names)
NEEDLES = [NAME, GIVEN, MRN, "88421937", DOB, "19610423", PHONE, "867-5309", NAME.upper(), GIVEN.upper()]
FOLDER = f"badmap_{NAME}_{MRN} {GIVEN} {DOB} {PHONE}"

COLUMNS = [
    "mrn",
    "dob",
    "code",
    "coding_system",
    "display",
    "dx_date",
    "end",
    "stage",
    "value",
    "unit",
    "note",
]
MAPPING = """
[csv]
patient_id = "mrn"

[csv.person]
birth_date = "dob"

[[csv.events]]
table = "condition"
code = "code"
system = "coding_system"
display = "display"
date = "dx_date"
end_date = "end"
stage = "stage"
note = "note"

[[csv.events]]
table = "measurement"
code = "code"
system = "coding_system"
value = "value"
unit = "unit"
date = "dx_date"
"""


def _row(**over: str) -> dict[str, str]:
    row = {
        "mrn": "MRN-55012",
        "dob": "1950-01-02",
        "code": "C34.1",
        "coding_system": "ICD10",
        "display": "lung adenocarcinoma",
        "dx_date": "2024-02-20",
        "end": "",
        "stage": "IIIA",
        "value": "11.2",
        "unit": "g/dL",
        "note": "seen in clinic",
    }
    row.update(over)
    return row


def _write_csv(path: Path, rows: list[dict[str, str]], mapping: str | bytes = MAPPING) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    target = path.parent / "clinical-map.toml"
    target.write_bytes(mapping if isinstance(mapping, bytes) else mapping.encode())
    return path


def _ingest(ws: Any, root: Path) -> tuple[str, list[str]]:
    """`curata ingest ROOT -j 1`: the console's output and every reason kept (catalog, quarantine json)."""
    result = CliRunner().invoke(app, ["ingest", str(root), "-w", str(ws.root), "-j", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output, _kept(ws)


def _kept(ws: Any) -> list[str]:
    with ws.catalog.session() as s:
        reasons = [r for r in s.scalars(sa.select(QuarantineItem.reason)) if r]
    reasons += [json.loads(p.read_text())["reason"] for p in Path(ws.quarantine_path).glob("*.json")]
    return reasons


def _leaks(*texts: str) -> list[str]:
    low = "\n".join(texts).lower()
    return [n for n in NEEDLES if n.lower() in low]


# -- F1: a malformed mapping in a folder named after the patient ------------------------------------
def test_invalid_toml_in_a_patient_named_folder(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    bad = MAPPING.replace('patient_id = "mrn"', f"patient_id = {MRN}")
    _write_csv(root / FOLDER / f"{NAME}_{MRN}_{DOB}.csv", [_row()], bad)
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    for reason in kept:
        assert "clinical mapping" in reason and "clinical-map.toml" in reason, reason
        assert "line 3, column 14" in reason, reason  # where to fix it
    assert "line 3, column 14" in output


def test_a_mapping_that_is_not_utf8(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    _write_csv(root / FOLDER / "dx.csv", [_row()], MAPPING.encode() + b"\n# \xff\xfe\n")
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    assert all("clinical mapping" in r and "UTF-8" in r for r in kept), kept


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (MAPPING.replace('patient_id = "mrn"', 'patient_ids = "mrn"'), "patient_id"),
        (MAPPING.replace('table = "condition"', f'table = "{NAME}"'), "csv.events #1: table must be one of"),
        (MAPPING.replace('stage = "stage"', 'stages = "stage"'), "csv.events #1: unknown keys stages"),
        (MAPPING.replace('date = "dx_date"\nend_date', 'when = "dx_date"\nend_date'), "csv.events #1"),
    ],
)
def test_a_mapping_with_a_wrong_key_in_a_patient_named_folder(  # type: ignore[no-untyped-def]
    workspace, tmp_path: Path, broken: str, says: str
) -> None:
    root = tmp_path / "clin"
    _write_csv(root / FOLDER / "sub" / "dx.csv", [_row()])
    (root / FOLDER / "sub" / "clinical-map.toml").unlink()
    (root / FOLDER / "clinical-map.toml").write_text(broken)  # one folder above the export
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    assert all("clinical mapping" in r and says in r for r in kept), kept
    assert all("1 folder above" in r for r in kept), kept


def test_gateway_watch_names_no_patient_folder_for_a_malformed_mapping(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    drop = tmp_path / "drop"
    bad = MAPPING.replace('patient_id = "mrn"', f"patient_id = {MRN}")
    _write_csv(drop / FOLDER / f"{NAME}.csv", [_row()], bad)
    result = CliRunner().invoke(
        app, ["gateway", "watch", str(drop), "--once", "--interval", "0.1", "-w", str(workspace.root)]
    )
    assert result.exit_code == 1, result.output
    kept = _kept(workspace)
    assert kept, result.output
    assert _leaks(result.output, *kept) == []
    assert all("line 3, column 14" in r for r in kept), kept
    assert "line 3, column 14" in result.output


# -- F2: a cell's value in a row's reason ------------------------------------------------------------
def test_an_unknown_code_system_cell_is_not_quoted(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    _write_csv(root / "export" / "dx.csv", [_row(code="not a code!", coding_system=PLANT)])
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    reason = kept[0]
    assert "1 of 1 rows refused" in reason and "line 2: code" in reason, reason
    assert "an unknown code system (column coding_system)" in reason, reason


def test_unknown_code_systems_in_several_rows(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    rows = [
        _row(),
        _row(code="??", coding_system=PLANT),
        _row(code="??", coding_system=f"{NAME}-{MRN}"),
        _row(code="X", coding_system="LOINC"),
    ]
    _write_csv(root / "export" / "dx.csv", rows)
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    reason = kept[0]
    assert "line 3: code" in reason and "line 4: code" in reason, reason
    assert "line 5: code: not a valid LOINC code" in reason, reason  # a known system is still named


@pytest.mark.parametrize(
    ("column", "says"),
    [
        ("dob", "birth_date"),
        ("dx_date", "date"),
        ("end", "end_date"),
        ("code", "code"),
        ("stage", "stage"),
        ("unit", "unit"),
    ],
)
def test_a_planted_cell_of_each_kind_is_not_quoted(  # type: ignore[no-untyped-def]
    workspace, tmp_path: Path, column: str, says: str
) -> None:
    root = tmp_path / "clin"
    _write_csv(root / "export" / "dx.csv", [_row(), _row(**{column: PLANT})])
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    assert f"line 3: {says}" in kept[0], kept


# -- FHIR: fields that fail validation, and a Coding's system --------------------------------------
def _fhir_with(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [*fhir_resources("pat-1"), resource]


@pytest.mark.parametrize(
    "resource",
    [
        {  # a number where a decimal goes, a key named after the patient
            "resourceType": "Observation",
            "id": "o9",
            "status": "final",
            "subject": {"reference": "Patient/pat-1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "effectiveDateTime": "2024-02-21",
            "valueQuantity": {"value": PLANT},
            f"{NAME}_{MRN}": PHONE,
        },
        {  # a date that is no date
            "resourceType": "Condition",
            "id": "c9",
            "subject": {"reference": "Patient/pat-1"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C34.1"}]},
            "onsetDateTime": PLANT,
        },
        {  # a code system named after the patient, its code invalid
            "resourceType": "Condition",
            "id": "c8",
            "subject": {"reference": "Patient/pat-1"},
            "code": {"coding": [{"system": f"urn:{NAME}:{MRN}:{PHONE}", "code": "not a code!"}]},
            "onsetDateTime": "2024-02-20",
        },
        {  # a reference to a patient the export does not hold
            "resourceType": "Condition",
            "id": "c7",
            "subject": {"reference": f"Patient/{MRN}"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C34.1"}]},
            "onsetDateTime": "2024-02-20",
        },
    ],
)
def test_a_refused_fhir_resource_names_no_value(workspace, tmp_path: Path, resource: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    write_ndjson(root / FOLDER / f"{NAME}_{MRN}.ndjson", _fhir_with(resource))
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    assert f"line {len(fhir_resources()) + 1}: {resource['resourceType']}" in kept[0], kept


def test_a_kept_reason_keeps_the_places_it_counts_and_nothing_else() -> None:
    from curata.collect.clinical.service import kept_reason

    got = kept_reason(
        f"line 48213: a quoted cell is never closed; byte 123456 of /data/{NAME}/x.csv; "
        f"found '{PLANT}'; {MRN} on {DOB} at {PHONE}"
    )
    assert got.startswith("line 48213: a quoted cell is never closed; byte 123456 of"), got
    assert _leaks(got) == [] and "/data" not in got, got


def test_a_large_export_s_unclosed_quote_keeps_its_line(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    path = _write_csv(root / FOLDER / "dx.csv", [_row(mrn=f"MRN-{i:05d}") for i in range(12000)])
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f'MRN-1,1950-01-02,C34.1,ICD10,"{PLANT},2024-02-20,,,,,\n')
    output, kept = _ingest(workspace, root)
    assert kept, output
    assert _leaks(output, *kept) == []
    assert all("line 12002" in r for r in kept), kept


def test_a_malformed_mapping_beside_fhir_files_quarantines_them(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    write_ndjson(root / FOLDER / f"{NAME}.ndjson", fhir_resources("pat-1"))
    (root / FOLDER / "clinical-map.toml").write_text(f"[fhir]\npatient_id_system = {MRN}\n")
    output, kept = _ingest(workspace, root)
    assert kept, output  # quarantined with its reason, the run not stopped
    assert _leaks(output, *kept) == []
    assert all("clinical mapping" in r and "line 2, column 21" in r for r in kept), kept


def test_a_pushed_batch_s_unknown_code_system_is_not_quoted() -> None:
    import pyarrow as pa

    from curata.collect.clinical.exchange import _check_codes
    from curata.errors import DeidError

    table = pa.table(
        {"condition_source_value": ["C34.1", "not a code!"], "source_system": ["ICD10", f"{NAME}-{MRN}"]}
    )
    with pytest.raises(DeidError) as err:
        _check_codes("condition_occurrence", table)
    assert _leaks(err.value.message) == [], err.value.message
    assert "row 2: condition_source_value is not a code of its source_system" in err.value.message
