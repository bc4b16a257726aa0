"""A slide cohort in a release: DICOM-WSI and normalised tiles, and a card with organ and stain."""

from __future__ import annotations

import json
from pathlib import Path

from curata.collect.ingest import Ingestor
from curata.collect.wsi import synthetic as syn
from curata.preprocess.wsi import parse_slide_pipeline, run_slide_pipeline
from curata.publish.release import create_release
from curata.select import service


def test_slides_released_with_tiles_and_card(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site = tmp_path / "site"
    site.mkdir()
    for i, organ in enumerate(("lung", "lung", "breast")):
        syn.write_svs(site / f"s{i}.svs", size=512, seed=20 + i)
        (site / f"s{i}.svs.json").write_text(
            json.dumps({"patient_id": f"P{i}", "accession": f"A{i}", "organ": organ, "stain": "H&E"})
        )
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([site])
    assert summary.counts["ingested"] == 3 and not problems
    service.run_qc(workspace, workers=1, quiet=True)
    service.create_cohort(workspace, "slides", "modality = SM and qc.passed")
    pipe = parse_slide_pipeline(
        {"step": [{"op": "tissue_mask"}, {"op": "tiles", "size": 128, "level": 0}, {"op": "stain_normalize"}]}
    )
    assert all(r.ok for r in run_slide_pipeline(workspace, pipe, cohort="slides", workers=1))
    out = create_release(workspace, "path", cohort="slides", formats="dicom,tiles", split="60,20,20")
    assert out.created and out.problems == [] and out.cases == 3
    card = (Path(out.card).parent / "README.md").read_text()
    assert "Organ / body part" in card and "LUNG" in card and "BREAST" in card and "H&E" in card
    manifest = workspace.store.get_bytes(out.manifest).decode()
    assert manifest.count("tiles.zarr.zip") == 3 and manifest.count("tissue_mask.npy") == 3
    assert manifest.count(".dcm") == 3 * 3  # three DICOM-WSI levels per slide
