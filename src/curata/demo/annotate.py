"""The demo's reading round: a lesion project on the demo CT cohort, simulated readers who draw the
generator's ground-truth lesions with realistic errors and save DICOM SEGs through the platform's real
STOW-RS route (a DICOMweb client over HTTP, as OHIF and 3D Slicer do), then agreement, adjudication
and the accepted labels a release carries.

Readers' errors: each lesion's outline grows or shrinks by a pixel in its slices, or moves by one pixel;
in about one case in three one reader misses a lesion altogether. The adjudicator keeps the read that
found every lesion when one was missed, and takes the STAPLE consensus otherwise.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from curata.workspace import Workspace

PROJECT = "demo-lesions"
DEMO_PLATFORM = "demo"  # the platform project the readers sign in to (curata.server.setup_demo_readers)
LESION = {
    "name": "lesion",
    "value": 1,
    "code": "52988006",
    "meaning": "Lesion",
    "colour": "#e41a1c",
}
INSTRUCTIONS = "Outline every lesion (lung, liver, kidney) on the axial CT; one segment, all lesions."
LESION_BASE = 100  # the generator's lesion label values start here


def _truth_on_grid(manifest: Any, original_uid: str, grid: Any) -> np.ndarray | None:
    """The generator's lesions as a 0/1 map on the catalog's grid (None when the grids do not align)."""
    labels, affine, _names = manifest.labels(original_uid)
    inv = np.linalg.inv(affine)
    out = np.zeros(grid.shape, dtype=np.uint16)
    for i in range(grid.shape[0]):
        k, r, c, _ = inv @ grid.affine @ np.array([i, 0, 0, 1.0])
        step = inv @ grid.affine @ np.array([i, 1, 1, 1.0]) - np.array([k, r, c, 1.0])
        ki = round(float(k))
        if (
            abs(k - ki) > 0.05
            or abs(r) > 0.05
            or abs(c) > 0.05
            or not np.allclose(step[:3], [0, 1, 1], atol=1e-3)
        ):
            return None
        if 0 <= ki < labels.shape[0]:
            out[i] = labels[ki] >= LESION_BASE
    return out


def _reader_version(truth: np.ndarray, rng: np.random.Generator, *, miss: bool) -> np.ndarray:
    comps, n = ndimage.label(truth > 0, structure=np.ones((3, 3, 3), bool))
    out = np.zeros_like(truth)
    dropped = int(rng.integers(1, n + 1)) if miss and n else -1
    in_plane = np.zeros((3, 3, 3), bool)  # readers draw slice by slice: outlines move within a slice
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    for j in range(1, n + 1):
        if j == dropped:
            continue
        m = comps == j
        roll = rng.random()
        if roll < 0.35:
            m = ndimage.binary_dilation(m, structure=in_plane)
        elif roll < 0.7:
            eroded = ndimage.binary_erosion(m, structure=in_plane)
            m = eroded if eroded.sum() > 0.3 * m.sum() else m
        if rng.random() < 0.3:
            m = np.roll(m, int(rng.choice([-1, 1])), axis=int(rng.choice([1, 2])))
        out[m] = 1
    return out


class _Server:
    """The platform's FastAPI app on a loopback port (uvicorn in a thread)."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the platform server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def run_reading_round(
    ws: Workspace, manifest: Any, cohort: str, *, max_cases: int = 6, seed: int = 0
) -> dict[str, Any]:
    """Project, schema, readers, tasks, blinded reads through STOW-RS, agreement, adjudication."""
    import io

    import pydicom
    from dicomweb_client.api import DICOMwebClient

    from curata import annotate
    from curata.collect.deid import Pseudonymizer
    from curata.select import show_cohort
    from curata.server import Role, create_app, setup_demo_readers

    rng = np.random.default_rng(seed)
    to_catalog = Pseudonymizer(ws.site_key()).uid
    with_lesions = {le.patient for le in manifest.lesions if le.frame == "body"}
    original = {to_catalog(s.series_uid): s for s in manifest.series if s.kind == "ct_body"}
    in_cohort = [s.series_uid for s in show_cohort(ws, cohort).series]
    chosen = [u for u in in_cohort if u in original and original[u].patient in with_lesions][:max_cases]
    if not chosen:  # a tiny demo may draw no lesion at all: nothing to read, nothing to release
        return {
            "project": None,
            "cases": 0,
            "note": "no CT series with lesions in the cohort",
            "release_labels": None,
            "release_annotation": None,
        }

    sites = [s.name for s in manifest.sites]
    annotate.create_project(ws, PROJECT, cohort, readers_per_task=2, skip_own_site=len(sites) >= 3)
    annotate.set_schema(ws, PROJECT, [LESION], INSTRUCTIONS)
    readers = [f"reader-{chr(97 + i)}" for i in range(3)]
    for i, name in enumerate(readers):
        annotate.add_reader(ws, PROJECT, name, site=sites[i % len(sites)])
    annotate.add_reader(ws, PROJECT, "adjudicator", site=None, adjudicator=True)
    annotate.create_tasks(ws, PROJECT, series_uids=chosen)
    annotate.assign(ws, PROJECT)
    tasks = annotate.list_tasks(ws, PROJECT)

    truths: dict[int, np.ndarray] = {}
    stowed, filed_on_arrival, blind_violations, empty_reads = 0, 0, 0, 0
    # every reader signs in with their own account: an API token, as OHIF or 3D Slicer would hold
    roles = {name: Role.annotator for name in readers} | {"adjudicator": Role.curator}
    tokens = setup_demo_readers(ws, PROJECT, cohort, roles)
    app = create_app(ws, verified_deidentified=True)
    with _Server(app) as server:
        dicomweb = f"http://127.0.0.1:{server.port}/projects/{DEMO_PLATFORM}/dicomweb"
        clients = {
            name: DICOMwebClient(dicomweb, headers={"Authorization": f"Bearer {token}"})
            for name, token in tokens.items()
        }
        for t in tasks:
            grid = annotate.series_grid(ws, t.series_uid)
            truth = _truth_on_grid(manifest, original[t.series_uid].series_uid, grid)
            if truth is None:
                continue
            truths[t.id] = truth
            miss_by = int(rng.integers(0, 2)) if rng.random() < 0.35 else -1
            for j, reader in enumerate(t.readers):
                annotate.start(ws, PROJECT, t.id, reader)
                drawn = _reader_version(truth, rng, miss=(j == miss_by))
                seg = annotate.seg_for(ws, PROJECT, t.id, drawn, reader=reader)
                before = len(annotate.visible_reads(ws, PROJECT, t.id, reader))
                clients[reader].store_instances([pydicom.dcmread(io.BytesIO(seg))])
                stowed += 1
                filed_on_arrival += len(annotate.visible_reads(ws, PROJECT, t.id, reader)) - before
                empty_reads += int(not (drawn == 1).any())  # the reader missed the case's only lesion
            for reader in t.readers:  # blinding through DICOMweb: each finds only their own SEG
                found = clients[reader].search_for_series(t.study_uid, search_filters={"Modality": "SEG"})
                blind_violations += int(len(found) != 1)
        filed = annotate.file_new_objects(ws, PROJECT)  # a sweep: everything was filed on arrival
    if filed.refused:
        raise RuntimeError(f"STOW'd reads refused: {filed.refused[:3]}")
    if filed_on_arrival != stowed:
        raise RuntimeError(f"{stowed - filed_on_arrival} STOW'd read(s) were not filed on arrival")
    for t in tasks:
        if t.id not in truths:
            continue
        for reader in t.readers:
            # blinding, checked on every case: a reader sees no other read while the case is open
            seen = {r.reader for r in annotate.visible_reads(ws, PROJECT, t.id, reader)}
            blind_violations += int(seen != {reader})
            annotate.submit(ws, PROJECT, t.id, reader, seconds=float(rng.uniform(90, 420)))

    results = annotate.compute_agreement(ws, PROJECT)
    decisions: dict[str, int] = {}
    for r in results:
        if r.state == "in_review":
            annotate.accept_review(ws, PROJECT, r.task_id, "adjudicator")
            decisions["review"] = decisions.get("review", 0) + 1
            continue
        lesion_pairs = [p for p in r.pairs if p["label"] == "lesion"]
        counts = {p["readers"][0]: p["lesions_a"] for p in lesion_pairs} | {
            p["readers"][1]: p["lesions_b"] for p in lesion_pairs
        }
        reads = [x for x in annotate.visible_reads(ws, PROJECT, r.task_id, "adjudicator") if not x.is_draft]
        if len(set(counts.values())) > 1:  # a lesion was missed: keep the complete read
            best = max(counts, key=lambda k: counts[k])
            read = max((x for x in reads if x.reader == best), key=lambda x: x.version)
            annotate.adjudicate(ws, PROJECT, r.task_id, "adjudicator", "accept_read", read_id=read.id)
            decisions["accept_read"] = decisions.get("accept_read", 0) + 1
        else:
            annotate.adjudicate(ws, PROJECT, r.task_id, "adjudicator", "staple")
            decisions["staple"] = decisions.get("staple", 0) + 1

    # how close the accepted labels are to the generator's truth
    from curata.annotate import label_agreement

    truth_dice: list[float] = []
    for acc in annotate.accepted_labels(ws, PROJECT):
        lm = np.load(io.BytesIO(ws.store.get_bytes(acc["labelmap_digest"])))["labels"]
        grid = annotate.series_grid(ws, acc["series_uid"])
        dice = label_agreement(lm == 1, truths[acc["task"]] == 1, grid.spacing)["dice"]
        truth_dice.append(float(dice if dice is not None else 0.0))
    labels, card = annotate.release_labels(ws, PROJECT)
    summary = annotate.project_summary(ws, PROJECT)
    table = [
        {
            "label": row["label"],
            "reads": row["reads"],
            "pairs": row["pairs"],
            "dice_median": _r(row["dice"]["median"]),
            "dice_min": _r(row["dice"]["min"]),
            "hd95_mm_median": _r(row["hd95_mm"]["median"]),
            "assd_mm_median": _r(row["assd_mm"]["median"]),
            "surface_dice_2mm_median": _r(row["surface_dice"]["median"]),
            "detection_f1_median": _r(row["detection_f1"]["median"]),
            "adjudication_rate": _r(row["adjudication_rate"]),
        }
        for row in summary["agreement"]
    ]
    per_case = [
        {
            "task": r.task_id,
            "state_after_agreement": r.state,
            **{
                k: _r(p[k])
                for k in ("dice", "hd95_mm", "assd_mm", "surface_dice", "detection_f1")
                for p in r.pairs[:1]
            },
        }
        for r in results
    ]
    return {
        "project": PROJECT,
        "cases": len(truths),
        "reads_stowed": stowed,
        "reads_without_lesion": empty_reads,
        "reads_filed": filed_on_arrival + len(filed.filed),
        "blinding_violations": blind_violations,
        "decisions": decisions,
        "accepted": summary["status"]["accepted"],
        "agreement": table,
        "per_case": per_case,
        "readers": summary["readers"],
        "accepted_vs_truth_dice_mean": _r(float(np.mean(truth_dice))) if truth_dice else None,
        "release_labels": labels,
        "release_annotation": card,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def save_table(path: Path, result: dict[str, Any]) -> None:
    import json

    path.write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("release_")}, indent=1))


