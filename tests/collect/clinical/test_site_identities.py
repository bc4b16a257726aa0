"""What the site knows of a patient cleans every other input of that patient (reviewer 8, findings 1, 2,
3 and 10): the name, birth date, address and phone of the patient's DICOM; the identity columns of
another table; the Patient, Practitioner, RelatedPerson and Organization resources of a FHIR export; the
institutions and staff the site's inputs name. Within one ``curata ingest`` and across runs (sealed in
the vault, ``vault/clinical``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from curata.collect.clinical import INDEXED, clinical_rows
from curata.collect.genomics.models import genomic_file
from curata.collect.ingest import Ingestor
from tests.conftest import make_ct

PID = "QF88421937"
NAME = "Quillfeather^Marisol"
ADDRESS = "42 Bramblewood Lane, Tarrytown"
PHONE = "914-555-0173"
INSTITUTION = "St Wendeline General Hospital"
REFERRER = "Pottinger^Evander"
LEAKS = [
    "Quillfeather",
    "QUILLFEATHER",
    "Marisol",
    "Tarrytown",
    "Bramblewood",
    "Wendeline",
    "Pottinger",
    "Evander",
]

EVENTS = """
[[csv.events]]
table = "measurement"
code = "loinc"
system = "=LOINC"
display = "test_name"
date = "collected"
value = "value"
unit = "unit"
note = "comment"
"""
LABS_MAP = '[csv]\npatient_id = "mrn"\n' + EVENTS
# notes that hold nothing of the patient: they must come out as they went in
CONTROLS = [
    "Metformin 500 mg twice daily; continue atorvastatin",
    "Will repeat CBC on Ward 5 next week",
    "General condition good, lesion 12 mm, PSA 4.1 ng/mL at 3 months",
    "Gene panel sent to the General Hospital lab",
]


def _ct(path: Path, **extra: str) -> None:
    ds = make_ct(patient_id=PID, patient_name=NAME)
    ds.PatientBirthDate = "19470319"
    for k, v in extra.items():
        setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _full_ct(path: Path) -> None:
    _ct(
        path,
        PatientAddress=ADDRESS,
        PatientTelephoneNumbers=PHONE,
        InstitutionName=INSTITUTION,
        ReferringPhysicianName=REFERRER,
    )


def _labs(folder: Path, notes: list[str], mapping: str = LABS_MAP) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["mrn,collected,loinc,test_name,value,unit,comment"]
    for i, note in enumerate(notes):
        lines.append(f'{PID},2019-06-1{i % 10},718-7,Hemoglobin,12.{i},g/dL,"{note}"')
    (folder / "labs.csv").write_text("\n".join(lines) + "\n")
    (folder / "clinical-map.toml").write_text(mapping)


def _demographics(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demographics.csv").write_text(
        "mrn,family,given,dob,sex,street,city,phone\n"
        f"{PID},Quillfeather,Marisol,1947-03-19,F,42 Bramblewood Lane,Tarrytown,{PHONE}\n"
    )
    (folder / "clinical-map.toml").write_text(
        '[csv]\npatient_id = "mrn"\n[csv.identifiers]\nnames = ["family", "given"]\nbirth_date = "dob"\n'
        'addresses = ["street", "city"]\nphones = ["phone"]\n[csv.person]\nsex = "sex"\n'
    )


def _ingest(ws, *paths: Path) -> None:  # type: ignore[no-untyped-def]
    _summary, problems = Ingestor(ws, workers=1).ingest_paths(list(paths))
    assert not problems, [p.reason for p in problems]


def _notes(ws) -> list[str]:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        rows = clinical_rows(s, ws.store, "measurement")
    return [r["note"] for r in rows]


def _stored_text(ws) -> str:  # type: ignore[no-untyped-def]
    """Every stored object as text (gzip opened) and every clinical row as filed."""
    parts = []
    for p in ws.store_path.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            parts.append(data.decode("latin-1"))
    with ws.catalog.session() as s:
        for table in INDEXED:
            parts.append(json.dumps(clinical_rows(s, ws.store, table), default=str))
    return "\n".join(parts)


def _assert_clean(ws, leaks=LEAKS) -> None:  # type: ignore[no-untyped-def]
    text = _stored_text(ws)
    found = [n for n in leaks if n in text]
    assert not found, found


# -- finding 1: a CSV note names the patient of the DICOM with the same PatientID ------------------------


@pytest.mark.parametrize("runs", ["one run", "images first, labs in a later run"])
def test_csv_note_is_cleaned_of_what_the_patients_dicom_says(workspace, tmp_path, runs) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    _full_ct(export / "zz_img" / "IM0001")
    _labs(
        export / "aa_labs",  # read before the images by name: the result must not depend on it
        [
            "Result called to Marisol Quillfeather",
            "Pt QUILLFEATHER, home Tarrytown",
            f"reviewed by Dr. Evander Pottinger ({INSTITUTION})",
            "Dr Pottinger informed",
            *CONTROLS,
        ],
    )
    if runs == "one run":
        _ingest(workspace, export)
    else:
        _ingest(workspace, export / "zz_img")
        _ingest(workspace, export / "aa_labs")
    _assert_clean(workspace)
    notes = _notes(workspace)
    for control in CONTROLS:
        assert control in notes, (control, notes)
    assert any(n and n.startswith("Result called to") for n in notes)


def test_identities_are_sealed_keyed_never_in_plain_text(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from curata.collect.deid import Vault

    _full_ct(tmp_path / "img" / "IM0001")
    _ingest(workspace, tmp_path / "img")
    folder = workspace.vault_path / "clinical"
    raw = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for leak in (b"Quillfeather", b"Marisol", b"Tarrytown", PID.encode(), b"Wendeline"):
        assert leak not in raw
    records = list(Vault(folder, workspace.site_key()).records())
    assert records, "the DICOM patient's identities were not sealed"
    assert any(r.get("kind") == "identifiers" for r in records)
    # keyed by the patient ID in its keyed form (its values, sealed, hold the ID: it is cleaned too)
    keyed = [r["patient"] for r in records if r.get("kind") == "identifiers"]
    assert keyed and PID not in keyed and all(len(k) == 64 for k in keyed)
    assert not any("patient_id" in r for r in records)


# -- finding 2: a VCF header names the patient of the DICOM, or the institution -----------------------


def _vcf(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tumour.vcf").write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr7,length=159345973>\n"
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth (sample of Marisol Quillfeather)">\n'
        '##INFO=<ID=GENE,Number=1,Type=String,Description="Gene symbol">\n'
        f'##FILTER=<ID=q10,Description="Quality below 10; ordered by Dr Pottinger, {INSTITUTION}">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths for Quillfeather">\n'
        f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{PID}\n"
        "chr7\t55191822\t.\tT\tG\t50\tPASS\tDP=40;GENE=EGFR\tGT:AD\t0/1:20,20\n"
    )


def _stored_vcf(ws) -> str:  # type: ignore[no-untyped-def]
    with ws.catalog.session() as s:
        blob = s.scalar(sa.select(genomic_file.c.blob_digest))
    return gzip.decompress(ws.store.get_bytes(blob)).decode()


@pytest.mark.parametrize("runs", ["one run", "images first, VCF in a later run"])
def test_vcf_header_is_cleaned_of_what_the_patients_dicom_says(workspace, tmp_path, runs) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    _full_ct(export / "img" / "IM0001")
    _vcf(export / "genome")
    if runs == "one run":
        _ingest(workspace, export)
    else:
        _ingest(workspace, export / "img")
        _ingest(workspace, export / "genome")
    out = _stored_vcf(workspace)
    for leak in LEAKS:
        assert leak not in out, (leak, out)
    assert 'Description="Gene symbol"' in out and "Total depth" in out and "Quality below 10" in out


def test_vcf_filter_description_loses_the_institution_a_fhir_export_names(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    _vcf(export / "genome")
    org = {"resourceType": "Organization", "id": "org1", "name": INSTITUTION}
    prac = {
        "resourceType": "Practitioner",
        "id": "pr1",
        "name": [{"family": "Pottinger", "given": ["Evander"]}],
    }
    pat = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:mrn", "value": PID}],
        "name": [{"family": "Quillfeather", "given": ["Marisol"]}],
        "managingOrganization": {"reference": "Organization/org1"},
    }
    (export / "fhir").mkdir(parents=True)
    (export / "fhir" / "export.ndjson").write_text("\n".join(json.dumps(r) for r in (pat, org, prac)) + "\n")
    Ingestor(workspace, workers=1).ingest_paths([export])  # Organization, Practitioner: rows refused
    out = _stored_vcf(workspace)
    for leak in ("Quillfeather", "Marisol", "Wendeline", "Pottinger"):
        assert leak not in out, (leak, out)


# -- finding 3: one table declares the identities, another (same MRN) names the patient --------------


@pytest.mark.parametrize("order", ["demographics first", "labs first", "demographics in an earlier run"])
def test_labs_note_is_cleaned_of_the_identities_another_table_declares(workspace, tmp_path, order) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    demo, labs = ("a_demo", "b_labs") if order != "labs first" else ("b_demo", "a_labs")
    _demographics(export / demo)
    _labs(
        export / labs, ["Result called to Marisol Quillfeather in Tarrytown", f"call back {PHONE}", *CONTROLS]
    )
    if order == "demographics in an earlier run":
        _ingest(workspace, export / demo)
        _ingest(workspace, export / labs)
    else:
        _ingest(workspace, export)
    _assert_clean(workspace, ["Quillfeather", "Marisol", "Tarrytown", "555-0173"])
    notes = _notes(workspace)
    for control in CONTROLS:
        assert control in notes, (control, notes)


# -- finding 10: the other people a FHIR export names -------------------------------------------------


def _obs(i: int, note: str, **extra: object) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}]},
        "effectiveDateTime": "2019-06-02",
        "valueQuantity": {"value": 37.1, "unit": "Cel"},
        "note": [{"text": note}],
        **extra,
    }


def test_fhir_notes_lose_the_exports_practitioners_related_persons_performers(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    export.mkdir()
    pat = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:mrn", "value": PID}],
        "name": [{"family": "Quillfeather", "given": ["Marisol"]}],
    }
    prac = {
        "resourceType": "Practitioner",
        "id": "pr2",
        "name": [{"family": "Vantongeren", "given": ["Cornelius"]}],
    }
    rel = {
        "resourceType": "RelatedPerson",
        "id": "rp1",
        "patient": {"reference": "Patient/p1"},
        "name": [{"family": "Ortiz", "given": ["Joaquin"]}],
    }
    res = [
        pat,
        prac,
        rel,
        _obs(1, "discussed with Cornelius Vantongeren", performer=[{"reference": "Practitioner/pr2"}]),
        _obs(2, "discussed with Philippa Dunsworth", performer=[{"display": "Philippa Dunsworth"}]),
        _obs(3, "result given to Joaquin Ortiz"),
        _obs(4, "Dr. Vantongeren agrees"),
        *(_obs(10 + i, c) for i, c in enumerate(CONTROLS)),
    ]
    (export / "bundle.ndjson").write_text("\n".join(json.dumps(r) for r in res) + "\n")
    Ingestor(workspace, workers=1).ingest_paths([export])  # Practitioner, RelatedPerson: rows refused
    _assert_clean(workspace, ["Vantongeren", "Cornelius", "Dunsworth", "Philippa", "Joaquin", "Ortiz"])
    notes = _notes(workspace)
    for control in CONTROLS:
        assert control in notes, (control, notes)
    assert "discussed with *" in notes or any(n and n.startswith("discussed with") for n in notes)


def test_staff_a_site_names_are_cleaned_from_a_later_patients_notes(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Institutions and staff are the site's: named in one patient's images, cleaned from another's."""
    _full_ct(tmp_path / "img" / "IM0001")
    _ingest(workspace, tmp_path / "img")
    other = tmp_path / "other"
    other.mkdir()
    (other / "labs.csv").write_text(
        "mrn,collected,loinc,test_name,value,unit,comment\n"
        f'OTHER-5521,2019-06-10,718-7,Hemoglobin,12.1,g/dL,"seen by Evander Pottinger at {INSTITUTION}"\n'
        'OTHER-5521,2019-06-11,718-7,Hemoglobin,12.4,g/dL,"Will repeat on Ward 5"\n'
    )
    (other / "clinical-map.toml").write_text(LABS_MAP)
    _ingest(workspace, other)
    notes = _notes(workspace)
    assert "Will repeat on Ward 5" in notes
    text = json.dumps(notes)
    for leak in ("Pottinger", "Evander", "Wendeline"):
        assert leak not in text, notes
