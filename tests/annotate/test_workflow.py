"""The reading workflow on a real catalog: assignment, reads filed from DICOM SEG (versions), blinding,
submission, agreement, adjudication, accepted labels and per-reader statistics."""

from __future__ import annotations

import numpy as np
import pytest

from curata import annotate
from curata.errors import AnnotationError, InputError
from tests.annotate.conftest import as_stowed, truth


def _tasks(ws):  # type: ignore[no-untyped-def]
    return {t.id: t for t in annotate.list_tasks(ws, "livers")}


def _read(ws, task_id: int, reader: str, labels: np.ndarray):  # type: ignore[no-untyped-def]
    data = annotate.seg_for(ws, "livers", task_id, labels, reader=reader)
    return annotate.file_object(ws, data, reader=reader)


def test_balanced_assignment_skips_the_readers_own_site(project) -> None:  # type: ignore[no-untyped-def]
    load = annotate.assign(project, "livers")
    # two site-a cases only bo and chi may read; ana reads the site-b case
    assert sum(load.values()) == 6 and load["ana"] == 1 and sorted(load.values()) == [1, 2, 3]
    assert "dee" not in load  # the adjudicator does not read
    sites = {"ana": "site-a", "bo": "site-b", "chi": "site-c"}
    for t in _tasks(project).values():
        assert len(t.readers) == 2 == len(set(t.readers))
        assert all(sites[r] != t.site for r in t.readers)
    assert annotate.assign(project, "livers") == load  # a re-run adds nothing
    with pytest.raises(AnnotationError, match="not a reader"):
        annotate.assign(project, "livers", task_id=1, reader="mallory")
    # without the site rule the load is balanced to one case
    annotate.create_project(project, "open", "ct", readers_per_task=2)
    for name in ("ana", "bo", "chi"):
        annotate.add_reader(project, "open", name)
    annotate.create_tasks(project, "open")
    free = annotate.assign(project, "open")
    assert sum(free.values()) == 6 and max(free.values()) - min(free.values()) <= 1


def test_schema_versions_and_validation(project) -> None:  # type: ignore[no-untyped-def]
    from tests.annotate.conftest import LABELS

    assert annotate.show_project(project, "livers").schema_version == 1
    assert (
        annotate.set_schema(project, "livers", LABELS, "Outline the liver and every lesion.").schema_version
        == 1
    )
    assert annotate.set_schema(project, "livers", LABELS, "New instructions").schema_version == 2
    with pytest.raises(AnnotationError, match="colour"):
        annotate.set_schema(project, "livers", [{**LABELS[0], "colour": "red"}])
    with pytest.raises(AnnotationError, match="used twice"):
        annotate.set_schema(project, "livers", [LABELS[0], {**LABELS[1], "value": 1}])


