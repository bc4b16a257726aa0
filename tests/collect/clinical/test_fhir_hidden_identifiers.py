"""Identifying values a FHIR Patient holds outside its name, address and telecom elements: a mother's
maiden name and a birthplace in standard extensions, a name or an address given in any extension
(valueHumanName, valueAddress), and a relative or the patient written as a contained resource of another
resource. Each is an identifier of the patient, so a note naming it is cleaned."""

from __future__ import annotations

import json
from typing import Any

import pytest

from curata.collect.clinical._records import ClinicalBatch
from curata.collect.clinical.fhir import deidentify_fhir
from curata.collect.clinical.mapping import FhirMap
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


# -- outside review 12, finding 1: whoever a resource names by a display alone is the site's ----------

TAG = "http://example.org/fhir/StructureDefinition/"
# what a code means, given as a Coding's display (with or without a code) or a concept's text: never a name
CODED = {
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254637007", "display": "Lung adenocarcinoma"}]},
    "category": [{"coding": [{"display": "Problem list item"}]}],
    "meta": {"tag": [{"display": "Tumour board review"}], "security": [{"display": "Restricted access"}]},
    "stage": [{"summary": {"text": "Stage IIIA"}}],
    "extension": [{"url": TAG + "treatment-intent", "valueCoding": {"display": "Adjuvant chemotherapy"}}],
}  # fmt: skip
CLINICAL = ["Lung adenocarcinoma", "Problem list item", "Tumour board review", "Restricted access", "Stage IIIA",
            "Adjuvant chemotherapy"]  # fmt: skip

# (a Condition's elements naming someone, the name): a display alone under an element FHIR types as a
# reference to people (a note's authorReference, an Observation's performer), or a reference under any
# element that says it points to a person (its type, Practitioner/5, a contained #id), at any depth
SHAPES = [
    ({"note": [{"authorString": "Ignatius Pemberton", "text": "-"}]}, "Ignatius Pemberton"),
    ({"note": [{"authorReference": {"display": "Hortensia Wolfsbane"}, "text": "-"}]}, "Hortensia Wolfsbane"),
    ({"evidence": [{"detail": [{"reference": "Practitioner/5", "display": "Leopold Marchbanks"}]}]},
     "Leopold Marchbanks"),
    ({"contained": [{"resourceType": "Practitioner", "id": "lead"}],
      "extension": [{"url": TAG + "tumour-board-lead", "valueReference": {"reference": "#lead",
                                                                         "display": "Perpetua Oyelaran"}}]},
     "Perpetua Oyelaran"),
    ({"extension": [{"url": TAG + "mdt", "extension": [{"url": "chair", "valueReference": {
        "type": "Practitioner", "display": "Cassius Threlkeld"}}]}]}, "Cassius Threlkeld"),
    ({"contained": [{"resourceType": "Observation", "id": "o9", "status": "final", "code": {"text": "ECOG"},
                     "performer": [{"display": "Rosalind Achterberg"}]}]}, "Rosalind Achterberg"),
    ({"contained": [{"resourceType": "Observation", "id": "o9", "status": "final", "code": {"text": "ECOG"},
                     "performer": [{"identifier": {"value": "D-4471"}, "display": "Bartholomew Ekwueme"}]}]},
     "Bartholomew Ekwueme"),
    ({"contained": [{"resourceType": "Practitioner", "id": "pr9",
                     "name": [{"given": ["Wilhelmina"], "family": "Stroud-Adeyemi"}]}]}, "Wilhelmina Stroud-Adeyemi"),
]  # fmt: skip


