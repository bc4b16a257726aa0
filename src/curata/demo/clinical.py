"""The demo hospitals' clinical and genomic exports, with identifiers planted, and their ground truth.

Even-numbered sites export a CSV (with a site mapping TOML), odd-numbered sites a FHIR bulk export
(NDJSON per resource type); every second patient has a tumour VCF whose header carries the classic
identifying lines (``##commandline``, ``##SAMPLE``, paths with the MRN, dates). Every export names the
patients exactly as their images do (PatientID and IssuerOfPatientID), so Curata links them by pseudonym.
The truth (who has which diagnosis, stage and variant) goes beside the manifest, outside the export.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DIAGNOSES = [
    ("C34.1", "lung adenocarcinoma"),
    ("C34.1", "lung adenocarcinoma"),
    ("C50.9", "breast carcinoma"),
    ("C18.7", "sigmoid colon cancer"),
]
STAGES = ["I", "IIA", "IIIA", "IIIB", "IV"]
VARIANTS = {  # gene -> (chrom, pos, ref, alt, consequence, hgvs.c, hgvs.p)
    "EGFR": ("chr7", 55191822, "T", "G", "missense_variant", "c.2573T>G", "p.Leu858Arg"),
    "KRAS": ("chr12", 25245350, "C", "A", "missense_variant", "c.34G>T", "p.Gly12Cys"),
    "TP53": ("chr17", 7675088, "C", "T", "stop_gained", "c.637C>T", "p.Arg213Ter"),
}
CSV_MAP = """# {institution}: how its clinical export maps onto Curata (OMOP CDM)
[csv]
patient_id = "MRN"
issuer = "{issuer}"

[csv.identifiers]
names = ["Patient Name", "Referring Physician"]
birth_date = "Date of Birth"
addresses = ["Address"]
phones = ["Phone"]

[csv.person]
sex = "Sex"
birth_date = "Date of Birth"

[[csv.events]]
table = "condition"
code = "ICD-10"
system = "=ICD10"
display = "Diagnosis"
date = "Diagnosis Date"
stage = "Stage"
note = "Clinician Note"

[[csv.events]]
table = "measurement"
code = "=718-7"
system = "=LOINC"
display = "=Hemoglobin"
value = "Hb (g/dL)"
unit = "=g/dL"
date = "Lab Date"

[[csv.events]]
table = "observation"
code = "=Response"
system = "=LOCAL"
display = "=Treatment response"
value = "Response"
date = "Follow-up Date"

[vcf]
issuer = "{issuer}"
"""
FHIR_MAP = """# {institution}: FHIR bulk export; the MRN identifier is the one the images carry
[fhir]
patient_id_system = "urn:curata-demo:mrn"
issuer = "{issuer}"

