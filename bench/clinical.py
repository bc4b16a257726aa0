"""Clinical and genomic ingest beside the bare read of the same files.

    .venv/bin/python bench/clinical.py [--rows 1000000] [--variants 100000] [--repeat 3]
        [--out bench/results/clinical.json]

A synthetic hospital export (``--rows`` rows, one patient per 100 rows, identifiers in their own columns
and in a third of the free-text notes) and a single-sample VCF with SnpEff annotations (``--variants``
records). Timed, in one process: the bare read (pandas ``read_csv`` with every cell as text, pyarrow's
CSV reader; pysam iterating every record, and pysam reading the fields the variant index holds: ANN,
GT, AF, AD, the fairer peer, reported beside the first), Curata's de-identification alone (rows to OMOP rows, cleaned
and gated; VCF header cleaned, samples renamed, variants indexed, output gated and bgzipped) and the
whole ``curata ingest`` (the same plus the store and the catalog, SQLite). Ratios are against the bare
read; the issue's goal is at most 2x with de-identification on. Each step is timed in wall seconds and in
CPU seconds of the process (``*_cpu_*``: steadier on a shared machine); the load average is recorded. The
de-identification and the ingest are warmed up (imports, first kernel calls, the catalog's first
statements) on small inputs before they are timed, as the peers are timed with their modules imported.
Every step runs once per round (``--repeat``, each ingest into a new workspace), the steps of a round side
by side; each figure is the least of its rounds (wall and CPU taken separately), for the peers and for
Curata alike, and every round's CPU seconds are kept under ``runs``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import console, write_json  # noqa: E402


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall seconds and CPU seconds of this process (all its threads): on a shared machine the CPU
    ratio is the steadier one."""
    box: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - wall
        box["cpu"] = time.process_time() - cpu


MAPPING = """
[csv]
patient_id = "mrn"
[csv.identifiers]
names = ["patient_name"]
birth_date = "dob"
phones = ["phone"]
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
"""
FIRST = ["Adaeze", "Tunde", "Ngozi", "Emeka", "Linh", "Minh", "Joao", "Ana", "Kofi", "Ama"]
LAST = ["Okonkwo", "Bakare", "Nguyen", "Tran", "Silva", "Santos", "Mensah", "Boateng", "Adeyemi", "Pham"]
DX = [("C34.1", "lung adenocarcinoma"), ("C50.9", "breast carcinoma"), ("C18.7", "sigmoid colon cancer"),
      ("J18.9", "pneumonia"), ("I10", "essential hypertension")]  # fmt: skip
LABS = [
    ("718-7", "Hemoglobin", "g/dL"),
    ("2160-0", "Creatinine", "mg/dL"),
    ("6690-2", "Leukocytes", "10*3/uL"),
]


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["mrn", "patient_name", "dob", "sex", "phone", "icd10", "diagnosis", "diagnosis_date", "stage",
                    "notes", "lab_code", "lab_name", "lab_value", "lab_unit", "lab_date"])  # fmt: skip
        for i in range(rows):
            p = i // 100
            name = f"{FIRST[p % 10]} {LAST[(p // 10) % 10]}"
            code, dx = DX[p % len(DX)]
            lab = LABS[i % len(LABS)]
            note = ""
            if i % 3 == 0:
                note = f"{FIRST[p % 10]} seen in clinic, stable; call 0803 555 {p % 10000:04d} if worse"
            w.writerow([f"MRN{p:07d}", name, f"19{40 + p % 50}-0{1 + p % 9}-1{p % 10}", "MF"[p % 2],
                        f"+234 803 555 {p % 10000:04d}", code, dx, f"2023-0{1 + i % 9}-{10 + i % 18}",
                        ["I", "IIA", "IIIB", "IV"][p % 4], note, lab[0], lab[1], f"{rng.uniform(1, 20):.1f}", lab[2],
                        f"2023-0{1 + i % 9}-{10 + i % 18}"])  # fmt: skip


