"""A code system read from a column is the export's text: the catalog keeps it only where it is a known code
system (its name, URL or OID) or a local system the mapping itself declares (``system = "=LOCAL"``, or
``local_systems`` in ``[csv]``). Another cell (another patient's MRN, a surname, a phone, a date) is
stored nowhere: its row is refused with a reason naming the column, never the value. The platform keeps
the same rule: what a site keeps is accepted, a system of an identifier's shape is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curata.collect.clinical import clinical_rows
from curata.collect.clinical.exchange import _check_codes, _check_column
from curata.errors import ConfigError, DeidError
from tests.collect.clinical.test_reason_leaks import _ingest, _row, _write_csv

MAPPING = """
[csv]
patient_id = "mrn"
{extra}

[csv.person]
birth_date = "dob"

[[csv.events]]
table = "condition"
code = "code"
system = "coding_system"
display = "display"
date = "dx_date"
"""
# another patient's MRN, a free surname, a phone, a date, typed where the system goes
CELLS = ["MRN88421937", "THISTLEWOOD", "555-867-5309", "19470319"]
NEEDLES = ["MRN88421937", "88421937", "THISTLEWOOD", "555-867-5309", "5558675309", "867-5309", "19470319"]


def _stored(ws: Any) -> list[dict[str, Any]]:
    with ws.catalog.session() as s:
        return clinical_rows(s, ws.store, "condition_occurrence")


def _platform(rows: list[dict[str, Any]]) -> None:
    """The platform's checks of a pushed condition table's code and source_system columns."""
    table = pa.table(
        {
            "condition_source_value": [r["condition_source_value"] for r in rows],
            "source_system": pa.array([r["source_system"] for r in rows], pa.string()),
        }
    )
    _check_column("condition_occurrence", "source_system", "system", table.column("source_system"))
    _check_codes("condition_occurrence", table)


@pytest.mark.parametrize("cell", CELLS)
def test_an_unknown_system_cell_is_stored_nowhere(workspace, tmp_path: Path, cell: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    rows = [_row(), _row(code="LAB-7", coding_system=cell)]
    _write_csv(root / "export" / "dx.csv", rows, mapping=MAPPING.format(extra=""))
    output, kept = _ingest(workspace, root)
    stored = _stored(workspace)
    assert [r["source_system"] for r in stored] == ["ICD10"], stored
    assert not [n for n in NEEDLES if n.lower() in repr(stored).lower()]
    assert kept, output
    reason = kept[0]
    assert "1 of 2 rows refused" in reason and "line 3: code" in reason, reason
    assert "column coding_system" in reason, reason
    assert not [n for n in NEEDLES if n.lower() in (reason + output).lower()], reason


def test_known_and_declared_systems_are_kept_and_accepted(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "clin"
    rows = [
        _row(code="254637007", coding_system="SNOMED CT"),
        _row(code="718-7", coding_system="http://loinc.org"),
        _row(code="C34.1", coding_system="ICD-10-CM"),
        _row(code="254637007", coding_system="2.16.840.1.113883.6.96"),
        _row(code="254637007", coding_system="urn:oid:2.16.840.1.113883.6.96"),
        _row(code="LAB-7", coding_system="labsys"),
    ]
    mapping = MAPPING.format(extra='local_systems = ["LABSYS"]')
    _write_csv(root / "export" / "dx.csv", rows, mapping=mapping)
    output, kept = _ingest(workspace, root)
    assert kept == [], (output, kept)
    stored = _stored(workspace)
    systems = sorted(r["source_system"] for r in stored)
    assert systems == ["ICD10", "LABSYS", "LOINC", "SNOMED", "SNOMED", "SNOMED"], stored
    _platform(stored)  # a site's push of what it keeps is accepted


def test_a_system_the_mapping_gives_is_declared(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A literal system (``=LOCAL``) is the mapping's own: a column's cell of the same name is kept too."""
    root = tmp_path / "clin"
    mapping = MAPPING.format(extra="") + (
        '\n[[csv.events]]\ntable = "observation"\ncode = "=Response"\nsystem = "=LOCAL"\ndate = "dx_date"\n'
    )
    _write_csv(root / "export" / "dx.csv", [_row(code="LAB-7", coding_system="LOCAL")], mapping=mapping)
    output, kept = _ingest(workspace, root)
    assert kept == [], (output, kept)
    assert [r["source_system"] for r in _stored(workspace)] == ["LOCAL"]
    with workspace.catalog.session() as s:
        obs = clinical_rows(s, workspace.store, "observation")
    assert [r["source_system"] for r in obs] == ["LOCAL"]


@pytest.mark.parametrize("declared", ["MRN88421937", "555-867-5309", "19470319", "Local lab codes"])
def test_a_declared_local_system_of_an_identifier_shape_is_a_mapping_error(declared: str) -> None:
    from curata.collect.clinical.mapping import parse_mapping

    with pytest.raises(ConfigError) as err:
        parse_mapping({"csv": {"patient_id": "mrn", "local_systems": [declared]}})
    assert declared not in err.value.message
    literal = {"table": "condition", "code": "code", "system": f"={declared}", "date": "d"}
    with pytest.raises(ConfigError):
        parse_mapping({"csv": {"patient_id": "mrn", "events": [literal]}})


# a bare word (THISTLEWOOD) has no identifier's shape: the platform cannot tell it from a site's local
# system's name, and the site keeps none it does not know
@pytest.mark.parametrize(
    "system",
    ["MRN88421937", "555-867-5309", "19470319", "5558675309", "MRN-88421937", "HTTP://EHR.ORG/PT/88421937"],
)
def test_the_platform_refuses_a_system_of_an_identifier_shape(system: str) -> None:
    with pytest.raises(DeidError) as err:
        _platform([{"condition_source_value": "LAB-7", "source_system": system}])
    assert system not in err.value.message


def test_the_platform_accepts_known_and_local_systems() -> None:
    for system in ("SNOMED", "LOINC", "ICD10", "RXNORM", "UCUM", "ATC", "LOCAL", "LABSYS", "LOCAL-LAB"):
        code = {"SNOMED": "254637007", "LOINC": "718-7", "ICD10": "C34.1", "RXNORM": "1721560", "UCUM": "mg",
                "ATC": "L01XE03"}.get(system, "LAB-7")  # fmt: skip
        _platform([{"condition_source_value": code, "source_system": system}])


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("LN", "LOINC"),
        ("LNC", "LOINC"),
        ("I10", "ICD10"),
        ("I10C", "ICD10"),
        ("SNOMEDCT_US", "SNOMED"),
        ("https://loinc.org", "LOINC"),
        ("ICD10-CM", "ICD10"),
        ("ICD 10", "ICD10"),
        ("SNOMED CT-US", "SNOMED"),
        ("http://snomed.info/sct/731000124108", "SNOMED"),
        ("http://www.genenames.org/geneId", "HGNC"),
    ],
)
def test_real_spellings_of_known_systems_are_known(written: str, name: str) -> None:
    """HL7 v2's table 0396 codes, UMLS source names, https, a SNOMED edition's URI (outside review 17):
    refused unless declared before, some not even declarable."""
    from curata.collect.clinical._codes import system_name

    assert system_name(written) == name
