"""Identifiers that are not text: a value column holding the patient's MRN, phone or birth date as a
number, and a VCF whose own header names the person sequenced.

A value that reads as a number goes to ``value_as_number``, where no text cleaner looks: it is checked
against the patient's identifiers read as numbers (``identifying_numbers``) and removed, the row kept.
A VCF's ``##SAMPLE`` / ``##individual`` lines are dropped, and what they say (the name, the DOB) is looked
for in the rest of the header and in the records, as a clinical export's identifiers are.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from curata.collect.clinical import clinical_rows
from curata.collect.clinical.mapping import VcfMap
from curata.collect.clinical.models import clinical_index
from curata.collect.deid.text import Identifiers
from curata.collect.genomics.vcf import deidentify_vcf
from curata.collect.ingest import Ingestor

MRN, PHONE, DOB = "4417702", "555-867-5309", "1961-02-03"
# the patient's identifiers as a value column holds them: MRN, phone digits, DOB as YYYYMMDD / DDMMYYYY
PLANTED = (4417702.0, 5558675309.0, 19610203.0, 3021961.0)


def _stored_numbers(ws: Any, table: str) -> list[float]:
    with ws.catalog.session() as s:
        rows = clinical_rows(s, ws.store, table)
    return [r["value_as_number"] for r in rows if r.get("value_as_number") is not None]


def _index_values(ws: Any) -> str:
    with ws.catalog.session() as s:
        return " ".join(s.scalars(sa.select(clinical_index.c.value)))


def test_identifying_numbers_are_the_ids_phones_and_dates_people_write() -> None:
    from curata.collect.clinical.deid import identifying_numbers, is_identifying_number

    ids = Identifiers()
    ids.add_word(f"MRN-{MRN}")
    ids.add_word("+1 " + PHONE)
    ids.add_word("70")  # a short ID (a ward, a bed) is no number a measurement can be taken for
    ids.add_date(DOB.replace("-", ""))
    numbers = identifying_numbers(ids)
    for n in (4417702, 15558675309, 5558675309, 8675309, 19610203, 3021961, 2031961, 610203):
        assert is_identifying_number(float(n), numbers), n
    assert is_identifying_number(-4417702.0, numbers)
    for kept in (70.0, 5.5, 4417702.5, 1961.0, None, float("nan")):
        assert not is_identifying_number(kept, numbers), kept


def _fhir_export(tmp_path: Path) -> Path:
    ref = {"reference": "Patient/p1"}

    def obs(i: int, code: str, **value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": f"o{i}", "status": "final", "subject": ref,
                "effectiveDateTime": "2020-01-02",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, **value}  # fmt: skip

    patient = {
        "resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": DOB,
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "MR"}]}, "value": MRN}],
        "name": [{"family": "Zyxwood", "given": ["Quilla"]}], "telecom": [{"system": "phone", "value": PHONE}],
    }  # fmt: skip
    resources = [
        patient,
        obs(1, "8302-2", valueQuantity={"value": 4417702, "unit": "cm", "code": "cm"}),
        obs(2, "21112-8", valueString="19610203"),  # LOINC Birth date
        obs(3, "42077-8", valueString="5558675309"),
        obs(4, "42077-8", valueString="03021961"),
        obs(5, "2345-7", valueQuantity={"value": 5.5, "unit": "mmol/L", "code": "mmol/L"}),
        obs(6, "29463-7", valueQuantity={"value": 70, "unit": "kg", "code": "kg"}),
        obs(7, "8302-2", valueQuantity={"value": 4417702.0, "unit": "cm", "code": "cm"}),
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    path = tmp_path / "fhir" / "export.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(bundle))
    return path


def test_a_fhir_value_that_is_the_patients_mrn_phone_or_birth_date_is_not_stored(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([_fhir_export(tmp_path)])
    assert summary.counts["ingested"] == 1
    numbers = _stored_numbers(workspace, "measurement") + _stored_numbers(workspace, "observation")
    assert not set(PLANTED) & set(numbers), numbers
    assert {5.5, 70.0} <= set(numbers)  # measurements stay whole
    with workspace.catalog.session() as s:
        measured = clinical_rows(s, workspace.store, "measurement")
        observed = clinical_rows(s, workspace.store, "observation")
    assert len(measured) == 4 and len(observed) == 3  # removed, not refused: the rows are kept
    assert all(r.get("value_source_value") is None for r in measured)  # nor kept as text
    index = _index_values(workspace)
    assert not any(n in index for n in ("4417702", "5558675309", "19610203", "3021961")), index
    assert "5.5" in index


_CSV_MAP = """[csv]
patient_id = "mrn"
[csv.identifiers]
names = ["patient_name"]
birth_date = "dob"
phones = ["phone"]
[[csv.events]]
table = "measurement"
code = "loinc"
system = "=LOINC"
date = "date"
value = "value"
"""


def test_a_csv_value_that_is_the_patients_mrn_phone_or_birth_date_is_not_stored(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "csv"
    export.mkdir()
    (export / "clinical-map.toml").write_text(_CSV_MAP)
    values = ["4417702", "5558675309", "19610203", "3021961", "4417702.0", "5.5", "70", "-4417702"]
    lines = ["mrn,patient_name,dob,phone,loinc,date,value"]
    lines += [
        f"{MRN},Quilla Zyxwood,{DOB},{PHONE},8302-2,2020-01-{i + 2:02d},{v}" for i, v in enumerate(values)
    ]
    (export / "labs.csv").write_text("\n".join(lines) + "\n")
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([export])
    assert summary.counts["ingested"] == 1
    numbers = _stored_numbers(workspace, "measurement")
    assert sorted(numbers) == [5.5, 70.0]
    with workspace.catalog.session() as s:
        assert len(clinical_rows(s, workspace.store, "measurement")) == len(values)  # every row kept
    index = _index_values(workspace)
    assert not any(n in index for n in ("4417702", "5558675309", "19610203", "3021961")), index


def _vcf(sample: str, header: str, records: list[str]) -> bytes:
    return (
        "##fileformat=VCFv4.2\n"
        + header
        + '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        '##FORMAT=<ID=NM,Number=1,Type=String,Description="Note">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + sample + "\n" + "\n".join(records) + "\n"
    ).encode()


_PERSON_HEADER = (
    "##source=GATK HaplotypeCaller for Quilla Zyxwood\n"
    f'##SAMPLE=<ID={MRN},Individual="Quilla Zyxwood",DOB={DOB},Disease=Cancer>\n'
    "##individual=Orrin Vexhollow\n"
    f"##PEDIGREE=<ID={MRN},Mother=Z-8812734>\n"
    '##contig=<ID=chr1,length=248956422,assembly=Zyxwood,species="Homo sapiens">\n'
    '##contig=<ID=chr2,length=242193529,assembly=GRCh38,species="Zyxwood">\n'
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth for Quilla Zyxwood",Source="Zyxwood",'
    'Version="Vexhollow 2">\n'
    "##META=<ID=Assay,Type=String,Number=.,Values=[WholeGenome, Zyxwood]>\n"
)


def test_a_vcf_header_that_names_its_individual_is_cleaned_of_them_everywhere() -> None:
    """No clinical input in the run, the sample column an MRN: the name, DOB and relative the header's own
    person lines give are found in ##source, in every header attribute and in the records."""
    raw = _vcf(
        MRN,
        _PERSON_HEADER,
        [
            "chr1\t100\trs123\tA\tG\t50\tPASS\tDP=10;AF=0.5\tGT:NM\t0/1:19610203",
            f"chr1\t200\t.\tC\tT\t50\tPASS\tAF=0.5\tGT:NM\t0/1:{DOB}",
            "chr2\t300\tZ-8812734\tG\tA\t50\tPASS\tAF=0.5\tGT:NM\t1/1:Vexhollow",
        ],
    )
    res = deidentify_vcf(raw, "a.vcf", VcfMap(), b"k" * 32)
    text = gzip.decompress(res.output).decode()
    for needle in ("Zyxwood", "Quilla", "Vexhollow", "Orrin", "19610203", DOB, "8812734", MRN):
        assert needle not in text, (needle, text)
    assert "assembly=GRCh38" in text and 'species="Homo sapiens"' in text  # what is no identifier stays
    assert "Values=[WholeGenome]" in text and "Disease" not in text
    assert "\trs123\t" in text and res.records == 3 and len(res.variants) == 3
    import pysam  # the cleaned header is still one htslib reads

    path = Path(__import__("tempfile").mkdtemp()) / "out.vcf.gz"
    path.write_bytes(res.output)
    with pysam.VariantFile(str(path)) as vf:
        assert len(list(vf)) == 3
        assert vf.header.info["DP"].description == "Depth for *"


