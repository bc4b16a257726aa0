"""Which FHIR reference displays are the site's names (outside review 13): only where FHIR says the
reference names a person or a place. A reference that says its target is a person or a place (its type,
``Practitioner/7``, a contained ``#id``, a Bundle's ``urn:uuid:``) or that sits under an element FHIR
types as a reference to people and places (``author``, ``asserter``, ``performer`` of an Observation)
names someone; the display of any other reference (``reasonReference``, ``focus``, ``specimen``,
``medicationReference``, a Device) is what the resource is about, and is kept in every note and code
display of the site, in later inputs too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from curata.collect.clinical import clinical_rows
from curata.collect.clinical.fhir import _site_names, deidentify_fhir
from curata.collect.clinical.mapping import FhirMap
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import csv_row, write_csv, write_ndjson

SUBJ = {"reference": "Patient/p1"}
PATIENT = {"resourceType": "Patient", "id": "p1", "identifier": [{"value": "MRN88421937"}],
           "name": [{"family": "Quillfeather", "given": ["Marisol"]}], "birthDate": "1961-02-03"}  # fmt: skip
SNOMED = "http://snomed.info/sct"

# The reviewer's resources: each names a clinical thing by a reference's display, never a person.
CLINICAL_REFERENCES: list[tuple[str, dict[str, Any]]] = [
    ("Lung adenocarcinoma",  # R4 reasonReference, a display alone
     {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order", "subject": SUBJ,
      "medicationCodeableConcept": {"text": "osimertinib"}, "reasonReference": [{"display": "Lung adenocarcinoma"}]}),
    ("Metastatic to bone",  # a urn:uuid: that resolves to nothing in this export
     {"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": SUBJ,
      "code": {"text": "Lobectomy"}, "performedDateTime": "2024-03-10",
      "reasonReference": [{"reference": "urn:uuid:6f1c2c8e-2f7a-4a57-9b1e-0d2c6c1e2a11",
                           "display": "Metastatic to bone"}]}),
    ("Bone metastasis",  # R5 CodeableReference: reason[].reference, a display alone
     {"resourceType": "Procedure", "id": "pr2", "status": "completed", "subject": SUBJ,
      "code": {"text": "Radiotherapy"}, "occurrenceDateTime": "2024-03-12",
      "reason": [{"reference": {"display": "Bone metastasis"}}]}),
    ("Osimertinib",
     {"resourceType": "MedicationStatement", "id": "ms1", "status": "active", "subject": SUBJ,
      "effectiveDateTime": "2024-03-01", "medicationReference": {"display": "Osimertinib"}}),
    ("Tumour stage group",  # a contained #id the resource does not hold
     {"resourceType": "Observation", "id": "o1", "status": "final", "subject": SUBJ, "code": {"text": "Stage"},
      "focus": [{"reference": "#c-inline", "display": "Tumour stage group"}]}),
    ("Primary lung tumour",  # a contained #id that resolves to a Condition
     {"resourceType": "Observation", "id": "o2", "status": "final", "subject": SUBJ, "code": {"text": "Stage"},
      "contained": [{"resourceType": "Condition", "id": "c-in", "subject": SUBJ, "code": {"text": "Primary"}}],
      "focus": [{"reference": "#c-in", "display": "Primary lung tumour"}]}),
    ("Adenocarcinoma of lung",
     {"resourceType": "Claim", "id": "cl1", "status": "active", "patient": SUBJ,
      "diagnosis": [{"sequence": 1, "diagnosisReference": {"display": "Adenocarcinoma of lung"}}]}),
    ("Stage IV NSCLC", {"resourceType": "CarePlan", "id": "cp1", "subject": SUBJ,
                        "addresses": [{"display": "Stage IV NSCLC"}]}),
    ("Partial response", {"resourceType": "CarePlan", "id": "cp2", "subject": SUBJ,
                          "activity": [{"outcomeReference": [{"display": "Partial response"}]}]}),
    ("Left upper lobe core biopsy",
     {"resourceType": "DiagnosticReport", "id": "d1", "status": "final", "subject": SUBJ, "code": {"text": "Path"},
      "specimen": [{"display": "Left upper lobe core biopsy"}]}),
    ("EGFR mutation analysis",
     {"resourceType": "DiagnosticReport", "id": "d2", "status": "final", "subject": SUBJ, "code": {"text": "Mol"},
      "result": [{"display": "EGFR mutation analysis"}]}),
    ("CT chest with contrast",
     {"resourceType": "DiagnosticReport", "id": "d3", "status": "final", "subject": SUBJ, "code": {"text": "CT"},
      "imagingStudy": [{"display": "CT chest with contrast"}]}),
    ("Baseline chest imaging",
     {"resourceType": "Observation", "id": "o3", "status": "final", "subject": SUBJ, "code": {"text": "Size"},
      "derivedFrom": [{"display": "Baseline chest imaging"}]}),
    ("Tumour size", {"resourceType": "Observation", "id": "o4", "status": "final", "subject": SUBJ,
                     "code": {"text": "Panel"}, "hasMember": [{"display": "Tumour size"}]}),
    ("Siemens SOMATOM Force",  # a Device is no person, even under an element that may name one
     {"resourceType": "Observation", "id": "o5", "status": "final", "subject": SUBJ, "code": {"text": "CT"},
      "device": {"reference": "Device/d1", "display": "Siemens SOMATOM Force"},
      "performer": [{"reference": "Device/d2", "display": "Philips IntelliSpace Portal"}]}),
    ("Lung adenocarcinoma on biopsy",  # evidence.detail is a Reference to any resource
     {"resourceType": "Condition", "id": "c2", "subject": SUBJ, "code": {"text": "NSCLC"},
      "evidence": [{"detail": [{"display": "Lung adenocarcinoma on biopsy"},
                               {"reference": "Observation/o9", "display": "PD-L1 expression"}]}]}),
    ("Progressive disease",  # an extension's valueReference (any resource), a display alone
     {"resourceType": "Condition", "id": "c3", "subject": SUBJ, "code": {"text": "NSCLC"},
      "extension": [{"url": "http://example.org/fhir/StructureDefinition/status-evidence",
                     "valueReference": {"display": "Progressive disease"}}]}),
    ("Adjuvant chemotherapy",  # an element that may name someone, pointing to a clinical resource
     {"resourceType": "Condition", "id": "c4", "subject": SUBJ, "code": {"text": "NSCLC"},
      "asserter": {"reference": "https://h.example/fhir/Procedure/p7/_history/2",
                   "display": "Adjuvant chemotherapy"}}),
]  # fmt: skip
_DATED = {
    "Observation": "effectiveDateTime",
    "DiagnosticReport": "effectiveDateTime",
    "Condition": "onsetDateTime",
}
for _d, _res in CLINICAL_REFERENCES:  # OMOP events are dated
    if _res["resourceType"] in _DATED:
        _res[_DATED[_res["resourceType"]]] = "2024-03-02"
CLINICAL = [display for display, _res in CLINICAL_REFERENCES] + [
    "PD-L1 expression",
    "Philips IntelliSpace Portal",
]

# Resources that name the site's people and places: each display is learnt (name, resource, person or place)
NAMING_REFERENCES: list[tuple[str, dict[str, Any], str]] = [
    ("Hortensia Wolfsbane",  # a note's authorReference, a display alone
     {"resourceType": "Condition", "id": "n1", "subject": SUBJ,
      "note": [{"authorReference": {"display": "Hortensia Wolfsbane"}, "text": "-"}]}, "person"),
    ("Ignatius Pemberton",
     {"resourceType": "Condition", "id": "n2", "subject": SUBJ,
      "note": [{"authorString": "Ignatius Pemberton", "text": "-"}]}, "person"),
    ("Rosalind Achterberg",  # an Observation's performer, a display alone
     {"resourceType": "Observation", "id": "n3", "status": "final", "subject": SUBJ, "code": {"text": "ECOG"},
      "performer": [{"display": "Rosalind Achterberg"}]}, "person"),
    ("Octavia Fairweather",
     {"resourceType": "Encounter", "id": "n4", "status": "finished", "subject": SUBJ,
      "participant": [{"individual": {"display": "Octavia Fairweather"}}]}, "person"),
    ("Leopold Marchbanks",  # an element to any resource, saying it points to a Practitioner
     {"resourceType": "Condition", "id": "n5", "subject": SUBJ,
      "evidence": [{"detail": [{"reference": "Practitioner/pr5", "display": "Leopold Marchbanks"}]}]}, "person"),
    ("Perpetua Oyelaran",  # an extension's valueReference to a contained Practitioner
     {"resourceType": "Condition", "id": "n6", "subject": SUBJ,
      "contained": [{"resourceType": "Practitioner", "id": "lead"}],
      "extension": [{"url": "http://example.org/fhir/StructureDefinition/tumour-board-lead",
                     "valueReference": {"reference": "#lead", "display": "Perpetua Oyelaran"}}]}, "person"),
    ("Cassius Threlkeld",  # a reason given as a reference with a person's type
     {"resourceType": "Procedure", "id": "n7", "status": "completed", "subject": SUBJ, "code": {"text": "Biopsy"},
      "performedDateTime": "2024-03-02", "reasonReference": [{"type": "RelatedPerson", "display": "Cassius Threlkeld"}]}, "person"),
    ("Bartholomew Ekwueme",  # a logical reference (an identifier) under recorder
     {"resourceType": "Condition", "id": "n8", "subject": SUBJ,
      "recorder": {"identifier": {"value": "D-4471"}, "display": "Bartholomew Ekwueme"}}, "person"),
    ("Medical Oncologist",  # a PractitionerRole is a person's: its display is learnt as a name
     {"resourceType": "Encounter", "id": "n9", "status": "finished", "subject": SUBJ,
      "participant": [{"individual": {"reference": "PractitionerRole/r1", "display": "Medical Oncologist"}}]},
     "person"),
    ("Harrowgate Thoracic Unit",
     {"resourceType": "Encounter", "id": "n10", "status": "finished", "subject": SUBJ,
      "serviceProvider": {"display": "Harrowgate Thoracic Unit"}}, "place"),
    ("Pembury Ward Seven",
     {"resourceType": "Encounter", "id": "n11", "status": "finished", "subject": SUBJ,
      "location": [{"location": {"reference": "Location/l1", "display": "Pembury Ward Seven"}}]}, "place"),
    ("Wilhelmina Stroud-Adeyemi",  # R5 Condition.participant.actor, a display alone
     {"resourceType": "Condition", "id": "n12", "subject": SUBJ, "clinicalStatus": {"text": "active"},
      "participant": [{"actor": {"display": "Wilhelmina Stroud-Adeyemi"}}]}, "person"),
]  # fmt: skip


for _n, _res, _k in NAMING_REFERENCES:
    if _res["resourceType"] in _DATED:
        _res[_DATED[_res["resourceType"]]] = "2024-03-02"


def _learnt(res: dict[str, Any], urls: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    people: list[str] = []
    places: list[str] = []
    _site_names(res, people, places, urls or {})
    return people, places


@pytest.mark.parametrize(("display", "res"), CLINICAL_REFERENCES, ids=[d for d, _r in CLINICAL_REFERENCES])
def test_a_reference_to_a_clinical_thing_is_no_name(display: str, res: dict[str, Any]) -> None:
    assert _learnt(res) == ([], [])


@pytest.mark.parametrize(
    ("name", "res", "kind"), NAMING_REFERENCES, ids=[n for n, _r, _k in NAMING_REFERENCES]
)
def test_a_reference_to_a_person_or_place_is_a_name(name: str, res: dict[str, Any], kind: str) -> None:
    people, places = _learnt(res)
    assert (people, places) == (([name], []) if kind == "person" else ([], [name]))


def test_a_bundle_entry_says_what_a_urn_uuid_points_to() -> None:
    """A ``urn:uuid:`` reference's target is the Bundle entry of that fullUrl: a Practitioner names
    someone under any element, a Device or a Condition no one, under an element that may name someone."""
    urls = {"urn:uuid:aa": "Practitioner", "urn:uuid:dd": "Device", "urn:uuid:cc": "Condition"}
    res = {"resourceType": "Condition", "id": "c1", "subject": SUBJ,
           "evidence": [{"detail": [{"reference": "urn:uuid:aa", "display": "Evangeline Drummond"},
                                    {"reference": "urn:uuid:cc", "display": "Pleural effusion"}]}],
           "asserter": {"reference": "urn:uuid:dd", "display": "Siemens Biograph Vision"}}  # fmt: skip
    assert _learnt(res, urls) == (["Evangeline Drummond"], [])
    # unresolved, each says nothing of its target: evidence.detail names no one, an asserter someone
    assert _learnt(res) == (["Siemens Biograph Vision"], [])


def _bundle(*resources: dict[str, Any]) -> bytes:
    entries = [{"fullUrl": f"urn:uuid:0000-{i}", "resource": r} for i, r in enumerate(resources)]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def test_clinical_displays_stay_in_notes_and_names_leave() -> None:
    """Through ``deidentify_fhir``: every note and code display of the export keeps the clinical displays;
    the site's names (each direction in one export) are learnt and cleaned."""
    prac = {"resourceType": "Practitioner", "id": "x"}  # its name not given: known by its fullUrl only
    names = [n for n, _r, _k in NAMING_REFERENCES if n != "Medical Oncologist"]
    condition = {
        "resourceType": "Condition", "id": "c1", "subject": SUBJ, "onsetDateTime": "2024-02-20",
        "code": {"coding": [{"system": SNOMED, "code": "254637007", "display": "Lung adenocarcinoma"}]},
        "recorder": {"reference": "urn:uuid:0000-1", "display": "Seraphina Okafor"},
        "note": [{"text": "; ".join(CLINICAL) + ". Seen by " + ", ".join([*names, "Seraphina Okafor"])}],
    }  # fmt: skip
    resources = [
        PATIENT,
        prac,
        condition,
        *(r for _d, r in CLINICAL_REFERENCES),
        *(r for _n, r, _k in NAMING_REFERENCES),
    ]
    batches, failed = deidentify_fhir([("b.json", _bundle(*resources), "d" * 64)], FhirMap(), b"k" * 32)
    assert not failed
    batch = batches[0]
    refused = [q for q in batch.quarantined if "not one Curata collects" not in q[1]]
    assert not refused, refused
    assert not (batch.people | batch.institutions) & set(CLINICAL)
    assert {"Seraphina Okafor", *names} <= batch.people | batch.institutions
    rows = batch.events["condition_occurrence"]
    note = next(r["note"] for r in rows if r.get("note"))
    for word in CLINICAL:
        assert word in note, (word, note)
    for name in (*names, "Seraphina Okafor"):
        for part in name.split():
            if part not in ("Ward", "Seven", "Unit", "Thoracic"):
                assert part not in note, (part, note)
    assert {r.get("source_display") for r in rows} >= {"Lung adenocarcinoma"}


