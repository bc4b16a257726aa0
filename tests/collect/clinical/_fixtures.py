"""Small real clinical exports (CSV, Excel, FHIR NDJSON/Bundle, VCF) for one patient, identifiers planted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATIENT = {
    "mrn": "MRN-77123",
    "name": "Adaeze Okonkwo-Bello",
    "dob": "1948-06-14",
    "phone": "+234 803 555 0199",
    "address": "14 Marina Street, Lagos Island",
    "national_id": "NIN88127733",
    "email": "adaeze.okonkwo@example.ng",
}
# What must never appear in any output, in any form the test can spell.
NEEDLES = [
    "MRN-77123",
    "Adaeze",
    "Okonkwo",
    "Okonkwo-Bello",
    "Bello",
    "+234 803 555 0199",
    "803 555 0199",
    "14 Marina Street",
    "Marina Street",
    "NIN88127733",
    "adaeze.okonkwo@example.ng",
    "1948-06-14",
    "19480614",
    "/data/lagos/Okonkwo",
]
PLANT = "Adaeze Okonkwo-Bello MRN-77123 tel +234 803 555 0199 14 Marina Street NIN88127733 1948-06-14"

MAPPING = """
[csv]
patient_id = "mrn"

[csv.identifiers]
names = ["patient_name"]
birth_date = "dob"
addresses = ["address"]
phones = ["phone"]
ids = ["national_id", "email"]

[csv.person]
sex = "sex"
birth_date = "dob"

[[csv.events]]
table = "condition"
code = "icd10"
system = "=ICD10"
display = "diagnosis"
date = "diagnosis_date"
stage = "stage"
note = "notes"

[[csv.events]]
table = "measurement"
code = "lab_code"
system = "=LOINC"
display = "lab_name"
value = "lab_value"
unit = "lab_unit"
date = "lab_date"