def test_double_reading_to_accepted_labels(project) -> None:  # type: ignore[no-untyped-def]
    ws = project
    annotate.assign(ws, "livers")
    tasks = _tasks(ws)
    gt = truth()
    missed = gt.copy()
    missed[missed == 1] = 2  # this reader misses the lesion (draws it as liver)
    shifted = np.roll(gt, 1, axis=2)
    plan = {}
    for n, (tid, t) in enumerate(sorted(tasks.items())):
        a, b = t.readers
        plan[tid] = (a, b, [gt, missed if n == 0 else shifted if n == 1 else gt])
    for tid, (a, b, (la, lb)) in plan.items():
        annotate.start(ws, "livers", tid, a)
        ra = _read(ws, tid, a, la)
        assert ra.kind == "seg" and ra.version == 1 and set(ra.labels_present) == {"lesion", "liver"}
        rb = _read(ws, tid, b, lb)
        # blinded: a reader sees only their own read while the case is open; the adjudicator sees both
        assert [r.reader for r in annotate.visible_reads(ws, "livers", tid, a)] == [a]
        assert {r.reader for r in annotate.visible_reads(ws, "livers", tid, "dee")} == {a, b}
        assert rb.version == 1
        annotate.submit(ws, "livers", tid, a, seconds=30.0)
        annotate.submit(ws, "livers", tid, b, seconds=50.0)
    # a correction is a new version naming the old one; the same object filed twice is one read
    tid0 = min(plan)
    a0 = plan[tid0][0]
    again = annotate.file_object(ws, annotate.seg_for(ws, "livers", tid0, gt, reader=a0), reader=a0)
    assert again.version == 2 and again.supersedes_id is not None
    assert {t.state for t in _tasks(ws).values()} == {"submitted"}

    results = {r.task_id: r for r in annotate.compute_agreement(ws, "livers")}
    tid_missed, tid_shift, tid_same = sorted(plan)
    assert results[tid_same].passed and results[tid_same].state == "in_review"
    assert not results[tid_missed].passed and results[tid_missed].state == "adjudication"
    lesion = next(p for p in results[tid_missed].pairs if p["label"] == "lesion")
    assert lesion["lesions_a"] + lesion["lesions_b"] == 1 and lesion["detection_f1"] == 0.0
    liver_shift = next(p for p in results[tid_shift].pairs if p["label"] == "liver")
    assert liver_shift["hd95_mm"] == pytest.approx(0.7)  # one column of 0.7 mm
    assert 0.8 < liver_shift["dice"] < 1.0

    # adjudication: only an adjudicator, who did not read the case, decides
    with pytest.raises(AnnotationError, match="not an adjudicator"):
        annotate.adjudicate(ws, "livers", tid_missed, "ana", "staple")
    reads = annotate.visible_reads(ws, "livers", tid_missed, "dee")
    keep = max((r for r in reads if r.reader == a0), key=lambda r: r.version)
    out = annotate.adjudicate(ws, "livers", tid_missed, "dee", "accept_read", read_id=keep.id)
    assert out["decision"] == "accept_read"
    with pytest.raises(AnnotationError, match="already accepted"):
        annotate.adjudicate(ws, "livers", tid_missed, "dee", "staple")
    annotate.accept_review(ws, "livers", tid_same, "dee")
    if results[tid_shift].state == "adjudication":
        annotate.adjudicate(ws, "livers", tid_shift, "dee", "staple")
    else:
        annotate.accept_review(ws, "livers", tid_shift, "dee")

    accepted = annotate.accepted_labels(ws, "livers")
    assert len(accepted) == 3 and all(len(a["readers"]) == 2 for a in accepted)
    by_task = {a["task"]: a for a in accepted}
    lm = np.load(__import__("io").BytesIO(ws.store.get_bytes(by_task[tid_missed]["labelmap_digest"])))[
        "labels"
    ]
    assert np.array_equal(lm, gt)  # the accepted read, with its lesion
    same = np.load(__import__("io").BytesIO(ws.store.get_bytes(by_task[tid_same]["labelmap_digest"])))[
        "labels"
    ]
    assert np.array_equal(same, gt)  # STAPLE of two identical reads is the read
    # once decided, the case is no longer blind
    assert len({r.reader for r in annotate.visible_reads(ws, "livers", tid_same, plan[tid_same][0])}) == 2

    stats = {s["reader"]: s for s in annotate.reader_stats(ws, "livers")}
    assert sum(s["submitted"] for s in stats.values()) == 6
    assert all(s["seconds_per_case"] in (30.0, 40.0, 50.0) for s in stats.values())
    table = {row["label"]: row for row in annotate.agreement_table(ws, "livers")}
    assert table["lesion"]["pairs"] == 3 and table["liver"]["dice"]["min"] < 1.0
    assert table["lesion"]["adjudication_rate"] == pytest.approx(
        sum(a["decision"] != "review" for a in accepted) / 3
    )
    st = annotate.status(ws, "livers")
    assert st["accepted"] == 3 and st["tasks"] == 3


def test_second_read_is_mandatory_and_wrong_objects_are_refused(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = project
    annotate.assign(ws, "livers")
    tid, t = next(iter(_tasks(ws).items()))
    a, _b = t.readers
    with pytest.raises(AnnotationError, match="filed no read"):
        annotate.submit(ws, "livers", tid, a)
    _read(ws, tid, a, truth())
    with pytest.raises(AnnotationError, match="second read"):
        annotate.compute_agreement(ws, "livers", tid)
    outsider = next(r for r in ("ana", "bo", "chi") if r not in t.readers)
    with pytest.raises(AnnotationError, match="no task of reader"):
        _read(ws, tid, outsider, truth())
    bad = truth()
    bad[0, 0, 0] = 7
    with pytest.raises(InputError, match="not in schema"):
        annotate.file_labelmap(ws, "livers", tid, a, bad, source="edit")
    # objects arriving in the catalog (as STOW-RS puts them there) are filed as the account that sent
    # them; one whose sender reads no task on the series is refused with its reason and quarantined,
    # and the others go on
    from curata.catalog import QuarantineItem
    from curata.collect.ingest import Ingestor

    assert annotate.file_new_objects(ws).filed == []
    folder = tmp_path / "arrivals"
    folder.mkdir()
    good = annotate.seg_for(ws, "livers", tid, truth(), reader=t.readers[1])
    stray = annotate.seg_for(ws, "livers", tid, truth(), reader=outsider)
    (folder / "good.dcm").write_bytes(good)
    (folder / "stray.dcm").write_bytes(stray)
    as_stowed(ws, good, t.readers[1])
    as_stowed(ws, stray, outsider)
    _, problems = Ingestor(ws, deidentify=False, workers=1, site="site-a").ingest_paths([folder])
    assert not problems
    result = annotate.file_new_objects(ws)
    assert [r.reader for r in result.filed] == [t.readers[1]]
    assert len(result.refused) == 1 and "no task of reader" in result.refused[0][1]
    with ws.catalog.session() as session:
        q = session.query(QuarantineItem).filter(QuarantineItem.stage == "annotate").all()
    assert len(q) == 1 and "no task of reader" in q[0].reason
    again = annotate.file_new_objects(ws)  # a re-run files nothing twice
    assert again.filed == [] and again.skipped == 1


def test_import_nifti_and_nrrd_on_the_image_grid(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import nibabel as nib
    import nrrd

    ws = project
    annotate.assign(ws, "livers")
    _tid, t = next(iter(_tasks(ws).items()))
    grid = annotate.series_grid(ws, t.series_uid)
    gt = truth()
    # NIfTI as dcm2niix writes it: (column, row, slice) with a RAS affine
    path = tmp_path / "read.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(gt, (2, 1, 0)).astype(np.uint8), grid.ras_affine()), str(path))
    r = annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[0], path)
    assert r.kind == "nifti" and np.array_equal(annotate.read_labelmap(ws, r.id), gt)
    # NRRD as 3D Slicer writes it: (column, row, slice), LPS space directions
    p2 = tmp_path / "read.seg.nrrd"
    aff = grid.affine[:, [2, 1, 0, 3]]
    nrrd.write(str(p2), np.transpose(gt, (2, 1, 0)), {"space": "left-posterior-superior",
               "space directions": aff[:3, :3].T, "space origin": aff[:3, 3]})  # fmt: skip
    r2 = annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[1], p2)
    assert r2.kind == "nrrd" and np.array_equal(annotate.read_labelmap(ws, r2.id), gt)
    # a label map off the grid is refused with a reason
    shifted = grid.ras_affine().copy()
    shifted[0, 3] += 5
    nib.save(nib.Nifti1Image(np.transpose(gt, (2, 1, 0)).astype(np.uint8), shifted), str(path))
    with pytest.raises(InputError, match="grid"):
        annotate.import_labelmap(ws, "livers", t.series_uid, t.readers[0], path)


