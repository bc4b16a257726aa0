"""A code system as exports write it: a known system's name, URL or OID, or a local one the mapping
declares (its token, URL or OID). Text typed where the system goes (an MRN, a phone in the local format,
an e-mail) is no system and is not stored: a CSV row is refused, a FHIR code travels without it."""

from __future__ import annotations

import copy
from typing import Any

from curata.collect.clinical import clinical_rows
from curata.collect.clinical._codes import kept_system
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import (
    MAPPING,
    csv_row,
    fhir_resources,
    folded_survivors,
    write_csv,
    write_ndjson,
)

FORMS = ["4471923", "090-3344-5566", "k.suzuki@mail.example", "seen 3 Feb"]
NEEDLES = ["4471923", "33445566", "suzuki", "mailexample", "seen3feb"]


def test_known_and_local_systems_are_kept_text_is_not() -> None:
    assert kept_system("http://loinc.org") == "LOINC"
    assert kept_system("urn:oid:2.16.840.1.113883.6.96") == "SNOMED"
    assert kept_system("SNOMED CT") == "SNOMED"
    url = "https://ehr.example.org/fhir/CodeSystem/lab-codes"
    assert kept_system(url) is None  # not declared
    assert kept_system(url, {url.upper()}) == url.upper()
    assert kept_system("LOCAL-LAB") is None
    assert kept_system("local-lab", {"LOCAL-LAB"}) == "LOCAL-LAB"
    assert kept_system("http://loinc.org 4471923") is None
    assert kept_system("Local lab codes", {"LOCAL LAB CODES"}) is None


def test_text_in_every_csv_system_column(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mapping = MAPPING.replace('system = "=ICD10"', 'system = "unmapped_comment"')
    assert mapping != MAPPING
    rows = [csv_row(unmapped_comment="ICD10")]
    rows += [csv_row(unmapped_comment=f"ICD10 {form}") for form in FORMS]
    write_csv(tmp_path / "export" / "dx.csv", rows, mapping=mapping)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "export"])
    assert summary.counts["ingested"] == 1
    with workspace.catalog.session() as s:
        kept = clinical_rows(s, workspace.store, "condition_occurrence")
    assert len(kept) == 1  # the rows whose system column holds text are refused
    assert folded_survivors(workspace, NEEDLES) == []


def _systems(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [q for k, v in node.items() for q in _systems(v, (*path, k))]
    if isinstance(node, list):
        return [q for i, v in enumerate(node) for q in _systems(v, (*path, i))]
    return [path] if path and path[-1] == "system" and "coding" in path else []


def test_text_in_every_fhir_coding_system(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = fhir_resources("pat-0")
    lines: list[dict[str, Any]] = list(base)
    for res in base[1:]:
        for leaf in _systems(res):
            for form in FORMS:
                variant = copy.deepcopy(res)
                node = variant
                for k in leaf[:-1]:
                    node = node[k]
                node["system"] = f"{node['system']} {form}"
                variant["id"] = f"{res['id']}-{len(lines)}"
                lines.append(variant)
    assert len(lines) > len(base) + 20
    write_ndjson(tmp_path / "bulk" / "export.ndjson", lines)
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1
    assert folded_survivors(workspace, NEEDLES) == []