def _condition(text: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = extra or {}
    return {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2020-05-01",
        **CODED,
        **extra,
        "note": [*extra.get("note", []), {"text": text}],
    }


def _run(*resources: dict[str, Any]) -> tuple[ClinicalBatch, list[str]]:
    pat = {"resourceType": "Patient", "id": "p1", "identifier": [{"value": "MRN88421937"}],
           "name": [{"family": "Quillfeather", "given": ["Marisol"]}], "birthDate": "1961-02-03"}  # fmt: skip
    raw = "\n".join(json.dumps(r) for r in (pat, *resources)).encode()
    batches, failed = deidentify_fhir([("x.ndjson", raw, "d" * 64)], FhirMap(), b"k" * 32)
    refused = [q for q in batches[0].quarantined if "not one Curata collects" not in q[1]]
    assert not failed and not refused, refused
    notes = [r["note"] for rows in batches[0].events.values() for r in rows if r.get("note")]
    return batches[0], notes


@pytest.mark.parametrize(("extra", "name"), SHAPES, ids=[n.split()[1] for _e, n in SHAPES])
def test_a_name_given_by_a_display_alone_is_the_sites(extra: dict[str, Any], name: str) -> None:
    note = f"Discussed at MDT; {name} to follow up. " + "; ".join(CLINICAL)
    batch, notes = _run(_condition(note, extra))
    assert name in batch.people
    assert notes and all(name.split()[0] not in n and name.split()[-1] not in n for n in notes), notes
    assert "to follow up" in notes[0]
    for word in CLINICAL:
        assert word in notes[0], (word, notes)
    assert not (batch.people | batch.institutions) & set(CLINICAL)


def test_names_in_other_resources_of_the_export() -> None:
    """An Encounter's participant (``individual``, a display alone), an Organization's contact (a
    HumanName), a ContactDetail: resources Curata does not keep still name the site's people."""
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "Patient/p1"},
                 "class": {"display": "Ambulatory care"},
                 "participant": [{"individual": {"display": "Octavia Fairweather"}}]}  # fmt: skip
    org = {"resourceType": "Organization", "id": "org1", "name": "Harrowgate Thoracic Unit",
           "contact": [{"name": {"given": ["Benedikt"], "family": "Szymanowski"}}]}  # fmt: skip
    note = ("Octavia Fairweather and Benedikt Szymanowski agreed; Ambulatory care. "
            "Seen at Harrowgate Thoracic Unit. " + "; ".join(CLINICAL))  # fmt: skip
    batch, notes = _run(encounter, org, _condition(note))
    for leak in ("Octavia", "Fairweather", "Benedikt", "Szymanowski", "Harrowgate"):
        assert leak not in notes[0], notes
    for word in (*CLINICAL, "Ambulatory care", "agreed"):
        assert word in notes[0], (word, notes)
    assert "Ambulatory care" not in batch.people


def test_author_names_leave_the_store(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Through the ingest: the store and catalog hold no note author's name given as a string or a bare
    display, and keep what the codes mean."""
    res = fhir_resources("pat-x")
    res[1]["note"] = [
        {"authorString": "Ignatius Pemberton", "text": "Discussed at MDT; Ignatius Pemberton to follow up"},
        {
            "authorReference": {"display": "Hortensia Wolfsbane"},
            "text": "Hortensia Wolfsbane reviewed the CT",
        },
        {"text": "biopsy by Leopold Marchbanks; lung adenocarcinoma confirmed"},
    ]
    res[1]["evidence"] = [{"detail": [{"reference": "Practitioner/5", "display": "Leopold Marchbanks"}]}]
    write_ndjson(tmp_path / "bulk" / "export.ndjson", res)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 1, problems
    needles = ["Ignatius", "Pemberton", "Hortensia", "Wolfsbane", "Leopold", "Marchbanks"]
    assert folded_survivors(workspace, needles) == []
    kept = ["to follow up", "reviewed the CT", "lung adenocarcinoma confirmed"]
    assert folded_survivors(workspace, kept) == kept


def test_a_reference_to_a_clinical_resource_is_no_name() -> None:
    """A reference that says it points to a Condition or an Observation displays what it is about;
    one to a Practitioner or an Organization, or that says nothing of its target, names someone."""
    procedure = {
        "resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": {"reference": "Patient/p1"},
        "code": {"text": "Lobectomy"}, "performedDateTime": "2020-06-01",
        "reasonReference": [{"reference": "Condition/c1", "display": "Lung adenocarcinoma"},
                            {"reference": "https://h.example/fhir/Observation/o1/_history/2", "display": "Pleural effusion"},
                            {"type": "DiagnosticReport", "display": "Frozen section report"}],
        "performer": [{"actor": {"reference": "https://h.example/fhir/Practitioner/9", "display": "Seraphina Okafor"}}],
        "note": [{"authorReference": {"reference": "urn:uuid:1f0c", "display": "Evangeline Drummond"}, "text": "-"},
                 {"text": "Lung adenocarcinoma, Pleural effusion, Frozen section report; Seraphina Okafor and "
                          "Evangeline Drummond to review"}],
    }  # fmt: skip
    batch, notes = _run(procedure, _condition("seen"))
    for word in ("Lung adenocarcinoma", "Pleural effusion", "Frozen section report", "to review"):
        assert word in " ".join(notes), (word, notes)
    for leak in ("Seraphina", "Okafor", "Evangeline", "Drummond"):
        assert leak not in " ".join(notes), notes
    assert not batch.people & {"Lung adenocarcinoma", "Pleural effusion", "Frozen section report"}