[vcf]
issuer = "{issuer}"
"""


def _vcf(pid: str, name: str, gene: str | None, rng: random.Random, collected: date) -> str:
    lines = [
        "##fileformat=VCFv4.2",
        f"##fileDate={collected:%Y%m%d}",
        f"##source=/mnt/lab/{pid}/pipeline/run.sh",
        f"##reference=file:///mnt/lab/{pid}/ref/GRCh38.fa",
        f'##commandline="Mutect2 -I /mnt/lab/{pid}/{pid}.bam -tumor {pid}"',
        f'##SAMPLE=<ID={pid},Individual="{name}",Description="tumour biopsy">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
        "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | "
        "HGVS.c | HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | "
        "ERRORS / WARNINGS / INFO' \">",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AF,Number=A,Type=Float,Description="Allele fraction">',
        *(f"##contig=<ID=chr{c},length=250000000>" for c in (7, 12, 17)),
        f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{pid}",
    ]
    calls = []
    if gene:
        chrom, pos, ref, alt, cons, hc, hp = VARIANTS[gene]
        calls.append((chrom, pos, ref, alt, f"{alt}|{cons}|MODERATE|{gene}|ENSG|transcript|ENST|protein_coding|"
                      f"1/2|{hc}|{hp}||||", f"0/1:{rng.uniform(0.2, 0.6):.2f}"))  # fmt: skip
    calls.append(("chr17", 7676154, "G", "C", "C|missense_variant|MODERATE|TP53|ENSG|transcript|ENST|"
                  "protein_coding|4/11|c.215C>G|p.Pro72Arg||||", "1/1:0.99"))  # fmt: skip
    for chrom, pos, ref, alt, ann, fmt in sorted(calls, key=lambda c: (int(c[0][3:]), c[1])):
        lines.append(
            f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t60\tPASS\tDP={rng.randint(60, 300)};ANN={ann}\tGT:AF\t{fmt}"
        )
    return "\n".join(lines) + "\n"


def write_clinical_exports(
    manifest: Any, export_dir: Path, truth_path: Path, seed: int = 0
) -> dict[str, Any]:
    """Write each site's clinical export (CSV or FHIR) and VCFs into ``export_dir``; the truth to ``truth_path``."""
    rng = random.Random(f"clinical-{seed}")
    sites = {s.name: (i, s) for i, s in enumerate(manifest.sites)}
    by_site: dict[str, list[Any]] = {}
    for p in manifest.patients:
        by_site.setdefault(p.site, []).append(p)
    truth: list[dict[str, Any]] = []
    counts = {"csv_rows": 0, "fhir_resources": 0, "vcf_files": 0}
    for site_name, patients in by_site.items():
        index, site = sites[site_name]
        idt0 = patients[0].identity
        folder = export_dir / site.folder / ("clinical" if index % 2 == 0 else "fhir")
        folder.mkdir(parents=True, exist_ok=True)
        issuer = idt0["issuer"]
        rows: list[dict[str, str]] = []
        resources: dict[str, list[dict[str, Any]]] = {}
        for n, p in enumerate(sorted(patients, key=lambda q: q.key)):
            idt = p.identity
            pid, name = idt["patient_id"], f"{idt['given']} {idt['family']}"
            code, dx = DIAGNOSES[rng.randrange(len(DIAGNOSES))]
            stage = rng.choice(STAGES)
            first = index == 0 and n == 0  # at least one patient the demo's clinical cohort must find
            if first:
                code, dx, stage = "C34.1", "lung adenocarcinoma", "IIIA"
            baseline = date.fromisoformat(idt["study_dates"][0])
            dx_date = baseline - timedelta(days=rng.randint(5, 40))
            staff = idt["staff"]["referring"].replace("^", " ")
            note = (f"{idt['given']} seen by Dr. {staff}; phone {idt['phone']}; lives at {idt['street']}. "
                    f"Biopsy confirms {dx}.")  # fmt: skip
            gene = None
            has_vcf = n % 2 == 0
            if has_vcf:
                gene = (
                    rng.choice(["EGFR", "EGFR", "KRAS", None]) if "lung" in dx else rng.choice(["TP53", None])
                )
                gene = "EGFR" if first else gene
                (folder.parent / "genomics").mkdir(exist_ok=True)
                (folder.parent / "genomics" / f"{re.sub(r'[^A-Za-z0-9]+', '_', pid)}.vcf").write_text(
                    _vcf(pid, name, gene, rng, dx_date)
                )
                counts["vcf_files"] += 1
            response = rng.choice(["complete response", "partial response", "stable disease", "progression"])
            follow = baseline + timedelta(days=rng.randint(90, 200))
            truth.append({"patient": p.key, "site": site_name, "patient_id": pid, "issuer": issuer,
                          "condition": dx, "code": code, "stage": stage, "vcf": has_vcf, "gene": gene,
                          "consequence": VARIANTS[gene][4] if gene else None})  # fmt: skip
            if index % 2 == 0:
                rows.append({
                    "MRN": pid, "Patient Name": name, "Date of Birth": idt["birth_date"], "Sex": idt["sex"],
                    "Address": f"{idt['street']}, {idt['city']}", "Phone": idt["phone"], "ICD-10": code,
                    "Referring Physician": staff,
                    "Diagnosis": dx, "Diagnosis Date": dx_date.isoformat(), "Stage": stage, "Clinician Note": note,
                    "Hb (g/dL)": f"{rng.uniform(9, 15):.1f}", "Lab Date": (dx_date + timedelta(days=2)).isoformat(),
                    "Response": response, "Follow-up Date": follow.isoformat(),
                    "Insurance No": idt["other_ids"][-1],  # not in the mapping: never leaves the site
                })  # fmt: skip
                continue
            ref = {"reference": f"Patient/p{n}"}
            resources.setdefault("Patient", []).append({
                "resourceType": "Patient", "id": f"p{n}",
                "identifier": [{"system": "urn:curata-demo:mrn", "value": pid},
                               {"system": "urn:curata-demo:insurance", "value": idt["other_ids"][-1]}],
                "name": [{"family": idt["family"], "given": [idt["given"]], "text": name}],
                "telecom": [{"system": "phone", "value": idt["phone"]}],
                "gender": {"M": "male", "F": "female"}.get(idt["sex"], "unknown"),
                "birthDate": idt["birth_date"],
                "generalPractitioner": [{"display": f"Dr. {staff}"}],
                "address": [{"line": [idt["street"]], "city": idt["city"], "postalCode": idt["postal_code"]}],
            })  # fmt: skip
            resources.setdefault("Condition", []).append({
                "resourceType": "Condition", "id": f"c{n}", "subject": ref,
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code, "display": dx}]},
                "onsetDateTime": dx_date.isoformat(), "stage": [{"summary": {"text": f"Stage {stage}"}}],
                "note": [{"text": note}],
            })  # fmt: skip
            resources.setdefault("Observation", []).append({
                "resourceType": "Observation", "id": f"o{n}", "status": "final", "subject": ref,
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
                "effectiveDateTime": (dx_date + timedelta(days=2)).isoformat(),
                "valueQuantity": {"value": round(rng.uniform(9, 15), 1), "unit": "g/dL",
                                  "system": "http://unitsofmeasure.org", "code": "g/dL"},
            })  # fmt: skip
            resources.setdefault("Specimen", []).append({
                "resourceType": "Specimen", "id": f"s{n}", "subject": ref,
                "identifier": [{"value": f"SP-{pid}-1"}],
                "type": {"coding": [{"system": "http://snomed.info/sct", "code": "122610009", "display": "Biopsy"}]},
                "collection": {"collectedDateTime": (dx_date + timedelta(days=1)).isoformat()},
            })  # fmt: skip
        if rows:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
            (folder / "clinical-export.csv").write_text(buf.getvalue(), encoding="utf-8")
            (folder / "clinical-map.toml").write_text(
                CSV_MAP.format(institution=site.institution, issuer=issuer)
            )
            counts["csv_rows"] += len(rows)
        else:
            for rtype, items in resources.items():
                (folder / f"{rtype}.ndjson").write_text("\n".join(json.dumps(r) for r in items) + "\n")
                counts["fhir_resources"] += len(items)
            (folder / "clinical-map.toml").write_text(
                FHIR_MAP.format(institution=site.institution, issuer=issuer)
            )
        gen = folder.parent / "genomics"
        if gen.exists():  # the VCFs' mapping: same issuer (their folder has no map of its own)
            (gen / "clinical-map.toml").write_text(f'[vcf]\nissuer = "{issuer}"\n')
    truth_path.write_text(json.dumps(truth, indent=1))
    counts["clinical_files"] = sum(
        1 for p in export_dir.rglob("*") if p.suffix in (".csv", ".ndjson", ".vcf") and p.is_file()
    )
    return counts


COHORT_QUERY = (
    "modality = CT and clinical.condition = 'lung adenocarcinoma' and clinical.stage in (III, IV) "
    "and genomic.gene = EGFR and genomic.consequence = missense_variant"
)


def expected_cohort(truth: list[dict[str, Any]]) -> set[str]:
    """The truth's patients (manifest keys) that ``COHORT_QUERY`` must find (when they have a CT)."""
    return {
        t["patient"]
        for t in truth
        if t["condition"] == "lung adenocarcinoma"
        and t["stage"].rstrip("ABC") in ("III", "IV")
        and t["gene"] == "EGFR"
    }
