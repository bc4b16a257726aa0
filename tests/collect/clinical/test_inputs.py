"""The other input shapes: Excel, a FHIR Bundle with urn:uuid references (R4) and R5 resources, BCF;
and the age cap."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import sqlalchemy as sa

from curata.collect.clinical import INDEXED, clinical_rows
from curata.collect.clinical.models import OMOP
from curata.collect.genomics.models import genomic_file, genomic_variant
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import (
    CSV_COLUMNS,
    MAPPING,
    csv_row,
    fhir_resources,
    vcf_text,
    write_csv,
)


def _count(ws, table) -> int:  # type: ignore[no-untyped-def]
    """Rows of a catalog table; of a clinical table, the rows filed (Parquet in the store)."""
    with ws.catalog.session() as s:
        if table.name in INDEXED:
            return len(clinical_rows(s, ws.store, table.name))
        return s.scalar(sa.select(sa.func.count()).select_from(table)) or 0


def test_excel_export_through_the_same_mapping(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "xl"
    folder.mkdir()
    pd.DataFrame([csv_row(), csv_row(mrn="MRN-2")], columns=CSV_COLUMNS).to_excel(
        folder / "dx.xlsx", index=False
    )
    (folder / "clinical-map.toml").write_text(MAPPING)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert not problems and summary.counts["ingested"] == 1
    assert _count(workspace, OMOP["condition_occurrence"]) == 2 and _count(workspace, OMOP["person"]) == 2


def test_fhir_bundle_with_uuid_references_and_r5_resources(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = fhir_resources()
    entries = [{"fullUrl": "urn:uuid:6a1c0d5e-0000-4000-8000-000000000001", "resource": res[0]}]
    for r in res[1:]:
        r = dict(r, subject={"reference": "urn:uuid:6a1c0d5e-0000-4000-8000-000000000001"})
        entries.append({"fullUrl": f"urn:uuid:{r['id']}", "resource": r})
    # an R5 MedicationStatement: medication is a CodeableReference (R4's medicationCodeableConcept is gone)
    entries.append({"resource": {
        "resourceType": "MedicationStatement", "status": "recorded",
        "subject": {"reference": "urn:uuid:6a1c0d5e-0000-4000-8000-000000000001"},
        "medication": {"concept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01XE03",
                                               "display": "erlotinib"}]}},
        "effectivePeriod": {"start": "2024-10-01", "end": "2024-12-01"}}})  # fmt: skip
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "bundle.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    )
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert not problems, [p.reason for p in problems]
    assert _count(workspace, OMOP["drug_exposure"]) == 2
    assert _count(workspace, OMOP["condition_occurrence"]) == 1


def test_bcf_input(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pysam

    (tmp_path / "in.vcf").write_text(vcf_text())
    folder = tmp_path / "bcf"
    folder.mkdir()
    with (
        pysam.VariantFile(str(tmp_path / "in.vcf")) as src,
        pysam.VariantFile(str(folder / "tumour.bcf"), "wb", header=src.header) as dst,
    ):
        for rec in src:
            dst.write(rec)
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert not problems, [p.reason for p in problems]
    with workspace.catalog.session() as s:
        assert s.scalar(sa.select(genomic_file.c.format)) == "bcf"
    assert _count(workspace, genomic_variant) == 2


def test_ages_above_89_read_as_90(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(tmp_path / "old" / "dx.csv", [csv_row(dob="1921-05-01")])  # 102 at the diagnosis
    Ingestor(workspace, workers=1).ingest_paths([path])
    with workspace.catalog.session() as s:
        p = s.execute(sa.select(OMOP["person"])).one()
        last = max(  # the row's events are days apart: a shift may put them in two years
            max(r[c] for r in clinical_rows(s, workspace.store, t))
            for t, c in (
                ("condition_occurrence", "condition_start_date"),
                ("measurement", "measurement_date"),
                ("specimen", "specimen_date"),
            )
        )
    assert p.age_capped is True and last.year - p.year_of_birth == 90


def test_text_and_bcf_give_the_same_variant_index_and_a_bad_line_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pysam
    import pytest

    from curata.collect.clinical.mapping import VcfMap
    from curata.collect.genomics.vcf import deidentify_vcf
    from curata.errors import InputError

    key = bytes(range(32))
    (tmp_path / "in.vcf").write_text(vcf_text())
    with (
        pysam.VariantFile(str(tmp_path / "in.vcf")) as src,
        pysam.VariantFile(str(tmp_path / "in.bcf"), "wb", header=src.header) as dst,
    ):
        for rec in src:
            dst.write(rec)
    text = deidentify_vcf((tmp_path / "in.vcf").read_bytes(), "in.vcf", VcfMap(), key)
    bcf = deidentify_vcf((tmp_path / "in.bcf").read_bytes(), "in.bcf", VcfMap(), key)
    assert text.samples == bcf.samples and text.records == bcf.records == 2
    for a, b in zip(text.variants, bcf.variants, strict=True):
        assert {k: v for k, v in a.items() if k != "allele_frequency"} == {
            k: v for k, v in b.items() if k != "allele_frequency"
        }
        assert abs(a["allele_frequency"] - b["allele_frequency"]) < 1e-6
    lines = vcf_text().splitlines()
    lines[-1] = lines[-1].replace("55181378", "55181x78")
    with pytest.raises(InputError, match=f"VCF line {len(lines)} is malformed"):
        deidentify_vcf(("\n".join(lines) + "\n").encode(), "bad.vcf", VcfMap(), key)


AGE_MAPPING = """
[csv]
patient_id = "mrn"
date_format = "%d/%m/%Y"
[csv.identifiers]
names = ["name"]
[csv.person]
age = "age"
[[csv.events]]
table = "measurement"
code = "code"
system = "system"
value = "value"
unit = "unit"
date = "day"
[[csv.events]]
table = "measurement"
code = "=8310-5"
system = "=LOINC"
value = "temp"
unit = "=Cel"
date = "day"
"""


def test_ages_per_row_code_systems_per_row_and_two_events_into_one_table(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The column-wise reader on a mapping with an age column, a system column, a date format and two
    events filling the same OMOP table."""
    folder = tmp_path / "labs"
    folder.mkdir()
    rows = [
        ["mrn", "name", "age", "code", "system", "value", "unit", "day", "temp"],
        ["MRN-1", "Tunde Bakare", "95", "718-7", "LOINC", "11.2", "g/dL", "20/02/2024", "37.1"],
        ["MRN-1", "Tunde Bakare", "95", "2160-0", "LOINC", "0.9", "mg/dL", "21/02/2024", "36.9"],
        ["MRN-2", "Ngozi Adeyemi", "40", "R03.0", "ICD10", "high", "", "03/03/2024", "38,2"],
        ["MRN-2", "Ngozi Adeyemi", "40", "R03.0", "LOINC", "1", "", "04/03/2024", "37"],  # not a LOINC code
        [
            "MRN-3",
            "Emeka Obi",
            "51",
            "718-7",
            "LOINC",
            "Emeka said 12",
            "g/dL",
            "2024-03-05",
            "37",
        ],  # date format
    ]
    pd.DataFrame(rows[1:], columns=rows[0]).to_csv(folder / "labs.csv", index=False)
    (folder / "clinical-map.toml").write_text(AGE_MAPPING)
    _summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder / "labs.csv"])
    reason = problems[0].reason or ""
    assert "line 5: code: not a valid LOINC code" in reason and "line 6: date: not a date" in reason
    with workspace.catalog.session() as s:
        persons = {p.person_id: p for p in s.execute(sa.select(OMOP["person"]))}
        meas = clinical_rows(s, workspace.store, "measurement")
    assert len(meas) == 6  # three rows kept, two events each
    by_person: dict[int, list[dict]] = {}
    for m in meas:
        by_person.setdefault(m["person_id"], []).append(m)
    old = next(p for p in persons.values() if p.age_capped)
    young = next(p for p in persons.values() if not p.age_capped and p.year_of_birth)
    days = [m["measurement_date"] for m in by_person[old.person_id]]
    assert max(d.year for d in days) - old.year_of_birth == 90  # 95 reads as 90
    first = min(m["measurement_date"] for m in by_person[young.person_id])
    assert first.year - young.year_of_birth == 40
    temps = sorted(m["value_as_number"] for m in meas if m["measurement_source_value"] == "8310-5")
    assert temps == [36.9, 37.1, 38.2]
    texts = [m["value_source_value"] for m in meas if m["value_source_value"]]
    assert texts == ["high"]  # a number in text stays a number elsewhere; "high" is kept as text
    assert {m["source_system"] for m in meas} == {"LOINC", "ICD10"}
    assert "Tunde" not in json.dumps(meas, default=str) and "Ngozi" not in json.dumps(meas, default=str)


