"""Clinical and genomic ingest through `curata ingest`: linkage to images, de-identification, quarantine."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from curata.catalog import Patient, Study
from curata.collect.clinical import INDEXED, clinical_rows
from curata.collect.clinical.models import OMOP, clinical_source
from curata.collect.genomics.models import genomic_file, genomic_variant
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import (
    PATIENT,
    csv_row,
    fhir_resources,
    vcf_text,
    write_csv,
    write_ndjson,
)
from tests.conftest import make_ct


def _rows(ws, table):  # type: ignore[no-untyped-def]
    """Every row of a catalog table; the clinical tables' rows as filed (Parquet in the store)."""
    with ws.catalog.session() as s:
        if table.name in INDEXED:
            return clinical_rows(s, ws.store, table.name)
        return [dict(r._mapping) for r in s.execute(sa.select(table))]


def test_csv_rows_share_the_pseudonym_and_shift_of_the_patients_images(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    make_ct(export / "ct" / "IM0001", patient_id=PATIENT["mrn"], patient_name="Okonkwo-Bello^Adaeze")
    write_csv(export / "clinical" / "diagnoses.csv", [csv_row()])
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    assert summary.counts["ingested"] == 2
    with workspace.catalog.session() as s:
        patient = s.scalar(sa.select(Patient))
        study = s.scalar(sa.select(Study))
    persons = _rows(workspace, OMOP["person"])
    assert [p["pseudonym"] for p in persons] == [patient.pseudonym]
    cond = _rows(workspace, OMOP["condition_occurrence"])
    assert len(cond) == 1
    assert cond[0]["condition_source_value"] == "C34.1" and cond[0]["stage"] == "IIIA"
    assert cond[0]["source_display"] == "lung adenocarcinoma"
    # the CT was on 2024-03-01, the diagnosis on 2024-02-20: 10 days before, in the shifted dates too
    ct_day = dt.datetime.strptime(study.study_date, "%Y%m%d").date()
    assert (ct_day - cond[0]["condition_start_date"]).days == 10
    assert cond[0]["condition_start_date"] != dt.date(2024, 2, 20)
    meas = _rows(workspace, OMOP["measurement"])
    assert meas[0]["value_as_number"] == 11.2 and meas[0]["unit_source_value"] == "g/dL"
    spec = _rows(workspace, OMOP["specimen"])
    assert spec[0]["specimen_source_id"].startswith("SPEC-") and spec[0]["slide_id"].startswith("SLIDE-")
    periods = _rows(workspace, OMOP["observation_period"])
    assert (
        len(periods) == 1 and periods[0]["observation_period_start_date"] == cond[0]["condition_start_date"]
    )
    # the free-text note kept its clinical words and lost the name, the doctor's name and the phone
    note = cond[0]["note"]
    assert "cough" in note and "Adaeze" not in note and "Danjuma" not in note and "0199" not in note


def test_an_ingest_under_a_profile_with_its_own_prefix_links_every_input(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The profile an ingest names (``--config``) sets the images' pseudonym prefix; its CSV rows,
    FHIR resources and VCF samples take the same pseudonym (they had CUR-: nothing linked them)."""
    profile = tmp_path / "site.toml"
    profile.write_text('profile = "research"\npseudonym_prefix = "site-b-"\n')
    export = tmp_path / "export"
    make_ct(export / "ct" / "IM0001", patient_id=PATIENT["mrn"], patient_name="Okonkwo-Bello^Adaeze")
    write_csv(export / "clinical" / "diagnoses.csv", [csv_row()])
    write_ndjson(export / "fhir" / "Patient.ndjson", fhir_resources())
    (export / "lab").mkdir()
    (export / "lab" / "tumour.vcf").write_text(vcf_text())
    _summary, problems = Ingestor(workspace, workers=1, profile_config=profile).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    with workspace.catalog.session() as s:
        (pseudonym,) = s.scalars(sa.select(Patient.pseudonym))
    assert pseudonym.startswith("site-b-") and len(pseudonym) == len("site-b-") + 16
    assert {p["pseudonym"] for p in _rows(workspace, OMOP["person"])} == {pseudonym}
    assert _rows(workspace, genomic_file)[0]["samples"] == [pseudonym]
    assert _rows(workspace, OMOP["condition_occurrence"])  # the CSV's and the FHIR's rows, linked


def test_reingest_is_present_and_bad_rows_are_quarantined_with_line_and_reason(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        csv_row(),
        csv_row(mrn=""),
        csv_row(diagnosis_date="not a date at all Adaeze"),
        csv_row(icd10="Adaeze Okonkwo"),
        csv_row(stage="Okonkwo"),
        csv_row(mrn="MRN-55555", patient_name="Tunde Bakare"),
    ]
    path = write_csv(tmp_path / "export" / "dx.csv", rows)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([path])
    assert summary.failed and summary.counts["rows refused"] == 4
    reason = problems[0].reason or ""
    assert "line 3: mrn: no patient ID" in reason
    assert "line 4: date: not a date" in reason
    assert "line 5: code: not a valid ICD10 code" in reason
    assert "line 6: stage: not a stage" in reason
    assert "Adaeze" not in reason and "Okonkwo" not in reason
    assert len(_rows(workspace, OMOP["condition_occurrence"])) == 2
    assert len(_rows(workspace, OMOP["person"])) == 2
    again, _ = Ingestor(workspace, workers=1).ingest_paths([path])
    assert again.counts.get("present") == 1 and len(_rows(workspace, OMOP["condition_occurrence"])) == 2
    assert len(_rows(workspace, clinical_source)) == 1


def test_fhir_ndjson_becomes_omop_rows_with_the_same_pseudonym(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "bulk"
    make_ct(export / "IM0001", patient_id=PATIENT["mrn"])
    res = fhir_resources()
    write_ndjson(export / "Patient.ndjson", res[:1])
    write_ndjson(export / "Clinical.ndjson", [*res[1:], {"resourceType": "Observation", "status": 12}])
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    assert summary.counts["rows refused"] == 1
    assert "line 7: Observation: not a valid Observation resource" in (problems[0].reason or "")
    with workspace.catalog.session() as s:
        pseudonym = s.scalar(sa.select(Patient.pseudonym))
    persons = _rows(workspace, OMOP["person"])
    assert [p["pseudonym"] for p in persons] == [pseudonym]
    assert persons[0]["gender_source_value"] == "F"
    cond = _rows(workspace, OMOP["condition_occurrence"])
    assert cond[0]["stage"] == "IV" and cond[0]["condition_source_value"] == "C34.1"
    assert _rows(workspace, OMOP["measurement"])[0]["value_as_number"] == 11.2
    assert _rows(workspace, OMOP["procedure_occurrence"])[0]["procedure_source_value"] == "173171007"
    drug = _rows(workspace, OMOP["drug_exposure"])[0]
    assert (drug["drug_exposure_end_date"] - drug["drug_exposure_start_date"]).days == 182
    assert _rows(workspace, OMOP["specimen"])[0]["specimen_source_value"] == "122610009"
    obs = _rows(workspace, OMOP["observation"])
    assert "Danjuma" not in json.dumps(obs, default=str) and "EGFR" in (obs[0]["note"] or "")


def test_vcf_sample_becomes_the_patients_pseudonym_and_variants_are_indexed(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip

    export = tmp_path / "genomes"
    make_ct(export / "IM0001", patient_id=PATIENT["mrn"])
    (export / "tumour.vcf").write_text(vcf_text())
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    with workspace.catalog.session() as s:
        pseudonym = s.scalar(sa.select(Patient.pseudonym))
    files = _rows(workspace, genomic_file)
    assert files[0]["samples"] == [pseudonym] and files[0]["variant_count"] == 2
    assert files[0]["dropped_header_lines"] >= 6
    out = gzip.decompress(workspace.store.get_bytes(files[0]["blob_digest"])).decode()
    assert f"FORMAT\t{pseudonym}" in out and "55191822" in out and "p.Leu858Arg" in out
    assert out.startswith("##fileformat=VCFv4.2\n") and "ERRORS / WARNINGS / INFO" in out  # descriptions kept
    for gone in (
        "##commandline",
        "##SAMPLE",
        "##PEDIGREE",
        "##fileDate",
        "GATKCommandLine",
        "/data/lagos",
        "MRN-",
    ):
        assert gone not in out
    variants = {v["pos"]: v for v in _rows(workspace, genomic_variant)}
    v = variants[55191822]
    assert (v["gene"], v["consequence"], v["hgvs_c"], v["hgvs_p"]) == (
        "EGFR",
        "missense_variant",
        "c.2573T>G",
        "p.Leu858Arg",
    )
    assert v["zygosity"] == "heterozygous" and abs(v["allele_frequency"] - 0.42) < 1e-6
    assert variants[55181378]["zygosity"] == "homozygous"


def test_filing_a_deidentified_batch_twice_files_it_once(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The public filing entry points (a gateway's push lands there too): a batch or VCF filed again is
    'present', and nothing is written twice."""
    import hashlib
    import tomllib

    from curata.collect.clinical import ClinicalIngestor, parse_mapping
    from curata.collect.clinical.mapping import VcfMap
    from curata.collect.clinical.tabular import deidentify_table
    from curata.collect.genomics import deidentify_vcf
    from curata.collect.ingest import ensure_site
    from tests.collect.clinical._fixtures import MAPPING

    raw = write_csv(tmp_path / "dx.csv", [csv_row(), csv_row(mrn="MRN-55555")]).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    key = workspace.site_key()
    batch = deidentify_table(raw, "dx.csv", digest, parse_mapping(tomllib.loads(MAPPING)).table, key, "csv")
    with workspace.catalog.session() as s:
        site_id = ensure_site(s, workspace.site_name).id
    filer = ClinicalIngestor(workspace, site_id)
    assert filer.file_batch(batch, "dx.csv").status == "ingested"
    assert filer.file_batch(batch, "dx.csv").status == "present"
    vcf = vcf_text().encode()
    res = deidentify_vcf(vcf, "a.vcf", VcfMap(), key)
    vdigest = hashlib.sha256(vcf).hexdigest()
    assert [filer.file_vcf(res, vdigest, "a.vcf").status for _ in range(2)] == ["ingested", "present"]
    assert len(_rows(workspace, OMOP["condition_occurrence"])) == 2
    assert len(_rows(workspace, genomic_variant)) == 2 and len(_rows(workspace, genomic_file)) == 1
    assert len(_rows(workspace, clinical_source)) == 1


@pytest.mark.parametrize("patient_first", [True, False])
def test_an_age_over_89_is_capped_across_inputs(workspace, tmp_path, patient_first: bool) -> None:  # type: ignore[no-untyped-def]
    """A FHIR bulk export files Patient and Condition as two inputs: neither shows the age alone (born
    1925, diagnosed 2024: 99). Whichever is filed first, the year of birth is capped once both are."""
    from tests.collect.clinical._fixtures import fhir_patient, fhir_resources, write_ndjson

    patient = fhir_patient("pat-old") | {"birthDate": "1925-03-01"}
    condition = next(r for r in fhir_resources("pat-old") if r["resourceType"] == "Condition")
    # the bulk export's files are filed in name order
    names = (
        ("a-Patient.ndjson", "b-Condition.ndjson")
        if patient_first
        else ("b-Patient.ndjson", "a-Condition.ndjson")
    )
    write_ndjson(tmp_path / "bulk" / names[0], [patient])
    write_ndjson(tmp_path / "bulk" / names[1], [condition])
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([tmp_path / "bulk"])
    assert summary.counts["ingested"] == 2
    person, period = OMOP["person"], OMOP["observation_period"]
    with workspace.catalog.session() as s:
        ((born, capped),) = s.execute(sa.select(person.c.year_of_birth, person.c.age_capped)).all()
        last = s.scalar(sa.select(period.c.observation_period_end_date))
    assert last is not None and born == last.year - 90 and capped  # dates shifted: the age is what counts
