"""A release's dataset card describes the population the release was drawn from: the sites its series
come from, never another site's name, scanners or counts; the clinical summary lists coded values and
counts, never a free-text value (outside review 12)."""

from __future__ import annotations

from curata.publish.formats import clinical as clinical_fmt
from curata.publish.formats.clinical import ReleasePatient


def test_the_clinical_summary_lists_no_free_text_value() -> None:
    who = {1: ReleasePatient("site/P1", "train", {"sex": "F"}), 2: ReleasePatient("site/P2", "test", {})}
    free = "Body height: told by her son Bartholomew Okafor-Reyes"
    tables = {
        "person": [{"person_id": 1}, {"person_id": 2}],
        "condition_occurrence": [
            {"person_id": 1, "condition_source_value": "C34.1", "source_display": "Lung adenocarcinoma",
             "stage": "IIIA", "stage_group": "III", "note": "seen by Dr. Musa Danjuma"},
            {"person_id": 2, "source_display": "mass per the letter of Dr. Ifeoma Chukwu"},  # no code
        ],
        "observation": [
            {"person_id": 1, "observation_source_value": "8302-2", "source_display": "Body height",
             "value_as_string": "told by her son Bartholomew Okafor-Reyes"},
            {"person_id": 2, "observation_source_value": "8302-2", "source_display": "Body height",
             "value_as_number": 171.0, "unit_source_value": "cm"},
        ],
    }  # fmt: skip
    md = clinical_fmt.card_markdown(tables, who, [], {})
    assert "Bartholomew" not in md and "Okafor" not in md and free not in md and "Danjuma" not in md
    assert "8302-2" in md and "Body height" in md and "cm" in md and "III" in md
    assert "C34.1" in md and "| uncoded | 1 |" in md and "Chukwu" not in md
