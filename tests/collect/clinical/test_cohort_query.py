"""Cohort queries over images, clinical rows and variants, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from curata.catalog import Patient, Series, Study
from curata.collect.ingest import Ingestor
from curata.errors import QueryError
from curata.select.query import parse, series_select
from tests.collect.clinical._fixtures import csv_row, vcf_text, write_csv
from tests.conftest import make_ct


@pytest.fixture
def linked(tmp_path, monkeypatch, database_url):  # type: ignore[no-untyped-def]
    """Three patients with a CT each: A (IIIA adenocarcinoma, EGFR missense), B (stage IV, no VCF), C (no record)."""
    from curata.workspace import Workspace

    monkeypatch.setenv("CURATA_DATABASE_URL", database_url)
    ws = Workspace.init(tmp_path / "ws", site="lagos")
    export = tmp_path / "export"
    for mrn in ("MRN-77123", "MRN-55555", "MRN-99999"):
        make_ct(export / "ct" / mrn, patient_id=mrn, patient_name=f"Test^{mrn[-3:]}")
    slide = make_ct(
        patient_id="MRN-77123", patient_name="Test^123"
    )  # a slide series, 4 days after the biopsy
    slide.Modality, slide.StudyDate, slide.SeriesDate = "SM", "20240229", "20240229"
    slide.save_as(export / "ct" / "slide.dcm", enforce_file_format=True)
    write_csv(
        export / "clinical" / "dx.csv",
        [csv_row(), csv_row(mrn="MRN-55555", patient_name="Tunde Bakare", stage="IV", icd10="C34.9")],
    )
    (export / "genomes").mkdir()
    (export / "genomes" / "a.vcf").write_text(vcf_text())
    _summary, problems = Ingestor(ws, workers=1).ingest_paths([export])
    assert not problems, [p.reason for p in problems]
    with ws.catalog.session() as s:
        by_mrn = {}
        for mrn in ("MRN-77123", "MRN-55555", "MRN-99999"):
            from curata.collect.clinical.deid import ClinicalDeidentifier

            pseudo = ClinicalDeidentifier(ws.site_key()).patient(mrn).pseudonym
            by_mrn[mrn[-5:]] = s.scalar(
                sa.select(Series.id).join(Study).join(Patient).where(Patient.pseudonym == pseudo)
            )
    assert all(by_mrn.values())
    yield ws, by_mrn
    ws.catalog.dispose()


def _ids(ws, query: str) -> set[int]:  # type: ignore[no-untyped-def]
    """The CT series matching ``query`` (patient A also has a slide series)."""
    with ws.catalog.session() as s:
        return set(s.scalars(series_select(f"modality = CT and ({query})")))


def test_images_clinical_and_genomic_criteria_together(linked) -> None:  # type: ignore[no-untyped-def]
    ws, ids = linked
    a, b, c = ids["77123"], ids["55555"], ids["99999"]
    q = (
        "modality = CT and clinical.condition = 'lung adenocarcinoma' and clinical.stage in (III, IV) "
        "and genomic.gene = EGFR and genomic.consequence = missense_variant"
    )
    assert _ids(ws, q) == {a}
    assert _ids(ws, "clinical.stage in (III, IV)") == {a, b}
    assert _ids(ws, "clinical.stage = IIIA") == {a}
    assert _ids(ws, "clinical.condition_code like 'C34%'") == {a, b}
    assert _ids(ws, "clinical.condition != 'lung adenocarcinoma'") == {c}
    assert _ids(ws, "not genomic.sequenced") == {b, c}
    assert _ids(ws, "clinical.linked") == {a, b}
    assert _ids(ws, "genomic.allele_frequency > 0.9 and genomic.zygosity = homozygous") == {a}
    assert _ids(ws, "genomic.hgvs = 'p.Leu858Arg'") == {a}
    assert _ids(ws, "clinical.measurement = hemoglobin and clinical.measurement_value < 12") == {a, b}
    assert _ids(ws, "clinical.stage is null") == {c}


def test_linkage_report_flags_missing_modalities_and_links_specimens_to_slides(linked) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from curata.cli import app
    from curata.collect.clinical.linkage import linkage_report

    ws, _ids = linked
    rows = linkage_report(ws, ["CT", "clinical", "genomic"])
    by_missing = sorted(r.missing for r in rows)
    assert by_missing == [[], ["clinical", "genomic"], ["genomic"]]
    full = next(r for r in rows if not r.missing)
    assert full.modalities == ["CT", "SM"] and full.vcf_files == 1 and full.specimens == 1
    assert full.slides_linked == 1
    res = CliRunner().invoke(app, ["clinical", "linkage", "--expect", "CT,genomic", "--missing", "--json",
                                   "-w", str(ws.root)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)) == 2


def test_clinical_fields_get_the_same_caret_and_suggestions() -> None:
    with pytest.raises(QueryError) as info:
        parse("modality = CT and genomic.gen = EGFR")
    assert info.value.hint and "genomic.gene" in info.value.hint
    assert info.value.message.splitlines()[-1].index("^") - 4 == 18
    with pytest.raises(QueryError) as info:
        parse("clinical.stage < III")
    assert "not a number" in info.value.message