def write_vcf(path: Path, variants: int, sample: str = "MRN0000001", seed: int = 7) -> None:
    import pysam

    rng = random.Random(seed)
    genes = ["EGFR", "KRAS", "TP53", "BRCA1", "BRCA2", "ALK", "PIK3CA", "BRAF"]
    cons = ["missense_variant", "synonymous_variant", "stop_gained", "intron_variant", "frameshift_variant"]
    lines = [
        "##fileformat=VCFv4.2",
        "##fileDate=20240301",
        f"##source=/data/site/{sample}/pipeline.sh",
        f'##commandline="bcftools call -o /data/site/{sample}.vcf"',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
        "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | "
        "HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | ERRORS' \">",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AF,Number=A,Type=Float,Description="Allele fraction">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
    ]
    lines += [f"##contig=<ID=chr{c},length=250000000>" for c in range(1, 23)]
    lines.append(f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{sample}")
    per = variants // 22 + 1
    n = 0
    for c in range(1, 23):
        pos = 10000
        for _ in range(per):
            if n >= variants:
                break
            pos += rng.randint(50, 5000)
            ref, alt = rng.sample("ACGT", 2)
            g = genes[n % len(genes)]
            ann = f"{alt}|{cons[n % len(cons)]}|MODERATE|{g}|ENSG0000|transcript|ENST0000|protein_coding|1/2|c.{pos % 3000}{ref}>{alt}|p.Xaa{pos % 900}Yaa||||"
            gt = "0/1" if n % 4 else "1/1"
            lines.append(
                f"chr{c}\t{pos}\t.\t{ref}\t{alt}\t50\tPASS\tDP={rng.randint(20, 200)};ANN={ann}\tGT:AF:AD\t{gt}:0.45:55,45"
            )
            n += 1
    path.write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(path), str(path) + ".gz", force=True)


