"""The platform's checks of a pushed clinical batch or VCF (outside review 11, findings 4, 5 and 8): every
wire column against what the site writes there, a VCF's records against what its cleaning leaves, and
refusal reasons that quote no input text."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

import pyarrow as pa
import pytest
import sqlalchemy as sa

from curata.catalog import QuarantineItem
from curata.collect.clinical import MANIFEST_TYPE, Batch, receive_batches
from curata.collect.clinical._codes import valid_code
from curata.collect.dicomweb import multipart_decode, multipart_encode
from curata.collect.genomics import bgzip

P = "CUR-" + "A" * 16
PLANTED = ("Quillfeather", "Marisol", "88421937", "914-555-0173", "Elm Street", "HONEYSUCKLE", "OPHELIA")


def _send(ws, batch: Batch):  # type: ignore[no-untyped-def]
    body, ctype = multipart_encode(batch.parts(), MANIFEST_TYPE)
    return receive_batches(ws, multipart_decode(body, ctype))


def _name(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def _person(**over: object) -> pa.Table:
    cols: dict[str, object] = {
        "pseudonym": [P],
        "gender_source_value": ["F"],
        "year_of_birth": pa.array([1960], pa.int64()),
        "age_capped": [False],
    }
    cols.update({k: [v] for k, v in over.items()})
    return pa.table(cols)


def _event(table: str, date_col: str, **over: object) -> pa.Table:
    cols: dict[str, object] = {"pseudonym": [P], date_col: pa.array([dt.date(2020, 1, 5)], pa.date32())}
    cols.update({k: [v] for k, v in over.items()})
    return pa.table(cols)


def _stored(ws) -> str:  # type: ignore[no-untyped-def]
    from tests.collect.clinical._fixtures import stored_texts

    return "\n".join(stored_texts(ws))


CASES = {
    "person gender": {"person": _person(gender_source_value="Marisol Quillfeather")},
    "drug sig": {"drug_exposure": _event("drug_exposure", "drug_exposure_start_date",
                                         sig="Dr. Quillfeather: take 1 daily, call 914-555-0173")},
    "drug lot": {"drug_exposure": _event("drug_exposure", "drug_exposure_start_date", lot_number="88421937")},
    "condition stop_reason": {"condition_occurrence": _event(
        "condition_occurrence", "condition_start_date", stop_reason="Patient Marisol Quillfeather")},
    "condition status": {"condition_occurrence": _event(
        "condition_occurrence", "condition_start_date",
        condition_status_source_value="tel 914-555-0173, 12 Elm Street")},
    "condition stage_group": {"condition_occurrence": _event(
        "condition_occurrence", "condition_start_date", stage="IIIA", stage_group="MRN 88421937")},
    "procedure modifier": {"procedure_occurrence": _event(
        "procedure_occurrence", "procedure_date", modifier_source_value="Quillfeather")},
    "measurement time": {"measurement": _event("measurement", "measurement_date",
                                               measurement_time="Marisol Quillfeather")},
    "observation qualifier": {"observation": _event("observation", "observation_date",
                                                    qualifier_source_value="Quillfeather")},
    "specimen disease status": {"specimen": _event("specimen", "specimen_date",
                                                   disease_status_source_value="Quillfeather")},
    "code word, no system": {"observation": _event("observation", "observation_date",
                                                   observation_source_value="QUILLFEATHER")},
    "code MRN, no system": {"measurement": _event("measurement", "measurement_date",
                                                  measurement_source_value="MRN88421937")},
    "specimen code MRN": {"specimen": _event("specimen", "specimen_date", specimen_source_value="88421937")},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_column_the_site_never_writes_so_is_quarantined(workspace, case: str) -> None:  # type: ignore[no-untyped-def]
    """F4: each string column of each table is checked for what the site writes there."""
    tables = {"person": _person(), **CASES[case]}
    [got] = _send(workspace, Batch(_name(case), "csv", tables=tables))
    assert got.status == "quarantined", got
    stored = _stored(workspace)
    assert not [n for n in PLANTED if n in stored]


def test_codes_with_no_system_need_a_code_shape() -> None:
    """F4: a bare word or an MRN is no code where no system is named; real codes are."""
    for bad in ("QUILLFEATHER", "MRN88421937", "88421937", "Response"):
        assert not valid_code(bad, None), bad
    for good in ("C34.1", "718-7", "8140/3", "122610009", "K1.2", "LAB-7"):
        assert valid_code(good, None), good
    assert valid_code("Response", "LOCAL")  # a site's word codes under their named system


def test_what_the_site_writes_is_filed(workspace) -> None:  # type: ignore[no-untyped-def]
    """The control: every column as the site writes it."""
    cond = _event(
        "condition_occurrence", "condition_start_date", condition_source_value="C34.1", source_system="ICD10",
        source_display="lung adenocarcinoma", stage="IIIA", stage_group="III", note="cough, 12 mm lesion",
    )  # fmt: skip
    obs = _event("observation", "observation_date", observation_source_value="Response", source_system="LOCAL",
                 value_as_string="partial response")  # fmt: skip
    spec = _event("specimen", "specimen_date", specimen_source_value="122610009")
    tables = {"person": _person(), "condition_occurrence": cond, "observation": obs, "specimen": spec}
    [got] = _send(workspace, Batch(_name("control"), "csv", tables=tables))
    assert got.status == "filed", got


def test_a_quarantine_reason_quotes_no_column_name(workspace) -> None:  # type: ignore[no-untyped-def]
    """F8: a column the format does not carry is named by its place, not its (sender's) name."""
    tables = {"person": _person(**{"QUILLFEATHER MARISOL 88421937": "x"})}
    [got] = _send(workspace, Batch(_name("reason"), "csv", tables=tables))
    assert got.status == "quarantined"
    with workspace.catalog.session() as s:
        reasons = s.scalars(sa.select(QuarantineItem.reason)).all()
    assert reasons and not [r for r in reasons if "QUILLFEATHER" in r or "88421937" in r]
    assert "column 5" in reasons[0]


HEAD = (
    '##fileformat=VCFv4.2\n##FILTER=<ID=PASS,Description="All filters passed">\n'
    '##INFO=<ID=NOTE,Number=1,Type=String,Description="Note">\n'
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">\n'
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    '##FORMAT=<ID=XN,Number=1,Type=String,Description="Extra">\n##contig=<ID=chr1,length=100000>\n'
    f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{P}\n"
)
RECORDS = {
    "ID": "chr1\t1000\tMRN88421937\tA\tG\t50\tPASS\tDP=40\tGT\t0/1\n",
    "INFO": "chr1\t1000\t.\tA\tG\t50\tPASS\tNOTE=Quillfeather_Marisol_DOB_1947-03-19\tGT\t0/1\n",
    "sample": "chr1\t1000\t.\tA\tG\t50\tPASS\tDP=40\tGT:XN\t0/1:HONEYSUCKLE_OPHELIA\n",
}


@pytest.mark.parametrize("where", sorted(RECORDS))
def test_a_vcf_whose_records_hold_text_is_quarantined(workspace, where: str) -> None:  # type: ignore[no-untyped-def]
    """F5: a header exactly as the cleaning leaves it, an identifier in the ID, INFO or a sample field."""
    raw = bgzip((HEAD + RECORDS[where]).encode())
    [got] = _send(workspace, Batch(_name("vcf" + where), "vcf", vcf=raw))
    assert got.status == "quarantined", got
    assert "VCF record 1" in (got.reason or "")
    stored = _stored(workspace)
    assert not [n for n in PLANTED if n in stored]


def test_a_vcf_as_the_site_writes_it_is_filed(workspace) -> None:  # type: ignore[no-untyped-def]
    rec = "chr1\t1000\trs121434568;COSV51765161\tA\tG\t50\tPASS\tDP=40\tGT:XN\t0/1:.\n"
    raw = bgzip((HEAD + rec).encode())
    [got] = _send(workspace, Batch(_name("vcf-ok"), "vcf", vcf=raw))
    assert got.status == "filed", got
    assert gzip.decompress(raw)  # the test's own input is a BGZF file