OPEN_PROJECT = "demo-open-reads"  # left open for the people who sign in to the demo


def open_reading_for_accounts(
    ws: Workspace, cohort: str, *, readers: tuple[str, ...], adjudicator: str, cases: int = 3
) -> dict[str, Any]:
    """An annotation project left open for the demo's own accounts: ``cases`` CT series of the
    cohort, each assigned to every one of ``readers`` (blinded double read), ``adjudicator`` decides.
    The reading round before it is simulated; this one is for a person in the browser. Idempotent."""
    from curata import annotate
    from curata.select import show_cohort
    from curata.server import add_resource

    series = [s.series_uid for s in show_cohort(ws, cohort).series][:cases]
    if not series:
        return {"project": None, "tasks": 0}
    if OPEN_PROJECT not in {p.name for p in annotate.list_projects(ws)}:
        annotate.create_project(ws, OPEN_PROJECT, cohort, readers_per_task=len(readers))
        annotate.set_schema(ws, OPEN_PROJECT, [LESION], INSTRUCTIONS)
    for name in readers:
        annotate.add_reader(ws, OPEN_PROJECT, name)
    annotate.add_reader(ws, OPEN_PROJECT, adjudicator, adjudicator=True)
    annotate.create_tasks(ws, OPEN_PROJECT, series_uids=series)
    annotate.assign(ws, OPEN_PROJECT)
    add_resource(ws, DEMO_PLATFORM, "annotation", OPEN_PROJECT)
    queues = {name: len(annotate.queue(ws, OPEN_PROJECT, name)) for name in readers}
    return {"project": OPEN_PROJECT, "tasks": len(annotate.list_tasks(ws, OPEN_PROJECT)), "queues": queues}