def test_a_time_of_day_is_kept_and_shifted_with_its_date(tmp_path, monkeypatch, database_url) -> None:  # type: ignore[no-untyped-def]
    """On both catalogs: the bulk insert writes dates and times as each stores them."""
    from curata.workspace import Workspace

    monkeypatch.setenv("CURATA_DATABASE_URL", database_url)
    workspace = Workspace.init(tmp_path / "ws", site="lagos")
    path = write_csv(tmp_path / "t" / "dx.csv", [csv_row(diagnosis_date="2024-02-20T14:30:05")])
    Ingestor(workspace, workers=1).ingest_paths([path])
    with workspace.catalog.session() as s:
        (c,) = [SimpleNamespace(**r) for r in clinical_rows(s, workspace.store, "condition_occurrence")]
        (m,) = [SimpleNamespace(**r) for r in clinical_rows(s, workspace.store, "measurement")]
    assert c.condition_start_datetime.date() == c.condition_start_date
    assert (c.condition_start_datetime.hour, c.condition_start_datetime.minute) == (14, 30)
    assert c.condition_start_datetime.second == 5 and m.measurement_datetime is None
    assert (m.measurement_date - c.condition_start_date).days == 1  # 2024-02-21: the interval is kept


def test_a_bgzf_vcf_keeps_its_record_blocks_and_reads_as_the_text_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A bgzipped VCF's blocks after the header are copied as they are: the output decompresses to what
    the text VCF gives, is BGZF that pysam reads, and the gate still reads it (a planted sample ID in a
    record, past the header, refuses the file)."""
    import gzip

    import pysam
    import pytest

    from curata.collect.clinical.mapping import VcfMap
    from curata.collect.genomics.vcf import deidentify_vcf
    from curata.errors import DeidError

    key = bytes(range(32))
    text = vcf_text()
    lines = text.splitlines()
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    many = "\n".join([*[ln for ln in lines if ln.startswith("#")], *(body * 3000)]) + "\n"  # > 64 KiB
    (tmp_path / "in.vcf").write_text(many)
    pysam.tabix_compress(str(tmp_path / "in.vcf"), str(tmp_path / "in.vcf.gz"), force=True)
    plain = deidentify_vcf((tmp_path / "in.vcf").read_bytes(), "in.vcf", VcfMap(), key)
    packed = deidentify_vcf((tmp_path / "in.vcf.gz").read_bytes(), "in.vcf.gz", VcfMap(), key)
    assert gzip.decompress(packed.output) == gzip.decompress(plain.output)
    tail = (tmp_path / "in.vcf.gz").read_bytes()[-2000:]
    assert packed.output.endswith(tail) and not plain.output.endswith(tail)  # blocks copied, not redone
    assert packed.records == plain.records == len(body) * 3000 and packed.count == plain.count
    (tmp_path / "out.vcf.gz").write_bytes(packed.output)
    with pysam.VariantFile(str(tmp_path / "out.vcf.gz")) as vf:
        assert sum(1 for _ in vf) == len(body) * 3000
    cols = body[-1].split("\t")
    planted = many + "\t".join([*cols[:6], "MRN77123", *cols[7:]]) + "\n"  # the sample's ID as a FILTER
    (tmp_path / "bad.vcf").write_text(planted)
    pysam.tabix_compress(str(tmp_path / "bad.vcf"), str(tmp_path / "bad.vcf.gz"), force=True)
    with pytest.raises(DeidError):
        deidentify_vcf((tmp_path / "bad.vcf.gz").read_bytes(), "bad.vcf.gz", VcfMap(samples={}), key)


def test_the_vcf_column_reader_indexes_as_the_row_reader_does() -> None:
    """The column-wise reader of a text VCF (what a clinical VCF takes) gives the same index as the
    row-by-row reader: ANN first or after other INFO items, missing, of fewer than 11 fields, with
    several terms or several entries; empty fields; two FORMATs; calls that drop trailing fields (VCF
    allows it: their AF then comes from AD, or is missing); FILTER with ';'; a population AF."""
    import math

    from curata.collect.genomics import vcf

    ann = "G|missense_variant&splice_region_variant|MODERATE|EGFR|E|transcript|T|pc|1/2|c.1A>G|p.K1R||"
    records = [
        ("chr1", "PASS", f"ANN={ann}", "GT:AF:AD", ["0/1:0.42:58,42", "1/1:.:2,8"]),
        (
            "chr1",
            "q10;s50",
            f"DP=5;gnomAD_AF=0.01;ANN={ann},G|stop_gained|HIGH|KRAS|E",
            "GT:AD",
            ["0/1:5,5", "0/1"],
        ),
        ("chr2", ".", "DP=7;XANN=a|b", "GT:AF:AD", ["0/1", "1|1:0.9"]),
        ("chr2", "PASS", "ANN=G|||||||||||", "AD:GT:VAF", ["3,7:0/1:0.7", "5,5:0/0:0.5"]),
        (
            "chrX",
            "PASS",
            "ANN=G|intron_variant|LOW|BRAF|E|t|T|pc|1/2|c.5+1G>A",
            "GT:AF:AD",
            ["1:0.3,0.1:.", ".:.:."],
        ),
        (
            "chrX",
            "PASS",
            "gnomAD_AF=.;ANN=G|synonymous_variant|LOW|TP53",
            "GT:AF:AD",
            ["0/1::4,6", "0/1:0.2"],
        ),
    ]
    lines = [
        "\t".join([chrom, str(100 + i), ".", "A", "G", "50", filt, info, fmt, *calls])
        for i, (chrom, filt, info, fmt, calls) in enumerate(records)
    ]
    body = ("\n".join(lines) + "\n").encode()
    fast = vcf._index_columns(body, 2, "gnomAD_AF")
    assert fast is not None  # the column reader took it (not handed to the row reader)
    n, rows = vcf._index_text(body.decode(), 2, None, "gnomAD_AF", 0)
    assert fast[0] == n == len(records)

    def listed(cols: dict) -> list[dict]:  # type: ignore[type-arg]
        values = [vcf._pylist(cols[k]) for k in vcf.INDEX_COLUMNS]
        return [
            {
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in zip(vcf.INDEX_COLUMNS, r, strict=True)
            }
            for r in zip(*values, strict=True)
        ]

    got, want = listed(fast[1]), listed(vcf._columns(rows))
    assert got == want
    assert len(got) == 10  # every carrying call of both samples
    assert {r["allele_frequency"] for r in got if r["pos"] == 101} == {0.5, None}  # AD; a call without
    assert got[0]["consequence"] == "missense_variant" and got[0]["population_af"] is None


def _damaged_workbooks() -> dict[str, bytes]:
    """Workbooks damaged in each of their layers, named after a patient as exports often are."""
    import io
    import zipfile

    book = io.BytesIO()
    pd.DataFrame([csv_row()], columns=CSV_COLUMNS).to_excel(book, index=False)
    whole = book.getvalue()
    inner = bytearray(whole)
    at = inner.find(b"xl/worksheets/sheet1.xml")
    inner[at + 40 : at + 60] = b"\0" * 20  # the sheet's compressed bytes
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("OKONKWO ADAEZE.txt", "MRN-77123")
    return {
        "OKONKWO ADAEZE 1948-06-14.xlsx": whole[: len(whole) // 2],  # cut short: not a zip
        "zip.xlsx": other.getvalue(),  # a zip, not a workbook
        "sheet.xlsx": bytes(inner),  # a damaged sheet
        "old.xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"OKONKWO" * 100,  # Excel 97-2003
    }


def test_damaged_inputs_are_quarantined_and_the_run_goes_on(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A damaged workbook failed in its zip, XML or compression layer with errors no reader caught
    (BadZipFile, KeyError, zlib.error, ImportError), and NDJSON nested past the parser's depth with a
    RecursionError: each ended the whole `ingest` (and, in a watched drop, every later run). Now each is
    quarantined with a reason naming no value, and the good table beside them is filed."""
    folder = tmp_path / "drop"
    folder.mkdir()
    for name, data in _damaged_workbooks().items():
        (folder / name).write_bytes(data)
    deep = '{"resourceType":"Patient","id":"x","name":[{"family":"OKONKWO"}],"extension":'
    (folder / "deep.ndjson").write_text(deep + "[" * 50000 + "]" * 50000 + "}\n")
    write_csv(folder / "zz-good.csv", [csv_row(mrn="MRN-2")])
    (folder / "clinical-map.toml").write_text(MAPPING)
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    reasons = {Path(p.source).name: p.reason or "" for p in problems}
    assert summary.counts.get("ingested") == 1, (summary.counts, reasons)
    assert summary.counts.get("quarantined") == 5, (summary.counts, reasons)
    assert "Excel 97 to 2003" in reasons["old.xls"]  # no "97-2003": a reason's long numbers are taken out
    assert all(
        "spreadsheet" in reasons[n] for n in ("OKONKWO ADAEZE 1948-06-14.xlsx", "zip.xlsx", "sheet.xlsx")
    )
    assert "nested too deeply" in reasons["deep.ndjson"]
    assert not any("OKONKWO" in r.upper() or "77123" in r for r in reasons.values())
