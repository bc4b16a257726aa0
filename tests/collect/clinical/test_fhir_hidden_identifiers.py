"""Identifying values a FHIR Patient holds outside its name, address and telecom elements: a mother's
maiden name and a birthplace in standard extensions, a name or an address given in any extension
(valueHumanName, valueAddress), and a relative or the patient written as a contained resource of another
resource. Each is an identifier of the patient, so a note naming it is cleaned."""

from __future__ import annotations

from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import fhir_resources, folded_survivors, write_ndjson

EXT = "http://hl7.org/fhir/StructureDefinition/"
NOTES = [
    "mother (née Ikwuemesi) at bedside",
    "born in Nsukka, 7 Ogui Road",
    "emergency contact Chidinma Ezeugwu",
    "lives at 22 Awolowo Crescent",
    "interpreter Oluwaseun Bamgbose present",
]
NEEDLES = ["Ikwuemesi", "Nsukka", "Ogui", "Chidinma", "Ezeugwu", "Awolowo", "Oluwaseun", "Bamgbose"]


def test_extension_and_contained_identifiers(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = fhir_resources("pat-x")
    patient = res[0]
    patient["extension"] = [
        {"url": EXT + "patient-mothersMaidenName", "valueString": "Ikwuemesi"},
        {"url": EXT + "patient-birthPlace", "valueAddress": {"line": ["7 Ogui Road"], "city": "Nsukka"}},
        {"url": "http://example.org/fhir/emergency-contact", "valueHumanName": {"text": "Chidinma Ezeugwu"}},
    ]
    condition = res[1]
    condition["contained"] = [
        {"resourceType": "RelatedPerson", "id": "rp1", "patient": {"reference": "Patient/pat-x"},
         "name": [{"family": "Bamgbose", "given": ["Oluwaseun"]}]},
        {"resourceType": "Patient", "id": "p2", "address": [{"line": ["22 Awolowo Crescent"], "city": "Enugu"}]},
    ]  # fmt: skip
    condition["note"] = [{"text": n} for n in NOTES]
    write_ndjson(tmp_path / "bulk" / "export.ndjson", res)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1, problems
    left = folded_survivors(workspace, NEEDLES)
    assert not left, f"{len(left)} of {len(NEEDLES)} survive: {left}"
    assert folded_survivors(workspace, ["at bedside", "born in", "present"]) == [
        "at bedside",
        "born in",
        "present",
    ]