[[csv.events]]
table = "specimen"
id = "specimen_id"
slide = "slide_id"
date = "biopsy_date"
site = "biopsy_site"
"""

CSV_COLUMNS = [
    "mrn",
    "patient_name",
    "dob",
    "sex",
    "address",
    "phone",
    "national_id",
    "email",
    "icd10",
    "diagnosis",
    "diagnosis_date",
    "stage",
    "notes",
    "lab_code",
    "lab_name",
    "lab_value",
    "lab_unit",
    "lab_date",
    "specimen_id",
    "slide_id",
    "biopsy_date",
    "biopsy_site",
    "unmapped_comment",
]


def csv_row(**over: str) -> dict[str, str]:
    p = PATIENT
    row = {
        "mrn": p["mrn"],
        "patient_name": p["name"],
        "dob": p["dob"],
        "sex": "F",
        "address": p["address"],
        "phone": p["phone"],
        "national_id": p["national_id"],
        "email": p["email"],
        "icd10": "C34.1",
        "diagnosis": "lung adenocarcinoma",
        "diagnosis_date": "2024-02-20",
        "stage": "IIIA",
        "notes": "Seen by Dr. Musa Danjuma on 2024-02-20; Adaeze reports cough, call +234 803 555 0199",
        "lab_code": "718-7",
        "lab_name": "Hemoglobin",
        "lab_value": "11.2",
        "lab_unit": "g/dL",
        "lab_date": "2024-02-21",
        "specimen_id": "SP-24-00931",
        "slide_id": "SL-24-00931-A",
        "biopsy_date": "2024-02-25",
        "biopsy_site": "right upper lobe",
        "unmapped_comment": "mother: Ngozi Okonkwo, 14 Marina Street",
    }
    row.update(over)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], mapping: str = MAPPING) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (path.parent / "clinical-map.toml").write_text(mapping)
    return path


def fhir_patient(pid: str = "pat-1") -> dict[str, Any]:
    p = PATIENT
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                },
                "system": "urn:oid:2.16.566.1.1",
                "value": p["mrn"],
            },
            {"system": "urn:oid:2.16.566.1.2", "value": p["national_id"]},
        ],
        "name": [{"family": "Okonkwo-Bello", "given": ["Adaeze"], "text": p["name"]}],
        "telecom": [{"system": "phone", "value": p["phone"]}, {"system": "email", "value": p["email"]}],
        "gender": "female",
        "birthDate": p["dob"],
        "address": [{"line": ["14 Marina Street"], "city": "Lagos Island", "postalCode": "101001"}],
    }


def fhir_resources(pid: str = "pat-1") -> list[dict[str, Any]]:
    subj = {"reference": f"Patient/{pid}"}
    return [
        fhir_patient(pid),
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": subj,
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10",
                        "code": "C34.1",
                        "display": "lung adenocarcinoma",
                    }
                ]
            },
            "onsetDateTime": "2024-02-20",
            "stage": [{"summary": {"text": "Stage IV"}}],
            "note": [{"text": "Adaeze Okonkwo-Bello referred by Dr. Musa Danjuma"}],
        },
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "subject": subj,
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
            "effectiveDateTime": "2024-02-21T09:30:00+01:00",
            "valueQuantity": {
                "value": 11.2,
                "unit": "g/dL",
                "system": "http://unitsofmeasure.org",
                "code": "g/dL",
            },
        },
        {
            "resourceType": "Procedure",
            "id": "p1",
            "status": "completed",
            "subject": subj,
            "code": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "173171007", "display": "Lobectomy of lung"}
                ]
            },
            "performedDateTime": "2024-03-10",
        },
        {
            "resourceType": "MedicationStatement",
            "id": "m1",
            "status": "active",
            "subject": subj,
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.whocc.no/atc", "code": "L01EB02", "display": "gefitinib"}]
            },
            "effectivePeriod": {"start": "2024-04-01", "end": "2024-09-30"},
        },
        {
            "resourceType": "Specimen",
            "id": "s1",
            "subject": subj,
            "identifier": [{"value": "SP-24-00931"}],
            "type": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "122610009", "display": "Lung biopsy"}
                ]
            },
            "collection": {"collectedDateTime": "2024-02-25"},
        },
        {
            "resourceType": "DiagnosticReport",
            "id": "d1",
            "status": "final",
            "subject": subj,
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "22637-3", "display": "Pathology report"}]
            },
            "effectiveDateTime": "2024-02-27",
            "conclusion": "Adenocarcinoma, EGFR exon 19 deletion. Dr. Musa Danjuma",
        },
    ]


def write_ndjson(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    return path


VCF_HEADER = [
    "##fileformat=VCFv4.2",
    "##fileDate=20240301",
    "##source=/data/lagos/Okonkwo/pipeline/run.sh",
    "##reference=file:///data/lagos/Okonkwo/ref/GRCh38.fa",
    "##contig=<ID=chr7,length=159345973,assembly=GRCh38,URL=file:///data/lagos/Okonkwo/ref>",
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
    "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
    "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | "
    "HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | ERRORS / WARNINGS / "
    "INFO' \">",
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=AF,Number=A,Type=Float,Description="Allele fractions">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
    '##FILTER=<ID=LowQual,Description="Low quality">',
    '##commandline="bcftools call -o /data/lagos/Okonkwo/MRN-77123.vcf"',
    '##GATKCommandLine=<ID=Mutect2,CommandLine="Mutect2 -I /data/lagos/Okonkwo/MRN-77123.bam",Date="Mar 1 2024">',
    '##SAMPLE=<ID=MRN-77123,Individual="Adaeze Okonkwo-Bello",Description="tumour">',
    "##PEDIGREE=<Name_0=MRN-77123>",
    "##bcftools_viewCommand=view /data/lagos/Okonkwo/MRN-77123.vcf; Date=Fri Mar  1 10:00:00 2024",
]


def vcf_text(sample: str = "MRN-77123", header: list[str] | None = None) -> str:
    lines = list(header or VCF_HEADER)
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + sample)
    ann = (
        "T|missense_variant|MODERATE|EGFR|ENSG00000146648|transcript|ENST00000275493|protein_coding|21/28|"
        "c.2573T>G|p.Leu858Arg|2573/5616|2573/3633|858/1210||"
    )
    lines.append(f"chr7\t55191822\t.\tT\tG\t50\tPASS\tDP=100;ANN={ann}\tGT:AF:AD\t0/1:0.42:58,42")
    ann2 = (
        "A|synonymous_variant|LOW|EGFR|ENSG00000146648|transcript|ENST00000275493|protein_coding|20/28|"
        "c.2361G>A|p.Gln787Gln|2361/5616|2361/3633|787/1210||"
    )
    lines.append(f"chr7\t55181378\t.\tG\tA\t60\tPASS\tDP=80;ANN={ann2}\tGT:AF:AD\t1/1:0.98:1,79")
    return "\n".join(lines) + "\n"


def stored_texts(ws: Any) -> list[str]:
    """Every stored blob (gzip opened) and every catalog row of ``ws``, as text."""
    import gzip

    import sqlalchemy as sa

    from curata.catalog import Base

    texts: list[str] = []
    for digest in ws.store.digests():
        data = ws.store.get_bytes(digest)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        texts.append(data.decode("utf-8", "replace"))
    with ws.catalog.session() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(sa.select(table)):
                texts.append(" ".join(str(v) for v in row))
    return texts


def survivors(ws: Any, needles: list[str] = NEEDLES) -> list[str]:
    """Every needle found in any stored blob (gzip opened) or any catalog value of ``ws``."""
    blob = "\n".join(stored_texts(ws)).lower()
    return [n for n in needles if n.lower() in blob]


def folded(text: str) -> str:
    """``text`` as the matcher compares it, and more: NFKC (full width, composed Hangul), lower case,
    marks and separators dropped."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    text = unicodedata.normalize("NFC", "".join(c for c in text if not unicodedata.combining(c)))
    return re.sub(r"[\W_]+", "", text)


def folded_survivors(ws: Any, needles: list[str]) -> list[str]:
    """``survivors`` compared folded (``folded``): ＳＵＺＵＫＩ, Suzuki様 and a decomposed 김민준 count."""
    blob = folded("\n".join(stored_texts(ws)))
    return [n for n in needles if folded(n) in blob]
