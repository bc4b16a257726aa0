"""The real SVS (H&E) and NDPI (DAPI) of shared/data/wsi, the whole way: ingest, slide QC, a tissue /
tiles / stain-normalisation pipeline, and a release holding their DICOM-WSI and tiles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import select

from curata.catalog import Series
from curata.collect.ingest import Ingestor
from curata.preprocess.wsi import parse_slide_pipeline, run_slide_pipeline, tiles_from_bytes
from curata.publish import create_release
from curata.select import create_cohort, explain, run_qc

REAL = {
    "CMU-1-Small-Region.svs": {"patient_id": "P-SVS", "accession": "A1", "organ": "breast", "stain": "H&E"},
    "test3-DAPI-2-387.ndpi": {"patient_id": "P-NDPI", "accession": "A2", "organ": "skin", "stain": "DAPI"},
}


def test_real_svs_and_ndpi_pass_qc_tile_normalise_and_enter_a_release(  # type: ignore[no-untyped-def]
    workspace, shared_wsi: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name, sidecar in REAL.items():
        shutil.copy(shared_wsi / name, inbox / name)
        (inbox / f"{name}.json").write_text(json.dumps(sidecar))
    summary, problems = Ingestor(workspace, site="path-a", workers=1).ingest_paths([inbox])
    assert summary.counts["ingested"] == 2 and not problems, [p.reason for p in problems]

    qc = run_qc(workspace, workers=1)
    assert qc.counts["measured"] == 2 and qc.counts["failed"] == 0
    with workspace.catalog.session() as s:
        slides = list(s.scalars(select(Series.series_uid).where(Series.modality == "SM")))
    assert len(slides) == 2
    assert all(explain(workspace, uid).verdict.passed for uid in slides)

    assert create_cohort(workspace, "real-slides", "modality = SM and qc.passed").series == 2
    pipe = parse_slide_pipeline(
        {"step": [{"op": "tissue_mask"}, {"op": "tiles", "size": 256, "level": 0}, {"op": "stain_normalize"}]}
    )
    results = run_slide_pipeline(workspace, pipe, cohort="real-slides", workers=1)
    assert len(results) == 2 and all(r.ok and r.tiles > 0 for r in results), results
    for r in results:
        tiles, coords, attrs = tiles_from_bytes(workspace.store.get_bytes(r.tiles_digest))
        assert tiles.shape[1:] == (256, 256, 3) and len(tiles) == len(coords) == r.tiles
        assert attrs["stain"] and tiles.std() > 1  # normalised tissue, not blank tiles

    out = create_release(workspace, "real-path", cohort="real-slides", formats="dicom,tiles", split="50,50,0")
    assert out.created and out.problems == [] and out.cases == 2
    manifest = workspace.store.get_bytes(out.manifest).decode()
    assert manifest.count("tiles.zarr.zip") == 2 and manifest.count("tissue_mask.npy") == 2
    card = (Path(out.card).parent / "README.md").read_text()
    assert "BREAST" in card and "SKIN" in card and "H&E" in card and "DAPI" in card