def test_a_vcf_field_with_the_known_mrn_grouped_by_thousands_is_cleaned(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The patient known from a FHIR Patient of the same run; the MRN written 4.417.702 and 4,417,702 in
    a sample's field (``find_identifier`` joins digits grouped by thousands)."""
    export = tmp_path / "run"
    export.mkdir()
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"value": MRN}],
               "name": [{"family": "Zyxwood", "given": ["Quilla"]}], "birthDate": DOB}  # fmt: skip
    (export / "p.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                               "entry": [{"resource": patient}]}))  # fmt: skip
    records = ["chr1\t100\t.\tA\tG\t50\tPASS\tAF=0.5\tGT:NM\t0/1:4.417.702",
               "chr1\t200\t.\tC\tT\t50\tPASS\tAF=0.5\tGT:NM\t0/1:4,417,702"]  # fmt: skip
    (export / "b.vcf").write_bytes(_vcf(MRN, "", records))
    summary, _ = Ingestor(workspace, workers=1).ingest_paths([export])
    assert summary.counts["ingested"] == 2
    blobs = [workspace.store.get_bytes(d) for d in workspace.store.digests()]
    text = b"".join(gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in blobs)
    assert b"4.417.702" not in text and b"4,417,702" not in text
    assert text.count(b"\tGT:NM\t0/1:.") == 2
