"""The demo's pathology site: synthetic pyramidal slides of the demo's own patients, with their true
names, IDs and accession numbers planted in the label, the macro, every TIFF tag, the Aperio fields,
the sidecar and the file name; several organs; a few QC defects. The leak check covers them through
the same manifest identities as the DICOM, and the run ends with a tiled, normalised slide release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curata.collect import PlantedIdentity, tissue_image, write_svs

ORGANS = ("lung", "breast", "colon", "prostate", "liver")
DEFECTS = {2: "pen", 4: "blur"}  # slide index -> planted defect (the others are clean)
SLIDE_PIPELINE = {
    "pipeline": {"name": "demo-slide-tiles", "kind": "slide"},
    "step": [
        {"op": "tissue_mask"},
        {"op": "tiles", "size": 256, "level": 0, "min_tissue": 0.5},
        {"op": "stain_normalize", "method": "macenko", "target": "reference"},
    ],
}


def generate_slides(
    folder: Path, patients: list[Any], *, count: int = 6, size: int = 1024, seed: int = 0
) -> list[dict[str, Any]]:
    """Write ``count`` slides of the given patients (manifest records) under ``folder``; returns ground truth."""
    from curata.select import plant_slide_defect as plant

    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for i in range(count):
        patient = patients[i % len(patients)]
        idt = patient.identity
        accession = (idt.get("accessions") or [f"{idt['patient_id']}-P"])[0] + f"-S{i}"
        who = PlantedIdentity(
            patient_name=f"{idt['family']}^{idt['given']}",
            patient_id=idt["patient_id"],
            accession=accession,
            barcode=f"{idt['patient_id']}-{i:02d}",
            operator=next(iter(idt["staff"].values()), "Pathologist").replace("^", " "),
            institution=patient.site,
        )
        organ = ORGANS[i % len(ORGANS)]
        image = tissue_image(size, size, seed=seed + i, tissue=0.35 + 0.05 * (i % 4))
        defect = DEFECTS.get(i)
        if defect:
            image = plant(image, defect, 3, seed=i)
        name = f"{idt['family']}_{idt['given']}_{accession}.svs".replace(" ", "_")
        write_svs(folder / name, who, size=size, image=image)
        (folder / f"{name}.json").write_text(
            json.dumps(
                {
                    "patient_id": idt["patient_id"],
                    "patient_name": who.patient_name,
                    "birth_date": idt["birth_date"],
                    "accession": accession,
                    "organ": organ,
                    "stain": "H&E",
                }
            )
        )
        truth.append({"patient": patient.key, "organ": organ, "defect": defect})
    return truth


def run_pathology(ctx: Any) -> dict[str, Any]:
    """Generate, ingest (site 1, same key and pseudonyms), leak-check, QC, tile, normalise and release."""
    from curata.collect import Ingestor
    from curata.demo.leaks import scan_store_for_identities
    from curata.preprocess import parse_slide_pipeline, run_slide_pipeline
    from curata.publish import create_release
    from curata.select import create_cohort, run_qc

    ws = ctx.ws
    site = ctx.manifest.sites[0]
    patients = [p for p in ctx.manifest.patients if p.site == site.name] or list(ctx.manifest.patients)
    folder = ctx.export_dir / f"pathology-{site.folder}"
    truth = generate_slides(folder, patients, seed=ctx.seed)
    ingestor = Ingestor(ws, site=site.name, region=site.region, country=site.country, workers=ctx.workers)
    summary, problems = ingestor.ingest_paths([folder])
    if problems:
        raise RuntimeError(f"pathology ingest refused slides: {[p.reason for p in problems]}")
    leak = scan_store_for_identities(ws, ctx.manifest)
    if leak["hit_count"]:
        raise RuntimeError(f"PHI LEAK in slides: {leak['hits'][:5]}")
    qc = run_qc(ws, "modality = SM", workers=ctx.workers, quiet=True)
    cohort = create_cohort(ws, "demo-slides", "modality = SM and qc.passed")
    pipe = parse_slide_pipeline(SLIDE_PIPELINE)
    results = run_slide_pipeline(ws, pipe, cohort="demo-slides", workers=ctx.workers)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"slide pipeline failed: {[(r.series_uid, r.error) for r in failed]}")
    release = create_release(ws, "demo-slides", cohort="demo-slides", formats="dicom,tiles")
    return {
        "slides": len(truth),
        "ingested_instances": summary.counts.get("ingested", 0),
        "leak_hits": leak["hit_count"],
        "qc_passed": qc.counts.get("passed", 0),
        "qc_excluded": qc.counts.get("excluded", 0),
        "qc_warned": qc.counts.get("warned", 0),
        "planted_defects": {t["defect"]: t["organ"] for t in truth if t["defect"]},
        "cohort_slides": cohort.series,
        "tiles": sum(r.tiles for r in results),
        "release": release.ref,
        "release_problems": release.problems,
    }
