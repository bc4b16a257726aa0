"""Releases carry accepted labels only: an annotation project's accepted SEGs become the release's
label maps (NIfTI on the image grid, nnU-Net labelsTr, DICOM SEG), a reader's SEG stored in the catalog
for an undecided case stays out, and the dataset card shows the agreement table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curata import annotate
from curata.collect.ingest import Ingestor
from tests.annotate.conftest import as_stowed, truth


def test_release_carries_accepted_labels_only(project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curata.publish import create_release

    ws = project
    annotate.assign(ws, "livers")
    tasks = annotate.list_tasks(ws, "livers")
    done, undecided = tasks[:2], tasks[2]
    for t in done:
        for reader in t.readers:
            annotate.file_object(
                ws, annotate.seg_for(ws, "livers", t.id, truth(), reader=reader), reader=reader
            )
            annotate.submit(ws, "livers", t.id, reader, seconds=5)
    for r in annotate.compute_agreement(ws, "livers"):
        annotate.accept_review(ws, "livers", r.task_id, "dee")
    # a reader's read of the undecided case reaches the catalog (as a STOW would put it there)
    stray = tmp_path / "stray" / "seg.dcm"
    stray.parent.mkdir()
    stray.write_bytes(annotate.seg_for(ws, "livers", undecided.id, truth(), reader=undecided.readers[0]))
    as_stowed(ws, stray.read_bytes(), undecided.readers[0])
    _, problems = Ingestor(ws, deidentify=False, workers=1, site="site-a").ingest_paths([stray.parent])
    assert not problems

    labels, card = annotate.release_labels(ws, "livers")
    assert set(labels) == {t.series_uid for t in done}
    assert annotate.release_labels(ws, "livers")[0] == labels  # written once, then kept
    rel = create_release(ws, "livers-ct", cohort="ct", formats="nifti,dicom", labels=labels, annotation=card)
    assert rel.labelled == 2 and rel.cases == 3
    card_md = (Path(rel.card).parent / "README.md").read_text()
    assert "## Annotation" in card_md and "| lesion | 4 | 2 |" in card_md
    params = json.loads(json.dumps(rel.parameters))
    assert set(params["labels"]) == set(labels)
    # the labels on the image grid are the accepted ones
    folder = ws.root / "releases" / rel.ref
    nii = sorted(folder.rglob("nifti/labels/*.nii.gz")) if folder.exists() else []
    if nii:
        import nibabel as nib

        got = {int(v) for p in nii for v in np.unique(np.asarray(nib.load(str(p)).dataobj))}
        assert got <= {0, 1, 2}
    # without --labels-from, a cohort under annotation still takes its accepted labels only: the
    # stray read of the undecided case stays out
    plain = create_release(ws, "livers-plain", cohort="ct", formats="nifti")
    assert plain.labelled == 2
    assert set(plain.parameters["labels"]) == {t.series_uid for t in done}
    assert plain.parameters["labels"] == {k: sorted(v) for k, v in labels.items()}
    # a release by query (no cohort) takes the catalog's SEGs, but never a filed read or draft
    assert annotate.file_new_objects(ws, "livers").filed
    by_query = create_release(ws, "livers-query", where="modality = CT", formats="nifti")
    assert by_query.labelled == 0