def read_index_fields(path: Path) -> int:
    """pysam reading, per record, what the variant index holds: position, alleles, the first ANN entry's
    gene / consequence / HGVS, and each sample's genotype and allele fraction."""
    import pysam

    n = 0
    with pysam.VariantFile(str(path)) as vf:
        samples = list(vf.header.samples)
        for rec in vf:
            n += 1
            _ = (rec.chrom, rec.pos, rec.ref, rec.alts, rec.filter.keys())
            ann = rec.info.get("ANN")
            if ann:
                _ = str(ann[0]).split("|")[:11]
            for s in samples:
                call = rec.samples[s]
                _ = (call.get("GT"), call.get("AF"), call.get("AD"))
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--variants", type=int, default=100_000)
    ap.add_argument(
        "--repeat", type=int, default=3, help="rounds of every step; the least time of each counts"
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "clinical.json")
    ap.add_argument("--no-ingest", action="store_true", help="time the de-identification only")
    args = ap.parse_args()
    import hashlib

    import pandas as pd
    import pyarrow.csv as pacsv
    import pysam

    from curata.collect.clinical.mapping import parse_mapping
    from curata.collect.clinical.tabular import deidentify_table
    from curata.collect.genomics.vcf import deidentify_vcf
    from curata.collect.ingest import Ingestor
    from curata.workspace import Workspace

    results: dict[str, dict[str, float | int | None]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="curata-bench-clinical-") as tmp:
        root = Path(tmp)
        export = root / "export"
        export.mkdir()
        csv_path, vcf_path = export / "clinical.csv", root / "genome.vcf"
        with timed() as t:
            write_csv(csv_path, args.rows)
            write_vcf(vcf_path, args.variants)
        (export / "clinical-map.toml").write_text(MAPPING)
        gz = Path(str(vcf_path) + ".gz")
        vcf_in = export / "genome.vcf.gz"
        vcf_in.write_bytes(gz.read_bytes())
        console.print(f"inputs written in {t['seconds']:.1f} s: {csv_path.stat().st_size / 1e6:.0f} MB CSV, "
                      f"{gz.stat().st_size / 1e6:.1f} MB VCF.gz")  # fmt: skip
        raw_csv, raw_vcf = csv_path.read_bytes(), gz.read_bytes()
        mapping = parse_mapping(__import__("tomllib").loads(MAPPING))
        key = bytes(range(32))
        digest = hashlib.sha256(raw_csv).hexdigest()

        # warm up (imports, first kernel calls, the catalog's first statements) on small inputs, untimed:
        # the bare reads are timed with pandas, pyarrow and pysam imported too
        small = root / "small"
        small.mkdir()
        (small / "clinical.csv").write_bytes(raw_csv[: raw_csv.index(b"\n", 20000) + 1])
        (small / "clinical-map.toml").write_text(MAPPING)
        write_vcf(small / "genome.vcf", 200)
        deidentify_table(
            (small / "clinical.csv").read_bytes(), "clinical.csv", digest, mapping.table, key, "csv"
        )
        deidentify_vcf((small / "genome.vcf.gz").read_bytes(), "small.vcf.gz", mapping.vcf, key)
        (small / "genome.vcf").unlink()
        if not args.no_ingest:
            Ingestor(Workspace.init(root / "ws-warm", site="bench"), workers=1).ingest_paths([small])

        # every step once per round, side by side; each ingest into a new workspace
        runs: dict[str, list[dict[str, float]]] = {}

        def step(name: str, fn: Any) -> Any:
            with timed() as t:
                out = fn()
            runs.setdefault(name, []).append(t)
            return out

        for i in range(max(args.repeat, 1)):
            df = step(
                "bare_pandas",
                lambda: pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False),
            )
            step("bare_pyarrow", lambda: pacsv.read_csv(csv_path))  # all columns, types inferred, every core
            n = step("bare_pysam", lambda: sum(1 for _ in pysam.VariantFile(str(gz))))
            n_fields = step("bare_pysam_fields", lambda: read_index_fields(gz))
            assert len(df) == args.rows and n == n_fields == args.variants
            del df
            batch = step(
                "deid_csv",
                lambda: deidentify_table(raw_csv, "clinical.csv", digest, mapping.table, key, "csv"),
            )
            res = step("deid_vcf", lambda: deidentify_vcf(raw_vcf, "genome.vcf.gz", mapping.vcf, key))
            if not args.no_ingest:
                ws = Workspace.init(root / f"ws{i}", site="bench")
                step("ingest_csv", lambda ws=ws: Ingestor(ws, workers=1).ingest_paths([csv_path]))
                step("ingest_vcf", lambda ws=ws: Ingestor(ws, workers=1).ingest_paths([vcf_in]))

    def best(name: str, kind: str) -> float:
        return min(t[kind] for t in runs[name])

    def put(section: str, name: str, label: str, peers: list[str]) -> None:
        r = results[section]
        r[f"{label}_s"], r[f"{label}_cpu_s"] = best(name, "seconds"), best(name, "cpu")
        for peer in peers:
            r[f"{label}_ratio_vs_{peer}"] = best(name, "seconds") / best(f"bare_{peer}", "seconds")
            r[f"{label}_cpu_ratio_vs_{peer}"] = best(name, "cpu") / best(f"bare_{peer}", "cpu")

    results["csv"] = {
        "rows": args.rows,
        "bare_pandas_s": best("bare_pandas", "seconds"),
        "bare_pyarrow_s": best("bare_pyarrow", "seconds"),
        "bare_pandas_cpu_s": best("bare_pandas", "cpu"),
        "bare_pyarrow_cpu_s": best("bare_pyarrow", "cpu"),
        "omop_rows": sum(len(v) for v in batch.events.values())
        + sum(len(f["pseudonym"]) for f in batch.frames.values()),
        "refused_rows": len(batch.quarantined),
    }
    put("csv", "deid_csv", "deid", ["pandas"])
    results["vcf"] = {
        "variants": args.variants,
        "bare_pysam_s": best("bare_pysam", "seconds"),
        "bare_pysam_cpu_s": best("bare_pysam", "cpu"),
        # the fairer peer: pysam reading what the variant index needs (ANN, GT, AF), not just records
        "bare_pysam_fields_s": best("bare_pysam_fields", "seconds"),
        "bare_pysam_fields_cpu_s": best("bare_pysam_fields", "cpu"),
        "indexed_variants": res.count,
    }
    put("vcf", "deid_vcf", "deid", ["pysam", "pysam_fields"])
    if not args.no_ingest:
        put("csv", "ingest_csv", "ingest", ["pandas"])
        put("vcf", "ingest_vcf", "ingest", ["pysam", "pysam_fields"])
    results["runs"] = {
        "rounds": max(args.repeat, 1),
        "note": "each figure is the least of the rounds (wall and CPU taken separately), every step alike",
        **{f"{k}_cpu_s": [round(t["cpu"], 3) for t in v] for k, v in runs.items()},
    }
    results["load_average"] = {
        "1min_before": load_before,
        "1min": os.getloadavg()[0],
        "cpus": os.cpu_count() or 0,
    }
    for kind, r in results.items():
        console.print(kind, {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    write_json(args.out, results)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