def test_classification_answers_and_kappa(project) -> None:  # type: ignore[no-untyped-def]
    from curata.annotate._agreement import fleiss_kappa

    ws = project
    annotate.assign(ws, "livers")
    answers = {}
    for n, t in enumerate(annotate.list_tasks(ws, "livers")):
        a, b = t.readers
        va, vb = ("yes", "yes") if n == 0 else ("no", "no") if n == 1 else ("yes", "no")
        annotate.file_classification(ws, "livers", t.id, a, {"malignancy": va})
        annotate.file_classification(ws, "livers", t.id, b, {"malignancy": vb})
        answers[t.id] = (va, vb)
    with pytest.raises(AnnotationError, match="must be one of"):
        annotate.file_classification(
            ws, "livers", 1, annotate.list_tasks(ws, "livers")[0].readers[0], {"malignancy": "maybe"}
        )
    kappa = annotate.classification_kappa(ws, "livers")
    # reader pairs vary between the cases (balanced assignment): Fleiss' kappa, 1/3 for these answers
    assert kappa["malignancy"] == pytest.approx(fleiss_kappa([list(v) for v in answers.values()]))
    assert kappa["malignancy"] == pytest.approx(1 / 3)


def test_agreement_and_reader_statistics_go_on_past_a_label_map_gone(project) -> None:  # type: ignore[no-untyped-def]
    """One case whose reads' label map left the store: the agreement of the others is computed, that
    case keeps its state and says why (the CLI lists it and exits 1); reader statistics leave it out."""
    from sqlalchemy import select
    from typer.testing import CliRunner

    from curata.annotate.models import AnnotationRead
    from curata.cli import app

    ws = project
    annotate.assign(ws, "livers")
    tasks = sorted(_tasks(ws).values(), key=lambda t: t.id)
    for n, t in enumerate(tasks):
        labels = truth()
        labels[0, 0, n] = 2  # each case its own label map (one blob per case)
        for reader in t.readers:
            annotate.file_labelmap(ws, "livers", t.id, reader, labels, source="edit")
            annotate.submit(ws, "livers", t.id, reader, seconds=10)
    with ws.catalog.session() as s:
        (digest,) = set(
            s.scalars(select(AnnotationRead.labelmap_digest).where(AnnotationRead.task_id == tasks[1].id))
        )
    ws.store.delete(digest)
    results = {r.task_id: r for r in annotate.compute_agreement(ws, "livers")}
    assert results[tasks[1].id].state == "submitted" and "not in the store" in (
        results[tasks[1].id].error or ""
    )
    assert all(
        results[t.id].error is None and results[t.id].state == "in_review" for t in (tasks[0], tasks[2])
    )
    # the case left out is still to compare: the next run tries it again
    out = CliRunner().invoke(app, ["annotate", "agreement", "livers", "--json", "-w", str(ws.root)])
    assert out.exit_code == 1 and f"task {tasks[1].id} not compared" in out.output, out.output
    for t in (tasks[0], tasks[2]):
        annotate.accept_review(ws, "livers", t.id, "dee")
    with ws.catalog.session() as s:
        (kept,) = set(
            s.scalars(select(AnnotationRead.labelmap_digest).where(AnnotationRead.task_id == tasks[2].id))
        )
    path = ws.store.local_path(kept)
    path.chmod(0o644)
    path.write_bytes(b"not a label map")
    stats = annotate.reader_stats(ws, "livers")
    assert any(r["dice_vs_accepted"] == pytest.approx(1.0) for r in stats)  # task 0's reads still count
