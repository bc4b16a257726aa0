"""A release's dataset card describes the population the release was drawn from: the sites its series
come from, never another site's name, scanners or counts; the clinical summary lists coded values and
counts, never a free-text value (outside review 12)."""

from __future__ import annotations

from pathlib import Path

from curata.collect.ingest import Ingestor
from curata.publish import create_release
from curata.publish.formats import clinical as clinical_fmt
from curata.publish.formats.clinical import ReleasePatient
from curata.publish.manifest import Manifest
from curata.publish.release import get_version
from tests.collect.clinical._fixtures import MAPPING, csv_row, write_csv
from tests.conftest import make_ct

OBSERVATION = """
[[csv.events]]
table = "observation"
code = "lab_code"
system = "=LOINC"
display = "lab_name"
value = "lab_value"
date = "lab_date"
"""
LAGOS_TEXT = "quietly declined the second contrast dose"
RECIFE_TEXT = "arrived by canoe from the estuary"
OTHER = ["recife-hospital", "RecifeVendorX", "SecretModel9000", RECIFE_TEXT]


def _site(root: Path, mrns: list[str], *, vendor: str, model: str, text: str, seed: int) -> Path:
    for i, mrn in enumerate(mrns):
        for k in range(2):  # two slices: one series per patient
            ds = make_ct(patient_id=mrn, patient_name=f"Pat^{mrn}", index=k, seed=seed + i)
            ds.Manufacturer, ds.ManufacturerModelName = vendor, model
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{seed}{i}1"
            ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{seed}{i}2"
            ds.PatientSex = "M" if i % 2 else "F"
            path = root / "ct" / mrn / f"{k}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
    rows = [
        csv_row(mrn=m, patient_name=f"Pat {m}", lab_code="8302-2", lab_name="Body height", lab_value=text)
        for m in mrns
    ]
    write_csv(root / "clinical" / "dx.csv", rows, MAPPING + OBSERVATION)
    return root


def test_a_one_site_release_card_holds_nothing_of_another_site(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lagos = _site(tmp_path / "lagos", ["MRN-10001", "MRN-10002", "MRN-10003"],
                  vendor="GE MEDICAL SYSTEMS", model="Revolution", text=LAGOS_TEXT, seed=1)  # fmt: skip
    recife = _site(tmp_path / "recife", ["MRN-20001", "MRN-20002", "MRN-20003", "MRN-20004"],
                   vendor="RecifeVendorX", model="SecretModel9000", text=RECIFE_TEXT, seed=5)  # fmt: skip
    for folder, site in ((lagos, "lagos-teaching"), (recife, "recife-hospital")):
        _summary, problems = Ingestor(workspace, workers=1, site=site).ingest_paths([folder])
        assert not problems, [p.reason for p in problems]
    rel = create_release(workspace, "lagrel", where="site = lagos-teaching", formats="dicom", split="100")
    with workspace.catalog.session() as s:
        manifest = Manifest.from_bytes(workspace.store.get_bytes(get_version(s, rel.ref).manifest_digest))
    cards = {
        f.path: workspace.store.get_bytes(f.sha256) for f in manifest.files if f.path.startswith("card/")
    }
    assert {"card/README.md", "card/card.html", "card/clinical.md"} <= set(cards)
    for path, data in cards.items():
        if path.endswith(".png"):
            continue
        text = data.decode()
        for needle in OTHER:
            assert needle.lower() not in text.lower(), (path, needle)
        assert LAGOS_TEXT not in text, path  # free text stays out, even the release's own
    md = cards["card/README.md"].decode()
    # the baseline is the release's own site, and the card says so
    assert "lagos-teaching" in md and "baseline" in md.lower()
    # three patients, three series: every count is under the small-cell threshold (5), in the baseline
    # too; recife's four patients and series in the baseline would make it 7
    assert "| lagos-teaching | <5 | - | <5 | - |" in md  # not 3 of 7 patients
    assert "| GE MEDICAL SYSTEMS | <5 | - | <5 | - |" in md  # recife's scanners counted nowhere
    assert "| CT | <5 | - | <5 | - |" in md and "| 7 |" not in md
    assert "| F | <5 | - | <5 | - |" in md and "| M | <5 | - | <5 | - |" in md
    assert rel.flags == [] and not any("recife" in f for f in rel.flags)
    # the card folder a server sends is the same
    for f in Path(rel.card).parent.iterdir():
        if f.suffix in (".md", ".html"):
            assert not any(n.lower() in f.read_text().lower() for n in OTHER)
    clinical = cards["card/clinical.md"].decode()
    assert "8302-2" in clinical and "Body height" in clinical  # the code and its display, with counts


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
    assert "8302-2" in md and "Body height" in md and "cm" in md
    # one patient each: the counts read <5 and the stage of a one-patient diagnosis is not broken down
    assert "C34.1" in md and "| uncoded | <5 |" in md and "Chukwu" not in md and "III" not in md