LATER_MAP = """
[csv]
patient_id = "mrn"

[[csv.events]]
table = "condition"
code = "icd10"
system = "=ICD10"
display = "diagnosis"
date = "diagnosis_date"
note = "notes"
"""


def test_a_later_input_of_the_site_keeps_the_clinical_displays(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The names a FHIR export teaches the site are kept for its later inputs (the vault): a CSV ingested
    after the export keeps every clinical display in its note and its source_display, and is cleaned of
    the note author the export named."""
    export = [PATIENT, *(r for _d, r in CLINICAL_REFERENCES), NAMING_REFERENCES[0][1]]
    write_ndjson(tmp_path / "bulk" / "export.ndjson", export)
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    refused = [part for p in problems for part in p.reason.split(": ", 1)[1].split("; ")]
    assert all("not one Curata collects" in part for part in refused), refused  # a Claim, a CarePlan
    rows = [
        csv_row(
            mrn="LATER-5521",
            diagnosis=display,
            notes=f"{'; '.join(CLINICAL)}. Reviewed by Hortensia Wolfsbane",
        )
        for display in CLINICAL
    ]
    write_csv(tmp_path / "later" / "conditions.csv", rows, LATER_MAP)
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "later"])
    assert not problems, [p.reason for p in problems]
    with workspace.catalog.session() as s:
        later = [r for r in clinical_rows(s, workspace.store, "condition_occurrence") if (r.get("note") or "").endswith("by *")
                 or "Reviewed by" in (r.get("note") or "")]  # fmt: skip
    assert len(later) == len(CLINICAL), later
    assert sorted(str(r["source_display"]) for r in later) == sorted(CLINICAL)
    for r in later:
        for word in CLINICAL:
            assert word in r["note"], (word, r["note"])
        assert "Hortensia" not in r["note"] and "Wolfsbane" not in r["note"], r["note"]


def test_the_element_list_is_what_the_fhir_models_give() -> None:
    """``_fhir_site_elements`` is what scripts/gen_fhir_site_elements.py reads from fhir.resources."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location(
        "gen_fhir_site_elements", root / "scripts/gen_fhir_site_elements.py"
    )
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "src/curata/collect/clinical/_fhir_site_elements.py").read_text() == gen.render()
